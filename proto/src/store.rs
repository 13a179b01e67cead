//! The replicated map: one last-writer-wins register per key, the dots that name each write,
//! the version vector of what this replica has seen, and the deltas that bring a peer up to it.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crdts::LWWReg;
use serde::{Deserialize, Serialize};

use crate::clock::{NodeId, Stamp};
use crate::data::{Key, Value};
use crate::horizon::Horizon;
use crate::limits::ENTRY_OVERHEAD_MAX;
use crate::version::{Dot, VersionVector};

/// One key's replicated state. `None` in the register is a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The value (or tombstone) and the stamp of the write that set it.
    pub register: LWWReg<Option<Value>, Stamp>,
    /// The writer's sequence number for that write; with the stamp's node it is the dot.
    pub seq: u64,
    /// Absolute wall-clock expiry chosen by the writer, the same on every replica.
    pub expires_at_ms: Option<u64>,
}

impl Entry {
    /// The write's dot.
    pub fn dot(&self) -> Dot {
        Dot { node: self.register.marker.node, seq: self.seq }
    }

    /// The write's stamp.
    pub fn stamp(&self) -> Stamp {
        self.register.marker
    }

    /// The value, if the entry is neither a tombstone nor expired at `now_ms`.
    pub fn live_value(&self, now_ms: u64) -> Option<&Value> {
        match self.expires_at_ms {
            Some(expiry) if expiry <= now_ms => None,
            _ => self.register.val.as_ref(),
        }
    }
}

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

    fn from_entry(key: &Key, entry: &Entry) -> Update {
        Update {
            key: key.clone(),
            stamp: entry.stamp(),
            seq: entry.seq,
            value: entry.register.val.clone(),
            expires_at_ms: entry.expires_at_ms,
        }
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

/// The outcome of merging one update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The dot was seen before: nothing changed.
    Seen,
    /// New here, but an entry with a greater stamp was already held.
    Superseded,
    /// New here and it replaced the entry (or created it); `previous` is what it replaced.
    Won {
        /// The entry it replaced.
        previous: Option<Entry>,
    },
}

/// The replicated map of one replica.
#[derive(Clone, Debug, Default)]
pub struct Store {
    entries: BTreeMap<Key, Entry>,
    /// Every held entry by dot, so a delta is a range scan per node.
    dots: BTreeMap<Dot, Key>,
    /// Dots of held tombstones, for collection.
    tombstones: BTreeSet<Dot>,
    /// Expiry times of held entries that have one, for expiry events and collection.
    expiries: BTreeSet<(u64, Dot)>,
    vector: VersionVector,
    /// What this state lacks by collection and what its content is safe against.
    horizon: Horizon,
}

impl Store {
    /// An empty map.
    pub fn new() -> Store {
        Store::default()
    }

    /// The entry for `key`, tombstones and expired entries included.
    pub fn entry(&self, key: &Key) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// The live value of `key` at `now_ms`.
    pub fn get(&self, key: &Key, now_ms: u64) -> Option<&Value> {
        self.entries.get(key)?.live_value(now_ms)
    }

    /// What this replica has seen.
    pub fn vector(&self) -> &VersionVector {
        &self.vector
    }

    /// Number of entries held, tombstones and expired entries included.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Number of tombstones held.
    pub fn tombstone_count(&self) -> usize {
        self.tombstones.len()
    }

    /// Number of held entries expired at `now_ms` and not yet collected.
    pub fn expired_count(&self, now_ms: u64) -> usize {
        self.expiries.range(..(now_ms.saturating_add(1), Dot { node: NodeId(0), seq: 0 })).count()
    }

    /// Up to `limit` live keys and values starting with `prefix`, in key order, after
    /// `start_after` when given.
    pub fn list(
        &self,
        prefix: &[u8],
        start_after: Option<&Key>,
        limit: usize,
        now_ms: u64,
    ) -> Vec<(Key, Value)> {
        // Start at the prefix, or just after `start_after` when that lies beyond it.
        let start = match start_after {
            Some(key) if key.as_bytes() >= prefix => Bound::Excluded(key.as_bytes()),
            _ => Bound::Included(prefix),
        };
        let mut found = Vec::new();
        let range = self.entries.range::<[u8], _>((start, Bound::Unbounded));
        for (key, entry) in range.take_while(|(key, _)| key.as_bytes().starts_with(prefix)) {
            if found.len() >= limit {
                break;
            }
            if let Some(value) = entry.live_value(now_ms) {
                found.push((key.clone(), value.clone()));
            }
        }
        found
    }

    /// Merges one write made or pushed here: last writer wins by stamp; its dot is recorded as
    /// seen either way.
    pub fn apply(&mut self, update: Update) -> Applied {
        let stamp = update.stamp;
        let applied = self.merge(update);
        if matches!(applied, Applied::Won { .. }) {
            self.horizon.wrote(stamp);
        }
        applied
    }

