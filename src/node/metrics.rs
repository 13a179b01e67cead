//! Metrics kept beside the node's lock (`Driver::metrics`): request counts and latencies of every front end, the
//! connections each holds, and how long a remote write took to arrive. Each is an atomic (or a
//! short lock of its own) that the request's task updates itself, so `/metrics` reads them
//! without taking the node's lock; `/metrics` adds the node's sizes and counters from one
//! short hold (`Driver::stats`).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Latency buckets: 100 µs, then ×4 up to about 26 s (a waited write may take up to a minute,
/// and lands in `+Inf`).
const LATENCY_BUCKET_FIRST_S: f64 = 0.000_1;
const LATENCY_BUCKET_FACTOR: f64 = 4.0;
const LATENCY_BUCKETS: u16 = 10;

/// Propagation lag buckets: 1 ms, then ×2 up to about 16 s.
const LAG_BUCKET_FIRST_S: f64 = 0.001;
const LAG_BUCKET_FACTOR: f64 = 2.0;
const LAG_BUCKETS: u16 = 15;

/// One kind of request and how it ended. Every value is a fixed name from the code (never a
/// client's text), so the number of series is bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `http`, `redis` or `rpc`.
    pub frontend: &'static str,
    /// What was asked: `get`, `put`, `list`, `watch`... (Redis: the command's name).
    pub kind: &'static str,
    /// `ok`, `not_found`, or the error's kind.
    pub result: &'static str,
}

/// One front end.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrontendLabel {
    /// `http`, `redis` or `rpc`.
    pub frontend: &'static str,
}

type HistogramMaker = fn() -> Histogram;

/// The metrics every front end updates.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Requests by front end, kind and result.
    pub requests: Family<RequestLabels, Counter>,
    /// Their latency in seconds.
    pub latency: Family<RequestLabels, Histogram, HistogramMaker>,
    /// Client connections open now, by front end.
    pub connections: Family<FrontendLabel, Gauge>,
    /// Seconds from a remote write's stamp to its arrival here (clock offsets included).
    pub propagation_lag: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            connections: Family::default(),
            propagation_lag: Histogram::new(exponential_buckets(
                LAG_BUCKET_FIRST_S,
                LAG_BUCKET_FACTOR,
                LAG_BUCKETS,
            )),
        }
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(
        LATENCY_BUCKET_FIRST_S,
        LATENCY_BUCKET_FACTOR,
        LATENCY_BUCKETS,
    ))
}

impl Metrics {
    /// Counts one request of `kind` on `frontend` that ended with `result` after `took`.
    pub fn observe(
        &self,
        frontend: &'static str,
        kind: &'static str,
        result: &'static str,
        took: Duration,
    ) {
        let labels = RequestLabels { frontend, kind, result };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(took.as_secs_f64());
    }
}

/// Handles to one connection's request series, each looked up in the families once: a lookup
/// hashes three labels under a lock, which cost a quarter of a pipelined GET's instructions.
#[derive(Default)]
pub struct SeriesCache {
    series: Vec<(&'static str, &'static str, Counter, Histogram)>,
}

/// Series one connection keeps handles to; beyond them it looks each request up (a connection
/// uses a few commands, and each `(kind, result)` pair is a fixed name from the code).
const SERIES_CACHED_MAX: usize = 32;

impl SeriesCache {
    /// [`Metrics::observe`] through this connection's handles.
    pub fn observe(
        &mut self,
        metrics: &Metrics,
        frontend: &'static str,
        kind: &'static str,
        result: &'static str,
        took: Duration,
    ) {
        let found = self.series.iter().find(|(k, r, ..)| *k == kind && *r == result);
        let (counter, histogram) = match found {
            Some((_, _, counter, histogram)) => (counter, histogram),
            None if self.series.len() >= SERIES_CACHED_MAX => {
                return metrics.observe(frontend, kind, result, took);
            }
            None => {
                let labels = RequestLabels { frontend, kind, result };
                let counter = metrics.requests.get_or_create(&labels).clone();
                let histogram = metrics.latency.get_or_create(&labels).clone();
                self.series.push((kind, result, counter, histogram));
                let (_, _, counter, histogram) = self.series.last().expect("just pushed");
                (counter, histogram)
            }
        };
        counter.inc();
        histogram.observe(took.as_secs_f64());
    }
}

impl Metrics {
    /// A connection of `frontend` opened; the guard counts it closed when dropped.
    pub fn connection(&self, frontend: &'static str) -> ConnectionGuard {
        let gauge = self.connections.get_or_create(&FrontendLabel { frontend }).clone();
        gauge.inc();
        ConnectionGuard { gauge }
    }
}

/// Counts a front end's connection as open while it lives.
pub struct ConnectionGuard {
    gauge: Gauge,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
