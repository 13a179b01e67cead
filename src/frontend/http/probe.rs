//! `/health`, `/ready` and `/metrics`: what platforms and Prometheus ask a node.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::Http;
use super::request::ApiError;

/// `GET /health`: 200 while the process serves.
pub async fn health() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

/// `GET /ready`: 200 when the node is ready (DESIGN 7.1, the predicate behind the ready line),
/// else 503 with the reason; read from the readiness channel, without the node's lock.
pub async fn ready(State(http): State<Arc<Http>>) -> Response {
    let readiness = http.ready.borrow().clone();
    match readiness {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response()
        }
    }
}

/// `GET /metrics`: the OpenMetrics text (which Prometheus scrapes as it is) of
/// `metrics::render`.
pub async fn metrics(State(http): State<Arc<Http>>) -> Result<Response, ApiError> {
    let text = super::metrics::render(&http)?;
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok(([(CONTENT_TYPE, content_type)], text).into_response())
}
