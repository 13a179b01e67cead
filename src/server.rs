//! The RPC server: requests on bidirectional streams, each answered by the stream's own task
//! through the shared driver.
//!
//! A stream carries requests one after another, each answered before the next is read, until
//! the client finishes it: a client keeps a stream for many requests rather than paying for a
//! new one each time, and concurrent requests use separate streams. A `watch` request turns
//! its stream into a stream of changes.

use std::sync::Arc;

use chorus_proto::rpc::{Request, Response, RpcError};
use tokio::sync::broadcast;

use crate::driver::{Answer, Shared};
use crate::frame;

/// Serves every request stream of one client connection.
pub async fn serve(connection: quinn::Connection, driver: Arc<Shared>) {
    while let Ok((send, recv)) = connection.accept_bi().await {
        tokio::spawn(serve_stream(connection.clone(), send, recv, driver.clone()));
    }
}

async fn serve_stream(
    connection: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    driver: Arc<Shared>,
) {
    loop {
        let request: Request = match frame::read(&mut recv).await {
            Ok(request) => request,
            // The client finished the stream: it has no more requests on it.
            Err(frame::FrameError::Closed) => break,
            Err(why) => {
                // The framing may be lost: answer, then end the stream.
                tracing::debug!(%why, "refused a malformed request");
                let error = RpcError::InvalidRequest(why.to_string());
                let _ = frame::write(&mut send, &Response::Error(error)).await;
                break;
            }
        };
        let response = match request.validate() {
            Err(error) => Response::Error(error),
            Ok(()) => match request {
                Request::Watch { prefix, after } => {
                    watch(connection, send, &driver, prefix, after).await;
                    return;
                }
                request => match driver.request(request) {
                    Answer::Now(response) => response,
                    // The node is gone if the wait's sender was dropped without an answer.
                    Answer::Later(answer) => {
                        answer.await.unwrap_or(Response::Error(RpcError::ShuttingDown))
                    }
                },
            },
        };
        if frame::write(&mut send, &response).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

/// Streams changes under `prefix` until the client goes away. A watcher that falls behind the
/// live channel resumes from its last cursor through the node's history, so it misses nothing
/// unless it falls behind the whole history.
async fn watch(
    connection: quinn::Connection,
    mut send: quinn::SendStream,
    driver: &Shared,
    prefix: Vec<u8>,
    mut after: Option<u64>,
) {
    if frame::write(&mut send, &Response::Watching).await.is_err() {
        return;
    }
    loop {
        let (missed, mut live, now) = match driver.subscribe(after) {
            Ok(subscription) => subscription,
            Err(error) => {
                let _ = frame::write(&mut send, &Response::Error(error)).await;
                return;
            }
        };
        after = Some(after.unwrap_or(now));
        for change in missed {
            after = Some(change.cursor);
            if change.key.as_bytes().starts_with(&prefix)
                && frame::write(&mut send, &Response::Change(change)).await.is_err()
            {
                return;
            }
        }
        loop {
            let change = tokio::select! {
                change = live.recv() => change,
                // The client going away ends the watch.
                _ = connection.closed() => return,
            };
            match change {
                Ok(change) => {
                    if after.is_some_and(|cursor| change.cursor <= cursor) {
                        continue;
                    }
                    after = Some(change.cursor);
                    if change.key.as_bytes().starts_with(&prefix)
                        && frame::write(&mut send, &Response::Change(change)).await.is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
