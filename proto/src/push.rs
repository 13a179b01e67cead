//! Eager push: writes forwarded down each origin's tree, batched per peer.
//!
//! [`Pushes`] owns the per-peer outboxes (writes, the dots whose writer wants an `Ack`, and
//! acknowledgements to send), the batching deadline, and the cache of this node's children
//! in each origin's tree (`tree.rs`). `Node::forward` and `Node::flush` (in `exchange.rs`)
//! connect it to the membership, the counters and the transmit queue, so that this module
//! does not depend on the node that owns it.
//!
//! A write queued while an older write of the same key by the same writer still waits
//! replaces it: the older one is not sent, and the newer carries its sequence number
//! (`message::Replaced`), so the receiver counts it seen. Under last writer wins the older
//! value would only have been overwritten on arrival; a hot key written thousands of times
//! between two flushes goes out once.

use std::collections::BTreeMap;
use std::sync::Arc;

use hashbrown::HashTable;

use crate::clock::NodeId;
use crate::limits::{MEMBERS_MAX, PUSH_QUEUE_SIZE_MAX, REPLACED_SPANS_MAX};
use crate::membership::{MemberState, Members};
use crate::message::{Body, REPLACED_SIZE_MAX, Replaced};
use crate::store::Update;
use crate::version::Dot;

/// What is queued for one peer until the batching window closes: which of the queued writes
/// go to it (indices into `Pushes::updates`) and the acknowledgements to send it.
#[derive(Clone, Debug, Default)]
struct Outbox {
    updates: Vec<usize>,
    acks: Vec<Dot>,
    /// Bound on the encoded size of its writes, checked against `PUSH_QUEUE_SIZE_MAX`.
    size: usize,
}

/// Queued writes whose room a node keeps between batches (per peer, and once for the writes
/// themselves, about 80 bytes each): a steady stream of writes reuses its buffers instead of
/// growing them again for every batch, and a burst gives the rest back.
const PUSH_BATCH_KEPT: usize = 1024;

/// A queued write, whether its writer wants an `Ack` for it, and the writes it replaced.
#[derive(Clone, Debug)]
struct Queued {
    update: Update,
    ack: bool,
    /// The hash of its key in the store's table (`Store::key_hash`).
    key_hash: u64,
    /// The writer's writes this one replaced, as runs `first..=last`, ascending, at most
    /// `REPLACED_SPANS_MAX`.
    replaced: Vec<(u64, u64)>,
    /// Replaced in turn by a newer write queued after it: not sent.
    superseded: bool,
    /// Which outboxes it went to, as a sum of their peers' mixed ids: a write replaces
    /// another only when both went to the same peers, so that no peer misses both.
    peers: u64,
}

impl Queued {
    /// Bound on its encoded size in a push, with what it replaced.
    fn size_bound(&self) -> usize {
        self.update.size_bound() + self.replaced.len() * REPLACED_SIZE_MAX
    }
}

/// The eager-push state of one node: the queued writes, kept once however many peers they go
/// to, the per-peer outboxes, the batching deadline, and the tree cache.
#[derive(Clone, Debug)]
pub(crate) struct Pushes {
    updates: Vec<Queued>,
    /// The newest queued write of each key, by index into `updates`, found by key hash.
    latest: HashTable<usize>,
    outboxes: BTreeMap<NodeId, Outbox>,
    flush_at_ms: Option<u64>,
    /// Something queued is awaited: a write whose writer wants acknowledgements, or an
    /// acknowledgement for one.
    awaited: bool,
    /// This node's children in each origin's tree, computed on first use and forgotten
    /// whenever membership changes (a tree depends only on the live members).
    children: BTreeMap<NodeId, Arc<[NodeId]>>,
    batch_ms: u64,
    fanout: usize,
    /// Size a push message aims at (`Config::delta_page_size_target`).
    page_size: usize,
    /// Sabotage (`Sabotage::push_names_unreplaced`).
    names_unreplaced: bool,
}

/// Messages a flush sends: each body goes to every peer listed with it (peers whose outboxes
/// held the same writes share the message, so it is encoded once).
pub(crate) type Flushed = Vec<(Vec<NodeId>, Body)>;

