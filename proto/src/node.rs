//! [`Node`]: one chorus replica as a sans-IO state machine.
//!
//! Inputs are [`Node::handle_message`] and [`Node::handle_timeout`]; commands are
//! [`Node::put`], [`Node::delete`], [`Node::join`] and [`Node::leave`]; outputs are drained
//! with [`Node::poll_transmit`], [`Node::poll_event`] and [`Node::poll_timeout`]. Message
//! handling lives in `exchange.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, NodeId, Stamp};
use crate::codec;
use crate::data::{Key, Value};
use crate::limits::*;
use crate::membership::{DetectorConfig, Member, MemberChange, MemberState, Members};
use crate::message::{Addr, Body, Envelope, Name, ResetReason};
use crate::store::{Applied, Store, Update};
use crate::version::Dot;
use crate::wait::{Wait, WaitId, WaitLevel, WaitOutcome};

/// How a node behaves; [`Config::new`] fills in the defaults from `limits`.
#[derive(Clone, Debug)]
pub struct Config {
    /// Identity; chosen at random by the driver for a node without state.
    pub id: NodeId,
    /// Name for humans.
    pub name: Name,
    /// Address peers reach this node at.
    pub addr: Addr,
    /// Incarnation: 0 for a fresh identity, higher after a restart that kept state.
    pub incarnation: u64,
    /// Seed of the node's random choices (gossip targets, reset identities).
    pub seed: u64,
    /// Interval between anti-entropy rounds.
    pub gossip_interval_ms: u64,
    /// Eager-push batching window.
    pub push_batch_ms: u64,
    /// Children per node in eager-push trees.
    pub tree_fanout: usize,
    /// Largest accepted lead of a remote stamp over the local wall clock.
    pub clock_skew_ms_max: u64,
    /// Largest value this node accepts from clients.
    pub value_size_max: usize,
    /// How long a collectable tombstone is kept.
    pub tombstone_grace_ms: u64,
    /// Phi at which a member becomes suspect.
    pub phi_suspect: f64,
    /// Phi at which a member becomes dead.
    pub phi_dead: f64,
    /// How long a dead member stays listed before removal.
    pub dead_remove_ms: u64,
    /// How long a left member stays listed before removal.
    pub left_remove_ms: u64,
    /// Size a delta page or a push message aims at (a single larger write goes alone); at
    /// most `DELTA_PAGE_SIZE_TARGET`. Smaller values only make catch-ups take more pages,
    /// which the simulator uses to exercise them.
    pub delta_page_size_target: usize,
    /// Rules broken on purpose, for the simulator's proof that its checkers catch them.
    /// Always off in a real node.
    #[doc(hidden)]
    pub sabotage: Sabotage,
}

/// Switches that make a node break a protocol rule on purpose. They exist only so that
/// `chorus-sim` can prove its checkers report each broken rule (a checker that cannot fail is
/// a defect); every switch is off by default and nothing outside the simulator's sabotage
/// tests turns one on.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sabotage {
    /// Collect tombstones and expired entries at once, without waiting for causal stability
    /// or the grace period: a node that forgets deletes early.
    pub collect_unstable: bool,
    /// Merge remote writes whatever their stamp's lead over the local clock.
    pub skip_skew_guard: bool,
    /// A delta page cut short by the page size still claims each group's whole range, so the
    /// receiver counts writes of later pages seen (and the next page skips them).
    pub page_claims_whole_range: bool,
    /// Acknowledge a pushed write whose writer waits, without applying it.
    pub ack_without_applying: bool,
}

impl Config {
    /// A configuration with every tunable at its default.
    pub fn new(id: NodeId, name: Name, addr: Addr, seed: u64) -> Config {
        Config {
            id,
            name,
            addr,
            incarnation: 0,
            seed,
            gossip_interval_ms: GOSSIP_INTERVAL_MS,
            push_batch_ms: PUSH_BATCH_MS,
            tree_fanout: TREE_FANOUT,
            clock_skew_ms_max: CLOCK_SKEW_MS_MAX,
            value_size_max: VALUE_SIZE_MAX,
            tombstone_grace_ms: TOMBSTONE_GRACE_MS,
            phi_suspect: 3.0,
            phi_dead: 6.0,
            dead_remove_ms: 5 * 60_000,
            left_remove_ms: 60_000,
            delta_page_size_target: DELTA_PAGE_SIZE_TARGET,
            sabotage: Sabotage::default(),
        }
    }

