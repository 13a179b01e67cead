//! The clock self-check's side of [`Node`] (DESIGN 3): what it says, the write refusal, the
//! estimates taken from digests, the verdict recomputed, and the peer to measure next. The
//! estimates and the verdict themselves are in `offset.rs`.

use std::collections::BTreeMap;

use crate::clock::NodeId;
use crate::event::Event;
use crate::message::{Addr, ClockStamp};
use crate::node::Node;
use crate::offset::{ClockCheck, ClockSample};
use crate::write::WriteError;

/// The clock self-check's side of [`Node`].
impl Node {
    /// What the clock self-check says now: writes are refused unless it is `Within`.
    pub fn clock_check(&self) -> ClockCheck {
        self.offsets.check()
    }

    /// The median of this node's clock offsets from its live peers (positive: ahead), when
    /// any was measured.
    pub fn clock_offset_ms(&self) -> Option<i64> {
        self.offsets.median_ms()
    }

    /// This node's latest clock offset estimate from each peer.
    pub fn clock_samples(&self) -> &BTreeMap<NodeId, ClockSample> {
        self.offsets.samples()
    }

    /// Tells the node that its wall clock stepped at `now_ms` (the driver saw wall time move
    /// away from monotonic time): its estimates are void, so it compares again from scratch,
    /// refusing writes until it has (with peers to compare with). Without this a clock that
    /// jumped while the node ran took writes until its next estimates.
    pub fn clock_stepped(&mut self, now_ms: u64) {
        self.assert_drained();
        let before = self.offsets.check();
        self.offsets.forget(now_ms);
        let live: Vec<NodeId> = self.live_peers().map(|m| m.id).collect();
        if live.is_empty() {
            // Nobody to compare with now: trusted again only if it never had anyone.
            self.recheck_clock();
        } else if before != ClockCheck::Unchecked {
            self.emit(Event::Clock(ClockCheck::Unchecked));
        }
        self.after_call(now_ms);
    }

    /// Refuses a local write while the clock check forbids it.
    pub(crate) fn check_clock(&self) -> Result<(), WriteError> {
        if self.config.sabotage.skip_clock_check {
            return Ok(());
        }
        match self.offsets.check() {
            ClockCheck::Off { offset_ms } => {
                Err(WriteError::ClockOffset { offset_ms, bound_ms: self.config.clock_skew_ms_max })
            }
            ClockCheck::Unchecked => Err(WriteError::ClockUnchecked),
            ClockCheck::Within => Ok(()),
        }
    }

    /// Takes a digest's clock stamp from `peer` at `from`; a new estimate updates the verdict.
    pub(crate) fn clock_heard(
        &mut self,
        peer: NodeId,
        from: &Addr,
        stamp: &ClockStamp,
        now_ms: u64,
    ) {
        if self.offsets.heard(self.config.id, peer, from, stamp, now_ms) {
            self.recheck_clock();
        }
    }

    /// Recomputes the verdict over the live peers; reports a change of verdict.
    pub(crate) fn recheck_clock(&mut self) {
        let before = self.offsets.check();
        let live: Vec<NodeId> = self.live_peers().map(|m| m.id).collect();
        // Trusted alone only if it never had anyone to compare with: a node whose peers all
        // went (a partition, or they died) keeps its verdict, so a node whose clock is off
        // does not take writes again by losing its peers.
        let alone = self.seeds.is_empty() && !self.joined;
        self.offsets.recompute(&live, self.config.clock_skew_ms_max, alone);
        let after = self.offsets.check();
        if std::mem::discriminant(&before) != std::mem::discriminant(&after) {
            self.emit(Event::Clock(after));
        }
    }

    /// Once a round: forgets departed peers, recomputes the verdict, and while it is not
    /// `Within`, picks the live peer measured longest ago to gossip with.
    pub(crate) fn clock_round(&mut self, now_ms: u64) -> Option<Addr> {
        let members = &self.members;
        self.offsets.prune(|id| members.peer(id).is_some(), now_ms);
        self.recheck_clock();
        if self.offsets.check() == ClockCheck::Within {
            return None;
        }
        let live: Vec<NodeId> = self.live_peers().map(|m| m.id).collect();
        let peer = self.offsets.stalest(&live, now_ms)?;
        self.members.peer(peer).map(|m| m.addr.clone())
    }

    /// The clock stamp for a digest to `to`.
    pub(crate) fn clock_stamp(&self, to: &Addr, now_ms: u64) -> ClockStamp {
        self.offsets.stamp(to, now_ms)
    }
}
