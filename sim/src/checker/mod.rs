//! [`Checker`]: the rules a run must keep, checked as it goes and once the cluster heals.
//!
//! The checker keeps an oracle: every write any node accepted, by stamp (stamps are unique
//! cluster-wide), with its key, value, sequence number and expiry.
//!
//! **Safety, after every call into a node** (every delivered message, timer, client write):
//! - per key, the stamp a node holds only grows, even across collection: once a node held a
//!   stamp `s` for a key (a value or a tombstone), it never again holds an older one. A node
//!   that held a delete and later holds an older value has resurrected that delete
//!   (`resurrected-delete`); any other step back is `stamp-regressed`. Only a restart without
//!   state or a fence-out reset (which drop the store) start a node's history afresh;
//! - every entry a node holds is a write that was made, byte for byte (`unwritten-value`);
//! - a remote write is merged only within the skew bound of the receiver's clock (`skew-bound`);
//! - a writer reads its own write at once, and never an older one later (`read-your-writes`);
//! - bounds: messages at most `MESSAGE_SIZE_MAX`, no more entries than keys written, no
//!   events dropped, every wait resolved by its deadline, timers that make progress;
//! - an intact message always decodes and a torn one is always refused (`decode`).
//!
//! **Liveness, after the heal** ([`Checker::converged`], [`Checker::collected`]): every live
//! node sees every other live node `Alive`; for every key, all live nodes hold the same stamp,
//! and it is the newest *surviving* write of that key, or nothing when that write is a delete
//! or expired (collected). A write survives unless, when a node's state was lost (crash,
//! removal after a leave, fence-out reset), no other running node had seen it
//! ([`Checker::gone`]): those writes may or may not be present, and the checker accepts either,
//! but nothing older than the newest surviving write. Finally tombstones and expired entries
//! are all collected, and no departed identity is still seen alive.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

mod client;
mod state;

use chorus_proto::limits::MESSAGE_SIZE_MAX;
use chorus_proto::{
    Config, Dot, Event, Key, MemberState, MessageError, Node, NodeId, Stamp, Value, WaitId,
};

/// The nodes by slot, as the checker reads them. The cluster's slots implement it, so the
/// checker depends on no part of the cluster that drives it.
pub trait Nodes {
    /// The node running in `slot`, if any.
    fn node(&self, slot: usize) -> Option<&Node>;
    /// Every running node with its slot.
    fn running(&self) -> Box<dyn Iterator<Item = (usize, &Node)> + '_>;
    /// Whether the node now called `current` once was `earlier` (the same identity, or
    /// one it renamed from).
    fn was(&self, current: NodeId, earlier: NodeId) -> bool;
}

/// One write as the oracle records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The key.
    pub key: Key,
    /// The value, or `None` for a delete.
    pub value: Option<Value>,
    /// The writer's sequence number for it.
    pub seq: u64,
    /// Its absolute expiry, if it had a TTL.
    pub expires_at_ms: Option<u64>,
    /// The slot of the writer.
    pub slot: usize,
}

impl Write {
    /// Whether the write reads as absent at local time `local_ms` (a delete or expired).
    pub fn dead_at(&self, local_ms: u64) -> bool {
        self.value.is_none() || self.expires_at_ms.is_some_and(|at| at <= local_ms)
    }
}

/// A broken rule: which, when, and the particulars.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// A stable identifier of the rule (`stamp-regressed`, `not-converged`, ...).
    pub rule: &'static str,
    /// Virtual milliseconds since the start of the run.
    pub at_ms: u64,
    /// What exactly was seen.
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "broke={} at_ms={} detail=\"{}\"", self.rule, self.at_ms, self.detail)
    }
}

/// A running node as the liveness checks see it.
#[derive(Clone, Copy, Debug)]
pub struct LiveNode<'a> {
    /// Its slot.
    pub slot: usize,
    /// The node.
    pub node: &'a Node,
    /// Its local clock reading now.
    pub local_ms: u64,
}

