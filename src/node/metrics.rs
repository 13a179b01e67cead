//! Metrics kept beside the node's lock (`Driver::metrics`): request counts and latencies of every front end, the
//! connections each holds, and how long a remote write took to arrive. Each is an atomic (or a
//! short lock of its own) that the request's task updates itself, so `/metrics` reads them
//! without taking the node's lock; `/metrics` adds the node's sizes and counters from one
//! short hold (`Driver::stats`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Latency buckets: 100 µs, then ×4 up to about 26 s (a waited write may take up to a minute,
/// and lands in `+Inf`).
const LATENCY_BUCKET_FIRST_NS: u64 = 100_000;
const LATENCY_BUCKET_FACTOR: u64 = 4;
const LATENCY_BUCKETS: usize = 10;

/// The latency buckets' upper bounds in nanoseconds, the last one `+Inf`.
const LATENCY_BOUNDS_NS: [u64; LATENCY_BUCKETS + 1] = {
    let mut bounds = [u64::MAX; LATENCY_BUCKETS + 1];
    let (mut i, mut bound) = (0, LATENCY_BUCKET_FIRST_NS);
    while i < LATENCY_BUCKETS {
        bounds[i] = bound;
        bound *= LATENCY_BUCKET_FACTOR;
        i += 1;
    }
    bounds
};

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

/// The metrics every front end updates.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Requests by front end, kind and result.
    pub requests: Family<RequestLabels, Counter>,
    /// Their latency in seconds.
    pub latency: Family<RequestLabels, Latency>,
    /// Client connections open now, by front end.
    pub connections: Family<FrontendLabel, Gauge>,
    /// Seconds from a remote write's stamp to its arrival here (clock offsets included).
    pub propagation_lag: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: Family::default(),
            latency: Family::default(),
            connections: Family::default(),
            propagation_lag: Histogram::new(exponential_buckets(
                LAG_BUCKET_FIRST_S,
                LAG_BUCKET_FACTOR,
                LAG_BUCKETS,
            )),
        }
    }
}

/// A request latency histogram that counts a pipelined batch's requests in one step.
///
/// prometheus-client's `Histogram` takes one observation per call, under a mutex: counted one
/// by one, the requests of a pipelined Redis batch (which share one session, and so one
/// duration) cost about 270 instructions each, 4% of a pipelined SET
/// (`TESTS=set PIPELINES=16 KEYS=100000 tests/profile_vs_redis.sh`). Here a batch is one
/// atomic add to its bucket and one to the sum. The count is the buckets' total, so that a
/// scrape never shows a count that disagrees with the `+Inf` bucket.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    counts: Arc<LatencyCounts>,
}

#[derive(Debug, Default)]
struct LatencyCounts {
    /// Observations per bucket (not cumulative), in the order of `LATENCY_BOUNDS_NS`.
    buckets: [AtomicU64; LATENCY_BUCKETS + 1],
    /// The sum of the observations in seconds, as `f64` bits.
    sum_s: AtomicU64,
}

impl Latency {
    /// Counts `requests` requests that each took `took`.
    pub fn observe(&self, took: Duration, requests: u64) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_NS.iter().position(|&bound| ns <= bound);
        let counts = &self.counts;
        counts.buckets[bucket.unwrap_or(LATENCY_BUCKETS)].fetch_add(requests, Ordering::Relaxed);
        let add = took.as_secs_f64() * requests as f64;
        let sum = |bits| Some(f64::to_bits(f64::from_bits(bits) + add));
        // The closure always returns `Some`, so the update cannot fail.
        let _ = counts.sum_s.fetch_update(Ordering::Relaxed, Ordering::Relaxed, sum);
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS_NS
            .iter()
            .zip(&self.counts.buckets)
            .map(|(&bound, count)| {
                let bound = if bound == u64::MAX { f64::INFINITY } else { bound as f64 / 1e9 };
                (bound, count.load(Ordering::Relaxed))
            })
            .collect();
        let count = buckets.iter().map(|(_, count)| count).sum();
        let sum = f64::from_bits(self.counts.sum_s.load(Ordering::Relaxed));
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

impl Metrics {
    /// Counts `requests` requests of `kind` on `frontend` that ended with `result`, each after
    /// `took`.
    pub fn observe(
        &self,
        frontend: &'static str,
        kind: &'static str,
        result: &'static str,
        took: Duration,
        requests: u64,
    ) {
        let labels = RequestLabels { frontend, kind, result };
        self.requests.get_or_create(&labels).inc_by(requests);
        self.latency.get_or_create(&labels).observe(took, requests);
    }
}

/// Handles to one connection's request series, each looked up in the families once: a lookup
/// hashes three labels under a lock, which cost a quarter of a pipelined GET's instructions.
#[derive(Default)]
pub struct SeriesCache {
    series: Vec<(&'static str, &'static str, Counter, Latency)>,
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
        requests: u64,
    ) {
        let found = self.series.iter().find(|(k, r, ..)| *k == kind && *r == result);
        let (counter, latency) = match found {
            Some((_, _, counter, latency)) => (counter, latency),
            None if self.series.len() >= SERIES_CACHED_MAX => {
                return metrics.observe(frontend, kind, result, took, requests);
            }
            None => {
                let labels = RequestLabels { frontend, kind, result };
                let counter = metrics.requests.get_or_create(&labels).clone();
                let latency = metrics.latency.get_or_create(&labels).clone();
                self.series.push((kind, result, counter, latency));
                let (_, _, counter, latency) = self.series.last().expect("just pushed");
                (counter, latency)
            }
        };
        counter.inc_by(requests);
        latency.observe(took, requests);
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

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    #[test]
    fn a_batch_of_requests_is_counted_in_one_bucket_and_encoded_as_a_histogram() {
        let latency = Latency::default();
        latency.observe(Duration::from_micros(50), 16);
        latency.observe(Duration::from_micros(100), 1);
        latency.observe(Duration::from_micros(101), 2);
        latency.observe(Duration::from_secs(60), 1);
        let mut registry = Registry::default();
        registry.register("took", "Latency", latency);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        let line = |name: &str| {
            let line = text.lines().find(|line| line.starts_with(name));
            line.unwrap_or_else(|| panic!("{name} in {text}")).rsplit(' ').next().unwrap()
        };
        assert_eq!(line("took_count "), "20");
        // Cumulative: 17 at or below 100 µs, 2 more by 400 µs, the minute only in +Inf.
        assert_eq!(line("took_bucket{le=\"0.0001\"}"), "17");
        assert_eq!(line("took_bucket{le=\"0.0004\"}"), "19");
        assert_eq!(line("took_bucket{le=\"26.2144\"}"), "19");
        assert_eq!(line("took_bucket{le=\"+Inf\"}"), "20");
        let sum: f64 = line("took_sum ").parse().unwrap();
        assert!((sum - (16.0 * 50e-6 + 100e-6 + 2.0 * 101e-6 + 60.0)).abs() < 1e-9, "{sum}");
        assert!(text.contains("# TYPE took histogram"), "{text}");
    }
}
