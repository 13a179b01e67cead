//! [`Node`]: one chorus replica as a sans-IO state machine.
//!
//! Inputs are [`Node::handle_message`] and [`Node::handle_timeout`]; commands are
//! [`Node::write`], [`Node::join`] and [`Node::leave`]; outputs are drained
//! with [`Node::poll_transmit`], [`Node::poll_event`] and [`Node::poll_timeout`]. Message
//! handling lives in `exchange.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::clock::{Clock, NodeId};
pub use crate::config::{Config, Sabotage};
use crate::data::{Key, Value};
use crate::disk::DiskLog;
use crate::event::Event;
use crate::limits::*;
use crate::membership::{Member, MemberChange, MemberState, Members};
use crate::message::{Addr, Body, Envelope, ResetReason};
use crate::offset::Offsets;
use crate::push::{Pushes, Queue};
use crate::stats::Stats;
use crate::store::{Applied, Store, Update};
use crate::transmit::{Lane, Transmit};
use crate::wait::{WaitId, WaitLevel, Waits};
use crate::write::{Write, WriteError, Written};

/// One chorus replica. See the crate documentation for the drain contract.
///
/// `Send`, not `Sync`: the store keeps its last expiry answer in a `Cell` (`store/expiry.rs`),
/// and a node is only ever used by one thread at a time, behind its driver's lock.
#[derive(Debug)]
pub struct Node {
    pub(crate) config: Config,
    pub(crate) clock: Clock,
    pub(crate) store: Store,
    pub(crate) members: Members,
    pub(crate) rng: Xoshiro256PlusPlus,
    pub(crate) seeds: Vec<Addr>,
    pub(crate) pushes: Pushes,
    pub(crate) next_round_ms: u64,
    pub(crate) rounds: u64,
    pub(crate) waits: Waits,
    pub(crate) expiry_cursor_ms: u64,
    pub(crate) joined: bool,
    /// Received the last page of a catch-up (or needed none) since it joined.
    pub(crate) caught_up: bool,
    /// The clock self-check: offsets from peers and the verdict.
    pub(crate) offsets: Offsets,
    /// Rounds left during which this node, having dropped its state, is settling.
    pub(crate) settle_rounds: u64,
    pub(crate) leaving: bool,
    pub(crate) left: bool,
    /// The peer a catch-up is pulling pages from, and until when it keeps that role.
    pub(crate) pulling: Option<(NodeId, u64)>,
    /// Writers whose base a push advanced, and when it last did (`Digest::streams`); those
    /// older than `PUSH_STREAM_MS` go each round.
    pub(crate) streams: BTreeMap<NodeId, u64>,
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: Stats,
    /// The journal for a data directory, when the node keeps one (`durable.rs`).
    pub(crate) disk: Option<DiskLog>,
}

// The driver's tasks run on any thread of its runtime: a node must stay `Send`.
const _: () = {
    const fn send<T: Send>() {}
    send::<Node>();
};

/// Whether a push that advanced a writer's base at `at_ms` still makes it a stream at
/// `now_ms`. A reading ahead of now (the wall clock stepped back) counts as stale.
pub(crate) fn streams_recently(at_ms: u64, now_ms: u64) -> bool {
    now_ms.checked_sub(at_ms).is_some_and(|age| age <= PUSH_STREAM_MS)
}

