//! The QUIC RPC front end: requests on bidirectional streams, each answered by the stream's
//! own task through the node's operations.
//!
//! A stream carries requests one after another, each answered before the next is read, until
//! the client finishes it: a client keeps a stream for many requests rather than paying for a
//! new one each time, and concurrent requests use separate streams. A `watch` request turns
//! its stream into a stream of changes.

use std::sync::Arc;
use std::time::Instant;

use chorus_proto::rpc::{Request, Response, RpcError};
use tokio::sync::broadcast;

use crate::frame;
use chorus_proto::Write;

use crate::node::{Driver, OpError, Written};

/// Serves every request stream of one client connection.
pub async fn serve(connection: quinn::Connection, driver: Arc<Driver>) {
    let _open = driver.metrics().connection("rpc");
    while let Ok((send, recv)) = connection.accept_bi().await {
        tokio::spawn(serve_stream(connection.clone(), send, recv, driver.clone()));
    }
}

async fn serve_stream(
    connection: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    driver: Arc<Driver>,
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
        let (kind, started) = (kind(&request), Instant::now());
        let response = match request.validate() {
            Err(error) => Response::Error(error),
            Ok(()) => match request {
                Request::Watch { prefix, after } => {
                    watch(connection, send, &driver, prefix, after).await;
                    return;
                }
                request => {
                    let answered = tokio::select! {
                        answered = answer(&driver, request) => answered,
                        // A client that went away (its connection closed, or it gave up on
                        // this request and stopped the stream) wants no answer: dropping the
                        // operation cancels a write's wait and frees its slot at once. A
                        // stopping node closes every connection: a write waiting for the disk
                        // whose writer it stopped ends here too, and lets go of the socket.
                        _ = connection.closed() => return,
                        _ = send.stopped() => return,
                    };
                    answered.unwrap_or_else(|error| Response::Error(rpc_error(error)))
                }
            },
        };
        driver.metrics().observe("rpc", kind, result(&response), started.elapsed(), 1);
        if frame::write(&mut send, &response).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

/// A request's kind for metrics.
fn kind(request: &Request) -> &'static str {
    match request {
        Request::Get { .. } => "get",
        Request::Put { .. } => "put",
        Request::Delete { .. } => "delete",
        Request::List { .. } => "list",
        Request::Members => "members",
        Request::Stats => "stats",
        Request::Watch { .. } => "watch",
    }
}

/// A response's result for metrics: `ok`, or its error's kind (as the HTTP API names it).
fn result(response: &Response) -> &'static str {
    match response {
        Response::Error(error) => match error {
            RpcError::NotFound => "not_found",
            RpcError::TooLarge { .. } => "too_large",
            RpcError::InvalidKey(_) => "invalid_key",
            RpcError::InvalidRequest(_) => "invalid_request",
            RpcError::Timeout => "timeout",
            RpcError::Unauthorised => "unauthorised",
            RpcError::ShuttingDown => "shutting_down",
            RpcError::CursorExpired => "cursor_expired",
            RpcError::Busy => "busy",
            RpcError::ClockOffset { .. } => "clock_offset",
            RpcError::ClockUnchecked => "clock_unchecked",
            RpcError::NotDurable(_) => "not_durable",
        },
        _ => "ok",
    }
}

/// Answers one request (not `Watch`, which is a stream) through the node's operations.
async fn answer(driver: &Driver, request: Request) -> Result<Response, OpError> {
    Ok(match request {
        Request::Get { key } => match driver.get(&key)? {
            Some((value, stamp)) => Response::Value { value, stamp },
            None => Response::Error(RpcError::NotFound),
        },
        Request::Put { key, value, ttl_ms, wait, timeout_ms } => {
            let op = Write { key, value: Some(value), ttl_ms, wait, timeout_ms };
            written(driver.write(op).await?)
        }
        Request::Delete { key, wait, timeout_ms } => {
            let op = Write { key, value: None, ttl_ms: None, wait, timeout_ms };
            written(driver.write(op).await?)
        }
        Request::List { prefix, start_after, limit } => {
            let (keys, more) = driver.list(&prefix, start_after.as_ref(), limit)?;
            Response::Keys { keys, more }
        }
        Request::Members => Response::Members(driver.members()?),
        Request::Stats => Response::Stats(Box::new(driver.stats()?)),
        Request::Watch { .. } => {
            Response::Error(RpcError::InvalidRequest("watch is a stream".into()))
        }
    })
}

fn written(written: Written) -> Response {
    Response::Written { stamp: written.stamp, wait: written.wait }
}

/// The RPC's wire error for an operation's error.
fn rpc_error(error: OpError) -> RpcError {
    match error {
        OpError::ShuttingDown => RpcError::ShuttingDown,
        OpError::TooLarge { size, size_max } => {
            RpcError::TooLarge { size: size as u64, size_max: size_max as u64 }
        }
        OpError::Busy => RpcError::Busy,
        OpError::Invalid(why) => RpcError::InvalidRequest(why),
        OpError::CursorExpired => RpcError::CursorExpired,
        OpError::ClockOffset { offset_ms, bound_ms } => {
            RpcError::ClockOffset { offset_ms, bound_ms }
        }
        OpError::ClockUnchecked => RpcError::ClockUnchecked,
        OpError::NotDurable(why) => RpcError::NotDurable(why),
    }
}

/// Streams changes under `prefix` until the client goes away. The watcher reads the node's
/// history from its cursor, the changes it missed first; one that falls behind the history
/// (by count or by bytes) is told to list again, since it can no longer see every change.
async fn watch(
    connection: quinn::Connection,
    mut send: quinn::SendStream,
    driver: &Driver,
    prefix: Vec<u8>,
    after: Option<u64>,
) {
    if frame::write(&mut send, &Response::Watching).await.is_err() {
        return;
    }
    let mut live = match driver.subscribe(after) {
        Ok(live) => live,
        Err(error) => {
            let _ = frame::write(&mut send, &Response::Error(rpc_error(error))).await;
            return;
        }
    };
    loop {
        let change = tokio::select! {
            change = live.recv() => change,
            // The client going away ends the watch.
            _ = connection.closed() => return,
        };
        match change {
            Ok(change) => {
                if change.key.as_bytes().starts_with(&prefix)
                    && frame::write(&mut send, &Response::Change(change)).await.is_err()
                {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let expired = Response::Error(RpcError::CursorExpired);
                let _ = frame::write(&mut send, &expired).await;
                let _ = send.finish();
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