    fn detector(&self) -> DetectorConfig {
        DetectorConfig {
            interval_ms: self.gossip_interval_ms,
            phi_suspect: self.phi_suspect,
            phi_dead: self.phi_dead,
            dead_remove_ms: self.dead_remove_ms,
            left_remove_ms: self.left_remove_ms,
        }
    }
}

/// Which connection lane a message should travel on: catch-up pages go on their own lane so a
/// large sync never delays heartbeats and pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// Digests, pushes, acknowledgements: small and latency-sensitive.
    Control,
    /// Anti-entropy delta pages: large, may queue.
    Bulk,
}

/// A message for the driver to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: Addr,
    /// Which lane.
    pub lane: Lane,
    /// The encoded [`Envelope`].
    pub bytes: Vec<u8>,
}

/// Something the driver (or a watching client) should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A key now has this value (local or replicated write).
    Put {
        /// The key.
        key: Key,
        /// Its new value.
        value: Value,
        /// The write's stamp.
        stamp: Stamp,
    },
    /// A live key was deleted.
    Delete {
        /// The key.
        key: Key,
        /// The tombstone's stamp.
        stamp: Stamp,
    },
    /// A live key reached its expiry.
    Expire {
        /// The key.
        key: Key,
    },
    /// A member changed state, joined, or was removed.
    Member(MemberChange),
    /// A write wait ended.
    WaitDone(WaitOutcome),
    /// The first exchange with a peer completed: the node has joined.
    Joined,
    /// A graceful leave finished its handoff (or had no one to hand off to).
    Left,
    /// The cluster fenced this identity out and the node took a new one; it also dropped its
    /// state if `reason` says so ([`ResetReason::dropped_state`]).
    Reset {
        /// The identity fenced out.
        old: NodeId,
        /// The new identity.
        new: NodeId,
        /// Why.
        reason: ResetReason,
    },
    /// A peer sent a write stamped too far ahead; it was held back.
    Skew {
        /// The peer.
        peer: NodeId,
        /// How far ahead, in milliseconds.
        ahead_ms: u64,
    },
}

/// Why a write was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteError {
    /// The value exceeds this node's limit.
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        size_max: usize,
    },
    /// The TTL exceeds `TTL_MS_MAX` or is zero.
    InvalidTtl,
    /// The node is leaving and takes no new writes.
    ShuttingDown,
    /// Too many waited writes are pending.
    TooManyWaits,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::TooLarge { size, size_max } => {
                write!(f, "value too large: {size} bytes, the maximum is {size_max}")
            }
            WriteError::InvalidTtl => {
                write!(f, "invalid TTL: it must be between 1 ms and 365 days")
            }
            WriteError::ShuttingDown => write!(f, "node shutting down: it takes no new writes"),
            WriteError::TooManyWaits => write!(f, "too many writes waiting for confirmation"),
        }
    }
}

impl std::error::Error for WriteError {}

/// A write the node accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Its stamp.
    pub stamp: Stamp,
    /// The wait to expect a [`Event::WaitDone`] for, unless the level was `Local`.
    pub wait: Option<WaitId>,
}

/// Counters, for `chorus stats` and the simulator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Messages sent.
    pub messages_sent: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Messages received.
    pub messages_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Received messages that failed to decode or validate.
    pub messages_invalid: u64,
    /// Updates merged that changed this replica.
    pub updates_applied: u64,
    /// Updates received that were already seen.
    pub updates_duplicate: u64,
    /// Updates held back because their stamp was too far ahead.
    pub skew_refused: u64,
    /// The largest lead of a refused stamp, in milliseconds.
    pub skew_ms_max: u64,
    /// Refused updates per peer.
    pub skew_by_peer: BTreeMap<NodeId, u64>,
    /// Pushes dropped because a peer's queue was full.
    pub pushes_dropped: u64,
    /// Events dropped because the driver did not drain them.
    pub events_dropped: u64,
    /// Tombstones and expired entries collected.
    pub collected: u64,
    /// Times this node took a new identity (fenced out, or its state dropped).
    pub resets: u64,
    /// Anti-entropy exchanges refused because one side's state was behind the other's
    /// collections.
    pub exchanges_refused: u64,
}

