//! `/v1/kv/{key}` (GET, PUT, DELETE), `/v1/kv?prefix=&limit=&after=`, `/v1/members` and
//! `/v1/stats`: each a thin translation onto one of the node's operations.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chorus_proto::rpc::LIST_LIMIT_MAX;
use chorus_proto::{Key, Value, WaitLevel, Write};
use serde_json::json;

use super::request::{ApiError, Query, json_response, path_key};
use super::{HTTP_BODY_TIMEOUT, Http};
use crate::text::{
    key_json, keys_json, member_json, parse_duration, parse_wait, stats_json, write_json,
};

/// How long a write waits for other nodes when `wait` is given without `timeout`, as the CLI.
pub const HTTP_WAIT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// `GET /v1/kv/{key}`: the value's bytes, its stamp in `X-Chorus-Stamp`; 404 when absent.
pub async fn get(State(http): State<Arc<Http>>, uri: Uri) -> Result<Response, ApiError> {
    let key = path_key(&uri)?;
    let Some((value, stamp)) = http.driver.get(&key)? else {
        return Err(ApiError::not_found("the key has no live value"));
    };
    let headers = [
        (CONTENT_TYPE, "application/octet-stream".to_string()),
        (axum::http::HeaderName::from_static("x-chorus-stamp"), stamp.to_string()),
    ];
    Ok((headers, value.as_bytes().to_vec()).into_response())
}

/// `PUT /v1/kv/{key}?ttl=30s&wait=all&timeout=5s`: the body's bytes become the value.
pub async fn put(State(http): State<Arc<Http>>, request: Request) -> Result<Response, ApiError> {
    let uri = request.uri().clone();
    let key = path_key(&uri)?;
    let query = Query::parse(&uri)?;
    // The body is read under its own deadline, so a slow client is answered 408 soon; the
    // size limit (413) is the router's.
    let body = tokio::time::timeout(HTTP_BODY_TIMEOUT, Bytes::from_request(request, &()))
        .await
        .map_err(|_| ApiError::body_timeout(HTTP_BODY_TIMEOUT))?;
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let value = Value::new(body).map_err(|error| ApiError::invalid(error.to_string()))?;
    let ttl_ms = query.parsed("ttl", parse_duration)?.map(|ttl| ttl.as_millis() as u64);
    let (wait, timeout_ms) = wait_of(&query)?;
    written(&http, Write { key, value: Some(value), ttl_ms, wait, timeout_ms }).await
}

/// `DELETE /v1/kv/{key}?wait=all&timeout=5s`.
pub async fn delete(State(http): State<Arc<Http>>, uri: Uri) -> Result<Response, ApiError> {
    let key = path_key(&uri)?;
    let query = Query::parse(&uri)?;
    let (wait, timeout_ms) = wait_of(&query)?;
    written(&http, Write { key, value: None, ttl_ms: None, wait, timeout_ms }).await
}

/// The wait the query asks for (`wait`, `timeout`), and its timeout in milliseconds.
fn wait_of(query: &Query) -> Result<(WaitLevel, u64), ApiError> {
    let wait = query.parsed("wait", parse_wait)?.unwrap_or(WaitLevel::Local);
    let timeout = query.parsed("timeout", parse_duration)?.unwrap_or(HTTP_WAIT_TIMEOUT_DEFAULT);
    Ok((wait, timeout.as_millis() as u64))
}

/// Applies a write and answers its stamp (and, with a wait, who confirmed it).
async fn written(http: &Http, write: Write) -> Result<Response, ApiError> {
    let written = http.driver.write(write).await?;
    Ok(json_response(StatusCode::OK, &write_json(&written.stamp, written.wait.as_ref())))
}

/// `GET /v1/kv?prefix=&limit=&after=`: `{"keys": [...], "more": bool}` and, when more follow,
/// `next` (the key to pass as `after`). Keys that are not UTF-8 carry their bytes in hex in
/// `keys_hex` and `next_hex`, as `chorus ls --json` does.
pub async fn list(State(http): State<Arc<Http>>, uri: Uri) -> Result<Response, ApiError> {
    let query = Query::parse(&uri)?;
    let prefix = query.bytes("prefix").unwrap_or_default().to_vec();
    let after = match query.bytes("after") {
        Some(after) => Some(Key::new(after).map_err(|e| ApiError::invalid_key(e.to_string()))?),
        None => None,
    };
    let parse_limit = |text: &str| match text.parse::<u32>() {
        Ok(limit) if (1..=LIST_LIMIT_MAX).contains(&limit) => Ok(limit),
        _ => Err(format!("expected a number from 1 to {LIST_LIMIT_MAX}")),
    };
    let limit = query.parsed("limit", parse_limit)?.unwrap_or(LIST_LIMIT_MAX);
    let (keys, more) = http.driver.list(&prefix, after.as_ref(), limit)?;
    let mut object = json!({ "more": more });
    keys_json(&mut object, keys.iter().map(Key::as_bytes));
    key_json(&mut object, "prefix", &prefix);
    if let (true, Some(last)) = (more, keys.last()) {
        key_json(&mut object, "next", last.as_bytes());
    }
    Ok(json_response(StatusCode::OK, &object))
}

/// `GET /v1/members`: the members as this node sees them, as `chorus members --json`.
pub async fn members(State(http): State<Arc<Http>>) -> Result<Response, ApiError> {
    let members: Vec<_> = http.driver.members()?.iter().map(member_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "members": members })))
}

/// `GET /v1/stats`: the node's counters, as `chorus stats --json`.
pub async fn stats(State(http): State<Arc<Http>>) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, &stats_json(&http.driver.stats()?)))
}
