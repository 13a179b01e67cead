//! The HTTP front end (`chorus node --http ADDR`): the key-value API, watch by long poll and
//! by server-sent events, `/metrics`, `/health` and `/ready` (DESIGN 11), translated onto the
//! node's operations as the Redis and RPC front ends are.
//!
//! - `request`: what every handler shares: percent-decoding of keys of any bytes, the query
//!   string, and errors as JSON with the RPC's kinds.
//! - `kv`: `/v1/kv/{key}` (GET, PUT, DELETE), `/v1/kv?prefix=` (list), members, stats.
//! - `watch`: the long poll (`/v1/watch`) and the stream (`/v1/watch/stream`).
//! - `probe`: `/metrics`, `/health`, `/ready`; `metrics`: the metric families of `/metrics`.
//!
//! axum routes and tower-http bounds each request (body size, time); the accept loop here
//! bounds connections and the time a client may take to send its headers, as the Redis front
//! end bounds its clients.

mod kv;
mod metrics;
mod probe;
mod request;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chorus_proto::limits::{VALUE_SIZE_MAX, WAIT_TIMEOUT_MS_MAX};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch as channel};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::node::{Driver, Readiness};
use request::ApiError;

/// Client connections one node serves at once (streams included); more wait to be accepted.
pub const HTTP_CONNECTIONS_MAX: usize = 1024;

/// How long a client may take to send a request's headers before its connection is closed
/// (a slow or idle client cannot hold a connection slot for long).
pub const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's body (at most one value) before it is
/// answered 408.
pub const HTTP_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest any request other than a watch may take, a write's wait included: a backstop
/// above the body timeout plus the longest wait, answered 408.
pub const HTTP_REQUEST_TIMEOUT: Duration =
    Duration::from_millis(WAIT_TIMEOUT_MS_MAX + HTTP_BODY_TIMEOUT.as_millis() as u64);

/// How a node serves HTTP.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Address to listen on (TCP); port 0 picks a free port.
    pub listen: SocketAddr,
    /// The bearer token every request but `/health` and `/ready` must carry
    /// (`Authorization: Bearer TOKEN`); required to listen on an address other than loopback.
    pub token: Option<String>,
}

/// What every request of one node's HTTP front end shares.
pub struct Http {
    driver: Arc<Driver>,
    token: Option<String>,
    ready: channel::Receiver<Readiness>,
}

/// Binds the HTTP listener; refuses an address other than loopback without a token.
pub async fn bind(
    options: &HttpOptions,
    driver: Arc<Driver>,
    ready: channel::Receiver<Readiness>,
) -> Result<(TcpListener, Arc<Http>), String> {
    if options.token.as_deref().is_some_and(str::is_empty) {
        return Err("the HTTP bearer token is empty: give --http-token (or CHORUS_HTTP_TOKEN) \
                    a secret, or leave it unset on loopback"
            .into());
    }
    if !options.listen.ip().is_loopback() && options.token.is_none() {
        return Err(format!(
            "refusing to serve HTTP on {} without a bearer token: pass --http-token (or \
             CHORUS_HTTP_TOKEN), or listen on 127.0.0.1",
            options.listen
        ));
    }
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|error| format!("cannot bind HTTP to {}: {error}", options.listen))?;
    let http = Arc::new(Http { driver, token: options.token.clone(), ready });
    Ok((listener, http))
}

/// The routes, their bounds, the token check and the request metrics.
fn router(http: Arc<Http>) -> Router {
    let request_timeout =
        TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, HTTP_REQUEST_TIMEOUT);
    // Watches bound themselves (the long poll's wait is capped; a stream lasts as long as its
    // client): only the other routes take the backstop timeout.
    let api = Router::new()
        .route("/v1/kv", get(kv::list))
        .route("/v1/kv/{*key}", get(kv::get).put(kv::put).delete(kv::delete))
        .route("/v1/members", get(kv::members))
        .route("/v1/stats", get(kv::stats))
        .route("/metrics", get(probe::metrics))
        .layer(request_timeout);
    let watches = Router::new()
        .route("/v1/watch", get(watch::poll))
        .route("/v1/watch/stream", get(watch::stream));
    let guarded =
        api.merge(watches).route_layer(middleware::from_fn_with_state(http.clone(), authorise));
    Router::new()
        .route("/health", get(probe::health))
        .route("/ready", get(probe::ready))
        .merge(guarded)
        .fallback(|| async {
            ApiError::not_found("no such endpoint: see the README's HTTP section")
        })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(http.clone(), measure))
        .layer(DefaultBodyLimit::max(VALUE_SIZE_MAX))
        .layer(RequestBodyLimitLayer::new(VALUE_SIZE_MAX))
        .with_state(http)
}

/// Accepts clients until the task is aborted, at most [`HTTP_CONNECTIONS_MAX`] at once; each
/// connection's task ends with this one.
pub async fn serve(listener: TcpListener, http: Arc<Http>) {
    let driver = http.driver.clone();
    let router = router(http);
    let permits = Arc::new(Semaphore::new(HTTP_CONNECTIONS_MAX));
    let mut connections = tokio::task::JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HTTP_HEADER_TIMEOUT);
    loop {
        // Reap finished connections so the set stays as small as the live ones.
        while connections.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let (stream, peer) = super::accept(&listener, "http").await;
        if super::test_fault("http-accept-panic") {
            panic!("test fault: the HTTP accept loop panics");
        }
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let open = driver.metrics().connection("http");
        connections.spawn(async move {
            if let Err(why) = connection.await {
                tracing::debug!(%peer, %why, "http connection ended");
            }
            drop((permit, open));
        });
    }
}

/// Refuses a request without the bearer token, when one is configured.
async fn authorise(State(http): State<Arc<Http>>, request: Request, next: Next) -> Response {
    let Some(token) = &http.token else { return next.run(request).await };
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    match given {
        Some(given) if super::same_secret(token.as_bytes(), given) => next.run(request).await,
        _ => ApiError::unauthorised().into_response(),
    }
}

/// Counts every request by kind and result, with its latency (to its headers, for a stream),
/// and counts the connection open while it is served.
async fn measure(State(http): State<Arc<Http>>, request: Request, next: Next) -> Response {
    let kind = kind(request.method(), request.uri().path());
    let started = Instant::now();
    let response = next.run(request).await;
    let result = request::result_of(&response);
    http.driver.metrics().observe("http", kind, result, started.elapsed(), 1);
    response
}

/// The request's kind for metrics: a fixed name, whatever the path holds.
fn kind(method: &axum::http::Method, path: &str) -> &'static str {
    use axum::http::Method;
    match (method, path) {
        (&Method::PUT, _) => "put",
        (&Method::DELETE, _) => "delete",
        (_, "/v1/kv") => "list",
        (_, path) if path.starts_with("/v1/kv/") => "get",
        (_, "/v1/watch") => "watch",
        (_, "/v1/watch/stream") => "stream",
        (_, "/v1/members") => "members",
        (_, "/v1/stats") => "stats",
        (_, "/metrics") => "metrics",
        (_, "/health") => "health",
        (_, "/ready") => "ready",
        _ => "other",
    }
}