impl Pushes {
    /// Nothing queued; pushes batched for `batch_ms`, trees `fanout` wide, messages split
    /// near `page_size`.
    pub(crate) fn new(batch_ms: u64, fanout: usize, page_size: usize) -> Pushes {
        Pushes {
            updates: Vec::new(),
            latest: HashTable::new(),
            outboxes: BTreeMap::new(),
            flush_at_ms: None,
            awaited: false,
            children: BTreeMap::new(),
            batch_ms,
            fanout,
            page_size,
            names_unreplaced: false,
        }
    }

    /// With `on`, the sabotage `Sabotage::push_names_unreplaced`.
    pub(crate) fn naming_unreplaced(self, on: bool) -> Pushes {
        Pushes { names_unreplaced: on, ..self }
    }

    /// When the batching window of the queued pushes closes, if any are queued.
    pub(crate) fn flush_at_ms(&self) -> Option<u64> {
        self.flush_at_ms
    }

    /// Whether a client waits on something queued (see [`crate::Node::pushes_awaited`]).
    pub(crate) fn awaited(&self) -> bool {
        self.awaited
    }

    /// This node's (`me`) children in `origin`'s tree over the `Alive` members, cached per
    /// origin so a forwarded write costs a lookup, not a sort of every member.
    pub(crate) fn children(
        &mut self,
        origin: NodeId,
        me: NodeId,
        members: &Members,
    ) -> Arc<[NodeId]> {
        if let Some(children) = self.children.get(&origin) {
            return children.clone();
        }
        let live: Vec<NodeId> = members.peers_in(&[MemberState::Alive]).map(|m| m.id).collect();
        let children: Arc<[NodeId]> = crate::tree::children(origin, me, &live, self.fanout).into();
        // Origins include retired writers; bound the cache by the member limit.
        if self.children.len() >= MEMBERS_MAX {
            self.children.clear();
        }
        self.children.insert(origin, children.clone());
        children
    }

    /// Forgets every cached tree: membership changed, or this node's identity did.
    pub(crate) fn forget_trees(&mut self) {
        self.children.clear();
    }

    /// Queues `update` once for each of `peers`, asking for an `Ack` when `ack`; `key_hash` is
    /// its key's hash (`Store::key_hash`) and `replaced` the runs of its writer's writes it
    /// replaced before it reached this node (a received push's `Replaced`). Returns how many
    /// peers' outboxes were full, so that it was dropped for them (anti-entropy delivers it
    /// instead).
    pub(crate) fn queue(
        &mut self,
        peers: impl IntoIterator<Item = NodeId>,
        queued: Queue<'_>,
        now_ms: u64,
    ) -> u64 {
        let Queue { update, ack, key_hash, replaced } = queued;
        let index = self.updates.len();
        let (mut queued, mut dropped, mut to) = (false, 0, 0u64);
        // Its own sequence number may join the runs of a write that replaces it later.
        let bound = update.size_bound() + (replaced.len() + 1) * REPLACED_SIZE_MAX;
        for peer in peers {
            let outbox = self.outboxes.entry(peer).or_default();
            if outbox.size + bound > PUSH_QUEUE_SIZE_MAX {
                dropped += 1;
                continue;
            }
            outbox.size += bound;
            outbox.updates.push(index);
            queued = true;
            to = to.wrapping_add(mix(peer.0));
        }
        if !queued {
            return dropped;
        }
        self.awaited |= ack;
        let mut new = Queued {
            update: update.clone(),
            ack,
            key_hash,
            replaced: replaced.to_vec(),
            superseded: false,
            peers: to,
        };
        let updates = &mut self.updates;
        match self.latest.find_mut(key_hash, |&i| updates[i].update.key == update.key) {
            Some(latest) => {
                let old = &mut updates[*latest];
                if replace(old, &mut new) {
                    // The newest write takes the slot of the first of its chain, and the slot
                    // at the end (in the outboxes already) holds the replaced one, unsent: a
                    // receiver then meets the runs before the writes queued in between, so
                    // its base can move past them as they come, instead of holding them all
                    // above a gap until the replacing write.
                    std::mem::swap(old, &mut new);
                } else {
                    *latest = index;
                }
                updates.push(new);
            }
            None => {
                updates.push(new);
                self.latest.insert_unique(key_hash, index, |&i| updates[i].key_hash);
            }
        }
        self.schedule(now_ms);
        dropped
    }