/// What the checker remembers of one slot's current identity.
#[derive(Clone, Debug, Default)]
struct SlotView {
    /// The newest stamp ever held per key (kept after collection).
    held: BTreeMap<Key, Stamp>,
    /// The newest own write per key.
    own: BTreeMap<Key, Stamp>,
    /// Pending waits and their local deadlines.
    waits: BTreeMap<WaitId, u64>,
    /// Per writer, the vector base already checked against the oracle.
    bases: BTreeMap<NodeId, u64>,
    /// Keys the node held an entry for after the last call.
    present: BTreeSet<Key>,
    /// Counters and counts of the store when its entries were last checked.
    fingerprint: [u64; 5],
    /// Sum of the vector bases when they were last checked.
    bases_sum: u64,
}

/// The oracle and every rule of a run.
#[derive(Clone, Debug)]
pub struct Checker {
    skew_ms_max: u64,
    grace_ms: u64,
    /// Whether to scan every entry after every call (benchmarks with thousands of keys turn
    /// it off and keep the cheap checks).
    deep: bool,
    writes: BTreeMap<Stamp, Write>,
    keys: BTreeMap<Key, BTreeSet<Stamp>>,
    /// Every write by dot: (writer, sequence number) to stamp.
    dots: BTreeMap<(NodeId, u64), Stamp>,
    /// Writes that may be lost: no running node had seen them when a state was lost.
    lost: BTreeSet<Stamp>,
    slots: Vec<SlotView>,
    /// Identities that ended: crashed, left, or reset.
    gone: BTreeSet<NodeId>,
    /// Identities leaving gracefully on calm links: no node may see them `Dead`.
    departing: BTreeSet<NodeId>,
    start_ms: u64,
    now_ms: u64,
    /// When an identity last ended (true time).
    last_gone_ms: u64,
    failure: Option<Failure>,
}

impl Checker {
    /// A checker for nodes configured as `config` (its skew bound and grace period), in a
    /// run starting at `start_ms`.
    pub fn new(config: &Config, start_ms: u64, deep: bool) -> Checker {
        Checker {
            skew_ms_max: config.clock_skew_ms_max,
            grace_ms: config.tombstone_grace_ms,
            deep,
            writes: BTreeMap::new(),
            keys: BTreeMap::new(),
            dots: BTreeMap::new(),
            lost: BTreeSet::new(),
            slots: Vec::new(),
            gone: BTreeSet::new(),
            departing: BTreeSet::new(),
            start_ms,
            now_ms: start_ms,
            last_gone_ms: start_ms,
            failure: None,
        }
    }

