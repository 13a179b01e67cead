//! The clock self-check (DESIGN 3), CockroachDB's max-offset check in gossip form.
//!
//! Every digest (`Syn`, `SynAck`) carries the sender's wall clock and echoes the receiver's
//! latest reading with how long the sender held it: NTP's symmetric mode. From the four
//! timestamps the receiver estimates its offset from the sender as NTP does,
//! `offset = ((t1 + t4) - (t2 + t3)) / 2` (positive: this node's clock is ahead), known to
//! within half the round trip `(t4 - t1) - (t3 - t2)`. A `SynAck` answers at once (hold 0),
//! so the initiator of every round measures; a `Syn` echoes what its sender last heard from
//! the receiver, so the responder measures too when the two spoke within
//! `CLOCK_ECHO_HOLD_MS_MAX`. The estimate needs no extra message and no synchronised clocks:
//! only the link's asymmetry biases it, by at most half the round trip, which the verdict
//! grants (a peer counts as beyond the bound only if it is beyond by more than that).
//!
//! The verdict, over the live members (alive or suspect): `Off` when more than half of them
//! see this node's clock beyond the bound on the same side, `Within` when at least half were
//! measured within it, else unchanged (`Unchecked` until the first verdict). In a large
//! cluster `CLOCK_QUORUM` peers suffice (beyond: and most of those measured), so a verdict
//! takes a few rounds, not one per half of the members.
//!
//! A node takes local writes only when `Within`. `Unchecked` refuses them too, so a node with
//! a bad clock cannot slip writes in before its first verdict (one it took while it had
//! reached no peer would be held back by every peer, and lost if it died meanwhile). A node
//! without seeds is `Within` from the start: it has nobody to compare with. Two nodes alone
//! each see the other beyond: both refuse, since neither can tell whose clock is wrong; a
//! third node decides. A wall clock that steps while the node runs voids its estimates
//! (`Node::clock_stepped`, in `selfcheck.rs` with the rest of the node's side): it compares
//! again before it takes a write.

use std::collections::BTreeMap;

use crate::clock::NodeId;
use crate::limits::{CLOCK_ECHO_HOLD_MS_MAX, CLOCK_QUORUM, CLOCK_RTT_MS_MAX, MEMBERS_MAX};
use crate::message::{Addr, ClockStamp, Echo};

/// What this node's clock check says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClockCheck {
    /// Not yet compared with enough peers to say.
    #[default]
    Unchecked,
    /// Within the bound of at least half of its live peers, or alone.
    Within,
    /// Beyond the bound from most of its live peers, on the same side.
    Off {
        /// The median offset from its live peers (positive: ahead).
        offset_ms: i64,
    },
}

/// One estimate of this node's offset from a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockSample {
    /// This node's clock minus the peer's, in milliseconds (positive: this node is ahead).
    pub offset_ms: i64,
    /// The round trip it was measured over; the estimate is good to half of it.
    pub rtt_ms: u64,
    /// When it was measured (this node's clock).
    pub at_ms: u64,
}

impl ClockSample {
    /// Which side of the bound the peer sees this node on, counting only what the estimate
    /// proves over its uncertainty (half the round trip): `Some(1)` beyond it ahead,
    /// `Some(-1)` beyond it behind, `Some(0)` within it, `None` when it cannot tell.
    fn side(&self, bound_ms: u64) -> Option<i8> {
        let (bound, slack) = (i128::from(bound_ms), i128::from(self.rtt_ms / 2));
        let offset = i128::from(self.offset_ms);
        if offset - slack > bound {
            Some(1)
        } else if offset + slack < -bound {
            Some(-1)
        } else if offset.abs() + slack <= bound {
            Some(0)
        } else {
            None
        }
    }
}

/// A peer's latest reading, kept to echo it back.
#[derive(Clone, Copy, Debug)]
struct Heard {
    id: NodeId,
    sent_ms: u64,
    at_ms: u64,
}

