//! The eager-push tree of each origin.
//!
//! Every node knows the full membership, so instead of growing a spanning tree by pruning
//! duplicates (Plumtree), each node computes the same tree for a given origin: the origin at
//! the root, then the other live members in an order drawn from a hash of (origin, member),
//! laid out as a complete `fanout`-ary tree. When membership views agree, every node receives
//! each write exactly once, within `ceil(log_fanout(n))` hops, and the per-origin shuffle
//! spreads interior work across nodes. When views disagree (a member joining or dying), a few
//! nodes may get a write twice or not at all; anti-entropy delivers what the tree missed.

use crate::clock::NodeId;

/// A well-mixed 64-bit hash (splitmix64's finaliser): deterministic on every platform.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The members `me` forwards writes of `origin` to. `live` lists the members in the tree
/// (it may or may not contain `me` and `origin`; both are added).
pub(crate) fn children(origin: NodeId, me: NodeId, live: &[NodeId], fanout: usize) -> Vec<NodeId> {
    let salt = mix(origin.0);
    let mut order: Vec<(u64, NodeId)> = live
        .iter()
        .chain(std::iter::once(&me))
        .filter(|id| **id != origin)
        .map(|id| (mix(id.0 ^ salt), *id))
        .collect();
    order.sort_unstable();
    order.dedup();
    // Position 0 is the origin; the others follow in hash order.
    let position = if me == origin {
        0
    } else {
        match order.iter().position(|(_, id)| *id == me) {
            Some(index) => index + 1,
            None => return Vec::new(),
        }
    };
    let first = position * fanout + 1;
    (first..first + fanout).filter_map(|index| order.get(index - 1).map(|(_, id)| *id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn every_member_is_reached_exactly_once() {
        for n in [1u64, 2, 5, 25, 100, 1000] {
            let live: Vec<NodeId> = (1..=n).map(|i| NodeId(i * 7919)).collect();
            for origin in [live[0], live[live.len() / 2]] {
                let mut received = BTreeMap::new();
                let mut frontier = vec![origin];
                let mut depth = 0;
                while !frontier.is_empty() {
                    depth += 1;
                    let mut next = Vec::new();
                    for node in frontier {
                        for child in children(origin, node, &live, 6) {
                            *received.entry(child).or_insert(0) += 1;
                            next.push(child);
                        }
                    }
                    frontier = next;
                }
                assert_eq!(received.len() as u64, n - 1, "n={n}");
                assert!(received.values().all(|count| *count == 1));
                let bound = ((n as f64).ln() / 6f64.ln()).ceil() as usize + 2;
                assert!(depth <= bound, "n={n} depth={depth} bound={bound}");
            }
        }
    }
}