/// Writes queued for one peer, sent together when the batching window closes.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) updates: Vec<Update>,
    pub(crate) acks_wanted: Vec<Dot>,
    pub(crate) acks: Vec<Dot>,
    pub(crate) size: usize,
}

/// One chorus replica. See the crate documentation for the drain contract.
#[derive(Debug)]
pub struct Node {
    pub(crate) config: Config,
    pub(crate) clock: Clock,
    pub(crate) store: Store,
    pub(crate) members: Members,
    pub(crate) rng: Xoshiro256PlusPlus,
    pub(crate) seeds: Vec<Addr>,
    pub(crate) outboxes: BTreeMap<NodeId, Outbox>,
    pub(crate) flush_at_ms: Option<u64>,
    pub(crate) next_round_ms: u64,
    pub(crate) rounds: u64,
    pub(crate) waits: BTreeMap<WaitId, Wait>,
    pub(crate) next_wait: u64,
    pub(crate) expiry_cursor_ms: u64,
    pub(crate) joined: bool,
    /// Rounds left during which this node, having dropped its state, is settling.
    pub(crate) settle_rounds: u64,
    pub(crate) leaving: bool,
    pub(crate) left: bool,
    /// This node's children in each origin's eager-push tree, computed on first use and
    /// cleared whenever membership changes (a tree depends only on the live members).
    pub(crate) tree_children: BTreeMap<NodeId, Vec<NodeId>>,
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: Stats,
}

/// Anti-entropy rounds between collection passes.
const COLLECT_EVERY_ROUNDS: u64 = 8;

/// Rounds after dropping its state during which a node counts as settling: it
/// yields to every established state and refuses, rather than drops again, on a second
/// conflict. Without it, a node that first copied a losing state flipped between two
/// conflicting states as fast as messages arrived (chorus-sim, `--long-partitions`).
const SETTLE_ROUNDS: u64 = 4;

impl Node {
    /// A node that knows only itself, at wall time `now_ms`.
    pub fn new(config: Config, now_ms: u64) -> Node {
        // Pages above the constant could outgrow `MESSAGE_SIZE_MAX`.
        debug_assert!(config.delta_page_size_target <= DELTA_PAGE_SIZE_TARGET);
        let members = Members::new(
            config.id,
            config.name.clone(),
            config.addr.clone(),
            config.incarnation,
            config.detector(),
        );
        Node {
            clock: Clock::new(config.id, config.clock_skew_ms_max),
            store: Store::new(),
            members,
            rng: Xoshiro256PlusPlus::seed_from_u64(config.seed),
            seeds: Vec::new(),
            outboxes: BTreeMap::new(),
            flush_at_ms: None,
            next_round_ms: now_ms,
            rounds: 0,
            waits: BTreeMap::new(),
            next_wait: 1,
            expiry_cursor_ms: now_ms,
            joined: false,
            settle_rounds: 0,
            leaving: false,
            left: false,
            tree_children: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            config,
        }
    }

    // Getters.

    /// This node's identity (it changes only when the cluster fences it out).
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The replicated map.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The live value of `key` at `now_ms`.
    pub fn get(&self, key: &Key, now_ms: u64) -> Option<&Value> {
        self.store.get(key, now_ms)
    }