/// The estimates and the verdict. Both maps hold at most `MEMBERS_MAX` entries, pruned to
/// current members every round.
#[derive(Clone, Debug, Default)]
pub(crate) struct Offsets {
    heard: BTreeMap<Addr, Heard>,
    samples: BTreeMap<NodeId, ClockSample>,
    /// When each peer was last picked to be measured.
    probed: BTreeMap<NodeId, u64>,
    check: ClockCheck,
    median_ms: Option<i64>,
    /// Readings of this node's clock before this one (its clock stepped then) are void.
    valid_from_ms: u64,
}

impl Offsets {
    /// The clock stamp for a digest sent to `to` at `now_ms`.
    pub(crate) fn stamp(&self, to: &Addr, now_ms: u64) -> ClockStamp {
        let echo = self.heard.get(to).and_then(|heard| {
            let held_ms = now_ms.checked_sub(heard.at_ms)?;
            (held_ms <= CLOCK_ECHO_HOLD_MS_MAX).then_some(Echo {
                to: heard.id,
                sent_ms: heard.sent_ms,
                held_ms,
            })
        });
        ClockStamp { sent_ms: now_ms, echo }
    }

    /// Takes the clock stamp of a digest from `peer` at `from`, received at `now_ms` by
    /// identity `own`: kept to echo, and measured when it echoes this node's reading.
    /// Returns whether it gave a new estimate.
    pub(crate) fn heard(
        &mut self,
        own: NodeId,
        peer: NodeId,
        from: &Addr,
        stamp: &ClockStamp,
        now_ms: u64,
    ) -> bool {
        if self.heard.contains_key(from) || self.heard.len() < MEMBERS_MAX {
            let heard = Heard { id: peer, sent_ms: stamp.sent_ms, at_ms: now_ms };
            self.heard.insert(from.clone(), heard);
        }
        let valid_from_ms = self.valid_from_ms;
        let echo = stamp.echo.filter(|echo| echo.to == own && echo.sent_ms >= valid_from_ms);
        let Some(echo) = echo else { return false };
        let Some(sample) = estimate(echo, stamp.sent_ms, now_ms) else { return false };
        if self.samples.contains_key(&peer) || self.samples.len() < MEMBERS_MAX {
            self.samples.insert(peer, sample);
        }
        true
    }

    /// Forgets what it knows of identities that are no longer members, and readings too old
    /// to echo.
    pub(crate) fn prune(&mut self, is_member: impl Fn(NodeId) -> bool, now_ms: u64) {
        self.samples.retain(|id, _| is_member(*id));
        self.probed.retain(|id, _| is_member(*id));
        self.heard.retain(|_, heard| heard.at_ms + CLOCK_ECHO_HOLD_MS_MAX >= now_ms);
    }

    /// Recomputes the verdict over `live` (the peers to compare with) and the median offset.
    /// With no live peer, `alone` says whether the node may trust its clock (it never had
    /// anyone to compare with); otherwise the verdict stands.
    pub(crate) fn recompute(&mut self, live: &[NodeId], bound_ms: u64, alone: bool) {
        let mut offsets: Vec<i64> = Vec::new();
        let (mut ahead, mut behind, mut within) = (0usize, 0usize, 0usize);
        for sample in live.iter().filter_map(|id| self.samples.get(id)) {
            offsets.push(sample.offset_ms);
            match sample.side(bound_ms) {
                Some(1) => ahead += 1,
                Some(-1) => behind += 1,
                Some(_) => within += 1,
                None => {}
            }
        }
        offsets.sort_unstable();
        self.median_ms = (!offsets.is_empty()).then(|| offsets[(offsets.len() - 1) / 2]);
        let measured = offsets.len();
        let n = live.len();
        // Most live peers, or (in a large cluster) a quorum that is most of those measured.
        let off = |side: usize| 2 * side > n || (side >= CLOCK_QUORUM && 2 * side > measured);
        self.check = match self.median_ms {
            Some(offset_ms) if off(ahead) || off(behind) => ClockCheck::Off { offset_ms },
            _ if n == 0 && alone => ClockCheck::Within,
            _ if n > 0 && within >= n.div_ceil(2).min(CLOCK_QUORUM) => ClockCheck::Within,
            // Too little evidence either way: the verdict stands.
            _ => self.check,
        };
    }

    /// The verdict.
    pub(crate) fn check(&self) -> ClockCheck {
        self.check
    }

    /// The median offset from the live peers measured, when any was.
    pub(crate) fn median_ms(&self) -> Option<i64> {
        self.median_ms
    }