    fn merge(&mut self, update: Update) -> Applied {
        let dot = update.dot();
        if self.vector.contains(dot) {
            return Applied::Seen;
        }
        self.vector.insert(dot);
        if let Some(held) = self.entries.get(&update.key)
            && held.stamp() >= update.stamp
        {
            return Applied::Superseded;
        }
        let previous = self.remove(&update.key);
        // The held entry (if any) lost to this stamp above, so the write becomes the register.
        let register = LWWReg { val: update.value, marker: update.stamp };
        let entry = Entry { register, seq: update.seq, expires_at_ms: update.expires_at_ms };
        self.insert(update.key, entry);
        Applied::Won { previous }
    }

    /// Merges a delta from a replica whose state has horizon `theirs`: every update, then the
    /// ranges each group covers. The caller checked that this state is safe against what the
    /// sender collected (`Horizon::is_safe_against`).
    pub fn apply_delta(&mut self, delta: Delta, theirs: &Horizon) -> Vec<(Update, Applied)> {
        let mut outcomes = Vec::with_capacity(delta.update_count());
        let before = self.vector.bases().clone();
        let mut absorbed = Vec::new();
        for group in delta.groups {
            for update in group.updates {
                let applied = self.merge(update.clone());
                outcomes.push((update, applied));
            }
            let base = self.vector.base(group.node);
            if group.from <= base && group.to > base {
                absorbed.push(group.node);
            }
            self.vector.advance(group.node, group.from, group.to);
        }
        self.horizon.absorb(&before, self.vector.bases(), &absorbed, theirs);
        outcomes
    }

    /// What this state lacks by collection and what its content is safe against.
    pub(crate) fn horizon(&self) -> &Horizon {
        &self.horizon
    }

    /// Whether this state is safe against every entry another replica collected.
    pub(crate) fn is_safe_against(&self, theirs: &Horizon) -> bool {
        self.horizon.is_safe_against(self.vector.bases(), theirs)
    }

    /// The horizon to send with a delta page, given the receiver's bases once it applied the
    /// page (`cursor`).
    pub(crate) fn page_horizon(&self, cursor: &BTreeMap<NodeId, u64>) -> Horizon {
        self.horizon.for_page(self.vector.bases(), cursor)
    }

    /// The writes a replica with `bases` has not seen, as a page of at most about
    /// `size_target` encoded bytes (a single larger write still goes alone). Returns the page
    /// and whether it is the last one.
    pub fn delta(&self, bases: &BTreeMap<NodeId, u64>, size_target: usize) -> (Delta, bool) {
        let mut delta = Delta::default();
        let mut size = 0;
        for (&node, &ours) in self.vector.bases() {
            let theirs = bases.get(&node).copied().unwrap_or(0);
            if ours <= theirs {
                continue;
            }
            let mut group = Group { node, from: theirs, to: ours, updates: Vec::new() };
            let range = Dot { node, seq: theirs.saturating_add(1) }..=Dot { node, seq: ours };
            for (dot, key) in self.dots.range(range) {
                // Invariant: every dot in the index names a held entry.
                let update = Update::from_entry(key, &self.entries[key]);
                let cost = update.size_bound();
                let first = delta.groups.is_empty() && group.updates.is_empty();
                if size + cost > size_target && !first {
                    group.to = dot.seq - 1;
                    if group.to > group.from {
                        delta.groups.push(group);
                    }
                    return (delta, false);
                }
                size += cost;
                group.updates.push(update);
            }
            delta.groups.push(group);
        }
        (delta, true)
    }

    /// Held writes that a replica with `bases` lacks and that lie above this replica's own
    /// contiguous bases (they arrived out of order, so no range of [`Store::delta`] reaches
    /// them), each in a group of its own that covers just its dot, up to about `size_target`
    /// encoded bytes.
    ///
    /// A delta's ranges tell the receiver that every write in them it does not carry was
    /// replaced by a newer write that the delta carries or that the receiver has seen. A
    /// replacement held here out of order is neither, unless it travels too.
    pub(crate) fn unsettled(
        &self,
        bases: &BTreeMap<NodeId, u64>,
        size_target: usize,
    ) -> Vec<Group> {
        let mut groups = Vec::new();
        let mut size = 0;
        let mut start = Some(Dot { node: NodeId(0), seq: 0 });
        // One range scan per writer that has held entries: skip from writer to writer.
        while let Some((first, _)) = start.and_then(|start| self.dots.range(start..).next()) {
            let node = first.node;
            let floor = self.vector.base(node).max(bases.get(&node).copied().unwrap_or(0));
            if let Some(low) = floor.checked_add(1) {
                let range = Dot { node, seq: low }..=Dot { node, seq: u64::MAX };
                for (dot, key) in self.dots.range(range) {
                    // Invariant: every dot in the index names a held entry.
                    let update = Update::from_entry(key, &self.entries[key]);
                    size += update.size_bound();
                    if size > size_target {
                        return groups;
                    }
                    // `dot.seq > floor >= 0`, so the range below is (seq - 1, seq].
                    let from = dot.seq - 1;
                    groups.push(Group { node, from, to: dot.seq, updates: vec![update] });
                }
            }
            start = node.0.checked_add(1).map(|next| Dot { node: NodeId(next), seq: 0 });
        }
        groups
    }

