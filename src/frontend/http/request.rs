//! What every HTTP handler shares: keys of any bytes from percent-encoded paths and query
//! parameters, the query string itself, and errors as JSON with the RPC's kinds.

use std::time::Duration;

use axum::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chorus_proto::Key;
use serde_json::json;

use crate::node::OpError;

/// Why a request failed: an HTTP status, a kind named as the RPC's errors are, and a sentence
/// that says what to do next. Sent as `{"error": kind, "message": text}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

/// The error kind of an answered request, kept on its response for the request metrics.
#[derive(Clone, Copy, Debug)]
struct ErrorKind(&'static str);

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, kind, message: message.into() }
    }

    /// 400: a request that is not valid.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 400: a key or prefix that is not valid.
    pub fn invalid_key(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_key", message)
    }

    /// 404: no live value, or no such endpoint.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 405: an endpoint asked with a method it does not take.
    pub fn method_not_allowed() -> ApiError {
        let message = "this endpoint does not take that method: see the README's HTTP section";
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "invalid_request", message)
    }

    /// 401: the bearer token is missing or wrong.
    pub fn unauthorised() -> ApiError {
        let message = "this node requires a bearer token: send `Authorization: Bearer TOKEN`";
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorised", message)
    }

    /// 408: the client took too long to send its body.
    pub fn body_timeout(limit: Duration) -> ApiError {
        let message = format!("the request body did not arrive within {}s", limit.as_secs());
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", message)
    }
}

impl From<OpError> for ApiError {
    fn from(error: OpError) -> ApiError {
        let message = error.to_string();
        match error {
            OpError::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
            }
            OpError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
            }
            OpError::Busy => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message),
            OpError::Invalid(_) => ApiError::invalid(message),
            OpError::CursorExpired => ApiError::new(StatusCode::GONE, "cursor_expired", message),
            // This node cannot take writes now; another node can (or this one once its clock
            // is fixed or has been compared): unavailable, not the client's fault.
            OpError::ClockOffset { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "clock_offset", message)
            }
            OpError::ClockUnchecked => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "clock_unchecked", message)
            }
            // Applied in memory but not on disk: the node's fault, not the request's.
            OpError::NotDurable(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "not_durable", message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.kind, "message": self.message }).to_string();
        let mut response =
            (self.status, [(CONTENT_TYPE, "application/json")], body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(WWW_AUTHENTICATE, "Bearer".parse().expect("a token"));
        }
        response.extensions_mut().insert(ErrorKind(self.kind));
        response
    }
}

/// A response's result for the request metrics: `ok`, or the error's kind.
pub fn result_of(response: &Response) -> &'static str {
    if let Some(ErrorKind(kind)) = response.extensions().get::<ErrorKind>() {
        return kind;
    }
    match response.status() {
        status if status.is_success() => "ok",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::SERVICE_UNAVAILABLE => "not_ready",
        status if status.is_client_error() => "invalid_request",
        _ => "error",
    }
}

/// A JSON answer.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (status, [(CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Decodes `%XX` escapes (and, in a query, `+` as a space, as forms send it) into bytes;
/// refuses a `%` not followed by two hex digits rather than guess what was meant.
pub fn percent_decode(text: &str, plus_is_space: bool) -> Result<Vec<u8>, ApiError> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                let digit = |offset: usize| {
                    bytes.get(at + offset).and_then(|&byte| (byte as char).to_digit(16))
                };
                let (Some(high), Some(low)) = (digit(1), digit(2)) else {
                    return Err(ApiError::invalid(format!(
                        "bad percent-encoding in '{text}': '%' must be followed by two hex digits"
                    )));
                };
                decoded.push((high * 16 + low) as u8);
                at += 3;
            }
            b'+' if plus_is_space => {
                decoded.push(b' ');
                at += 1;
            }
            byte => {
                decoded.push(byte);
                at += 1;
            }
        }
    }
    Ok(decoded)
}

/// The key named by the rest of the path after `/v1/kv/`, slashes included, percent-decoded.
pub fn path_key(uri: &Uri) -> Result<Key, ApiError> {
    let raw = uri.path().strip_prefix("/v1/kv/").unwrap_or_default();
    let bytes = percent_decode(raw, false)?;
    Key::new(bytes).map_err(|error| ApiError::invalid_key(format!("invalid key: {error}")))
}

/// A request's query parameters, each name and value percent-decoded.
pub struct Query {
    pairs: Vec<(String, Vec<u8>)>,
}

impl Query {
    /// Parses the query string of `uri` (none is an empty query).
    pub fn parse(uri: &Uri) -> Result<Query, ApiError> {
        let mut pairs = Vec::new();
        for pair in uri.query().unwrap_or_default().split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = String::from_utf8_lossy(&percent_decode(name, true)?).into_owned();
            pairs.push((name, percent_decode(value, true)?));
        }
        Ok(Query { pairs })
    }

    /// The bytes of parameter `name` (the last one, when given twice).
    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.pairs.iter().rev().find(|(given, _)| given == name).map(|(_, value)| &value[..])
    }

    /// Parameter `name` parsed from its text by `parse`; a bad value is a 400 naming it.
    pub fn parsed<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ApiError> {
        let Some(bytes) = self.bytes(name) else { return Ok(None) };
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ApiError::invalid(format!("query parameter {name} is not text")))?;
        parse(text).map(Some).map_err(|why| ApiError::invalid(format!("{name}: {why}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_decodes_any_byte_and_refuses_broken_escapes() {
        assert_eq!(percent_decode("a%2Fb%ff%00/c", false).ok(), Some(b"a/b\xff\x00/c".to_vec()));
        assert_eq!(percent_decode("a+b", false).ok(), Some(b"a+b".to_vec()));
        assert_eq!(percent_decode("a+b%2B", true).ok(), Some(b"a b+".to_vec()));
        for bad in ["%", "%g0", "abc%4", "%%41"] {
            assert!(percent_decode(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn query_parameters_decode_and_the_last_wins() {
        let uri: Uri = "/v1/kv?prefix=app%2F%ff&limit=2&limit=3&flag".parse().expect("a uri");
        let query = Query::parse(&uri).expect("a query");
        assert_eq!(query.bytes("prefix"), Some(&b"app/\xff"[..]));
        assert_eq!(
            query.parsed("limit", |t| t.parse::<u32>().map_err(|e| e.to_string())).ok(),
            Some(Some(3))
        );
        assert_eq!(query.bytes("flag"), Some(&b""[..]));
        assert!(query.bytes("after").is_none());
    }
}