    /// Every estimate, by peer.
    pub(crate) fn samples(&self) -> &BTreeMap<NodeId, ClockSample> {
        &self.samples
    }

    /// Forgets the verdict: the node was given seeds, so it has peers to ask.
    pub(crate) fn unverify(&mut self) {
        self.check = ClockCheck::Unchecked;
    }

    /// Forgets every estimate and the verdict: this node's clock stepped at `now_ms`, so
    /// they describe a clock it no longer has, and so does any echo of a reading before.
    pub(crate) fn forget(&mut self, now_ms: u64) {
        self.valid_from_ms = now_ms;
        self.samples.clear();
        self.heard.clear();
        self.median_ms = None;
        self.check = ClockCheck::Unchecked;
    }

    /// Of `live`, the peer measured or tried longest ago (never first), now marked tried:
    /// whom to gossip with while the verdict is not `Within`, so that it comes (or recovers)
    /// in about as many rounds as there are peers to measure.
    pub(crate) fn stalest(&mut self, live: &[NodeId], now_ms: u64) -> Option<NodeId> {
        let last = |id: &NodeId| {
            let sampled = self.samples.get(id).map(|s| s.at_ms);
            sampled.max(self.probed.get(id).copied())
        };
        let peer = live.iter().min_by_key(|id| last(id)).copied()?;
        if self.probed.contains_key(&peer) || self.probed.len() < MEMBERS_MAX {
            self.probed.insert(peer, now_ms);
        }
        Some(peer)
    }
}

