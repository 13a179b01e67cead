//! Write waits: a write that completes only once enough members hold it.
//!
//! [`Waits`] owns the pending waits and indexes them twice: by the dot of their write, so an
//! acknowledgement or a peer's vector bases find the waits they confirm without a scan, and
//! by deadline, so a timeout finds the expired ones and `poll_timeout` the next one. A wait
//! is evaluated again only when something it depends on changed: a new confirmation, its
//! deadline, or the set of members `All` waits for.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::clock::{NodeId, Stamp};
use crate::limits::WAITS_MAX;
use crate::version::Dot;

/// How many replicas must hold a write before it is reported complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaitLevel {
    /// This node only: complete at once.
    Local,
    /// Every member not known to be dead or left.
    All,
    /// At least this many nodes, this one included.
    Count(u32),
}

/// Identifies a pending wait, to match its outcome to the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WaitId(pub u64);

/// How a wait ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitOutcome {
    /// The wait.
    pub id: WaitId,
    /// The write's stamp.
    pub stamp: Stamp,
    /// Whether the level was reached before the deadline.
    pub complete: bool,
    /// Members known to hold the write, this node included.
    pub confirmed: Vec<NodeId>,
    /// Members waited for that had not confirmed (empty when complete).
    pub missing: Vec<NodeId>,
}

/// A write waiting for confirmations.
#[derive(Clone, Debug)]
struct Wait {
    id: WaitId,
    dot: Dot,
    stamp: Stamp,
    level: WaitLevel,
    deadline_ms: u64,
    confirmed: BTreeSet<NodeId>,
}

impl Wait {
    /// The outcome if the wait ended now, given the members currently waited for under
    /// `All` (every member not dead or left, this node included).
    fn outcome(&self, required: &BTreeSet<NodeId>, deadline_passed: bool) -> Option<WaitOutcome> {
        let complete = match self.level {
            WaitLevel::Local => true,
            WaitLevel::All => required.is_subset(&self.confirmed),
            WaitLevel::Count(count) => self.confirmed.len() >= count as usize,
        };
        if !complete && !deadline_passed {
            return None;
        }
        let missing = if complete {
            Vec::new()
        } else {
            required.difference(&self.confirmed).copied().collect()
        };
        Some(WaitOutcome {
            id: self.id,
            stamp: self.stamp,
            complete,
            confirmed: self.confirmed.iter().copied().collect(),
            missing,
        })
    }
}

/// The pending write waits of one node, indexed by dot and by deadline.
#[derive(Clone, Debug)]
pub(crate) struct Waits {
    pending: BTreeMap<WaitId, Wait>,
    /// The wait of each waited write (a write has one dot and at most one wait).
    by_dot: BTreeMap<Dot, WaitId>,
    by_deadline: BTreeSet<(u64, WaitId)>,
    /// Waits whose confirmations changed since they were last evaluated.
    touched: BTreeSet<WaitId>,
    /// The members `All` waited for when the waits were last evaluated.
    required: BTreeSet<NodeId>,
    next_id: u64,
}

impl Waits {
    pub(crate) fn new() -> Waits {
        Waits {
            pending: BTreeMap::new(),
            by_dot: BTreeMap::new(),
            by_deadline: BTreeSet::new(),
            touched: BTreeSet::new(),
            required: BTreeSet::new(),
            next_id: 1,
        }
    }

    /// Whether no wait is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether another wait may start (`WAITS_MAX` bounds them).
    pub(crate) fn has_room(&self) -> bool {
        self.pending.len() < WAITS_MAX
    }

    /// Starts waiting for the write `dot` (held by `me` already) until `deadline_ms`.
    pub(crate) fn start(
        &mut self,
        me: NodeId,
        dot: Dot,
        stamp: Stamp,
        level: WaitLevel,
        deadline_ms: u64,
    ) -> WaitId {
        debug_assert!(self.has_room(), "the caller checks has_room first");
        let id = WaitId(self.next_id);
        self.next_id += 1;
        let confirmed = BTreeSet::from([me]);
        self.pending.insert(id, Wait { id, dot, stamp, level, deadline_ms, confirmed });
        let previous = self.by_dot.insert(dot, id);
        debug_assert!(previous.is_none(), "dots are unique per write");
        self.by_deadline.insert((deadline_ms, id));
        // A level this node alone reaches (`Count(1)`) completes at the next settle.
        self.touched.insert(id);
        id
    }

    /// The earliest deadline of a pending wait.
    pub(crate) fn next_deadline_ms(&self) -> Option<u64> {
        self.by_deadline.first().map(|(deadline_ms, _)| *deadline_ms)
    }

    /// Notes that `peer` holds the write `dot`.
    pub(crate) fn confirm(&mut self, peer: NodeId, dot: Dot) {
        let Some(id) = self.by_dot.get(&dot) else { return };
        // Invariant: by_dot only names pending waits.
        let wait = self.pending.get_mut(id).expect("indexed waits are pending");
        if wait.confirmed.insert(peer) {
            self.touched.insert(*id);
        }
    }

