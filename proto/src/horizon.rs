//! The fence by provenance: what a replica's state lacks because tombstones were collected,
//! and which collections its content is safe against.
//!
//! Collecting a tombstone is safe only for replicas that have seen it. A replica that has not
//! (cut off longer than the removal period, or a fresh identity that copied such a replica)
//! may still hold the value the tombstone deleted. If it took a delta from a replica that
//! collected the tombstone, the delta's range would tell it the write was seen while the
//! older value stayed, and it could hand that value on to anyone. If it gave its state away,
//! the receiver would take the older value as new. So two replicas exchange state only when
//! each one's content is *safe against* everything the other collected. Otherwise the one that
//! is behind drops its state and syncs again from empty.
//!
//! Identities do not carry this; the data does. A [`Horizon`] travels in every digest and
//! every delta page. A replica that copies ranges from another inherits what that one
//! collected (`pruned`), and is only as safe as both were (`safe`). A fresh identity that
//! synced from a stale replica is therefore stale too, and the check catches it (chorus-sim
//! found such laundering through a node that joined during a long partition).
//!
//! "Safe against tombstone t" means: this content holds no entry that t supersedes. Every
//! replica is safe against every tombstone it has seen, because last-writer-wins kept the
//! newer one, so its bases always count. Beyond the bases, a replica is safe against what the
//! content it copied was safe against. A replica that holds only writes stamped after every
//! collection (it is empty, or holds fresh local writes and pushes) is safe against everything.
//! Fresh writes are newer than any collected tombstone because collection waits
//! `tombstone_grace_ms` after a tombstone's stamp, far longer than a push stays in flight or
//! clocks may disagree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::{NodeId, Stamp};
use crate::version::Dot;

/// What a replica's state lacks by collection, and which collections its content is safe
/// against beyond its bases.
///
/// The content is safe against a collected tombstone `t` when its bases cover `t`, or when
/// both hold: `t` is within `safe_beyond` (for the content copied from other replicas) and
/// `t` is stamped before `fresh_since` (for the writes made or pushed here).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Horizon {
    /// Per writer, the highest sequence number of a tombstone or expired entry that this state
    /// may lack because it was collected, here or at a replica whose ranges it absorbed.
    pub(crate) pruned: BTreeMap<NodeId, u64>,
    /// The greatest stamp among those collected entries.
    pub(crate) pruned_stamp: Option<Stamp>,
    /// Per writer, how far beyond the bases the copied content is safe; `None` while nothing
    /// was copied. Only entries above the bases are kept, so `Some` of an empty map means
    /// "exactly the bases".
    pub(crate) safe_beyond: Option<BTreeMap<NodeId, u64>>,
    /// The oldest stamp among writes made or pushed here that the bases may not vouch for;
    /// `None` when there are none (or when `safe_beyond` leaves nothing to vouch for).
    pub(crate) fresh_since: Option<Stamp>,
}

fn base(bases: &BTreeMap<NodeId, u64>, node: &NodeId) -> u64 {
    bases.get(node).copied().unwrap_or(0)
}

impl Horizon {
    /// Whether a replica with `bases` and this horizon is safe against every entry that
    /// `theirs` says another replica collected.
    pub(crate) fn is_safe_against(&self, bases: &BTreeMap<NodeId, u64>, theirs: &Horizon) -> bool {
        let fresh = match (self.fresh_since, theirs.pruned_stamp) {
            (Some(since), Some(pruned)) => pruned < since,
            _ => true,
        };
        theirs.pruned.iter().all(|(node, seq)| {
            let copied = self.safe_beyond.as_ref().is_none_or(|beyond| *seq <= base(beyond, node));
            *seq <= base(bases, node) || (copied && fresh)
        })
    }

    /// Notes that this replica collected `dot`, stamped `stamp`.
    pub(crate) fn collected(&mut self, dot: Dot, stamp: Stamp) {
        let seq = self.pruned.entry(dot.node).or_insert(0);
        *seq = (*seq).max(dot.seq);
        self.pruned_stamp = self.pruned_stamp.max(Some(stamp));
    }

    /// Notes a write made or pushed here (not copied by a delta) that changed the content.
    pub(crate) fn wrote(&mut self, stamp: Stamp) {
        if self.safe_beyond.as_ref().is_none_or(|beyond| !beyond.is_empty()) {
            self.fresh_since = Some(self.fresh_since.map_or(stamp, |since| since.min(stamp)));
        }
    }

    /// The horizon of a delta page, given this replica's `bases` and the receiver's bases once
    /// it applied the page (`cursor`). Beyond what this replica copied, the page's content is
    /// safe against everything its bases cover, including the writers the page leaves the
    /// receiver below.
    pub(crate) fn for_page(
        &self,
        bases: &BTreeMap<NodeId, u64>,
        cursor: &BTreeMap<NodeId, u64>,
    ) -> Horizon {
        let safe_beyond = self.safe_beyond.as_ref().map(|beyond| {
            let mut beyond = beyond.clone();
            for (node, seq) in bases {
                if base(cursor, node) < *seq {
                    let entry = beyond.entry(*node).or_insert(0);
                    *entry = (*entry).max(*seq);
                }
            }
            beyond
        });
        Horizon { safe_beyond, ..self.clone() }
    }

