//! Watch over HTTP, both resumable from an index (a cursor in the node's watch history):
//!
//! - `GET /v1/watch?prefix=&index=N&wait=30s`, a long poll in Consul's style: it answers at
//!   the first change under `prefix` after `index` (after the request without one), or empty
//!   at the deadline, with `{"index": N, "changes": [...], "reset": false}` and `index` in
//!   `X-Chorus-Index`; the next poll passes that index.
//! - `GET /v1/watch/stream?prefix=&index=N`: server-sent events, one `change` event per change
//!   (its `id` the cursor, so an `EventSource` resumes by `Last-Event-ID` on its own).
//!
//! Both say `reset: true` (the stream: a `reset` event) when the history no longer holds every
//! change after the index, or the index is from before a restart: the client lists again, then
//! goes on from the index given with it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chorus_proto::rpc::Change;
use futures_util::Stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::Http;
use super::request::{ApiError, Query, json_response};
use crate::node::{Driver, Live, OpError};
use crate::text::{change_json, parse_duration};

/// How long a long poll waits when the request does not say.
pub const WATCH_WAIT_DEFAULT: Duration = Duration::from_secs(60);

/// The longest a long poll waits, whatever the request says (Consul caps at 10 minutes; five
/// stays under the idle timeouts of common proxies and load balancers).
pub const WATCH_WAIT_MAX: Duration = Duration::from_secs(300);

/// Changes one long-poll answer carries at most; the rest come with the next poll.
pub const WATCH_POLL_CHANGES_MAX: usize = 1_000;

/// Key and value bytes one long-poll answer carries at most (beyond its first change, which
/// is always sent): an answer's memory is bounded however large the values.
pub const WATCH_POLL_SIZE_MAX: usize = 4 * 1024 * 1024;

/// How often a quiet stream sends a comment, so that proxies keep it open and a client that
/// went away is noticed.
pub const WATCH_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /v1/watch`: the long poll.
pub async fn poll(State(http): State<Arc<Http>>, uri: Uri) -> Result<Response, ApiError> {
    let query = Query::parse(&uri)?;
    let prefix = query.bytes("prefix").unwrap_or_default().to_vec();
    let index = query.parsed("index", parse_index)?;
    let wait = query.parsed("wait", parse_duration)?.unwrap_or(WATCH_WAIT_DEFAULT);
    let deadline = tokio::time::Instant::now() + wait.min(WATCH_WAIT_MAX);
    let (mut live, mut reset) = subscribe(&http.driver, index)?;
    let mut changes = Vec::new();
    let mut size = 0;
    while !reset && changes.len() < WATCH_POLL_CHANGES_MAX && size < WATCH_POLL_SIZE_MAX {
        // Wait for the first change; then take only what is already there.
        let until = if changes.is_empty() { deadline } else { tokio::time::Instant::now() };
        let Ok(next) = tokio::time::timeout_at(until, live.recv()).await else { break };
        match next {
            Ok(change) if change.key.as_bytes().starts_with(&prefix) => {
                size += change_size(&change);
                changes.push(change_json(&change));
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => reset = true,
            Err(RecvError::Closed) => return Err(OpError::ShuttingDown.into()),
        }
    }
    let index = live.cursor();
    let body = json!({ "index": index, "changes": changes, "reset": reset });
    let mut response = json_response(StatusCode::OK, &body);
    let header = HeaderName::from_static("x-chorus-index");
    response.headers_mut().insert(header, index.into());
    Ok(response)
}

/// `GET /v1/watch/stream`: server-sent events, from `index` or `Last-Event-ID` if given.
pub async fn stream(
    State(http): State<Arc<Http>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = Query::parse(&uri)?;
    let prefix = query.bytes("prefix").unwrap_or_default().to_vec();
    let last_event = headers.get("last-event-id").and_then(|value| value.to_str().ok());
    let index = match query.parsed("index", parse_index)? {
        Some(index) => Some(index),
        None => last_event.map(parse_index).transpose().map_err(ApiError::invalid)?,
    };
    let (live, reset) = subscribe(&http.driver, index)?;
    let events = changes(Streaming { live, prefix, reset });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(WATCH_KEEP_ALIVE)).into_response())
}

/// A stream's watcher, and whether a reset is still to be said.
struct Streaming {
    live: Live,
    prefix: Vec<u8>,
    reset: bool,
}

/// The events of a stream: a change each, a reset when history was lost; it ends when the
/// node stops, and is dropped (with its watcher) when the client goes away.
fn changes(streaming: Streaming) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(streaming, |mut streaming| async move {
        loop {
            if streaming.reset {
                streaming.reset = false;
                let index = streaming.live.cursor();
                let data = json!({ "index": index, "reset": true }).to_string();
                let event = Event::default().event("reset").id(index.to_string()).data(data);
                return Some((Ok(event), streaming));
            }
            match streaming.live.recv().await {
                Ok(change) if change.key.as_bytes().starts_with(&streaming.prefix) => {
                    let data = change_json(&change).to_string();
                    let id = change.cursor.to_string();
                    return Some((
                        Ok(Event::default().event("change").id(id).data(data)),
                        streaming,
                    ));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => streaming.reset = true,
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

/// A watcher after `index`; when the history no longer reaches back to it, a watcher from now
/// and `true` (a reset: list again).
fn subscribe(driver: &Driver, index: Option<u64>) -> Result<(Live, bool), ApiError> {
    match driver.subscribe(index) {
        Ok(live) => Ok((live, false)),
        Err(OpError::CursorExpired) => Ok((driver.subscribe(None)?, true)),
        Err(error) => Err(error.into()),
    }
}

fn parse_index(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| format!("'{text}': an index is a whole number"))
}

/// What a change adds to a long-poll answer.
fn change_size(change: &Change) -> usize {
    change.key.as_bytes().len() + change.value.as_ref().map_or(0, |value| value.len())
}