    /// Queues an acknowledgement of `dot` for its writer `peer`.
    pub(crate) fn queue_ack(&mut self, peer: NodeId, dot: Dot, now_ms: u64) {
        self.outboxes.entry(peer).or_default().acks.push(dot);
        self.awaited = true;
        self.schedule(now_ms);
    }

    fn schedule(&mut self, now_ms: u64) {
        let at = now_ms + self.batch_ms;
        self.flush_at_ms = Some(self.flush_at_ms.map_or(at, |current| current.min(at)));
    }

    /// Empties every outbox: the messages to send and to whom. Acknowledgements come first,
    /// then pushes, split below the page target (a single large update goes alone); peers
    /// whose outboxes hold the same writes are sent the same messages.
    pub(crate) fn take(&mut self) -> Flushed {
        self.flush_at_ms = None;
        self.awaited = false;
        let mut flushed = Flushed::new();
        let mut shared: BTreeMap<&[usize], Vec<NodeId>> = BTreeMap::new();
        for (&peer, outbox) in &mut self.outboxes {
            if !outbox.acks.is_empty() {
                flushed.push((vec![peer], Body::Ack(std::mem::take(&mut outbox.acks))));
            }
            if !outbox.updates.is_empty() {
                shared.entry(&outbox.updates).or_default().push(peer);
            }
        }
        for (indices, peers) in shared {
            for mut body in bodies(&self.updates, indices, self.page_size) {
                if self.names_unreplaced {
                    name_unreplaced(&mut body);
                }
                flushed.push((peers.clone(), body));
            }
        }
        // The buffers stay for the next batch (within a bound); a peer sent nothing goes.
        self.outboxes.retain(|_, outbox| {
            let used = !outbox.updates.is_empty();
            outbox.updates.clear();
            outbox.updates.shrink_to(PUSH_BATCH_KEPT);
            outbox.size = 0;
            used
        });
        self.updates.clear();
        self.updates.shrink_to(PUSH_BATCH_KEPT);
        self.latest.clear();
        // Empty, so nothing is hashed again.
        self.latest.shrink_to(PUSH_BATCH_KEPT, |_| 0);
        flushed
    }

    /// Drops everything queued: the state the writes came from is gone.
    pub(crate) fn clear(&mut self) {
        self.updates.clear();
        self.latest.clear();
        self.outboxes.clear();
        self.awaited = false;
        self.flush_at_ms = None;
    }
}

/// A write to queue, with what [`Pushes::queue`] needs to know of it.
pub(crate) struct Queue<'a> {
    /// The write.
    pub(crate) update: &'a Update,
    /// Whether its writer wants an `Ack`.
    pub(crate) ack: bool,
    /// Its key's hash in the store's table.
    pub(crate) key_hash: u64,
    /// Runs of its writer's writes it replaced on the way here, `first..=last`, ascending.
    pub(crate) replaced: &'a [(u64, u64)],
}

/// Lets `new`, a write queued after `old` of the same key, replace `old` when nothing stops it:
/// `old` is still to be sent, nobody waits for its `Ack`, it is the same writer's (so `new`
/// is newer: a writer's stamps grow with its sequence numbers), both go to the same peers,
/// and the runs fit. Returns whether it did.
fn replace(old: &mut Queued, new: &mut Queued) -> bool {
    let writer = old.update.stamp.node;
    if old.superseded
        || old.ack
        || writer != new.update.stamp.node
        || old.update.seq >= new.update.seq
        || old.peers != new.peers
    {
        return false;
    }
    // Each run added makes at most one more; only when that could overflow is a copy tried.
    let fits = old.replaced.len() + 1 + new.replaced.len() <= REPLACED_SPANS_MAX;
    let mut runs = if fits { std::mem::take(&mut old.replaced) } else { old.replaced.clone() };
    add_run(&mut runs, (old.update.seq, old.update.seq));
    for &run in &new.replaced {
        add_run(&mut runs, run);
    }
    if runs.len() > REPLACED_SPANS_MAX {
        return false;
    }
    old.superseded = true;
    old.replaced = Vec::new();
    new.replaced = runs;
    true
}