    /// Every known member, this node first.
    pub fn members(&self) -> Vec<Member> {
        self.members.list()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether the node completed an exchange with a peer since it started or reset.
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// Whether the node is leaving (it takes no new writes).
    pub fn is_leaving(&self) -> bool {
        self.leaving
    }

    // Commands.

    /// Writes `value` under `key`, expiring `ttl_ms` after `now_ms` when given.
    pub fn put(
        &mut self,
        now_ms: u64,
        key: Key,
        value: Value,
        ttl_ms: Option<u64>,
        wait: WaitLevel,
        timeout_ms: u64,
    ) -> Result<Written, WriteError> {
        self.assert_drained();
        if value.len() > self.config.value_size_max {
            let size_max = self.config.value_size_max;
            return Err(WriteError::TooLarge { size: value.len(), size_max });
        }
        let expires_at_ms = match ttl_ms {
            Some(ttl) if ttl == 0 || ttl > TTL_MS_MAX => return Err(WriteError::InvalidTtl),
            Some(ttl) => Some(now_ms.saturating_add(ttl)),
            None => None,
        };
        self.write(now_ms, key, Some(value), expires_at_ms, wait, timeout_ms)
    }

    /// Deletes `key` (writes a tombstone).
    pub fn delete(
        &mut self,
        now_ms: u64,
        key: Key,
        wait: WaitLevel,
        timeout_ms: u64,
    ) -> Result<Written, WriteError> {
        self.assert_drained();
        self.write(now_ms, key, None, None, wait, timeout_ms)
    }

    /// Starts joining through `seeds`; more rounds go to seeds until a peer answers.
    pub fn join(&mut self, now_ms: u64, seeds: Vec<Addr>) {
        self.assert_drained();
        self.start_join(seeds);
        self.after_call(now_ms);
    }

    fn start_join(&mut self, seeds: Vec<Addr>) {
        self.seeds = seeds;
        for seed in self.seeds.clone() {
            self.send_syn(seed);
        }
    }

    /// Starts a graceful leave: no new writes, the departure announced to every live peer, and
    /// [`Event::Left`] once a peer holds every local write (or at once if there is no peer).
    pub fn leave(&mut self, now_ms: u64) {
        self.assert_drained();
        if !self.leaving {
            self.leaving = true;
            self.members.leave();
            let peers: Vec<Addr> = self.live_peers().map(|m| m.addr.clone()).collect();
            for addr in peers {
                self.send_syn(addr);
            }
            self.flush();
            self.check_handoff();
        }
        self.after_call(now_ms);
    }

    /// Sends the queued pushes and acknowledgements now instead of when the batching window
    /// closes. A driver that can tell when a burst of calls is over (its scheduler ran every
    /// task that was ready) calls this then: batching by readiness costs an isolated write no
    /// latency, where the window (`push_batch_ms`, whole milliseconds) delays every hop.
    pub fn flush_pushes(&mut self, now_ms: u64) {
        self.assert_drained();
        if self.flush_at_ms.is_some() {
            self.flush();
        }
        self.after_call(now_ms);
    }

    // Outputs.

    /// The next message to send. Drain until `None` after every input and command.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event. Drain until `None` after every input and command.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> u64 {
        let waits = self.waits.values().map(|wait| wait.deadline_ms).min();
        let expiry = self.store.next_expiry(self.expiry_cursor_ms);
        [Some(self.next_round_ms), self.flush_at_ms, waits, expiry]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(u64::MAX)
    }

    // Inputs.

