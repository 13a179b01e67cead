//! Metrics kept beside the node's lock (`Driver::metrics`): request counts and latencies of
//! every front end, the connections each holds, and how long a remote write took to arrive.
//! Each is made of atomics that the request's task updates itself, so `/metrics` reads them
//! without taking the node's lock; `/metrics` adds the node's sizes and counters from one
//! short hold (`Driver::stats`). Finding a request's series takes its families' locks: the
//! RPC and HTTP front ends take them per request (`Metrics::observe`: count and latency), the
//! Redis door once per series and connection (its `SeriesCache`, up to `SERIES_CACHED_MAX`
//! series; per request beyond).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Latency buckets: 100 µs, then ×4 up to about 26 s (a waited write may take up to a minute,
/// and lands in `+Inf`), in nanoseconds.
const LATENCY_BOUNDS_NS: [u64; 10] = exponential_ns(100_000, 4);

/// Propagation lag buckets: 1 ms, then ×2 up to about 16 s, in nanoseconds.
const LAG_BOUNDS_NS: [u64; 15] = exponential_ns(1_000_000, 2);

/// `N` bucket bounds: `first`, then each `factor` times the one before.
const fn exponential_ns<const N: usize>(first: u64, factor: u64) -> [u64; N] {
    let mut bounds = [0; N];
    let (mut i, mut bound) = (0, first);
    while i < N {
        bounds[i] = bound;
        bound *= factor;
        i += 1;
    }
    bounds
}

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

type BucketsMaker = fn() -> Buckets;

/// The metrics every front end updates.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Requests by front end, kind and result.
    pub requests: Family<RequestLabels, Counter>,
    /// Their latency in seconds.
    pub latency: Family<RequestLabels, Buckets, BucketsMaker>,
    /// Client connections open now, by front end.
    pub connections: Family<FrontendLabel, Gauge>,
    /// Seconds from a remote write's stamp to its arrival here (clock offsets included).
    pub propagation_lag: Buckets,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| Buckets::new(&LATENCY_BOUNDS_NS)),
            connections: Family::default(),
            propagation_lag: Buckets::new(&LAG_BOUNDS_NS),
        }
    }
}

/// A histogram of durations whose buckets are atomic counters, and which counts a batch of
/// observations of one duration in one step.
///
/// prometheus-client's `Histogram` takes one observation per call, under a mutex: the Redis
/// door paid that for each request of a pipelined batch (which share one session, and so one
/// duration), and a replica for every write it applied (the propagation lag); README.md,
/// "Session 13's changes", counts what it cost. Here an observation of any count is one
/// atomic add to its bucket and a compare-and-swap on the sum. The count is the buckets'
/// total, so a scrape never shows a count that disagrees with the `+Inf` bucket.
#[derive(Clone, Debug)]
pub struct Buckets {
    /// Upper bounds in nanoseconds, ascending; a last bucket, `+Inf`, takes the rest.
    bounds_ns: &'static [u64],
    counts: Arc<Counts>,
}

#[derive(Debug)]
struct Counts {
    /// Observations per bucket (not cumulative), one more than there are bounds.
    buckets: Box<[AtomicU64]>,
    /// The sum of the observations in seconds, as `f64` bits.
    sum_s: AtomicU64,
}

impl Buckets {
    /// Empty buckets with upper bounds `bounds_ns` (ascending), and `+Inf`.
    pub fn new(bounds_ns: &'static [u64]) -> Buckets {
        let buckets = (0..=bounds_ns.len()).map(|_| AtomicU64::new(0)).collect();
        Buckets { bounds_ns, counts: Arc::new(Counts { buckets, sum_s: AtomicU64::new(0) }) }
    }

    /// Counts `count` observations that each took `took`.
    pub fn observe(&self, took: Duration, count: u64) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bounds = self.bounds_ns;
        let bucket = bounds.iter().position(|&bound| ns <= bound).unwrap_or(bounds.len());
        self.counts.buckets[bucket].fetch_add(count, Ordering::Relaxed);
        let add = took.as_secs_f64() * count as f64;
        let sum = |bits| Some(f64::to_bits(f64::from_bits(bits) + add));
        // The closure always returns `Some`, so the update cannot fail.
        let _ = self.counts.sum_s.fetch_update(Ordering::Relaxed, Ordering::Relaxed, sum);
    }
}

impl TypedMetric for Buckets {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Buckets {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let bounds = self.bounds_ns.iter().map(|&bound| bound as f64 / 1e9);
        let buckets: Vec<(f64, u64)> = bounds
            .chain(std::iter::once(f64::INFINITY))
            .zip(&self.counts.buckets)
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
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
    series: Vec<(&'static str, &'static str, Counter, Buckets)>,
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

    /// `buckets` as `/metrics` shows them, under the name `name`.
    fn text(name: &str, buckets: Buckets) -> String {
        let mut registry = Registry::default();
        registry.register(name, "A histogram", buckets);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn a_batch_of_requests_is_counted_in_one_bucket_and_encoded_as_a_histogram() {
        let latency = Buckets::new(&LATENCY_BOUNDS_NS);
        latency.observe(Duration::from_micros(50), 16);
        latency.observe(Duration::from_micros(100), 1);
        latency.observe(Duration::from_micros(101), 2);
        latency.observe(Duration::from_secs(60), 1);
        let text = text("took", latency);
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

    #[test]
    fn the_lag_buckets_double_from_a_millisecond() {
        let lag = Buckets::new(&LAG_BOUNDS_NS);
        lag.observe(Duration::from_millis(3), 1);
        lag.observe(Duration::from_secs(20), 1);
        let text = text("lag", lag);
        for (bucket, count) in [("0.002", 0), ("0.004", 1), ("16.384", 1), ("+Inf", 2)] {
            let line = format!("lag_bucket{{le=\"{bucket}\"}} {count}");
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }
}