    /// Sets the current virtual time, for failure reports.
    pub fn set_now(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// The first broken rule, if any.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// Records a broken rule (only the first one is kept: later ones tend to follow from it).
    pub fn fail(&mut self, rule: &'static str, detail: String) {
        if self.failure.is_none() {
            let at_ms = self.now_ms - self.start_ms;
            self.failure = Some(Failure { rule, at_ms, detail });
        }
    }

    /// Every write made, by stamp.
    pub fn writes(&self) -> &BTreeMap<Stamp, Write> {
        &self.writes
    }

    /// When an identity last ended (crash, removal, reset), in true time.
    pub fn last_gone_ms(&self) -> u64 {
        self.last_gone_ms
    }

    /// How many writes may have been lost (their only holders went away).
    pub fn lost_count(&self) -> usize {
        self.lost.len()
    }

    /// `id` starts a graceful leave on calm links: from now on no node may see it `Dead`.
    pub fn departing(&mut self, id: NodeId) {
        self.departing.insert(id);
    }

    /// A slot started a node with a fresh identity: its history starts afresh.
    pub fn started(&mut self, slot: usize) {
        if self.slots.len() <= slot {
            self.slots.resize_with(slot + 1, SlotView::default);
        }
        self.slots[slot] = SlotView::default();
    }

    /// A node accepted a write: records it and checks that the writer reads it at once.
    #[allow(clippy::too_many_arguments, reason = "one call per accepted write, all facts of it")]
    pub fn wrote(
        &mut self,
        slot: usize,
        node: &Node,
        key: Key,
        value: Option<Value>,
        seq: u64,
        expires_at_ms: Option<u64>,
        stamp: Stamp,
        wait: Option<(WaitId, u64)>,
    ) {
        let write = Write { key: key.clone(), value, seq, expires_at_ms, slot };
        match node.store().entry(&key) {
            Some(entry)
                if entry.stamp() == stamp
                    && entry.register.val == write.value
                    && entry.seq == seq
                    && entry.expires_at_ms == expires_at_ms => {}
            other => self.fail(
                "read-your-writes",
                format!("n{slot} wrote {key:?} at {stamp} but reads {other:?}"),
            ),
        }
        if stamp.node != node.id() {
            self.fail("bound", format!("n{slot} stamped a write {stamp} with another identity"));
        }
        if self.writes.insert(stamp, write).is_some() {
            self.fail("bound", format!("stamp {stamp} issued twice"));
        }
        self.keys.entry(key.clone()).or_default().insert(stamp);
        self.dots.insert((stamp.node, seq), stamp);
        let view = &mut self.slots[slot];
        view.own.insert(key, stamp);
        if let Some((id, deadline_ms)) = wait {
            view.waits.insert(id, deadline_ms);
        }
    }

    /// A node is about to send `size` bytes.
    pub fn transmitted(&mut self, slot: usize, size: usize) {
        if size > MESSAGE_SIZE_MAX {
            self.fail("message-size", format!("n{slot} sent {size} bytes"));
        }
    }

    /// A node handled a message: intact ones must be accepted and torn ones refused.
    pub fn delivered(
        &mut self,
        to: usize,
        from: usize,
        corrupted: bool,
        result: &Result<(), MessageError>,
    ) {
        match (corrupted, result) {
            (false, Err(error)) => self
                .fail("decode", format!("n{to} refused an intact message from n{from}: {error}")),
            (true, Ok(())) => {
                self.fail("decode", format!("n{to} accepted a torn message from n{from}"))
            }
            _ => {}
        }
    }

    /// Checks one event a node emitted.
    pub fn event(&mut self, slot: usize, event: &Event, nodes: &dyn Nodes) {
        match event {
            Event::Put { key, value, stamp } => {
                let known = self.writes.get(stamp);
                if known.is_none_or(|w| w.key != *key || w.value.as_ref() != Some(value)) {
                    self.fail(
                        "unwritten-value",
                        format!("n{slot} reported put {key:?} at {stamp}, which was never written"),
                    );
                }
            }
            Event::Delete { key, stamp } => {
                let known = self.writes.get(stamp);
                if known.is_none_or(|w| w.key != *key || w.value.is_some()) {
                    self.fail(
                        "unwritten-value",
                        format!("n{slot} reported delete {key:?} at {stamp}, never written"),
                    );
                }
            }
            Event::Member(change)
                if change.state == Some(MemberState::Dead)
                    && self.departing.contains(&change.id) =>
            {
                let detail =
                    format!("n{slot} sees {} ({}), which left, as dead", change.id, change.name);
                self.fail("left-seen-dead", detail);
            }
            Event::WaitDone(outcome) => {
                self.wait_done(slot, outcome.id);
                self.confirmed(slot, outcome, nodes);
            }
            _ => {}
        }
    }

    /// A wait ended: it must be one the node started and has not ended yet.
    fn wait_done(&mut self, slot: usize, id: WaitId) {
        if self.slots[slot].waits.remove(&id).is_none() {
            self.fail("bound", format!("n{slot} ended unknown wait {id:?}"));
        }
    }

    /// Checks a node after a call: bounds, then (deep mode) every entry it holds.
    pub fn after_call(&mut self, slot: usize, local_ms: u64, nodes: &dyn Nodes) {
        let Some(node) = nodes.node(slot) else { return };
        let store = node.store();
        if store.entry_count() > self.keys.len() || store.tombstone_count() > store.entry_count() {
            let detail = format!(
                "n{slot} holds {} entries and {} tombstones for {} keys ever written",
                store.entry_count(),
                store.tombstone_count(),
                self.keys.len()
            );
            self.fail("bound", detail);
        }
        if node.stats().events_dropped > 0 {
            self.fail("bound", format!("n{slot} dropped events"));
        }
        let view = &self.slots[slot];
        if let Some((id, deadline)) = view.waits.iter().find(|(_, at)| **at < local_ms) {
            let detail = format!("n{slot} wait {id:?} passed its deadline {deadline} unresolved");
            self.fail("wait-deadline", detail);
        }
        if !self.deep {
            return;
        }
        // Most calls (digests, heartbeats, timers) change no entry. The entries change only
        // when the node applies, collects or resets, which its counters record; the entry
        // and tombstone counts back them up (a change the counters missed is a bug of its
        // own). Skipping unchanged stores halves the cost of a run.
        let stats = node.stats();
        let fingerprint = [
            stats.updates_applied,
            stats.collected,
            stats.resets,
            store.entry_count() as u64,
            store.tombstone_count() as u64,
        ];
        if self.slots[slot].fingerprint != fingerprint {
            self.check_entries(slot, node, local_ms);
            for key in self.vanished(slot, node) {
                self.check_collected(slot, &key, local_ms, nodes);
            }
            self.slots[slot].fingerprint = fingerprint;
        }
        // Bases only grow (a reset starts a new view), so their sum moves when one does.
        let bases: u64 = store.vector().bases().values().fold(0, |sum, b| sum.wrapping_add(*b));
        if self.slots[slot].bases_sum != bases {
            self.check_vector(slot, node);
            self.slots[slot].bases_sum = bases;
        }
    }

    /// Keys the node held an entry for after its last call and holds none for now.
    fn vanished(&mut self, slot: usize, node: &Node) -> Vec<Key> {
        let store = node.store();
        let view = &mut self.slots[slot];
        // Both are in key order: one pass over each, no lookups.
        let mut held = store.keys().peekable();
        let mut vanished = |key: &&Key| {
            while held.next_if(|held| *held < key.as_bytes()).is_some() {}
            held.peek() != Some(&key.as_bytes())
        };
        let gone: Vec<Key> = view.present.iter().filter(&mut vanished).cloned().collect();
        if store.entry_count() != view.present.len() - gone.len() || !gone.is_empty() {
            view.present = store.updates().map(|update| update.key).collect();
        }
        gone
    }

    /// The meaning of a version vector: a base `s` for a writer says that every write of it
    /// with `seq <= s` is applied here or superseded here by a newer write of the same key.
    /// Checked for each base as it advances, against what this node holds or held.
    fn check_vector(&mut self, slot: usize, node: &Node) {
        for (&writer, &base) in node.store().vector().bases() {
            let checked = self.slots[slot].bases.get(&writer).copied().unwrap_or(0);
            if base <= checked {
                continue;
            }
            for (_, stamp) in self.dots.range((writer, checked + 1)..=(writer, base)) {
                let write = &self.writes[stamp];
                let held = self.slots[slot].held.get(&write.key).copied();
                // Holding nothing is also fine when the newest write of the key this vector
                // covers is a delete or expired: it may have been collected before this node
                // ever saw it (it was stable, so every older value is covered too).
                let collected = || {
                    let vector = node.store().vector();
                    let covered = self.keys[&write.key]
                        .iter()
                        .rev()
                        .find(|s| vector.contains(Dot { node: s.node, seq: self.writes[*s].seq }));
                    !node.store().contains(&write.key)
                        && covered.is_some_and(|s| self.writes[s].dead_at(u64::MAX))
                };
                // A page of a multi-page catch-up may cover a write whose replacement (a newer
                // write of the same key, by another writer) comes in a later page: until it
                // does, the vector claims more than the node holds. That is accepted only while
                // the replacement is still held on another node and not yet covered here (a
                // known limit, see ARCHITECTURE.md); a replacement held nowhere still fails.
                let pending = || {
                    let vector = node.store().vector();
                    self.slots.iter().enumerate().any(|(other, view)| {
                        other != slot
                            && view.held.get(&write.key).is_some_and(|newer| {
                                newer > stamp
                                    && self.writes.get(newer).is_some_and(|w| {
                                        !vector.contains(Dot { node: newer.node, seq: w.seq })
                                    })
                            })
                    })
                };
                if held.is_none_or(|held| held < *stamp) && !collected() && !pending() {
                    let detail = format!(
                        "n{slot}'s vector covers {:?} at {stamp} (seq {}) but it holds {held:?}",
                        write.key, write.seq
                    );
                    self.fail("vector-overclaims", detail);
                    return;
                }
            }
            self.slots[slot].bases.insert(writer, base);
        }
    }

    fn check_entries(&mut self, slot: usize, node: &Node, local_ms: u64) {
        let id = node.id();
        for update in node.store().updates() {
            let held = self.slots[slot].held.get(&update.key).copied();
            if held == Some(update.stamp) {
                continue;
            }
            if let Some(held) = held.filter(|held| *held > update.stamp) {
                let was_delete = self.writes.get(&held).is_some_and(|w| w.value.is_none());
                let rule = if was_delete { "resurrected-delete" } else { "stamp-regressed" };
                let key = &update.key;
                let now = update.stamp;
                self.fail(rule, format!("n{slot} held {key:?} at {held}, now holds {now}"));
                return;
            }
            let matches = self.writes.get(&update.stamp).is_some_and(|w| {
                w.key == update.key
                    && w.value == update.value
                    && w.seq == update.seq
                    && w.expires_at_ms == update.expires_at_ms
            });
            if !matches {
                let detail = format!(
                    "n{slot} holds {:?} = {:?} at {} (seq {}), which was never written",
                    update.key, update.value, update.stamp, update.seq
                );
                self.fail("unwritten-value", detail);
                return;
            }
            let wall = update.stamp.hlc.wall_ms();
            if update.stamp.node != id && wall > local_ms + self.skew_ms_max {
                let ahead = wall - local_ms;
                let detail = format!(
                    "n{slot} merged {:?} at {} while its clock read {local_ms}: {ahead} ms ahead",
                    update.key, update.stamp
                );
                self.fail("skew-bound", detail);
                return;
            }
            self.slots[slot].held.insert(update.key, update.stamp);
        }
    }

    /// A node restarted from its disk holds its writes again: none of them may be lost any
    /// more, unless this node's state goes again. So a write acknowledged before a crash that
    /// kept the disk must survive the run, as must every write the disk brought back.
    pub fn restored(&mut self, node: &Node) {
        for update in node.store().updates() {
            self.lost.remove(&update.stamp);
        }
    }

    /// A slot's state is gone (crash, removal after a leave, or a reset that drops the
    /// store): every write that no other running node has seen may now be lost. `identities`
    /// are those whose writes the state held; `nodes` are every slot's running node.
    pub fn gone(&mut self, slot: usize, identities: &[NodeId], nodes: &dyn Nodes) {
        // Per key, the newest stamp some other running node holds or held (a collected
        // tombstone still counts: it was stable, so it covers what it replaced). A write
        // newer than that survives nowhere. A version vector that covers a write is not
        // enough: a delta range can cover a write its sender replaced by one the receiver
        // held back (skew), and then neither is held.
        let mut newest: BTreeMap<&Key, Stamp> = BTreeMap::new();
        for (other, node) in nodes.running().filter(|(other, _)| *other != slot) {
            for update in node.store().updates() {
                if let Some((key, _)) = self.keys.get_key_value(&update.key) {
                    let best = newest.entry(key).or_insert(update.stamp);
                    *best = (*best).max(update.stamp);
                }
            }
            if let Some(view) = self.slots.get(other) {
                for (key, stamp) in &view.held {
                    let best = newest.entry(key).or_insert(*stamp);
                    *best = (*best).max(*stamp);
                }
            }
        }
        let newly: Vec<Stamp> = self
            .writes
            .iter()
            .filter(|(stamp, write)| newest.get(&write.key).is_none_or(|held| held < *stamp))
            .map(|(stamp, _)| *stamp)
            .collect();
        self.lost.extend(newly);
        self.gone.extend(identities.iter().copied());
        self.last_gone_ms = self.now_ms;
        if let Some(view) = self.slots.get_mut(slot) {
            *view = SlotView::default();
        }
    }
}