    /// Runs every timer due at `now_ms`: anti-entropy rounds, push flushes, wait deadlines,
    /// expiry events, failure detection and collection.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.assert_drained();
        if now_ms >= self.next_round_ms {
            self.round(now_ms);
        }
        self.after_call(now_ms);
    }

    /// Work common to the end of every input and command: flush due pushes, emit expiries,
    /// settle waits.
    pub(crate) fn after_call(&mut self, now_ms: u64) {
        if self.flush_at_ms.is_some_and(|at| at <= now_ms) {
            self.flush();
        }
        if self.store.next_expiry(self.expiry_cursor_ms).is_some_and(|at| at <= now_ms) {
            for key in self.store.expiring(self.expiry_cursor_ms, now_ms) {
                self.emit(Event::Expire { key });
            }
        }
        self.expiry_cursor_ms = self.expiry_cursor_ms.max(now_ms);
        self.settle_waits(now_ms);
        // Removed identities that peers still report alive are told to take new ones.
        for (id, addr) in self.members.take_revived() {
            self.send(addr, Lane::Control, Body::Reset { id, reason: ResetReason::Removed });
        }
    }

    fn round(&mut self, now_ms: u64) {
        self.rounds += 1;
        self.settle_rounds = self.settle_rounds.saturating_sub(1);
        // Up to a quarter interval of jitter keeps nodes from gossiping in lockstep.
        let jitter = self.rng.random_range(0..=self.config.gossip_interval_ms / 4);
        self.next_round_ms =
            now_ms + self.config.gossip_interval_ms - self.config.gossip_interval_ms / 8 + jitter;
        self.members.beat();
        let mut changes = Vec::new();
        self.members.tick(now_ms, &mut changes);
        self.member_changes(changes);
        if let Some(target) = self.gossip_target() {
            self.send_syn(target);
        }
        if self.rounds.is_multiple_of(COLLECT_EVERY_ROUNDS) {
            self.collect(now_ms);
        }
    }

    /// Picks whom to gossip with: usually a random live peer, sometimes a dead one (to notice
    /// it coming back), and a seed while no peer is live or now and then (to merge clusters
    /// that formed apart).
    fn gossip_target(&mut self) -> Option<Addr> {
        let live: Vec<Addr> = self.live_peers().map(|m| m.addr.clone()).collect();
        let down: Vec<Addr> =
            self.members.peers_in(&[MemberState::Dead]).map(|m| m.addr.clone()).collect();
        let roll = self.rng.random_range(0..100u32);
        let pick = |rng: &mut Xoshiro256PlusPlus, from: &[Addr]| {
            (!from.is_empty()).then(|| from[rng.random_range(0..from.len())].clone())
        };
        if (live.is_empty() || roll < 5) && !self.seeds.is_empty() {
            return pick(&mut self.rng, &self.seeds);
        }
        if roll < 15 && !down.is_empty() {
            return pick(&mut self.rng, &down);
        }
        pick(&mut self.rng, &live)
    }

    fn collect(&mut self, now_ms: u64) {
        if self.config.sabotage.collect_unstable {
            // Sabotage: everything seen here counts as stable and there is no grace period.
            let seen = self.store.vector().bases().clone();
            self.stats.collected += self.store.collect(&seen, now_ms, 0) as u64;
            return;
        }
        if let Some(stable) = self.members.stable(self.store.vector().bases()) {
            let collected = self.store.collect(&stable, now_ms, self.config.tombstone_grace_ms);
            self.stats.collected += collected as u64;
        }
    }

    pub(crate) fn live_peers(&self) -> impl Iterator<Item = &Member> {
        self.members.peers_in(&[MemberState::Alive, MemberState::Suspect])
    }

    fn write(
        &mut self,
        now_ms: u64,
        key: Key,
        value: Option<Value>,
        expires_at_ms: Option<u64>,
        wait: WaitLevel,
        timeout_ms: u64,
    ) -> Result<Written, WriteError> {
        if self.leaving {
            return Err(WriteError::ShuttingDown);
        }
        if wait != WaitLevel::Local && self.waits.len() >= WAITS_MAX {
            return Err(WriteError::TooManyWaits);
        }
        let stamp = self.clock.tick(now_ms);
        let seq = self.store.vector().base(self.config.id) + 1;
        let update = Update { key, stamp, seq, value, expires_at_ms };
        let applied = self.store.apply(update.clone());
        // Invariant: the clock observed every merged stamp, so a local stamp beats them all.
        debug_assert!(matches!(applied, Applied::Won { .. }), "a local write always wins");
        self.changed(&update, &applied, now_ms);
        let wait = (wait != WaitLevel::Local).then(|| {
            let id = WaitId(self.next_wait);
            self.next_wait += 1;
            let confirmed = BTreeSet::from([self.config.id]);
            let deadline_ms = now_ms.saturating_add(timeout_ms);
            self.waits.insert(
                id,
                Wait { id, dot: update.dot(), stamp, level: wait, deadline_ms, confirmed },
            );
            id
        });
        let ack = wait.is_some();
        self.forward(&update, ack, None, now_ms);
        self.after_call(now_ms);
        Ok(Written { stamp, wait })
    }

    /// Emits the user-visible change a merge made.
    pub(crate) fn changed(&mut self, update: &Update, applied: &Applied, now_ms: u64) {
        let Applied::Won { previous } = applied else { return };
        self.stats.updates_applied += 1;
        let key = update.key.clone();
        match &update.value {
            Some(value) if update.expires_at_ms.is_none_or(|at| at > now_ms) => {
                self.emit(Event::Put { key, value: value.clone(), stamp: update.stamp });
            }
            Some(_) => {}
            None => {
                let was_live =
                    previous.as_ref().is_some_and(|entry| entry.live_value(now_ms).is_some());
                if was_live {
                    self.emit(Event::Delete { key, stamp: update.stamp });
                }
            }
        }
    }

    /// Queues `update` for this node's children in its origin's tree.
    pub(crate) fn forward(
        &mut self,
        update: &Update,
        ack: bool,
        from: Option<NodeId>,
        now_ms: u64,
    ) {
        let origin = update.stamp.node;
        for child in self.children(origin) {
            if Some(child) == from || child == origin {
                continue;
            }
            let outbox = self.outboxes.entry(child).or_default();
            if outbox.size + update.size_bound() > PUSH_QUEUE_SIZE_MAX {
                self.stats.pushes_dropped += 1;
                continue;
            }
            outbox.size += update.size_bound();
            outbox.updates.push(update.clone());
            if ack {
                outbox.acks_wanted.push(update.dot());
            }
            self.schedule_flush(now_ms);
        }
    }

    pub(crate) fn schedule_flush(&mut self, now_ms: u64) {
        let at = now_ms + self.config.push_batch_ms;
        self.flush_at_ms = Some(self.flush_at_ms.map_or(at, |current| current.min(at)));
    }

    /// Sends every queued push and acknowledgement.
    pub(crate) fn flush(&mut self) {
        self.flush_at_ms = None;
        let outboxes = std::mem::take(&mut self.outboxes);
        for (peer, mut outbox) in outboxes {
            let Some(addr) = self.members.peer(peer).map(|m| m.addr.clone()) else { continue };
            if !outbox.acks.is_empty() {
                self.send(addr.clone(), Lane::Control, Body::Ack(std::mem::take(&mut outbox.acks)));
            }
            // Split into messages below the page target; a single large update goes alone.
            let mut updates = Vec::new();
            let mut size = 0;
            for update in outbox.updates {
                let full = size + update.size_bound() > self.config.delta_page_size_target;
                if full && !updates.is_empty() {
                    self.send_push(addr.clone(), std::mem::take(&mut updates), &outbox.acks_wanted);
                    size = 0;
                }
                size += update.size_bound();
                updates.push(update);
            }
            if !updates.is_empty() {
                self.send_push(addr, updates, &outbox.acks_wanted);
            }
        }
    }

    fn send_push(&mut self, to: Addr, updates: Vec<Update>, acks_wanted: &[Dot]) {
        let acks = acks_wanted
            .iter()
            .filter(|dot| updates.iter().any(|u| u.dot() == **dot))
            .copied()
            .collect();
        self.send(to, Lane::Control, Body::Push { updates, acks });
    }

    /// This node's children in `origin`'s tree over its live view, cached per origin so a
    /// forwarded write costs a lookup, not a sort of every member.
    fn children(&mut self, origin: NodeId) -> Vec<NodeId> {
        if let Some(children) = self.tree_children.get(&origin) {
            return children.clone();
        }
        let live: Vec<NodeId> =
            self.members.peers_in(&[MemberState::Alive]).map(|m| m.id).collect();
        let children =
            crate::tree::children(origin, self.config.id, &live, self.config.tree_fanout);
        // Origins include retired writers; bound the cache by the member limit.
        if self.tree_children.len() >= MEMBERS_MAX {
            self.tree_children.clear();
        }
        self.tree_children.insert(origin, children.clone());
        children
    }

    /// Encodes and queues a message.
    pub(crate) fn send(&mut self, to: Addr, lane: Lane, body: Body) {
        let envelope = Envelope { sender: self.config.id, body };
        match codec::encode(&envelope) {
            Ok(bytes) => {
                self.stats.messages_sent += 1;
                self.stats.bytes_sent += bytes.len() as u64;
                self.transmits.push_back(Transmit { to, lane, bytes });
            }
            // Every body is built within the limits; failing here is a bug in this crate.
            Err(error) => debug_assert!(false, "an outgoing message did not encode: {error}"),
        }
    }

    pub(crate) fn emit(&mut self, event: Event) {
        if self.events.len() >= EVENTS_MAX {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    pub(crate) fn member_changes(&mut self, changes: Vec<MemberChange>) {
        if changes.is_empty() {
            return;
        }
        self.tree_children.clear();
        for change in changes {
            self.emit(Event::Member(change));
        }
    }

    /// Marks `dots` as held by `peer` and completes the waits that reach their level.
    pub(crate) fn confirm(&mut self, peer: NodeId, dots: impl Iterator<Item = Dot>) {
        for dot in dots {
            for wait in self.waits.values_mut().filter(|wait| wait.dot == dot) {
                wait.confirmed.insert(peer);
            }
        }
    }

    /// Confirms every wait whose write `peer`'s bases cover.
    pub(crate) fn confirm_by_bases(&mut self, peer: NodeId, bases: &BTreeMap<NodeId, u64>) {
        for wait in self.waits.values_mut() {
            if bases.get(&wait.dot.node).is_some_and(|seq| *seq >= wait.dot.seq) {
                wait.confirmed.insert(peer);
            }
        }
    }

    fn settle_waits(&mut self, now_ms: u64) {
        if self.waits.is_empty() {
            return;
        }
        let mut required: BTreeSet<NodeId> = self.members.waited_for().collect();
        required.insert(self.config.id);
        let done: Vec<WaitOutcome> = self
            .waits
            .values()
            .filter_map(|wait| wait.outcome(&required, now_ms >= wait.deadline_ms))
            .collect();
        for outcome in done {
            self.waits.remove(&outcome.id);
            self.emit(Event::WaitDone(outcome));
        }
    }

    /// Ends a leave once some live peer reported bases covering every local write.
    pub(crate) fn check_handoff(&mut self) {
        if !self.leaving || self.left {
            return;
        }
        let own = self.store.vector().base(self.config.id);
        let id = self.config.id;
        let held = own == 0
            || self.live_peers().count() == 0
            || self.live_peers().any(|m| {
                self.members.bases(m.id).is_some_and(|b| b.get(&id).copied().unwrap_or(0) >= own)
            });
        if held {
            self.left = true;
            self.emit(Event::Left);
        }
    }

    /// Takes a new identity and rejoins through every address it knew. The state goes too
    /// when `reason` says it is behind a peer's collections; otherwise it stays, and the
    /// horizon check of the next exchanges decides whether it may (a removed identity that
    /// missed no collected delete loses nothing).
    pub(crate) fn renew(&mut self, now_ms: u64, reason: ResetReason, via: Addr) {
        let old = self.config.id;
        let mut new = NodeId(self.rng.next_u64());
        while new == old || new.0 == 0 || self.members.is_removed(new) {
            new = NodeId(self.rng.next_u64());
        }
        if reason.dropped_state() {
            self.settle_rounds = SETTLE_ROUNDS;
            for wait in std::mem::take(&mut self.waits).into_values() {
                let outcome = wait.outcome(&BTreeSet::new(), true);
                if let Some(outcome) = outcome {
                    self.emit(Event::WaitDone(WaitOutcome { complete: false, ..outcome }));
                }
            }
            self.store = Store::new();
            self.outboxes.clear();
            self.flush_at_ms = None;
            self.joined = false;
            self.expiry_cursor_ms = now_ms;
        }
        self.config.id = new;
        self.config.incarnation = 0;
        let last = self.clock.last();
        self.clock = Clock::new(new, self.config.clock_skew_ms_max);
        let _ = self.clock.observe(last, last.wall_ms());
        self.members.rename(new, now_ms);
        self.tree_children.clear();
        self.stats.resets += 1;
        self.emit(Event::Reset { old, new, reason });
        // Only through the peer that prompted it: after a drop that is the peer whose state
        // won, and messages to every known address at once would come back as a storm.
        self.send_syn(via);
    }

    /// Whether this node dropped its state so recently that what it holds is only a partial
    /// copy: it must not outrank an established state, nor drop again (it refuses instead).
    pub(crate) fn is_settling(&self) -> bool {
        self.settle_rounds > 0
    }

    /// The drain contract: outputs of the previous call were all taken.
    pub(crate) fn assert_drained(&self) {
        debug_assert!(
            self.transmits.is_empty(),
            "drain contract: call poll_transmit until None after every input and command"
        );
    }
}
