//! The replicated map: one last-writer-wins register per key, the dots that name each write,
//! the version vector of what this replica has seen, and the deltas that bring a peer up to it.

use std::collections::BTreeMap;

use crdts::LWWReg;

use crate::clock::{NodeId, Stamp};
use crate::data::{Key, Value};
use crate::horizon::Horizon;
use crate::version::{Dot, VersionVector};

mod expiry;
mod hashed;
mod keyed;
mod list;
mod ordered;
mod orders;
mod slab;
mod travel;

use expiry::NextExpiry;
use hashed::Hashed;
use keyed::Keyed;
pub use list::Listed;
use ordered::{Ordered, Position};
use orders::{BY_DOT, BY_EXPIRY, add, seek, take};
use slab::{Held, Slab};
pub use travel::{Delta, Group, Update};

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
        previous: Option<Replaced>,
    },
}

/// What a winning write replaced: its stamp and whether it held a value until when (the
/// value itself is not copied out: an overwrite only needs to know whether one went away).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replaced {
    /// The replaced write's stamp.
    pub stamp: Stamp,
    /// Whether it was a tombstone.
    pub tombstone: bool,
    /// Its absolute expiry, if it had one.
    pub expires_at_ms: Option<u64>,
}

impl Replaced {
    /// Whether it held a value that was live at `now_ms`.
    pub fn was_live(&self, now_ms: u64) -> bool {
        !self.tombstone && self.expires_at_ms.is_none_or(|at| at > now_ms)
    }
}

/// Updates whose reads [`Store::warm`] makes side by side: enough to keep the processor's
/// outstanding cache misses busy (about 10 to 16 at a time on current x86 cores). Callers warm
/// a batch this many updates at a time, each group just before merging it: warmed all at once,
/// a page of thousands would push its first lines out of the cache before their merges.
pub(crate) const WARM_GROUP: usize = 16;

/// The replicated map of one replica.
///
/// Each entry is packed in one allocation (`slab.rs`); two indexes of 4-byte slab ids order the
/// entries by key (reads, lists, snapshots) and by dot (deltas: a range scan per writer). Only
/// tombstones and entries with an expiry have a third index entry.
#[derive(Clone, Debug, Default)]
pub struct Store {
    /// Every held entry.
    slab: Slab,
    /// Slab ids in key order.
    by_key: Keyed,
    /// The same ids by a hash of their key: lookups of one key (`hashed.rs`).
    by_hash: Hashed,
    /// Slab ids in dot order: writer, then sequence number.
    by_dot: Ordered,
    /// Slab ids of held tombstones in dot order, for collection.
    tombstones: Ordered,
    /// Slab ids of held entries that have an expiry, in expiry order (then sequence number,
    /// then writer), for expiry events and collection.
    expiries: Ordered,
    /// The last answer of [`Store::next_expiry`], while it holds.
    next_expiry: NextExpiry,
    vector: VersionVector,
    /// What this state lacks by collection and what its content is safe against.
    horizon: Horizon,
}

impl Store {
    /// An empty map, its hash table under a fixed secret (tests, benchmarks).
    pub fn new() -> Store {
        Store::default()
    }

    /// An empty map whose hash table hashes under `secret` (a node's `Config::hash_key`).
    pub fn keyed(secret: u64) -> Store {
        Store { by_hash: Hashed::keyed(secret), ..Store::default() }
    }

    /// The place of `key` in the key index, or where it would go.
    fn seek_key(&self, key: &[u8]) -> Position {
        self.by_key.seek(key, |id| self.slab.get(id).key() < key)
    }

    /// The place of `dot` in the dot index, or where it would go.
    fn seek_dot(&self, dot: Dot) -> Position {
        seek(&self.by_dot, &self.slab, &BY_DOT, dot)
    }

    /// The slab id of the entry for `key`.
    fn find(&self, key: &[u8]) -> Option<u32> {
        self.by_hash.find(&self.slab, key)
    }

