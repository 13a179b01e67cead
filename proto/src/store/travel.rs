//! What travels between replicas: one write ([`Update`]), the writes of one node in a range
//! of its sequence numbers ([`Group`]), and a delta or a page of one ([`Delta`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::{NodeId, Stamp};
use crate::data::{Key, Value};
use crate::limits::ENTRY_OVERHEAD_MAX;
use crate::version::Dot;

/// One write as it travels: everything a replica needs to merge it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// The key written.
    pub key: Key,
    /// The write's stamp; its node is the writer.
    pub stamp: Stamp,
    /// The writer's sequence number for this write.
    pub seq: u64,
    /// The value, or `None` for a delete.
    pub value: Option<Value>,
    /// Absolute expiry, if the write had a TTL.
    pub expires_at_ms: Option<u64>,
}

impl Update {
    /// The write's dot.
    pub fn dot(&self) -> Dot {
        Dot { node: self.stamp.node, seq: self.seq }
    }

    /// An upper bound of this update's encoded size, for paging without encoding twice.
    pub fn size_bound(&self) -> usize {
        self.key.as_bytes().len() + self.value.as_ref().map_or(0, Value::len) + ENTRY_OVERHEAD_MAX
    }
}

/// The writes of one node in the range `(from, to]` that the sender still holds; the others
/// in that range are superseded at the sender, so the receiver may count the whole range seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The writing node.
    pub node: NodeId,
    /// Exclusive start of the covered range: the receiver's base when the delta was made.
    pub from: u64,
    /// Inclusive end of the covered range.
    pub to: u64,
    /// The writes in the range still held by the sender, in sequence order.
    pub updates: Vec<Update>,
}

impl Group {
    /// Whether the group carries every write of its range (it skips none replaced here): one
    /// update for each sequence number (a peer could send two writes with one dot).
    pub fn is_whole(&self) -> bool {
        let ascending = self.updates.windows(2).all(|pair| pair[0].seq < pair[1].seq);
        ascending && self.updates.len() as u64 == self.to.saturating_sub(self.from)
    }
}

/// What a replica lacks relative to another, or a page of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// One group per node with writes the receiver has not seen.
    pub groups: Vec<Group>,
}

impl Delta {
    /// Moves a peer's bases past what this delta covers, to compute the next page.
    pub fn advance(&self, bases: &mut BTreeMap<NodeId, u64>) {
        for group in &self.groups {
            let base = bases.entry(group.node).or_insert(0);
            *base = (*base).max(group.to);
        }
    }

    /// Number of updates carried.
    pub fn update_count(&self) -> usize {
        self.groups.iter().map(|group| group.updates.len()).sum()
    }
}
