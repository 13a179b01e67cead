//! How often a run reached the protocol's rarer paths: the fence and paged catch-ups.

use chorus_proto::{Addr, Event, Lane, ResetReason, Transmit};

use super::Cluster;

/// How often a run reached the protocol's rarer paths, for sweeps to report what they
/// exercised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reached {
    /// Nodes that dropped their state because it was behind a peer's collections (`Reset`
    /// with reason `Pruned`): the horizon fence at work.
    pub pruned: u64,
    /// Anti-entropy exchanges and delta pages refused by the horizon check.
    pub refused: u64,
    /// Catch-ups sent as more than one delta page (one call sent two or more bulk messages
    /// to one peer).
    pub paged: u64,
    /// Nodes restarted from a disk that held a state (`--disks`).
    pub restored: u64,
    /// Of those, restored from an old snapshot.
    pub restored_old: u64,
    /// Client writes refused by the clock self-check (`ClockOffset`, `ClockUnchecked`).
    pub clock_refused: u64,
}

impl<S> Cluster<S> {
    /// Counts what a call reached of the fence and of paging.
    pub(super) fn count_reached(&mut self, slot: usize, events: &[Event], transmits: &[Transmit]) {
        let pruned = |e: &&Event| matches!(e, Event::Reset { reason: ResetReason::Pruned, .. });
        self.reached.pruned += events.iter().filter(pruned).count() as u64;
        let entry = &mut self.slots[slot];
        if let Some(node) = entry.node.as_ref() {
            let refused = node.stats().exchanges_refused;
            self.reached.refused += refused.saturating_sub(entry.refused);
            entry.refused = refused;
        }
        let mut bulk: Vec<&Addr> =
            transmits.iter().filter(|t| t.lane == Lane::Bulk).map(|t| &t.to).collect();
        let sent = bulk.len();
        bulk.sort_unstable_by_key(|addr| addr.as_bytes());
        bulk.dedup();
        if bulk.len() < sent {
            self.reached.paged += 1;
        }
    }
}