    fn held(&self, key: &Key) -> Option<Held<'_>> {
        self.find(key.as_bytes()).map(|id| self.slab.get(id))
    }

    /// The entry for `key`, tombstones and expired entries included.
    pub fn entry(&self, key: &Key) -> Option<Entry> {
        self.held(key).map(Held::entry)
    }

    /// The stamp of the entry for `key` (a tombstone's or expired entry's included), without
    /// copying its value.
    pub fn stamp(&self, key: &Key) -> Option<Stamp> {
        self.held(key).map(Held::stamp)
    }

    /// Whether any held key (tombstones and expired entries included) orders at or after
    /// `bound`: when not, no key starts with it. One look at the last key, where a search
    /// for a prefix takes two binary searches.
    pub fn holds_from(&self, bound: &[u8]) -> bool {
        self.by_key.last().is_some_and(|id| self.slab.get(id).key() >= bound)
    }

    /// Whether an entry (tombstones and expired entries included) is held for `key`.
    pub fn contains(&self, key: &Key) -> bool {
        self.find(key.as_bytes()).is_some()
    }

    /// The key of every held entry (tombstones and expired entries included), in key order,
    /// without copying.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.by_key.iter().map(|id| self.slab.get(id).key())
    }

    /// The live value of `key` at `now_ms`.
    pub fn get(&self, key: &Key, now_ms: u64) -> Option<Value> {
        self.held(key)?.live_value(now_ms).map(Value::held)
    }

    /// What this replica has seen.
    pub fn vector(&self) -> &VersionVector {
        &self.vector
    }

    /// Number of entries held, tombstones and expired entries included.
    pub fn entry_count(&self) -> usize {
        debug_assert_eq!(self.by_hash.len(), self.by_key.len(), "both key indexes hold every id");
        self.by_key.len()
    }

    /// Number of tombstones held.
    pub fn tombstone_count(&self) -> usize {
        self.tombstones.len()
    }

    /// Number of held entries expired at `now_ms` and not yet collected.
    pub fn expired_count(&self, now_ms: u64) -> usize {
        self.with_expiry().take_while(|held| held.expires_at_ms() <= Some(now_ms)).count()
    }

    /// Merges one write made or pushed here: last writer wins by stamp; its dot is recorded as
    /// seen either way.
    pub fn apply(&mut self, update: Update) -> Applied {
        let key_hash = self.key_hash(&update.key);
        self.apply_hashed(&update, key_hash)
    }

    /// The hash of `key` in this store's table, for [`Store::apply_hashed`] (and for the
    /// pushes, which find a queued write of the same key by it).
    pub(crate) fn key_hash(&self, key: &Key) -> u64 {
        self.by_hash.hash(key.as_bytes())
    }

    /// Counts the writes of `node` numbered `first..=last` as seen without merging them: a
    /// push left them out because a newer write of the same key by `node`, which the caller
    /// merges next, replaced them (`message::Replaced`). Had they come, that write would have
    /// overwritten them, and what they change past it is the version vector alone.
    pub(crate) fn see_replaced(&mut self, node: NodeId, first: u64, last: u64) {
        self.vector.insert_run(node, first, last);
    }

    /// [`Store::apply`] of a write whose key's hash [`Store::warm`] gave, so that the key is
    /// not hashed again (SipHash: about 230 instructions for a 20-byte key).
    pub(crate) fn apply_hashed(&mut self, update: &Update, key_hash: u64) -> Applied {
        let applied = self.merge(update, key_hash);
        if matches!(applied, Applied::Won { .. }) {
            self.horizon.wrote(update.stamp);
        }
        applied
    }

    /// Merges `update`, whose key's hash is `key_hash`.
    fn merge(&mut self, update: &Update, key_hash: u64) -> Applied {
        let dot = update.dot();
        if self.vector.contains(dot) {
            return Applied::Seen;
        }
        self.vector.insert(dot);
        self.place(update, key_hash)
    }

    /// Puts `update` in its key's slot if its stamp wins there; the version vector is the
    /// caller's to keep. `key_hash` is the hash of its key ([`Hashed::hash`]).
    fn place(&mut self, update: &Update, key_hash: u64) -> Applied {
        let key = update.key.as_bytes();
        debug_assert_eq!(key_hash, self.by_hash.hash(key), "the hash of the update's key");
        let hash = key_hash;
        let Some(id) = self.by_hash.find_hashed(&self.slab, key, hash) else {
            let at = self.seek_key(key);
            let id = self.slab.insert(update);
            self.by_key.insert(&self.slab, at, id);
            self.by_hash.insert(&self.slab, id, hash);
            self.index(id);
            return Applied::Won { previous: None };
        };
        if self.slab.get(id).stamp() >= update.stamp {
            return Applied::Superseded;
        }
        // The held entry lost to this stamp, so the write takes its slot.
        self.unindex(id);
        let previous = self.slab.replace(id, update);
        self.index(id);
        Applied::Won { previous: Some(previous) }
    }

    /// Reads what merging the updates of `group` (at most `WARM_GROUP`) one by one will read first,
    /// side by side, and changes nothing but the cache; returns the hash of each one's key, for
    /// [`Store::apply_hashed`]. Each merge looks its key up (the hash table's control bytes, its
    /// slot, the entry's slot in the slab, the entry) and takes the old entry's dot and expiry out
    /// of their indexes (a chunk each): six or seven reads, each waiting for the one before, most
    /// of them cache misses on a store larger than the cache. On a replica under `SET ... EX 3600`
    /// on 100,000 keys, `perf` put half its CPU in them. Here the group's reads go step by step
    /// side by side, so the processor waits for their misses together, not one after another; the
    /// merges then find them cached. A lone update has nothing to overlap with: it is only hashed.
    pub(crate) fn warm(&self, group: &[Update]) -> [u64; WARM_GROUP] {
        // Invariant: callers take their updates `WARM_GROUP` at a time. A longer group would
        // leave updates without a hash, and a caller zipping the two would skip their merges.
        assert!(group.len() <= WARM_GROUP, "a group of at most WARM_GROUP updates");
        let mut hashes = [0u64; WARM_GROUP];
        for (hash, update) in hashes.iter_mut().zip(group) {
            *hash = self.key_hash(&update.key);
        }
        if group.len() >= 2 {
            self.read_ahead(&hashes[..group.len()]);
        }
        hashes
    }

    /// [`Store::warm`]'s reads for the keys whose hashes are `hashes` (at most `WARM_GROUP`).
    fn read_ahead(&self, hashes: &[u64]) {
        let count = hashes.len();
        let mut ids = [None; WARM_GROUP];
        for (id, &hash) in ids.iter_mut().zip(hashes) {
            *id = self.by_hash.candidate(hash);
        }
        // The entries' slots, then the entries, then a line of each index chunk: loops short
        // enough for the processor to run several of their reads at once.
        let mut held = [None; WARM_GROUP];
        for (held, id) in held.iter_mut().zip(&ids[..count]) {
            *held = id.map(|id| self.slab.get(id));
        }
        // A new key has no old dot or expiry to take out: `None`.
        let mut fences = [None; WARM_GROUP];
        for (fences, held) in fences.iter_mut().zip(&held[..count]) {
            *fences = held.map(|held| {
                let expiry = held.expires_at_ms().map(|_| (BY_EXPIRY.key)(held));
                ((BY_DOT.fence)(&held.dot()), expiry.map(|key| (BY_EXPIRY.fence)(&key)))
            });
        }
        let mut touched = 0u32;
        for &(dot, expiry) in fences[..count].iter().flatten() {
            touched ^= self.by_dot.id_near(dot, BY_DOT.spread);
            if let Some(expiry) = expiry {
                touched ^= self.expiries.id_near(expiry, BY_EXPIRY.spread);
            }
        }
        // The reads must happen: nothing else uses what they read.
        std::hint::black_box(touched);
    }

    /// Merges a delta from a replica whose state has horizon `theirs`: every update, then the
    /// ranges each group covers. The caller checked that this state is safe against what the
    /// sender collected (`Horizon::is_safe_against`).
    pub fn apply_delta(&mut self, delta: Delta, theirs: &Horizon) -> Vec<(Update, Applied)> {
        let mut outcomes = Vec::with_capacity(delta.update_count());
        let before = self.vector.bases().clone();
        let mut absorbed = Vec::new();
        let mut applied = Vec::new();
        for group in delta.groups {
            for updates in group.updates.chunks(WARM_GROUP) {
                let hashes = self.warm(updates);
                let hashed = updates.iter().zip(hashes);
                applied.extend(hashed.map(|(update, key_hash)| self.merge(update, key_hash)));
            }
            outcomes.extend(group.updates.into_iter().zip(applied.drain(..)));
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

    /// The held entries of `node` with a sequence number of at least `low`, in sequence order.
    fn written_by(&self, node: NodeId, low: u64) -> impl Iterator<Item = Held<'_>> + '_ {
        let start = self.seek_dot(Dot { node, seq: low });
        let entries = self.by_dot.iter_from(start).map(|id| self.slab.get(id));
        entries.take_while(move |packed| packed.dot().node == node)
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
            let written = self.written_by(node, theirs.saturating_add(1));
            for packed in written.take_while(|packed| packed.dot().seq <= ours) {
                let update = packed.update();
                let cost = update.size_bound();
                let first = delta.groups.is_empty() && group.updates.is_empty();
                if size + cost > size_target && !first {
                    group.to = update.seq - 1;
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
        while let Some(first) = start.and_then(|start| self.by_dot.get(self.seek_dot(start))) {
            let node = self.slab.get(first).dot().node;
            let floor = self.vector.base(node).max(bases.get(&node).copied().unwrap_or(0));
            if let Some(low) = floor.checked_add(1) {
                for packed in self.written_by(node, low) {
                    let update = packed.update();
                    size += update.size_bound();
                    if size > size_target {
                        return groups;
                    }
                    // `seq > floor >= 0`, so the range below is (seq - 1, seq].
                    let (from, to) = (update.seq - 1, update.seq);
                    groups.push(Group { node, from, to, updates: vec![update] });
                }
            }
            start = node.0.checked_add(1).map(|next| Dot { node: NodeId(next), seq: 0 });
        }
        groups
    }

    /// A replica restored from a snapshot: its held entries (as [`Store::updates`] gave them),
    /// the version vector's `bases` and its horizon, hashing under `secret`. Out-of-order dots
    /// are not restored; that only costs re-sending them.
    pub fn restore(
        secret: u64,
        updates: impl IntoIterator<Item = Update>,
        bases: BTreeMap<NodeId, u64>,
        horizon: Horizon,
    ) -> Store {
        let mut store = Store::keyed(secret);
        // Placed without the dot check: two rows may carry one dot (a peer can send two
        // writes with one dot once the bounded dot cloud forgets), and the restored bases
        // count it, so a row skipped here would never be sent again.
        for update in updates {
            let key_hash = store.key_hash(&update.key);
            store.place(&update, key_hash);
        }
        store.vector = VersionVector::from_bases(bases);
        store.horizon = horizon;
        store
    }

    /// Every held entry as an update, in key order: a full snapshot of the replica.
    pub fn updates(&self) -> impl Iterator<Item = Update> + '_ {
        self.by_key.iter().map(|id| self.slab.get(id).update())
    }

    /// The held entries that have an expiry, in expiry order (then sequence number, then writer).
    fn with_expiry(&self) -> impl Iterator<Item = Held<'_>> + '_ {
        self.expiries.iter().map(|id| self.slab.get(id))
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
            let start = seek(&self.tombstones, &self.slab, &BY_DOT, Dot { node, seq: 1 });
            let held = self.tombstones.iter_from(start).map(|id| self.slab.get(id));
            for held in held.take_while(|held| held.dot() <= Dot { node, seq }) {
                if held.stamp().hlc.wall_ms() < horizon {
                    doomed.push(Key::held(held.key()));
                }
            }
        }
        let expired = self.with_expiry().take_while(|held| held.expires_at_ms() < Some(horizon));
        for held in expired {
            let dot = held.dot();
            if dot.seq <= stable.get(&dot.node).copied().unwrap_or(0) {
                doomed.push(Key::held(held.key()));
            }
        }
        doomed.sort();
        doomed.dedup();
        for key in &doomed {
            if let Some(entry) = self.remove(key.as_bytes()) {
                self.horizon.collected(entry.dot(), entry.stamp());
            }
        }
        doomed
    }

    /// Adds the entry `id` (already in the key index) to the other indexes.
    fn index(&mut self, id: u32) {
        let held = self.slab.get(id);
        if held.is_tombstone() {
            add(&mut self.tombstones, &self.slab, &BY_DOT, id);
        }
        if let Some(expiry_ms) = held.expires_at_ms() {
            add(&mut self.expiries, &self.slab, &BY_EXPIRY, id);
            self.next_expiry.added(expiry_ms);
        }
        add(&mut self.by_dot, &self.slab, &BY_DOT, id);
    }

    /// Takes the entry `id` out of every index but the key index.
    fn unindex(&mut self, id: u32) {
        let held = self.slab.get(id);
        if held.is_tombstone() {
            take(&mut self.tombstones, &self.slab, &BY_DOT, id);
        }
        if let Some(expiry_ms) = held.expires_at_ms() {
            take(&mut self.expiries, &self.slab, &BY_EXPIRY, id);
            self.next_expiry.removed(expiry_ms);
        }
        take(&mut self.by_dot, &self.slab, &BY_DOT, id);
    }

    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let id = self.find(key)?;
        // Found among the ids of the chunks its fence allows, reading no other entry; by a
        // search only when keys sharing their first 16 bytes span chunks.
        let at = self.by_key.find_id(key, id).unwrap_or_else(|| self.seek_key(key));
        debug_assert_eq!(self.by_key.get(at), Some(id), "every held entry is in the key index");
        self.unindex(id);
        self.by_key.remove(&self.slab, at);
        self.by_hash.remove(&self.slab, id);
        Some(self.slab.remove(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Hlc;

    /// Write `seq` of node 1 to `key` (stamped `seq`), of the value "v".
    pub(crate) fn write(seq: u64, key: impl AsRef<[u8]>) -> Update {
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

    /// Expiries at the top of the range share a fence's high half; their index keeps every
    /// entry all the same (a peer can send any expiry; found in review).
    #[test]
    fn the_greatest_expiries_keep_the_expiry_index_whole() {
        let mut store = Store::new();
        let expiring = |key: &str, node: u64, seq: u64, expires_at_ms: Option<u64>| Update {
            stamp: Stamp { hlc: Hlc::new(1_000 + seq, 0), node: NodeId(node) },
            expires_at_ms,
            ..write(seq, key)
        };
        for seq in 1..=1200 {
            store.apply(expiring(&format!("a{seq}"), 5, seq, Some(u64::MAX - 1)));
        }
        store.apply(expiring("b", 3, 1, Some(u64::MAX)));
        // Overwriting `b` takes its entry out of the expiry index: it must be found.
        store.apply(expiring("b", 3, 2, None));
        assert_eq!(store.entry_count(), 1201);
        assert_eq!(store.expiring(u64::MAX - 2, u64::MAX).len(), 1200);
    }

    /// Entries of one writer sharing one expiry (an `EXPIRE` on a whole hash, or a pipelined
    /// stream's writes in one millisecond) span many chunks, but their sequence numbers give
    /// each its own fence: every one is found by its id (`Ordered::find_id`), without the
    /// search that reads entries (which the greatest expiries above still take), and leaves.
    #[test]
    fn entries_sharing_an_expiry_leave_the_expiry_index_one_by_one() {
        let mut store = Store::new();
        let expiring = |key: &str, seq: u64, expires_at_ms: Option<u64>| Update {
            expires_at_ms,
            ..write(seq, key)
        };
        for seq in 1..=3000 {
            store.apply(expiring(&format!("f{seq:04}"), seq, Some(1_000_000)));
        }
        let fence = |id| (BY_EXPIRY.fence)(&(BY_EXPIRY.key)(store.slab.get(id)));
        let found = |id| store.expiries.find_id(fence(id), id, BY_EXPIRY.spread).is_some();
        assert!(store.expiries.iter().all(found));
        for seq in 1..=3000 {
            store.apply(expiring(&format!("f{seq:04}"), 3000 + seq, None));
            if seq % 1000 == 0 {
                assert_eq!(store.expiring(0, u64::MAX).len(), 3000 - seq as usize);
            }
        }
        assert_eq!(store.entry_count(), 3000);
    }

    #[test]
    fn two_writes_sent_with_one_dot_are_each_indexed_and_removed() {
        let mut store = Store::new();
        // Write 1 never arrives, so every later dot goes to the bounded cloud until it is full.
        for seq in 2..(crate::limits::DOT_CLOUD_SIZE_MAX as u64 + 2) {
            store.apply(write(seq, format!("k/{seq}")));
        }
        let seq = 10_000;
        let mut twin = write(seq, "b");
        twin.stamp.hlc = Hlc::new(seq + 1, 0);
        assert!(matches!(store.apply(write(seq, "a")), Applied::Won { .. }));
        assert!(matches!(store.apply(twin.clone()), Applied::Won { .. }), "a full cloud forgets");
        // Each is found, replaced and collected by itself, and the other stays whole.
        let delete = Update { value: None, ..write(seq + 5, "a") };
        store.apply(delete);
        let stable = BTreeMap::from([(NodeId(1), u64::MAX)]);
        assert_eq!(store.collect(&stable, u64::MAX, 0), 1);
        assert_eq!(store.entry(&twin.key).map(|entry| entry.seq), Some(seq));
        // Everything is held above the base (write 1 is missing): each entry travels once.
        assert_eq!(store.unsettled(&BTreeMap::new(), usize::MAX).len(), store.entry_count());
    }

    /// `warm` reads whatever the store holds without panicking (nothing yet, tombstones,
    /// entries with and without an expiry from two writers, absent keys, keys in the old hash
    /// table while it grows), and merges after it give what merges without it give.
    #[test]
    fn warming_a_batch_changes_nothing_it_merges() {
        use rand::rngs::Xoshiro256PlusPlus;
        use rand::{RngExt, SeedableRng};

        let (mut warmed, mut cold) = (Store::new(), Store::new());
        warmed.warm(&[write(1, "absent"), write(2, "absent too")]);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let mut seq = 0;
        for _ in 0..400 {
            let count = rng.random_range(1..=2 * WARM_GROUP);
            let updates: Vec<Update> = (0..count)
                .map(|_| {
                    seq += 1;
                    let node = NodeId(rng.random_range(1..=2));
                    Update {
                        stamp: Stamp { hlc: Hlc::new(seq, 0), node },
                        value: (rng.random_range(0..4) > 0).then(|| Value::new("v").unwrap()),
                        expires_at_ms: (rng.random_range(0..2) == 0)
                            .then(|| rng.random_range(1..1_000_000)),
                        ..write(seq, format!("k{}", rng.random_range(0..3_000)))
                    }
                })
                .collect();
            for group in updates.chunks(WARM_GROUP) {
                let hashes = warmed.warm(group);
                for (update, key_hash) in group.iter().zip(hashes) {
                    assert_eq!(warmed.apply_hashed(update, key_hash), cold.apply(update.clone()));
                }
            }
        }
        assert!(warmed.entry_count() > 2_000, "the hash table grew many times");
        assert!(warmed.updates().eq(cold.updates()));
        assert_eq!(warmed.vector(), cold.vector());
        // Every entry deleted and collected: an emptied store has no candidate to read further.
        let deletes: Vec<Update> = cold
            .updates()
            .map(|held| {
                seq += 1;
                Update { value: None, expires_at_ms: None, ..write(seq, held.key.as_bytes()) }
            })
            .collect();
        for update in &deletes {
            warmed.apply(update.clone());
        }
        warmed.collect(&BTreeMap::from([(NodeId(1), u64::MAX)]), u64::MAX, 0);
        assert_eq!(warmed.entry_count(), 0);
        for group in deletes.chunks(WARM_GROUP) {
            warmed.warm(group);
        }
    }

    #[test]
    fn a_restore_keeps_two_rows_that_carry_one_dot() {
        let mut twin = write(7, "b");
        twin.stamp.hlc = Hlc::new(8, 0);
        let bases = BTreeMap::from([(NodeId(1), 7)]);
        let store = Store::restore(0, [write(7, "a"), twin.clone()], bases, Horizon::default());
        assert_eq!(store.entry_count(), 2, "a row sharing a dot was dropped");
        assert_eq!(store.get(&twin.key, 0), twin.value);
        assert_eq!(store.vector().base(NodeId(1)), 7);
    }
}
