//! The families of `/metrics` (DESIGN 11), prefixed `chorus_`: the request counts, latencies,
//! connections and propagation lag kept beside the node's lock (`node::Metrics`), read as
//! they are; and the node's sizes and counters from `Driver::stats`, one short hold of the lock
//! per scrape, named here.

use std::sync::atomic::AtomicU64;

use chorus_proto::rpc::{Counter as NamedCounter, StatsReport};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::Http;
use super::request::ApiError;

/// Labels of a family built at scrape time: fixed names, values from the node's own counters.
type Labels = Vec<(&'static str, String)>;

/// The member states, in the order `StatsReport::members` counts them.
const MEMBER_STATES: [&str; 4] = ["alive", "suspect", "dead", "left"];

/// Named counters that are a family of their own: the counter's name in `chorus stats`, the
/// metric's name (`_total` is added), and its help.
const COUNTERS: [(&str, &str, &str); 11] = [
    ("messages_invalid", "gossip_messages_invalid", "Gossip messages that did not decode, dropped"),
    ("messages_dropped", "gossip_messages_dropped", "Gossip messages dropped on a full queue"),
    (
        "packets_lost",
        "gossip_packets_lost",
        "Gossip packets this node sent that were lost (on a healthy network: a full receive buffer at the peer)",
    ),
    (
        "updates_ahead",
        "gossip_updates_out_of_order",
        "Pushed writes that arrived before an earlier write of their writer (a push lost, dropped or held back)",
    ),
    ("events_dropped", "events_dropped", "Node events dropped on a full queue"),
    ("collected", "tombstones_collected", "Tombstones collected once every member saw them"),
    ("resets", "resets", "Times this node reset its identity or state (the fence)"),
    (
        "exchanges_refused",
        "fence_refusals",
        "Exchanges refused by the fence (a peer collected deletes this node missed)",
    ),
    ("skew_refused", "skew_refusals", "Writes held back because their clock was too far ahead"),
    ("waits_cancelled", "waits_cancelled", "Write waits whose client went away"),
    (
        "redis_notifications_missed",
        "redis_notifications_missed",
        "Keyspace notifications a slow Redis subscriber missed",
    ),
];

/// The whole text of one scrape.
pub fn render(http: &Http) -> Result<String, ApiError> {
    let stats = http.driver.stats()?;
    let mut registry = Registry::with_prefix("chorus");
    register_live(&mut registry, http);
    register_node(&mut registry, &stats);
    register_counters(&mut registry, &stats.counters);
    let mut text = String::new();
    // Invariant: writing to a String cannot fail, and every label and name here is valid.
    encode(&mut text, &registry).expect("metrics encode into a String");
    Ok(text)
}

/// The metrics front ends keep beside the lock, and readiness.
fn register_live(registry: &mut Registry, http: &Http) {
    let metrics = http.driver.metrics().clone();
    registry.register("requests", "Requests by front end, kind and result", metrics.requests);
    registry.register_with_unit(
        "request_duration",
        "Request latency by front end, kind and result (a stream: until its headers)",
        Unit::Seconds,
        metrics.latency,
    );
    registry.register(
        "connections",
        "Client connections open now, by front end",
        metrics.connections,
    );
    registry.register_with_unit(
        "propagation_lag",
        "From a write's stamp on another node to its arrival here (clock offsets included)",
        Unit::Seconds,
        metrics.propagation_lag,
    );
    let ready = http.ready.borrow().is_ok();
    registry.register(
        "ready",
        "1 when the node is ready (as /ready), else 0",
        gauge(i64::from(ready)),
    );
}

/// The node's sizes: keys, tombstones, members by state, uptime.
fn register_node(registry: &mut Registry, stats: &StatsReport) {
    registry.register("keys", "Live keys", gauge(stats.keys as i64));
    registry.register(
        "tombstones",
        "Deleted keys kept until every member has seen them",
        gauge(stats.tombstones as i64),
    );
    registry.register(
        "expired_keys",
        "Expired keys not yet collected",
        gauge(stats.expired as i64),
    );
    let members = Family::<Labels, Gauge>::default();
    for (state, count) in MEMBER_STATES.iter().zip(stats.members) {
        members.get_or_create(&vec![("state", state.to_string())]).set(count as i64);
    }
    registry.register("members", "Members as this node sees them, by state", members);
    let uptime = Gauge::<f64, AtomicU64>::default();
    uptime.set(stats.uptime_ms as f64 / 1_000.0);
    registry.register_with_unit("uptime", "Time since the node started", Unit::Seconds, uptime);
}

/// The node's named counters (`chorus stats`), each under its metric family.
fn register_counters(registry: &mut Registry, counters: &[NamedCounter]) {
    let mut families = Families::default();
    for NamedCounter { name, value } in counters {
        families.add(name, *value);
    }
    families.register(registry);
}

/// The families the named counters fall into.
#[derive(Default)]
struct Families {
    gossip_messages: Family<Labels, Counter>,
    gossip_bytes: Family<Labels, Counter>,
    updates: Family<Labels, Counter>,
    lock_holds: Family<Labels, Counter>,
    lock_hold_seconds: Family<Labels, Counter<f64, AtomicU64>>,
    lock_hold_max_seconds: Family<Labels, Gauge<f64, AtomicU64>>,
    redis_unknown: Family<Labels, Counter>,
    /// Counters of [`COUNTERS`]: metric name, help, value.
    single: Vec<(&'static str, &'static str, u64)>,
    waits_pending: i64,
    skew_ms_max: u64,
    other: Family<Labels, Counter>,
}

impl Families {
    fn add(&mut self, name: &str, value: u64) {
        let label = |key: &'static str, text: &str| vec![(key, text.to_string())];
        match name {
            "messages_sent" | "messages_received" => {
                let direction = name.trim_start_matches("messages_");
                self.gossip_messages.get_or_create(&label("direction", direction)).inc_by(value);
            }
            "bytes_sent" | "bytes_received" => {
                let direction = name.trim_start_matches("bytes_");
                self.gossip_bytes.get_or_create(&label("direction", direction)).inc_by(value);
            }
            "updates_applied" | "updates_duplicate" => {
                let result = name.trim_start_matches("updates_");
                self.updates.get_or_create(&label("result", result)).inc_by(value);
            }
            _ => self.add_other(name, value),
        }
    }

    fn add_other(&mut self, name: &str, value: u64) {
        let label = |key: &'static str, text: &str| vec![(key, text.to_string())];
        if let Some((_, metric, help)) = COUNTERS.iter().find(|(stat, _, _)| *stat == name) {
            self.single.push((metric, help, value));
        } else if name == "waits_pending" {
            self.waits_pending = value as i64;
        } else if name == "skew_ms_max" {
            self.skew_ms_max = value;
        } else if let Some(lock) = name.strip_prefix("lock_") {
            let seconds = value as f64 / 1e9;
            if let Some(purpose) = lock.strip_suffix("_hold_ns_total") {
                self.lock_hold_seconds.get_or_create(&label("purpose", purpose)).inc_by(seconds);
            } else if let Some(purpose) = lock.strip_suffix("_hold_ns_max") {
                self.lock_hold_max_seconds.get_or_create(&label("purpose", purpose)).set(seconds);
            } else if let Some(purpose) = lock.strip_suffix("_holds") {
                self.lock_holds.get_or_create(&label("purpose", purpose)).inc_by(value);
            }
        } else if let Some(command) = name.strip_prefix("redis_unknown_") {
            self.redis_unknown.get_or_create(&label("command", command)).inc_by(value);
        } else {
            self.other.get_or_create(&label("name", name)).inc_by(value);
        }
    }

    fn register(self, registry: &mut Registry) {
        registry.register("gossip_messages", "Gossip messages by direction", self.gossip_messages);
        registry.register_with_unit(
            "gossip",
            "Gossip bytes by direction",
            Unit::Bytes,
            self.gossip_bytes,
        );
        registry.register("updates", "Received updates, applied or already held", self.updates);
        registry.register("lock_holds", "Holds of the node's lock by purpose", self.lock_holds);
        registry.register_with_unit(
            "lock_hold",
            "Time the node's lock was held, by purpose",
            Unit::Seconds,
            self.lock_hold_seconds,
        );
        registry.register_with_unit(
            "lock_hold_max",
            "Longest hold of the node's lock, by purpose",
            Unit::Seconds,
            self.lock_hold_max_seconds,
        );
        registry.register(
            "redis_unknown_commands",
            "Redis commands chorus does not know, by name",
            self.redis_unknown,
        );
        registry.register(
            "node_events",
            "The node's other counters (chorus stats), by name",
            self.other,
        );
        for (metric, help, value) in self.single {
            let counter = Counter::<u64>::default();
            counter.inc_by(value);
            registry.register(metric, help, counter);
        }
        registry.register(
            "waits_pending",
            "Writes waiting for other nodes now",
            gauge(self.waits_pending),
        );
        let skew = Gauge::<f64, AtomicU64>::default();
        skew.set(self.skew_ms_max as f64 / 1_000.0);
        registry.register_with_unit(
            "clock_skew_max",
            "The largest clock offset ahead of this node seen in a peer's write",
            Unit::Seconds,
            skew,
        );
    }
}

fn gauge(value: i64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(value);
    gauge
}
