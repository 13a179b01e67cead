//! The RPC server: one request per bidirectional stream, answered by the driver.

use chorus_proto::rpc::{Request, Response, RpcError};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::driver::Command;
use crate::frame;

/// Serves every request stream of one client connection.
pub async fn serve(connection: quinn::Connection, commands: mpsc::Sender<Command>) {
    while let Ok((send, recv)) = connection.accept_bi().await {
        tokio::spawn(serve_stream(connection.clone(), send, recv, commands.clone()));
    }
}

async fn serve_stream(
    connection: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    commands: mpsc::Sender<Command>,
) {
    let request: Request = match frame::read(&mut recv).await {
        Ok(request) => request,
        Err(frame::FrameError::Closed) => return,
        Err(why) => {
            tracing::debug!(%why, "refused a malformed request");
            let error = RpcError::InvalidRequest(why.to_string());
            let _ = frame::write(&mut send, &Response::Error(error)).await;
            let _ = send.finish();
            return;
        }
    };
    if let Err(error) = request.validate() {
        let _ = frame::write(&mut send, &Response::Error(error)).await;
        let _ = send.finish();
        return;
    }
    if let Request::Watch { prefix, after } = request {
        watch(connection, send, commands, prefix, after).await;
        return;
    }
    let (reply, answer) = oneshot::channel();
    let response = if commands.send(Command::Request(request, reply)).await.is_err() {
        Response::Error(RpcError::ShuttingDown)
    } else {
        answer.await.unwrap_or(Response::Error(RpcError::ShuttingDown))
    };
    let _ = frame::write(&mut send, &response).await;
    let _ = send.finish();
}

/// Streams changes under `prefix` until the client goes away. A watcher that falls behind the
/// live channel resumes from its last cursor through the node's history, so it misses nothing
/// unless it falls behind the whole history.
async fn watch(
    connection: quinn::Connection,
    mut send: quinn::SendStream,
    commands: mpsc::Sender<Command>,
    prefix: Vec<u8>,
    mut after: Option<u64>,
) {
    if frame::write(&mut send, &Response::Watching).await.is_err() {
        return;
    }
    loop {
        let (reply, answer) = oneshot::channel();
        if commands.send(Command::Watch(after, reply)).await.is_err() {
            return;
        }
        let (missed, mut live, now) = match answer.await {
            Ok(Ok(subscription)) => subscription,
            Ok(Err(error)) => {
                let _ = frame::write(&mut send, &Response::Error(error)).await;
                return;
            }
            Err(_) => return,
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
