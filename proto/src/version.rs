//! Dots and version vectors: which writes a replica has seen.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::clock::NodeId;
use crate::limits::DOT_CLOUD_SIZE_MAX;

/// A write's identity: the node that issued it and that node's sequence number for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// The writing node.
    pub node: NodeId,
    /// The writing node's counter, from 1.
    pub seq: u64,
}

/// What a replica has seen: for each node a contiguous base (every write of that node with
/// `seq <= base` is applied here or superseded by a newer write of the same key), plus a small
/// bounded cloud of dots seen above the base, out of order.
///
/// Only the base travels in digests. The cloud lets eager pushes that arrive out of order be
/// recognised as seen, so they are neither re-applied nor forwarded twice; forgetting part of
/// it is always safe, it only costs a re-send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionVector {
    base: BTreeMap<NodeId, u64>,
    cloud: BTreeSet<Dot>,
}

impl VersionVector {
    /// An empty vector: nothing seen.
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    /// A vector that has seen exactly `bases` (a restored replica).
    pub fn from_bases(bases: BTreeMap<NodeId, u64>) -> VersionVector {
        let base = bases.into_iter().filter(|(_, seq)| *seq > 0).collect();
        VersionVector { base, cloud: BTreeSet::new() }
    }

    /// The contiguous base for `node` (0 when nothing of it was seen).
    pub fn base(&self, node: NodeId) -> u64 {
        self.base.get(&node).copied().unwrap_or(0)
    }

    /// The bases of every node, as sent in digests.
    pub fn bases(&self) -> &BTreeMap<NodeId, u64> {
        &self.base
    }

    /// Whether the write `dot` is seen here.
    pub fn contains(&self, dot: Dot) -> bool {
        dot.seq <= self.base(dot.node) || self.cloud.contains(&dot)
    }

    /// Whether a write of `node` above its base is seen here (it arrived out of order).
    pub fn holds_above(&self, node: NodeId) -> bool {
        self.cloud.range(Dot { node, seq: 0 }..=Dot { node, seq: u64::MAX }).next().is_some()
    }

    /// Records `dot` as seen.
    pub(crate) fn insert(&mut self, dot: Dot) {
        let base = self.base(dot.node);
        if dot.seq == base.saturating_add(1) && dot.seq > base {
            self.set_base(dot.node, dot.seq);
        } else if dot.seq > base && self.cloud.len() < DOT_CLOUD_SIZE_MAX {
            self.cloud.insert(dot);
        }
    }

    /// Records the writes of `node` numbered `first..=last` as seen: the base moves past them
    /// when they join it, or they go to the cloud, as far as it has room (a push's writes left
    /// out because a write it carries replaced them).
    pub(crate) fn insert_run(&mut self, node: NodeId, first: u64, last: u64) {
        let base = self.base(node);
        if first <= base.saturating_add(1) {
            if last > base {
                self.set_base(node, last);
            }
            return;
        }
        for seq in first..=last {
            if self.cloud.len() >= DOT_CLOUD_SIZE_MAX {
                return;
            }
            self.cloud.insert(Dot { node, seq });
        }
    }

    /// Records every write of `node` in `(from, to]` as seen, if that range joins the base
    /// (`from <= base`); a range beyond a gap says nothing about the gap and is ignored.
    pub(crate) fn advance(&mut self, node: NodeId, from: u64, to: u64) {
        let base = self.base(node);
        if from <= base && to > base {
            self.set_base(node, to);
        }
    }

    /// Sets the base and absorbs the cloud dots it now reaches, contiguously. Looks at the
    /// node's lowest cloud dot once per dot absorbed, and no further: copying out all of them
    /// first, as it once did, cost every in-order push up to `DOT_CLOUD_SIZE_MAX` dots while
    /// the cloud held a gap's worth (timed in a scratch build of session 17: a replica behind a
    /// saturated writer spent 10 to 15 ms applying a 237-update delta page).
    fn set_base(&mut self, node: NodeId, seq: u64) {
        let mut base = seq;
        while let Some(&dot) = self
            .cloud
            .range(Dot { node, seq: 0 }..=Dot { node, seq: base.saturating_add(1) })
            .next()
        {
            base = base.max(dot.seq);
            self.cloud.remove(&dot);
        }
        self.base.insert(node, base);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{RngExt, SeedableRng};

    use super::*;

    /// Dots and runs of dots seen in random order, and ranges joined to the base, against the
    /// set of every dot seen: the base is the longest run from 1, and every seen dot is
    /// contained. At most 2,000 dots a node, so the cloud (4,096) never has to forget one.
    #[test]
    fn the_base_is_the_longest_run_seen_from_one() {
        for seed in 0..6 {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let mut vector = VersionVector::new();
            let mut seen: BTreeSet<Dot> = BTreeSet::new();
            for step in 0..2_500 {
                let node = NodeId(rng.random_range(1..3));
                if rng.random_range(0..8) == 0 {
                    let from = rng.random_range(0..=vector.base(node) + 2);
                    let to = (from + rng.random_range(0..50)).min(2_000);
                    // A range joins the base when it starts at or below it; otherwise ignored.
                    if from <= vector.base(node) {
                        seen.extend((from + 1..=to).map(|seq| Dot { node, seq }));
                    }
                    vector.advance(node, from, to);
                } else if rng.random_range(0..8) == 0 {
                    // A push's left-out writes: seen wherever they lie.
                    let first = rng.random_range(1..=2_000);
                    let last = (first + rng.random_range(0..20)).min(2_000);
                    seen.extend((first..=last).map(|seq| Dot { node, seq }));
                    vector.insert_run(node, first, last);
                } else {
                    let dot = Dot { node, seq: rng.random_range(1..=2_000) };
                    vector.insert(dot);
                    seen.insert(dot);
                }
                for node in [NodeId(1), NodeId(2)] {
                    let run = (1..).take_while(|&seq| seen.contains(&Dot { node, seq })).count();
                    assert_eq!(vector.base(node), run as u64, "seed {seed} step {step}");
                }
                // The cloud keeps only dots beyond a gap above the base.
                let stale = vector.cloud.iter().find(|dot| dot.seq <= vector.base(dot.node) + 1);
                assert_eq!(stale, None, "seed {seed} step {step}");
            }
            for dot in &seen {
                assert!(vector.contains(*dot), "seed {seed}: {dot:?}");
            }
        }
    }
}