/// Anti-entropy rounds between collection passes.
const COLLECT_EVERY_ROUNDS: u64 = 8;

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
        let mut node = Node {
            clock: Clock::new(config.id, config.clock_skew_ms_max),
            store: Store::keyed(config.hash_key()),
            members,
            rng: Xoshiro256PlusPlus::seed_from_u64(config.seed),
            seeds: Vec::new(),
            pushes: Pushes::new(
                config.push_batch_ms,
                config.tree_fanout,
                config.delta_page_size_target,
            )
            .naming_unreplaced(config.sabotage.push_names_unreplaced),
            next_round_ms: now_ms,
            rounds: 0,
            waits: Waits::new(),
            expiry_cursor_ms: now_ms,
            joined: false,
            caught_up: false,
            offsets: Offsets::default(),
            settle_rounds: 0,
            leaving: false,
            left: false,
            pulling: None,
            streams: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            disk: None,
            config,
        };
        // Without seeds, nobody to compare the clock with: trusted until peers join.
        node.recheck_clock();
        node
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
    pub fn get(&self, key: &Key, now_ms: u64) -> Option<Value> {
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

    /// Whether the node has caught up since it joined: one exchange with a peer whose pages
    /// all arrived (or that had nothing this node lacked).
    pub fn is_caught_up(&self) -> bool {
        self.caught_up
    }

    /// Whether the node is leaving (it takes no new writes).
    pub fn is_leaving(&self) -> bool {
        self.leaving
    }

    // Commands.

    /// Puts or deletes a key, as `write` says. The write is applied here at once (its stamp
    /// beats every write this node has seen) and pushed to peers; with a wait level other
    /// than `Local`, [`Event::WaitDone`] reports later who holds it.
    pub fn write(&mut self, now_ms: u64, write: Write) -> Result<Written, WriteError> {
        self.assert_drained();
        let Write { key, value, ttl_ms, wait, timeout_ms } = write;
        let mut expires_at_ms = None;
        if let Some(value) = &value {
            if value.len() > self.config.value_size_max {
                let size_max = self.config.value_size_max;
                return Err(WriteError::TooLarge { size: value.len(), size_max });
            }
            expires_at_ms = match ttl_ms {
                Some(ttl) if ttl == 0 || ttl > TTL_MS_MAX => return Err(WriteError::InvalidTtl),
                Some(ttl) => Some(now_ms.saturating_add(ttl)),
                None => None,
            };
        }
        self.apply_write(now_ms, key, value, expires_at_ms, wait, timeout_ms)
    }

    /// Starts joining through `seeds`; more rounds go to seeds until a peer answers.
    pub fn join(&mut self, now_ms: u64, seeds: Vec<Addr>) {
        self.assert_drained();
        self.seeds = seeds;
        if !self.seeds.is_empty() && !self.joined {
            // Someone to compare the clock with: not trusted until compared.
            self.offsets.unverify();
        }
        for seed in self.seeds.clone() {
            self.send_syn(seed, now_ms);
        }
        self.after_call(now_ms);
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
                self.send_syn(addr, now_ms);
            }
            self.flush();
            self.check_handoff();
        }
        self.after_call(now_ms);
    }

    /// Ends the wait `id` without an outcome: the client that waited has gone, so its slot
    /// is freed at once instead of at its deadline. The write itself stands and spreads as
    /// any other; peers still acknowledge it, and those acknowledgements find no wait.
    /// Emits nothing; returns whether the wait was still pending.
    pub fn cancel_wait(&mut self, id: WaitId) -> bool {
        self.assert_drained();
        self.waits.cancel(id)
    }

    /// Sends the queued pushes and acknowledgements now instead of when the batching window
    /// closes. A driver that can tell when a burst of calls is over (its scheduler ran every
    /// task that was ready) calls this then: batching by readiness costs an isolated write no
    /// latency, where the window (`push_batch_ms`, whole milliseconds) delays every hop.
    pub fn flush_pushes(&mut self, now_ms: u64) {
        self.assert_drained();
        if self.pushes.flush_at_ms().is_some() {
            self.flush();
        }
        self.after_call(now_ms);
    }

    /// Whether a client waits on a queued push: a write whose writer waits for
    /// acknowledgements, or an acknowledgement of one. A driver that spaces its flushes to
    /// batch more writes per message flushes these at once.
    pub fn pushes_awaited(&self) -> bool {
        self.pushes.awaited()
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
        let waits = self.waits.next_deadline_ms();
        let expiry = self.store.next_expiry(self.expiry_cursor_ms);
        [Some(self.next_round_ms), self.pushes.flush_at_ms(), waits, expiry]
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
        // A round far in the future means the wall clock stepped back (NTP corrected a clock
        // that ran ahead): without this the node would stay silent until it caught up.
        let stepped_back =
            self.next_round_ms > now_ms.saturating_add(2 * self.config.gossip_interval_ms);
        if now_ms >= self.next_round_ms || stepped_back {
            self.round(now_ms);
        }
        self.after_call(now_ms);
    }

    /// Work common to the end of every input and command: flush due pushes, emit expiries,
    /// settle waits.
    pub(crate) fn after_call(&mut self, now_ms: u64) {
        if self.pushes.flush_at_ms().is_some_and(|at| at <= now_ms) {
            self.flush();
        }
        // Until the clock passes the cursor no expiry can fall due (the window is empty).
        let due = now_ms > self.expiry_cursor_ms
            && self.store.next_expiry(self.expiry_cursor_ms).is_some_and(|at| at <= now_ms);
        if due {
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
        self.streams.retain(|_, at_ms| streams_recently(*at_ms, now_ms));
        // Up to a quarter interval of jitter keeps nodes from gossiping in lockstep.
        let jitter = self.rng.random_range(0..=self.config.gossip_interval_ms / 4);
        self.next_round_ms =
            now_ms + self.config.gossip_interval_ms - self.config.gossip_interval_ms / 8 + jitter;
        self.members.beat();
        let mut changes = Vec::new();
        self.members.tick(now_ms, &mut changes);
        self.member_changes(changes);
        let clock_target = self.clock_round(now_ms);
        if let Some(target) = self.gossip_target(clock_target) {
            self.send_syn(target, now_ms);
        }
        if self.rounds.is_multiple_of(COLLECT_EVERY_ROUNDS) {
            self.collect(now_ms);
        }
    }

    /// Picks whom to gossip with: usually a random live peer, sometimes a dead one (to notice
    /// it coming back), and a seed while no peer is live or now and then (to merge clusters
    /// that formed apart); `clock`, the peer to measure, while the clock check wants one.
    fn gossip_target(&mut self, clock: Option<Addr>) -> Option<Addr> {
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
        if clock.is_some() {
            return clock;
        }
        pick(&mut self.rng, &live)
    }

    fn collect(&mut self, now_ms: u64) {
        // Sabotage: everything seen here counts as stable and there is no grace period.
        let (stable, grace_ms) = if self.config.sabotage.collect_unstable {
            (Some(self.store.vector().bases().clone()), 0)
        } else {
            (self.members.stable(self.store.vector().bases()), self.config.tombstone_grace_ms)
        };
        if let Some(stable) = stable {
            let collected = self.store.collect_keys(&stable, now_ms, grace_ms);
            self.journal_collected(collected);
        }
    }

    pub(crate) fn live_peers(&self) -> impl Iterator<Item = &Member> {
        self.members.peers_in(&[MemberState::Alive, MemberState::Suspect])
    }

    fn apply_write(
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
        self.check_clock()?;
        self.check_wait(wait, timeout_ms)?;
        let stamp = self.clock.tick(now_ms);
        let seq = self.store.vector().base(self.config.id) + 1;
        let update = Update { key, stamp, seq, value, expires_at_ms };
        let key_hash = self.store.key_hash(&update.key);
        let applied = self.store.apply_hashed(&update, key_hash);
        // Invariant: the clock observed every merged stamp, so a local stamp beats them all.
        debug_assert!(matches!(applied, Applied::Won { .. }), "a local write always wins");
        self.changed(&update, &applied, now_ms);
        let wait = (wait != WaitLevel::Local).then(|| {
            let deadline_ms = now_ms.saturating_add(timeout_ms);
            self.waits.start(self.config.id, update.dot(), stamp, wait, deadline_ms)
        });
        let ack = wait.is_some();
        self.forward(Queue { update: &update, ack, key_hash, replaced: &[] }, None, now_ms);
        self.after_call(now_ms);
        Ok(Written { stamp, wait })
    }

    /// Refuses a wait that could hold a slot too long or never complete.
    fn check_wait(&self, wait: WaitLevel, timeout_ms: u64) -> Result<(), WriteError> {
        if wait == WaitLevel::Local {
            return Ok(());
        }
        if timeout_ms > WAIT_TIMEOUT_MS_MAX {
            return Err(WriteError::TimeoutTooLong {
                timeout_ms,
                timeout_ms_max: WAIT_TIMEOUT_MS_MAX,
            });
        }
        if let WaitLevel::Count(wanted) = wait {
            // Suspects count: they may still confirm, and are waited for under `All` too.
            let members = self.live_peers().count() + 1;
            if wanted as usize > members {
                return Err(WriteError::TooFewMembers { wanted, members });
            }
        }
        if !self.waits.has_room() {
            return Err(WriteError::TooManyWaits);
        }
        Ok(())
    }

    /// Emits the user-visible change a merge made.
    pub(crate) fn changed(&mut self, update: &Update, applied: &Applied, now_ms: u64) {
        let Applied::Won { previous } = applied else { return };
        self.stats.updates_applied += 1;
        self.journal_upsert(update);
        let key = update.key.clone();
        match &update.value {
            Some(value) if update.expires_at_ms.is_none_or(|at| at > now_ms) => {
                self.emit(Event::Put { key, value: value.clone(), stamp: update.stamp });
            }
            Some(_) => {}
            None => {
                let was_live = previous.is_some_and(|replaced| replaced.was_live(now_ms));
                if was_live {
                    self.emit(Event::Delete { key, stamp: update.stamp });
                }
            }
        }
    }

    /// Queues a message. It is encoded by the driver; every body built here stays within
    /// `MESSAGE_SIZE_MAX` by construction (pages and pushes are sized by the bounds of their
    /// updates), which the simulator checks on every message it encodes.
    pub(crate) fn send(&mut self, to: Addr, lane: Lane, body: Body) {
        self.send_shared([to], lane, body);
    }

    /// Sends one message to each of `to`: the transmits share it (see [`Transmit::message`]).
    pub(crate) fn send_shared(
        &mut self,
        to: impl IntoIterator<Item = Addr>,
        lane: Lane,
        body: Body,
    ) {
        let message = Arc::new(Envelope { sender: self.config.id, body });
        for to in to {
            self.stats.messages_sent += 1;
            self.transmits.push_back(Transmit { to, lane, message: message.clone() });
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
        self.pushes.forget_trees();
        for change in changes {
            self.emit(Event::Member(change));
        }
    }

    /// Ends the waits that reached their level or deadline, reporting each.
    fn settle_waits(&mut self, now_ms: u64) {
        if self.waits.is_empty() {
            return;
        }
        let mut required: BTreeSet<NodeId> = self.members.waited_for().collect();
        required.insert(self.config.id);
        for outcome in self.waits.settle(required, now_ms) {
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
