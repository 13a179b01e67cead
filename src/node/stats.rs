//! `stats`: the node's counters, taken in one short hold of the lock, then named outside it.

use std::sync::atomic::Ordering;

use chorus_proto::Stats;
use chorus_proto::rpc::{Counter, StatsReport};

use super::driver::Driver;
use super::lock::Purpose;
use super::outcome::OpError;
use crate::gossip::TransportStats;

impl Driver {
    /// The node's sizes and counters.
    pub fn stats(&self) -> Result<StatsReport, OpError> {
        let state = self.lock(Purpose::Read).ok_or(OpError::ShuttingDown)?;
        let now = self.clock.now_ms();
        let store = state.node.store();
        let mut members = [0u64; 4];
        for member in state.node.members() {
            members[member.state as usize] += 1;
        }
        let expired = store.expired_count(now) as u64;
        let tombstones = store.tombstone_count() as u64;
        let entries = store.entry_count() as u64;
        let stats = state.node.stats().clone();
        let (id, name) = (state.node.id(), state.node.config().name.to_string());
        let waits_pending = state.waits.len() as u64;
        let writes_seen =
            store.vector().bases().values().fold(0u64, |sum, seq| sum.saturating_add(*seq));
        let clock_offset_ms = state.node.clock_offset_ms();
        let samples = state.node.clock_samples().iter();
        let clock_peers = samples.map(|(id, s)| (*id, s.offset_ms, s.rtt_ms)).collect();
        let not_ready = state.readiness().err().map(|why| why.to_string());
        drop(state);
        let mut counters = protocol_counters(&stats, &self.transport_stats);
        counters.push(counter("waits_pending", waits_pending));
        counters.push(counter("writes_seen", writes_seen));
        for (purpose, holds) in self.lock_figures() {
            let name = purpose.as_str();
            counters.push(counter(format!("lock_{name}_holds"), holds.count));
            counters.push(counter(format!("lock_{name}_hold_ns_total"), holds.total_ns));
            counters.push(counter(format!("lock_{name}_hold_ns_max"), holds.max_ns));
        }
        let named = self.named.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        counters.extend(named.into_iter().map(|(name, value)| counter(name, value)));
        Ok(StatsReport {
            id,
            name,
            keys: entries.saturating_sub(tombstones + expired),
            tombstones,
            expired,
            members,
            uptime_ms: self.started.elapsed().as_millis() as u64,
            counters,
            skew_by_peer: stats.skew_by_peer.into_iter().collect(),
            clock_offset_ms,
            clock_peers,
            not_ready,
        })
    }
}

fn counter(name: impl Into<String>, value: u64) -> Counter {
    Counter { name: name.into(), value }
}

/// The protocol's and the transport's counters by name; messages the transport dropped count
/// with the pushes the protocol dropped.
fn protocol_counters(stats: &Stats, transport: &TransportStats) -> Vec<Counter> {
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    [
        ("messages_sent", stats.messages_sent),
        ("bytes_sent", load(&transport.bytes_sent)),
        ("messages_received", stats.messages_received),
        ("bytes_received", load(&transport.bytes_received)),
        ("messages_invalid", load(&transport.messages_invalid)),
        ("updates_applied", stats.updates_applied),
        ("updates_duplicate", stats.updates_duplicate),
        ("updates_ahead", stats.updates_ahead),
        ("messages_dropped", stats.pushes_dropped + load(&transport.dropped)),
        ("packets_lost", load(&transport.packets_lost)),
        ("events_dropped", stats.events_dropped),
        ("collected", stats.collected),
        ("resets", stats.resets),
        ("exchanges_refused", stats.exchanges_refused),
        ("catchup_pulls", stats.pulls),
        ("skew_refused", stats.skew_refused),
        ("skew_ms_max", stats.skew_ms_max),
    ]
    .into_iter()
    .map(|(name, value)| counter(name, value))
    .collect()
}