    /// A replica restored from a snapshot: its held entries (as [`Store::updates`] gave them),
    /// the version vector's `bases` and its horizon. Out-of-order dots are not restored; that
    /// only costs re-sending them.
    pub fn restore(
        updates: impl IntoIterator<Item = Update>,
        bases: BTreeMap<NodeId, u64>,
        horizon: Horizon,
    ) -> Store {
        let mut store = Store::new();
        for update in updates {
            store.merge(update);
        }
        store.vector = VersionVector::from_bases(bases);
        store.horizon = horizon;
        store
    }

    /// Every held entry as an update, in key order: a full snapshot of the replica.
    pub fn updates(&self) -> impl Iterator<Item = Update> + '_ {
        self.entries.iter().map(|(key, entry)| Update::from_entry(key, entry))
    }

    /// Keys whose expiry falls in `(after_ms, up_to_ms]`, in expiry order.
    pub fn expiring(&self, after_ms: u64, up_to_ms: u64) -> Vec<Key> {
        if after_ms >= up_to_ms {
            return Vec::new();
        }
        let low = (after_ms.saturating_add(1), Dot { node: NodeId(0), seq: 0 });
        let high = (up_to_ms.saturating_add(1), Dot { node: NodeId(0), seq: 0 });
        self.expiries.range(low..high).map(|(_, dot)| self.dots[dot].clone()).collect()
    }

    /// The first expiry strictly after `after_ms`, to schedule the next expiry event.
    pub fn next_expiry(&self, after_ms: u64) -> Option<u64> {
        let low = (after_ms.saturating_add(1), Dot { node: NodeId(0), seq: 0 });
        self.expiries.range(low..).next().map(|(expiry, _)| *expiry)
    }

    /// Drops tombstones and expired entries that every member has seen (`stable`) and that
    /// died more than `grace_ms` before `now_ms`. Returns how many were dropped.
    pub fn collect(&mut self, stable: &BTreeMap<NodeId, u64>, now_ms: u64, grace_ms: u64) -> usize {
        self.collect_keys(stable, now_ms, grace_ms).len()
    }

    /// [`Store::collect`], returning the keys whose entries were dropped (a data directory
    /// deletes their rows).
    pub fn collect_keys(
        &mut self,
        stable: &BTreeMap<NodeId, u64>,
        now_ms: u64,
        grace_ms: u64,
    ) -> Vec<Key> {
        let horizon = now_ms.saturating_sub(grace_ms);
        let mut doomed = Vec::new();
        for (&node, &seq) in stable.iter().filter(|(_, seq)| **seq > 0) {
            let range = Dot { node, seq: 1 }..=Dot { node, seq };
            for dot in self.tombstones.range(range) {
                let key = &self.dots[dot];
                if self.entries[key].stamp().hlc.wall_ms() < horizon {
                    doomed.push(key.clone());
                }
            }
        }
        let high = (horizon, Dot { node: NodeId(0), seq: 0 });
        for (_, dot) in self.expiries.range(..high) {
            if dot.seq <= stable.get(&dot.node).copied().unwrap_or(0) {
                doomed.push(self.dots[dot].clone());
            }
        }
        doomed.sort();
        doomed.dedup();
        for key in &doomed {
            if let Some(entry) = self.remove(key) {
                self.horizon.collected(entry.dot(), entry.stamp());
            }
        }
        doomed
    }

    fn insert(&mut self, key: Key, entry: Entry) {
        let dot = entry.dot();
        if entry.register.val.is_none() {
            self.tombstones.insert(dot);
        }
        if let Some(expiry) = entry.expires_at_ms {
            self.expiries.insert((expiry, dot));
        }
        self.dots.insert(dot, key.clone());
        self.entries.insert(key, entry);
    }

    fn remove(&mut self, key: &Key) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        let dot = entry.dot();
        self.dots.remove(&dot);
        self.tombstones.remove(&dot);
        if let Some(expiry) = entry.expires_at_ms {
            self.expiries.remove(&(expiry, dot));
        }
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Hlc;

    fn write(seq: u64, key: &str) -> Update {
        Update {
            key: Key::new(key).unwrap(),
            stamp: Stamp { hlc: Hlc::new(seq, 0), node: NodeId(1) },
            seq,
            value: Some(Value::new("v").unwrap()),
            expires_at_ms: None,
        }
    }

    #[test]
    fn unsettled_writes_travel_alone_each_covering_just_its_own_dot() {
        let mut store = Store::new();
        store.apply(write(1, "a"));
        // Write 2 never arrived: write 3 is held above the contiguous base.
        store.apply(write(3, "b"));
        assert_eq!(store.vector().base(NodeId(1)), 1);
        let groups = store.unsettled(&BTreeMap::new(), usize::MAX);
        assert_eq!(groups.len(), 1);
        assert_eq!((groups[0].from, groups[0].to), (2, 3));
        assert_eq!(groups[0].updates, vec![write(3, "b")]);
        // A receiver whose base already covers it gets nothing, and the size target holds.
        assert!(store.unsettled(&BTreeMap::from([(NodeId(1), 3)]), usize::MAX).is_empty());
        assert!(store.unsettled(&BTreeMap::new(), 1).is_empty());
    }
}