    /// Notes that `peer` holds every write its vector `bases` cover: for each writer with a
    /// pending wait, the waited dots up to that writer's base.
    pub(crate) fn confirm_by_bases(&mut self, peer: NodeId, bases: &BTreeMap<NodeId, u64>) {
        let mut next = self.by_dot.keys().next().copied();
        while let Some(first) = next {
            let writer = first.node;
            let base = bases.get(&writer).copied().unwrap_or(0);
            let covered: Vec<Dot> = if base >= first.seq {
                let last = Dot { node: writer, seq: base };
                self.by_dot.range(first..=last).map(|(dot, _)| *dot).collect()
            } else {
                Vec::new()
            };
            for dot in covered {
                self.confirm(peer, dot);
            }
            let after = Dot { node: writer, seq: u64::MAX };
            next = self.by_dot.range(after..).find(|(dot, _)| dot.node != writer).map(|e| *e.0);
        }
    }

    /// Ends the waits that reached their level or their deadline at `now_ms`, in the order
    /// they started. `required` is the set `All` waits for now (this node included).
    pub(crate) fn settle(&mut self, required: BTreeSet<NodeId>, now_ms: u64) -> Vec<WaitOutcome> {
        let mut due = std::mem::take(&mut self.touched);
        if required != self.required {
            // A member died, left, or was confirmed: every `All` wait may have changed.
            due.extend(self.pending.keys().copied());
            self.required = required;
        }
        due.extend(self.by_deadline.range(..=(now_ms, WaitId(u64::MAX))).map(|(_, id)| *id));
        let mut done = Vec::new();
        for id in due {
            let Some(wait) = self.pending.get(&id) else { continue };
            if let Some(outcome) = wait.outcome(&self.required, now_ms >= wait.deadline_ms) {
                self.remove(id);
                done.push(outcome);
            }
        }
        done
    }

    /// Ends every pending wait, incomplete, in the order they started: the node dropped the
    /// state the writes were in.
    pub(crate) fn abandon(&mut self) -> Vec<WaitOutcome> {
        let pending = std::mem::take(&mut self.pending);
        *self = Waits { next_id: self.next_id, ..Waits::new() };
        pending
            .into_values()
            .filter_map(|wait| wait.outcome(&BTreeSet::new(), true))
            .map(|outcome| WaitOutcome { complete: false, ..outcome })
            .collect()
    }

    /// Forgets the wait `id` without an outcome (its client has gone); whether it was pending.
    pub(crate) fn cancel(&mut self, id: WaitId) -> bool {
        self.remove(id)
    }

    fn remove(&mut self, id: WaitId) -> bool {
        let Some(wait) = self.pending.remove(&id) else { return false };
        self.by_dot.remove(&wait.dot);
        self.by_deadline.remove(&(wait.deadline_ms, id));
        self.touched.remove(&id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Hlc;

    fn stamp(node: NodeId) -> Stamp {
        Stamp { hlc: Hlc::new(1, 0), node }
    }

    #[test]
    fn acknowledgements_and_bases_confirm_only_the_waits_they_cover() {
        let (me, peer) = (NodeId(1), NodeId(2));
        let mut waits = Waits::new();
        let dot = |seq| Dot { node: me, seq };
        let first = waits.start(me, dot(1), stamp(me), WaitLevel::Count(2), 100);
        let second = waits.start(me, dot(2), stamp(me), WaitLevel::Count(2), 100);
        let other = Dot { node: NodeId(3), seq: 1 };
        let third = waits.start(me, other, stamp(me), WaitLevel::Count(2), 100);
        assert!(waits.settle(BTreeSet::from([me]), 10).is_empty());
        waits.confirm_by_bases(peer, &BTreeMap::from([(me, 1), (NodeId(3), 0)]));
        let done = waits.settle(BTreeSet::from([me]), 10);
        assert_eq!(done.iter().map(|o| o.id).collect::<Vec<_>>(), vec![first]);
        waits.confirm(peer, other);
        let done = waits.settle(BTreeSet::from([me]), 10);
        assert_eq!(done.iter().map(|o| o.id).collect::<Vec<_>>(), vec![third]);
        assert_eq!(waits.next_deadline_ms(), Some(100));
        let done = waits.settle(BTreeSet::from([me]), 100);
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].id, done[0].complete), (second, false));
        assert_eq!(waits.next_deadline_ms(), None);
    }

    #[test]
    fn a_cancelled_wait_frees_its_slot_and_reports_nothing() {
        let (me, peer) = (NodeId(1), NodeId(2));
        let mut waits = Waits::new();
        let dot = Dot { node: me, seq: 1 };
        let id = waits.start(me, dot, stamp(me), WaitLevel::Count(2), 100);
        assert!(waits.cancel(id));
        assert!(!waits.cancel(id), "cancelled once");
        assert!(waits.is_empty() && waits.next_deadline_ms().is_none());
        waits.confirm(peer, dot);
        assert!(waits.settle(BTreeSet::from([me]), 200).is_empty(), "no outcome after cancel");
    }

    #[test]
    fn a_member_leaving_the_required_set_completes_all_waits() {
        let (me, peer) = (NodeId(1), NodeId(2));
        let mut waits = Waits::new();
        let id = waits.start(me, Dot { node: me, seq: 1 }, stamp(me), WaitLevel::All, 100);
        assert!(waits.settle(BTreeSet::from([me, peer]), 10).is_empty());
        let done = waits.settle(BTreeSet::from([me]), 20);
        assert_eq!(done.iter().map(|o| (o.id, o.complete)).collect::<Vec<_>>(), [(id, true)]);
    }
}