/// Sabotage: names the write just before each write of `body` that names none as replaced.
fn name_unreplaced(body: &mut Body) {
    let Body::Push { updates, replaced, .. } = body else { return };
    for (by, update) in (0..).zip(updates.iter()) {
        if update.seq > 1 && !replaced.iter().any(|r| r.by == by) {
            replaced.push(Replaced { by, first: update.seq - 1, last: update.seq - 1 });
        }
    }
    replaced.sort_by_key(|r| r.by);
}

/// SplitMix64's finaliser: peer ids spread over the bits, so that sums of different sets of
/// peers differ (a rare equal sum only costs a write that anti-entropy delivers instead).
fn mix(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Adds `run` to ascending, disjoint `runs`, joining it to the runs it touches.
fn add_run(runs: &mut Vec<(u64, u64)>, run: (u64, u64)) {
    let at = runs.partition_point(|&(_, last)| last.saturating_add(1) < run.0);
    let (mut first, mut last) = run;
    let mut end = at;
    while end < runs.len() && runs[end].0 <= last.saturating_add(1) {
        first = first.min(runs[end].0);
        last = last.max(runs[end].1);
        end += 1;
    }
    runs.splice(at..end, [(first, last)]);
}

/// The pushes carrying the writes at `indices` of `queued` that no later one replaced, split
/// below `page_size` (a single larger write goes alone), each asking for acknowledgement of
/// those whose writer wants it and naming the writes each replaced.
fn bodies(queued: &[Queued], indices: &[usize], page_size: usize) -> Vec<Body> {
    let mut bodies = Vec::new();
    let mut updates = Vec::with_capacity(indices.len());
    let (mut acks, mut replaced, mut size) = (Vec::new(), Vec::new(), 0);
    for queued in indices.iter().map(|&index| &queued[index]).filter(|q| !q.superseded) {
        let bound = queued.size_bound();
        if size + bound > page_size && !updates.is_empty() {
            bodies.push(Body::Push {
                updates: std::mem::take(&mut updates),
                acks: std::mem::take(&mut acks),
                replaced: std::mem::take(&mut replaced),
            });
            size = 0;
        }
        size += bound;
        if queued.ack {
            acks.push(queued.update.dot());
        }
        let by = updates.len() as u32;
        replaced.extend(queued.replaced.iter().map(|&(first, last)| Replaced { by, first, last }));
        updates.push(queued.update.clone());
    }
    if !updates.is_empty() {
        bodies.push(Body::Push { updates, acks, replaced });
    }
    bodies
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{RngExt, SeedableRng};

    use crate::clock::{Hlc, Stamp};
    use crate::data::{Key, Value};

    fn update(seq: u64) -> Update {
        write(1, seq, &format!("k{seq}"))
    }

    /// Writer `node`'s write number `seq`, of `key`.
    fn write(node: u64, seq: u64, key: &str) -> Update {
        Update {
            key: Key::new(key).unwrap(),
            stamp: Stamp { hlc: Hlc::new(1_000 + seq, 0), node: NodeId(node) },
            seq,
            value: Some(Value::new("v").unwrap()),
            expires_at_ms: None,
        }
    }

    /// Queues `update` for `peers`: a key's hash here is its length, so that keys collide.
    fn queue(pushes: &mut Pushes, peers: &[NodeId], update: &Update, ack: bool) -> u64 {
        let key_hash = update.key.as_bytes().len() as u64;
        let queued = Queue { update, ack, key_hash, replaced: &[] };
        pushes.queue(peers.iter().copied(), queued, 0)
    }

    /// Writes as `(writer, seq)`, and left-out runs as `(by, first, last)`.
    type Dots = Vec<(u64, u64)>;
    type Runs = Vec<(u32, u64, u64)>;

    /// The one push of a flush: its writes' dots and its left-out runs.
    fn only_push(flushed: &Flushed) -> (Dots, Runs) {
        let [(_, Body::Push { updates, replaced, .. })] = flushed.as_slice() else {
            panic!("one push: {flushed:?}");
        };
        let dots = updates.iter().map(|u| (u.stamp.node.0, u.seq)).collect();
        (dots, replaced.iter().map(|r| (r.by, r.first, r.last)).collect())
    }

    fn keys(body: &Body) -> Vec<u64> {
        match body {
            Body::Push { updates, .. } => updates.iter().map(|u| u.seq).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn peers_with_the_same_writes_share_a_message_and_the_others_get_their_own() {
        let (a, b, c) = (NodeId(2), NodeId(3), NodeId(4));
        let mut pushes = Pushes::new(2, 6, 64 * 1024);
        assert_eq!(queue(&mut pushes, &[a, b, c], &update(1), false), 0);
        assert_eq!(queue(&mut pushes, &[a, b], &update(2), true), 0);
        pushes.queue_ack(c, Dot { node: NodeId(9), seq: 7 }, 0);
        assert!(pushes.awaited());
        let flushed = pushes.take();
        assert!(!pushes.awaited() && pushes.flush_at_ms().is_none());
        let to = |peers: &[NodeId]| flushed.iter().filter(|(p, _)| p == peers).collect::<Vec<_>>();
        let ab = to(&[a, b]);
        assert_eq!(ab.len(), 1, "a and b share one push");
        assert_eq!(keys(&ab[0].1), [1, 2]);
        let Body::Push { acks, .. } = &ab[0].1 else { panic!("a push") };
        assert_eq!(acks, &[Dot { node: NodeId(1), seq: 2 }], "only the waited write asks");
        let c_only = to(&[c]);
        assert!(matches!(c_only[0].1, Body::Ack(_)), "acknowledgements go first");
        assert_eq!(keys(&c_only[1].1), [1]);
        assert_eq!(flushed.len(), 3);
        // Nothing stays queued, and the next batch starts from indices 0 again.
        assert!(pushes.take().is_empty());
        queue(&mut pushes, &[a], &update(3), false);
        assert_eq!(keys(&pushes.take()[0].1), [3]);
    }

    #[test]
    fn a_newer_write_of_a_key_goes_in_place_of_the_queued_ones() {
        let peer = NodeId(2);
        let mut pushes = Pushes::new(2, 6, 64 * 1024);
        for (seq, key) in [(1, "hot"), (2, "hot"), (3, "cold"), (4, "hot"), (5, "hot")] {
            queue(&mut pushes, &[peer], &write(1, seq, key), false);
        }
        let (dots, replaced) = only_push(&pushes.take());
        // The last write of the key goes where its first was, ahead of the writes between.
        assert_eq!(dots, [(1, 5), (1, 3)]);
        assert_eq!(replaced, [(0, 1, 2), (0, 4, 4)], "the write at index 0 replaced 1-2 and 4");
        // A key of the same hash ("hat") is another key; the next batch starts afresh.
        for (seq, key) in [(6, "hot"), (7, "hat"), (8, "hot")] {
            queue(&mut pushes, &[peer], &write(1, seq, key), false);
        }
        let (dots, replaced) = only_push(&pushes.take());
        assert_eq!((dots, replaced), (vec![(1, 8), (1, 7)], vec![(0, 6, 6)]));
    }

    /// A relay may queue a writer's writes out of order: an older one queued after a newer
    /// one of its key replaces nothing (and is not replaced by what came before it).
    #[test]
    fn an_older_write_queued_after_a_newer_one_replaces_nothing() {
        let peer = NodeId(2);
        let mut pushes = Pushes::new(2, 6, 64 * 1024);
        queue(&mut pushes, &[peer], &write(1, 5, "key"), false);
        queue(&mut pushes, &[peer], &write(1, 3, "key"), false);
        queue(&mut pushes, &[peer], &write(1, 9, "key"), false);
        let (dots, replaced) = only_push(&pushes.take());
        assert_eq!(dots, [(1, 5), (1, 9)], "9 took the slot of 3, the newest of the key then");
        assert_eq!(replaced, [(1, 3, 3)]);
    }

    #[test]
    fn awaited_writes_and_other_writers_writes_are_not_replaced() {
        let peer = NodeId(2);
        let mut pushes = Pushes::new(2, 6, 64 * 1024);
        queue(&mut pushes, &[peer], &write(1, 1, "key"), true);
        queue(&mut pushes, &[peer], &write(1, 2, "key"), false);
        queue(&mut pushes, &[peer], &write(3, 9, "key"), false);
        let (dots, replaced) = only_push(&pushes.take());
        assert_eq!(dots, [(1, 1), (1, 2), (3, 9)], "an Ack is due for 1; 9 is another writer's");
        assert!(replaced.is_empty());
    }

    /// Random batches of one writer's writes (a few keys, some awaited, some arriving with runs
    /// replaced upstream, peers sometimes missing): every write queued for a peer reaches it
    /// either sent or in exactly one run of a sent write of its key with a higher number,
    /// within the bound on runs; a write goes where the first write it replaced was queued.
    #[test]
    fn every_queued_write_is_sent_or_named_by_its_replacement() {
        let peers = [NodeId(2), NodeId(3)];
        for seed in 0..40 {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let mut pushes = Pushes::new(2, 6, 2 * 1024);
            let mut seq = 0;
            for _batch in 0..5 {
                let mut key_of = BTreeMap::new();
                let mut expected: BTreeMap<NodeId, Vec<u64>> = BTreeMap::new();
                for _ in 0..rng.random_range(1..200) {
                    // Runs replaced upstream: numbers skipped here, of the same key.
                    let upstream = rng.random_range(0..6) == 0;
                    let skipped = if upstream { rng.random_range(1..4) } else { 0 };
                    let first = seq + 1;
                    seq += skipped + 1;
                    let key = format!("k{}", rng.random_range(0..4));
                    let update = write(1, seq, &key);
                    let runs = if upstream { vec![(first, seq - 1)] } else { Vec::new() };
                    for s in first..=seq {
                        key_of.insert(s, key.clone());
                    }
                    let to: Vec<NodeId> =
                        peers.iter().copied().filter(|_| rng.random_range(0..8) != 0).collect();
                    for peer in &to {
                        expected.entry(*peer).or_default().extend(first..=seq);
                    }
                    let ack = rng.random_range(0..10) == 0;
                    let key_hash = key.len() as u64;
                    let queued = Queue { update: &update, ack, key_hash, replaced: &runs };
                    pushes.queue(to, queued, 0);
                }
                let flushed = pushes.take();
                for peer in peers {
                    let mut reached = Vec::new();
                    let mut lows = Vec::new();
                    for (_, body) in flushed.iter().filter(|(to, _)| to.contains(&peer)) {
                        let Body::Push { updates, replaced, .. } = body else { continue };
                        for (index, update) in updates.iter().enumerate() {
                            let mine = replaced.iter().filter(|r| r.by as usize == index);
                            assert!(mine.clone().count() <= REPLACED_SPANS_MAX);
                            let mut low = update.seq;
                            for r in mine {
                                for s in r.first..=r.last {
                                    assert!(s < update.seq, "seed {seed}: {s} below its writer");
                                    assert_eq!(key_of[&s], key_of[&update.seq], "seed {seed}");
                                    reached.push(s);
                                }
                                low = low.min(r.first);
                            }
                            lows.push(low);
                            reached.push(update.seq);
                        }
                        assert!(replaced.windows(2).all(|w| w[0].by <= w[1].by));
                    }
                    assert!(lows.windows(2).all(|w| w[0] < w[1]), "seed {seed}: where it was");
                    reached.sort_unstable();
                    let want = expected.remove(&peer).unwrap_or_default();
                    assert_eq!(reached, want, "seed {seed}: each write once, for {peer}");
                }
            }
        }
    }
}