    /// Accounts for content copied from a replica with horizon `theirs`: this replica's bases
    /// went from `before` to `after`, absorbing ranges of the writers in `absorbed`.
    pub(crate) fn absorb(
        &mut self,
        before: &BTreeMap<NodeId, u64>,
        after: &BTreeMap<NodeId, u64>,
        absorbed: &[NodeId],
        theirs: &Horizon,
    ) {
        // Entries the sender collected inside the ranges taken are missing here too.
        for node in absorbed {
            if let Some(seq) = theirs.pruned.get(node) {
                let seq = (*seq).min(base(after, node));
                if seq > 0 {
                    let ours = self.pruned.entry(*node).or_insert(0);
                    *ours = (*ours).max(seq);
                    self.pruned_stamp = self.pruned_stamp.max(theirs.pruned_stamp);
                }
            }
        }
        // The content is now as safe as the less safe of the two; the bases always count.
        let combined = match (&self.safe_beyond, &theirs.safe_beyond) {
            (ours, None) => ours.clone(),
            (None, Some(beyond)) => Some(beyond.clone()),
            (Some(ours), Some(beyond)) => Some(
                ours.iter()
                    .map(|(node, seq)| {
                        let mine = base(before, node).max(*seq);
                        (*node, mine.min(base(after, node).max(base(beyond, node))))
                    })
                    .collect(),
            ),
        };
        self.safe_beyond = combined.map(|mut beyond| {
            beyond.retain(|node, seq| *seq > base(after, node));
            beyond
        });
        self.fresh_since = match (self.fresh_since, theirs.fresh_since) {
            (Some(ours), Some(theirs)) => Some(ours.min(theirs)),
            (ours, theirs) => ours.or(theirs),
        };
        if self.safe_beyond.as_ref().is_some_and(BTreeMap::is_empty) {
            self.fresh_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Hlc;

    fn map(pairs: &[(u64, u64)]) -> BTreeMap<NodeId, u64> {
        pairs.iter().map(|(node, seq)| (NodeId(*node), *seq)).collect()
    }

    fn stamp(ms: u64) -> Stamp {
        Stamp { hlc: Hlc::new(ms, 0), node: NodeId(9) }
    }

    fn collected(pairs: &[(u64, u64)], at_ms: u64) -> Horizon {
        Horizon { pruned: map(pairs), pruned_stamp: Some(stamp(at_ms)), ..Horizon::default() }
    }

    #[test]
    fn the_bases_always_count_and_an_empty_state_is_safe_against_everything() {
        let theirs = collected(&[(1, 100)], 50);
        assert!(Horizon::default().is_safe_against(&map(&[]), &theirs));
        let own = Horizon { safe_beyond: Some(map(&[])), ..Horizon::default() };
        assert!(own.is_safe_against(&map(&[(1, 100)]), &theirs));
        assert!(!own.is_safe_against(&map(&[(1, 99)]), &theirs));
    }

    #[test]
    fn own_writes_are_safe_only_against_older_collections() {
        let mut own = Horizon::default();
        own.wrote(stamp(60));
        own.wrote(stamp(70));
        assert!(own.is_safe_against(&map(&[]), &collected(&[(1, 100)], 50)));
        assert!(!own.is_safe_against(&map(&[]), &collected(&[(1, 100)], 65)));
    }

    #[test]
    fn a_clean_replica_copying_a_partial_page_inherits_the_senders_safety() {
        // The sender has seen writer 1 up to 50 and collected up to 40; the page carried
        // writer 1 up to 10 only.
        let mut sender = collected(&[(1, 40)], 30);
        sender.safe_beyond = Some(map(&[]));
        let page = sender.for_page(&map(&[(1, 50)]), &map(&[(1, 10)]));
        assert_eq!(page.safe_beyond, Some(map(&[(1, 50)])));
        let mut receiver = Horizon::default();
        receiver.wrote(stamp(80));
        receiver.absorb(&map(&[]), &map(&[(1, 10)]), &[NodeId(1)], &page);
        assert_eq!(receiver.pruned, map(&[(1, 10)]));
        // Safe against what the sender collected, so the next page can follow.
        assert!(receiver.is_safe_against(&map(&[(1, 10)]), &sender));
        // Not against a collection newer than its own writes beyond what it copied.
        assert!(!receiver.is_safe_against(&map(&[(1, 10)]), &collected(&[(1, 20)], 90)));
    }

    #[test]
    fn copying_from_a_less_safe_replica_makes_this_one_less_safe() {
        let mut ours = Horizon { safe_beyond: Some(map(&[(2, 30)])), ..Horizon::default() };
        let theirs = Horizon { safe_beyond: Some(map(&[])), ..collected(&[(2, 5)], 1) };
        ours.absorb(&map(&[(2, 10)]), &map(&[(2, 12)]), &[NodeId(2)], &theirs);
        // Their content is safe only up to writer 2's 12, as the page covered it.
        assert_eq!(ours.safe_beyond, Some(map(&[])));
        assert_eq!(ours.pruned, map(&[(2, 5)]));
        assert!(!ours.is_safe_against(&map(&[(2, 12)]), &collected(&[(2, 20)], 1)));
    }
}