/// NTP's estimate from the echo of this node's reading `t1`, held `t3 - t2` by the peer,
/// the peer's send time `t3` and the arrival `t4`; `None` when the timestamps cannot be
/// (this node's clock stepped back since `t1`) or the round trip is too long to say much.
fn estimate(echo: Echo, t3: u64, t4: u64) -> Option<ClockSample> {
    let t1 = echo.sent_ms;
    let elapsed = t4.checked_sub(t1)?;
    let rtt_ms = elapsed.saturating_sub(echo.held_ms);
    if rtt_ms > CLOCK_RTT_MS_MAX || echo.held_ms > CLOCK_ECHO_HOLD_MS_MAX {
        return None;
    }
    let t2 = i128::from(t3) - i128::from(echo.held_ms);
    let offset = (i128::from(t1) + i128::from(t4) - t2 - i128::from(t3)) / 2;
    let offset_ms = i64::try_from(offset).ok()?;
    Some(ClockSample { offset_ms, rtt_ms, at_ms: t4 })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: u64 = 500;
    const ME: NodeId = NodeId(1);

    fn addr(n: u64) -> Addr {
        Addr::new(format!("n{n}")).unwrap()
    }

    /// A round trip between this node (clock `true + mine`) and peer `n` (clock `true +
    /// theirs`), `delay` each way, starting at true time `at`: the peer's `SynAck` answers
    /// this node's `Syn`.
    fn round(offsets: &mut Offsets, n: u64, mine: i64, theirs: i64, at: u64, delay: u64) -> bool {
        let local = |t: u64, off: i64| (t as i64 + off) as u64;
        let mut peer = Offsets::default();
        let syn = offsets.stamp(&addr(n), local(at, mine));
        peer.heard(NodeId(n), ME, &addr(1), &syn, local(at + delay, theirs));
        let ack = peer.stamp(&addr(1), local(at + delay, theirs));
        offsets.heard(ME, NodeId(n), &addr(n), &ack, local(at + 2 * delay, mine))
    }

    #[test]
    fn the_estimate_is_the_offset_whatever_the_symmetric_delay() {
        for (mine, theirs, delay) in [(0, 0, 3), (600, 0, 40), (0, 600, 1), (-120_000, 5, 250)] {
            let mut offsets = Offsets::default();
            assert!(round(&mut offsets, 2, mine, theirs, 1_000_000, delay));
            let sample = offsets.samples()[&NodeId(2)];
            assert_eq!(sample.offset_ms, mine - theirs, "{mine} {theirs} {delay}");
            assert_eq!(sample.rtt_ms, 2 * delay);
        }
    }

    #[test]
    fn an_asymmetric_link_biases_the_estimate_by_at_most_half_the_round_trip() {
        let mut offsets = Offsets::default();
        let syn = offsets.stamp(&addr(2), 1_000);
        let mut peer = Offsets::default();
        // 90 ms out, 10 ms back, equal clocks, the peer holds it 5 ms.
        peer.heard(NodeId(2), ME, &addr(1), &syn, 1_090);
        let ack = peer.stamp(&addr(1), 1_095);
        assert!(offsets.heard(ME, NodeId(2), &addr(2), &ack, 1_105));
        let sample = offsets.samples()[&NodeId(2)];
        assert_eq!(sample.rtt_ms, 100);
        assert!(sample.offset_ms.unsigned_abs() <= sample.rtt_ms / 2);
    }

    #[test]
    fn echoes_for_another_identity_stale_or_backwards_give_nothing() {
        let mut offsets = Offsets::default();
        let echo = Echo { to: NodeId(9), sent_ms: 1_000, held_ms: 0 };
        let stamp = ClockStamp { sent_ms: 1_000, echo: Some(echo) };
        assert!(!offsets.heard(ME, NodeId(2), &addr(2), &stamp, 1_010));
        let echo = Echo { to: ME, sent_ms: 2_000, held_ms: 0 };
        let stamp = ClockStamp { sent_ms: 1_000, echo: Some(echo) };
        assert!(!offsets.heard(ME, NodeId(2), &addr(2), &stamp, 1_010), "t4 before t1");
        let echo = Echo { to: ME, sent_ms: 1_000, held_ms: 0 };
        let stamp = ClockStamp { sent_ms: 1_000, echo: Some(echo) };
        let late = 1_000 + CLOCK_RTT_MS_MAX + 1;
        assert!(!offsets.heard(ME, NodeId(2), &addr(2), &stamp, late), "round trip too long");
        // A reading held too long is not echoed at all.
        assert!(offsets.stamp(&addr(2), late + CLOCK_ECHO_HOLD_MS_MAX + 1).echo.is_none());
        assert!(offsets.stamp(&addr(2), late + 1).echo.is_some());
    }

    #[test]
    fn most_peers_decide_and_the_median_is_reported() {
        let live = [NodeId(2), NodeId(3), NodeId(4)];
        let mut offsets = Offsets::default();
        offsets.recompute(&live, BOUND, false);
        assert_eq!(offsets.check(), ClockCheck::Unchecked);
        // One peer of three measured, beyond: not yet most of them.
        round(&mut offsets, 2, 700, 0, 10_000, 1);
        offsets.recompute(&live, BOUND, false);
        assert_eq!(offsets.check(), ClockCheck::Unchecked);
        round(&mut offsets, 3, 700, 100, 10_000, 1);
        offsets.recompute(&live, BOUND, false);
        assert_eq!(offsets.check(), ClockCheck::Off { offset_ms: 600 });
        // The clock is corrected: new estimates replace the old ones one by one.
        round(&mut offsets, 2, 0, 0, 20_000, 1);
        offsets.recompute(&live, BOUND, false);
        assert!(matches!(offsets.check(), ClockCheck::Off { .. }), "one of three within");
        round(&mut offsets, 4, 0, 0, 20_000, 1);
        offsets.recompute(&live, BOUND, false);
        assert_eq!(offsets.check(), ClockCheck::Within);
        assert_eq!(offsets.median_ms(), Some(0));
    }

    #[test]
    fn one_bad_peer_does_not_make_a_good_node_refuse() {
        let live = [NodeId(2), NodeId(3)];
        let mut offsets = Offsets::default();
        round(&mut offsets, 2, 0, 600_000, 10_000, 1);
        offsets.recompute(&live, BOUND, false);
        assert_eq!(offsets.check(), ClockCheck::Unchecked, "the bad peer alone says nothing");
        round(&mut offsets, 3, 0, 20, 10_000, 1);
        offsets.recompute(&live, BOUND, false);
        assert_eq!(offsets.check(), ClockCheck::Within);
    }

    #[test]
    fn peers_on_both_sides_are_no_majority_and_uncertainty_is_granted() {
        let live = [NodeId(2), NodeId(3)];
        let mut offsets = Offsets::default();
        round(&mut offsets, 2, 0, 2_000, 10_000, 1);
        round(&mut offsets, 3, 0, -2_000, 10_000, 1);
        offsets.recompute(&live, BOUND, false);
        assert_eq!(offsets.check(), ClockCheck::Unchecked);
        // 600 ms off, but measured over a 400 ms round trip: it may be 400 ms (within) or
        // 800 ms (beyond), so it proves neither.
        let mut offsets = Offsets::default();
        round(&mut offsets, 2, 600, 0, 10_000, 200);
        offsets.recompute(&[NodeId(2)], BOUND, false);
        assert_eq!(offsets.check(), ClockCheck::Unchecked);
        round(&mut offsets, 2, 300, 0, 20_000, 100);
        offsets.recompute(&[NodeId(2)], BOUND, false);
        assert_eq!(offsets.check(), ClockCheck::Within, "300 ms give or take 100");
    }

    #[test]
    fn in_a_large_cluster_a_quorum_decides() {
        let live: Vec<NodeId> = (2..=101).map(NodeId).collect();
        let mut offsets = Offsets::default();
        for n in 2..=3 {
            round(&mut offsets, n, 0, 10, 10_000, 1);
        }
        offsets.recompute(&live, BOUND, false);
        assert_eq!(offsets.check(), ClockCheck::Unchecked, "two of a hundred");
        round(&mut offsets, 4, 0, 10, 10_000, 1);
        offsets.recompute(&live, BOUND, false);
        assert_eq!(offsets.check(), ClockCheck::Within);
        let mut offsets = Offsets::default();
        for n in 2..=5 {
            round(&mut offsets, n, 0, -9_000, 10_000, 1);
        }
        round(&mut offsets, 6, 0, 0, 10_000, 1);
        offsets.recompute(&live, BOUND, false);
        assert_eq!(offsets.check(), ClockCheck::Off { offset_ms: 9_000 });
    }

    #[test]
    fn a_step_forgets_every_estimate() {
        let live = [NodeId(2)];
        let mut offsets = Offsets::default();
        round(&mut offsets, 2, 0, 0, 10_000, 1);
        offsets.recompute(&live, BOUND, false);
        assert_eq!(offsets.check(), ClockCheck::Within);
        // A Syn sent before the step, answered after it: the round trip spans the step.
        let syn = offsets.stamp(&addr(2), 20_000);
        offsets.forget(22_000);
        assert_eq!(offsets.check(), ClockCheck::Unchecked);
        assert!(offsets.samples().is_empty() && offsets.median_ms().is_none());
        assert!(offsets.stamp(&addr(2), 22_010).echo.is_none(), "no echo of a stale reading");
        let mut peer = Offsets::default();
        peer.heard(NodeId(2), ME, &addr(1), &syn, 20_001);
        let ack = peer.stamp(&addr(1), 20_001);
        assert!(!offsets.heard(ME, NodeId(2), &addr(2), &ack, 22_002), "spans the step");
    }

    #[test]
    fn a_lone_node_trusts_its_clock_only_when_it_has_nobody_to_ask() {
        let mut offsets = Offsets::default();
        offsets.recompute(&[], BOUND, false);
        assert_eq!(offsets.check(), ClockCheck::Unchecked);
        offsets.recompute(&[], BOUND, true);
        assert_eq!(offsets.check(), ClockCheck::Within);
        assert_eq!(offsets.median_ms(), None);
    }

    #[test]
    fn the_stalest_peer_is_measured_next_and_removed_members_are_forgotten() {
        let live = [NodeId(2), NodeId(3)];
        let mut offsets = Offsets::default();
        round(&mut offsets, 2, 0, 0, 10_000, 1);
        assert_eq!(offsets.stalest(&live, 10_002), Some(NodeId(3)));
        // Tried, not answered: the other goes next.
        assert_eq!(offsets.stalest(&live, 10_500), Some(NodeId(2)));
        round(&mut offsets, 3, 0, 0, 11_000, 1);
        assert_eq!(offsets.stalest(&live, 11_002), Some(NodeId(2)));
        offsets.prune(|id| id != NodeId(2), 11_002);
        assert!(!offsets.samples().contains_key(&NodeId(2)));
    }
}
