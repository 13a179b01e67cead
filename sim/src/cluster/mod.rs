//! [`Cluster`]: many `chorus_proto::Node`s in one thread, in virtual time.
//!
//! One event queue ordered by (time, sequence) holds message deliveries, node timers and the
//! run's own script (client operations, faults). Each step pops the first entry, sets the
//! clock to it and makes exactly one call into one node, then drains that node as the drain
//! contract asks: its transmits go to the [`Network`], its events and its store to the
//! [`Checker`], and its next timer back into the queue. Nothing here reads the OS clock or
//! iterates a hash container, and every random choice comes from the one seeded generator,
//! so a seed replays the same run, which [`Cluster::trace`] fingerprints.
//!
//! Addresses are `n<slot>`; a slot is a machine whose node may crash and restart at the same
//! address, with a fresh identity, from empty or from its disk (`disk.rs`). The address `seed`
//! resolves to a random running node, as an operator's DNS seed name would.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use chorus_proto::{Addr, Config, Envelope, Event, Lane, Name, Node, NodeId};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, RngExt};

use crate::checker::{Checker, LiveNode, Nodes};
use crate::clock::{ClockModel, START_MS};
use crate::network::Network;
use crate::trace::{TraceHash, describe, hash_event};

mod client;
mod disk;
mod reached;

pub use disk::DiskMode;
pub use reached::Reached;

/// The address that resolves to a random running node (a DNS seed name).
pub const SEED_ADDR: &str = "seed";

/// Consecutive timer calls at one instant after which a node is declared stuck.
const TIMER_SPINS_MAX: u32 = 1_000;

/// What a slot's machine is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Running.
    Up,
    /// Running a graceful leave; removed once it reports `Left`.
    Leaving,
    /// Crashed; may restart.
    Down,
    /// Left for good.
    Gone,
}

/// One machine: an address, a clock, and the node running on it, if any.
#[derive(Debug)]
pub struct Slot {
    /// Where peers reach it.
    pub addr: Addr,
    /// Its wall clock.
    pub clock: ClockModel,
    /// The node, while running.
    pub node: Option<Node>,
    /// What it is doing.
    pub status: Status,
    /// Every identity it ran under, oldest first.
    pub identities: Vec<NodeId>,
    /// The armed timer: (true time, queue sequence), to recognise stale queue entries.
    timer: Option<(u64, u64)>,
    timer_spins: u32,
    /// The node's `exchanges_refused` counter when last drained.
    refused: u64,
}

impl Nodes for Vec<Slot> {
    fn node(&self, slot: usize) -> Option<&Node> {
        self.get(slot)?.node.as_ref()
    }

    fn running(&self) -> Box<dyn Iterator<Item = (usize, &Node)> + '_> {
        Box::new(self.iter().enumerate().filter_map(|(slot, s)| Some((slot, s.node.as_ref()?))))
    }

    fn was(&self, current: NodeId, earlier: NodeId) -> bool {
        current == earlier
            || self.iter().any(|s| {
                let ids = &s.identities;
                let at = |id| ids.iter().position(|i| *i == id);
                at(current).zip(at(earlier)).is_some_and(|(now, then)| then <= now)
            })
    }
}

/// What a step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stepped<S> {
    /// A message from `from` reached `to`'s node.
    Delivered {
        /// Sender slot.
        from: usize,
        /// Receiver slot.
        to: usize,
    },
    /// A message was dropped on arrival (partition, or nobody running there).
    Dropped,
    /// A node's timer fired.
    Timer {
        /// The slot.
        slot: usize,
    },
    /// A script entry is due: the caller acts on it.
    Script(S),
}

/// A message as it left a node, recorded while the tap is on (for benchmarks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tapped {
    /// Sender slot.
    pub from: usize,
    /// Receiver slot.
    pub to: usize,
    /// The encoded envelope.
    pub bytes: Vec<u8>,
}

enum Action<S> {
    Deliver { from: usize, to: usize, bytes: Vec<u8>, corrupted: bool },
    Timer { slot: usize, seq: u64 },
    Script(S),
}

struct Scheduled<S> {
    at: u64,
    seq: u64,
    action: Action<S>,
}

impl<S> PartialEq for Scheduled<S> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<S> Eq for Scheduled<S> {}

impl<S> PartialOrd for Scheduled<S> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<S> Ord for Scheduled<S> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest (time, sequence) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Many nodes, a network between them, a checker watching them, in virtual time.
pub struct Cluster<S> {
    now: u64,
    /// The run's one random generator.
    pub rng: Xoshiro256PlusPlus,
    queue: BinaryHeap<Scheduled<S>>,
    sequence: u64,
    slots: Vec<Slot>,
    /// The network.
    pub network: Network,
    /// The rules.
    pub checker: Checker,
    /// Configuration of every node started; identity fields are filled per node.
    template: Config,
    trace: TraceHash,
    steps: u64,
    log: Option<Vec<String>>,
    tap: Option<Vec<Tapped>>,
    /// The rarer paths reached so far.
    pub reached: Reached,
    /// Per link, when the last bulk message sent on it is delivered.
    bulk_due: BTreeMap<(usize, usize), u64>,
    /// Sabotage: client reads ignore TTLs.
    pub read_ignores_ttl: bool,
    /// Every slot's data directory, when nodes keep them (`--disks`).
    disks: Option<disk::Disks>,
}

impl<S> Cluster<S> {
    /// An empty cluster at [`START_MS`]; nodes get `template` with their own identity.
    pub fn new(
        rng: Xoshiro256PlusPlus,
        network: Network,
        checker: Checker,
        template: Config,
    ) -> Cluster<S> {
        Cluster {
            now: START_MS,
            rng,
            queue: BinaryHeap::new(),
            sequence: 0,
            slots: Vec::new(),
            network,
            checker,
            template,
            trace: TraceHash::new(),
            steps: 0,
            log: None,
            tap: None,
            reached: Reached::default(),
            bulk_due: BTreeMap::new(),
            read_ignores_ttl: false,
            disks: None,
        }
    }

    /// True (virtual) time.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The trace hash so far.
    pub fn trace(&self) -> u64 {
        self.trace.finish()
    }

    /// Steps that called into a node or ran a script entry.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Every slot, by index.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The node running in `slot`, if any.
    pub fn node(&self, slot: usize) -> Option<&Node> {
        self.slots.get(slot)?.node.as_ref()
    }

    /// `slot`'s local clock reading now.
    pub fn local_now(&self, slot: usize) -> u64 {
        self.slots[slot].clock.local(self.now)
    }

    /// Keeps a human-readable line per step, returned by [`Cluster::take_log`].
    pub fn keep_log(&mut self) {
        self.log = Some(Vec::new());
    }

    /// Adds a line to the log, if it is kept.
    pub fn log(&mut self, line: impl FnOnce() -> String) {
        if let Some(log) = &mut self.log {
            let t = self.now - START_MS;
            log.push(format!("{t:>9} {}", line()));
        }
    }

    /// The log lines kept so far.
    pub fn take_log(&mut self) -> Vec<String> {
        self.log.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Records every message sent from now on, for [`Cluster::take_tapped`].
    pub fn tap(&mut self, on: bool) {
        self.tap = on.then(Vec::new);
    }

    /// The messages recorded since the last call.
    pub fn take_tapped(&mut self) -> Vec<Tapped> {
        self.tap.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Mixes a script decision into the trace.
    pub fn trace_word(&mut self, word: u64) {
        self.trace.word(word);
    }

    /// Queues a script entry at true time `at`.
    pub fn schedule(&mut self, at: u64, script: S) {
        self.push(at.max(self.now), Action::Script(script));
    }

    fn push(&mut self, at: u64, action: Action<S>) -> u64 {
        self.sequence += 1;
        self.queue.push(Scheduled { at, seq: self.sequence, action });
        self.sequence
    }

    /// Adds a machine with this clock and nothing running on it; returns its slot.
    pub fn add_slot(&mut self, clock: ClockModel) -> usize {
        let slot = self.slots.len();
        let addr = Addr::new(format!("n{slot}")).expect("a short address is valid");
        self.slots.push(Slot {
            addr,
            clock,
            node: None,
            status: Status::Down,
            identities: Vec::new(),
            timer: None,
            timer_spins: 0,
            refused: 0,
        });
        slot
    }

    /// Starts a node with a fresh identity and empty state in `slot`, joining through
    /// `seeds` (none: it waits to be contacted).
    pub fn start(&mut self, slot: usize, seeds: Vec<Addr>) {
        let config = self.fresh_config(slot, &[]);
        let local = self.local_now(slot);
        let mut node = Node::new(config, local);
        if self.disks.is_some() {
            node = node.keeping_journal();
        }
        if !seeds.is_empty() {
            node.join(local, seeds);
        }
        self.checker.started(slot);
        self.install(slot, node, 0x5354_4152, "start");
    }

    /// The configuration of a new identity for `slot`: one no slot ever had, nor `avoid`.
    fn fresh_config(&mut self, slot: usize, avoid: &[NodeId]) -> Config {
        let mut id = NodeId(self.rng.next_u64());
        let taken = |id: &NodeId| self.slots.iter().any(|s| s.identities.contains(id));
        while id.0 == 0 || taken(&id) || avoid.contains(&id) {
            id = NodeId(self.rng.next_u64());
        }
        let mut config = self.template.clone();
        config.id = id;
        config.name = Name::new(format!("n{slot}")).expect("a short name is valid");
        config.addr = self.slots[slot].addr.clone();
        config.seed = self.rng.next_u64();
        config
    }

    /// Puts a node that just started into `slot`, traced with `tag`, and drains it.
    fn install(&mut self, slot: usize, node: Node, tag: u64, what: &str) {
        let id = node.id();
        let entry = &mut self.slots[slot];
        entry.node = Some(node);
        entry.refused = 0;
        entry.status = Status::Up;
        entry.identities.push(id);
        self.trace.word(tag ^ slot as u64);
        self.trace.word(id.0);
        self.log(|| format!("n{slot} {what} id={id}"));
        self.drain(slot);
    }

    /// Crashes `slot`'s node: its state is lost, messages to it are dropped.
    pub fn crash(&mut self, slot: usize) {
        self.log(|| format!("n{slot} crash"));
        self.trace.word(0x4352_4153 ^ slot as u64);
        self.stop(slot, Status::Down);
    }

    /// Starts a graceful leave at `slot`.
    pub fn leave(&mut self, slot: usize) {
        let local = self.local_now(slot);
        let Some(node) = self.slots[slot].node.as_mut() else { return };
        node.leave(local);
        self.slots[slot].status = Status::Leaving;
        self.log(|| format!("n{slot} leave"));
        self.trace.word(0x4c45_4156 ^ slot as u64);
        self.drain(slot);
    }

    /// Removes a leaving node for good (after `Left`, or when its leave timed out).
    pub fn remove(&mut self, slot: usize) {
        self.log(|| format!("n{slot} removed"));
        self.stop(slot, Status::Gone);
    }

    fn stop(&mut self, slot: usize, status: Status) {
        let entry = &mut self.slots[slot];
        entry.status = status;
        entry.timer = None;
        if entry.node.take().is_none() {
            return;
        }
        // Every identity the slot had: a rename that kept the state kept their writes too.
        let identities = entry.identities.clone();
        self.checker.gone(slot, &identities, &self.slots);
    }

    /// Slots whose node runs and is not leaving: those the liveness checks cover.
    pub fn live(&self) -> Vec<LiveNode<'_>> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.status == Status::Up)
            .filter_map(|(slot, s)| {
                let node = s.node.as_ref()?;
                Some(LiveNode { slot, node, local_ms: s.clock.local(self.now) })
            })
            .collect()
    }

    /// Runs the next queue entry due at or before `until`; `None` when there is none.
    pub fn step(&mut self, until: u64) -> Option<Stepped<S>> {
        loop {
            if self.queue.peek()?.at > until {
                return None;
            }
            let Scheduled { at, action, .. } = self.queue.pop()?;
            self.now = self.now.max(at);
            self.checker.set_now(self.now);
            match action {
                Action::Script(script) => {
                    self.steps += 1;
                    return Some(Stepped::Script(script));
                }
                Action::Timer { slot, seq } => {
                    if self.slots[slot].timer != Some((at, seq)) {
                        continue;
                    }
                    self.steps += 1;
                    self.fire(slot);
                    return Some(Stepped::Timer { slot });
                }
                Action::Deliver { from, to, bytes, corrupted } => {
                    self.steps += 1;
                    return Some(self.deliver(from, to, &bytes, corrupted));
                }
            }
        }
    }

    /// Moves the clock to `until` (after stepping through everything due before it).
    pub fn advance_to(&mut self, until: u64) {
        self.now = self.now.max(until);
        self.checker.set_now(self.now);
    }

    fn fire(&mut self, slot: usize) {
        self.slots[slot].timer = None;
        let local = self.local_now(slot);
        let Some(node) = self.slots[slot].node.as_mut() else { return };
        self.trace.word(0x5449_4d45 ^ slot as u64);
        node.handle_timeout(local);
        let spins = &mut self.slots[slot].timer_spins;
        *spins += 1;
        if *spins > TIMER_SPINS_MAX {
            self.checker.fail("timer-livelock", format!("n{slot} keeps asking for a timer now"));
        }
        self.drain(slot);
    }

    fn deliver(&mut self, from: usize, to: usize, bytes: &[u8], corrupted: bool) -> Stepped<S> {
        if self.network.is_cut(from, to) {
            self.network.stats.cut += 1;
            return Stepped::Dropped;
        }
        let local = self.local_now(to);
        let sender = self.slots[from].addr.clone();
        let Some(node) = self.slots[to].node.as_mut() else { return Stepped::Dropped };
        self.trace.word((from as u64) << 32 | to as u64);
        self.trace.bytes(bytes);
        // Every delivered message goes through the codec, as on a real link.
        let result = Envelope::decode(bytes)
            .and_then(|envelope| node.handle_message(local, sender, envelope));
        self.checker.delivered(to, from, corrupted, &result);
        if self.log.is_some() {
            let what = describe(bytes);
            self.log(|| format!("n{to} <- n{from} {what} {}B", bytes.len()));
        }
        self.drain(to);
        Stepped::Delivered { from, to }
    }

    /// The drain contract: every transmit and event after every call, then the next timer.
    fn drain(&mut self, slot: usize) {
        let local = self.local_now(slot);
        let Some(node) = self.slots[slot].node.as_mut() else { return };
        let mut transmits = Vec::new();
        while let Some(transmit) = node.poll_transmit() {
            transmits.push(transmit);
        }
        let mut events = Vec::new();
        while let Some(event) = node.poll_event() {
            events.push(event);
        }
        let mut left = false;
        for event in &events {
            hash_event(&mut self.trace, event);
            self.checker.event(slot, event, &self.slots);
            match event {
                Event::Reset { reason, .. } if reason.dropped_state() => {
                    // The node dropped its store: what only it held may be lost, including
                    // writes of earlier identities whose renames kept the store.
                    let identities = self.slots[slot].identities.clone();
                    self.checker.gone(slot, &identities, &self.slots);
                }
                Event::Left => left = true,
                _ => {}
            }
        }
        self.count_reached(slot, &events, &transmits);
        self.record_disk(slot);
        if self.log.is_some() {
            for event in &events {
                self.log(|| format!("n{slot} event {event:?}"));
            }
        }
        self.checker.after_call(slot, local, &self.slots);
        if let Some(Event::Reset { new, .. }) =
            events.iter().find(|e| matches!(e, Event::Reset { .. }))
        {
            self.slots[slot].identities.push(*new);
        }
        for transmit in transmits {
            // Every sent message goes through the bounded codec, as on a real link.
            match transmit.encode() {
                Ok(bytes) => {
                    self.checker.transmitted(slot, bytes.len());
                    self.route(slot, &transmit.to, transmit.lane, bytes);
                }
                Err(error) => {
                    let why = format!("n{slot} built a message that does not encode: {error}");
                    self.checker.fail("message-size", why);
                }
            }
        }
        if left {
            self.remove(slot);
        } else {
            self.arm_timer(slot);
        }
    }

    fn arm_timer(&mut self, slot: usize) {
        let now = self.now;
        let entry = &mut self.slots[slot];
        let Some(node) = entry.node.as_ref() else { return };
        let local_at = node.poll_timeout();
        if local_at == u64::MAX {
            entry.timer = None;
            return;
        }
        let at = entry.clock.true_time_of(local_at, now);
        if at > now {
            entry.timer_spins = 0;
        }
        if entry.timer.map(|(armed, _)| armed) == Some(at) {
            return;
        }
        let seq = self.push(at, Action::Timer { slot, seq: self.sequence + 1 });
        self.slots[slot].timer = Some((at, seq));
    }

    fn route(&mut self, from: usize, to: &Addr, lane: Lane, bytes: Vec<u8>) {
        let to = match slot_of(to) {
            Some(to) if to < self.slots.len() => to,
            Some(_) => return,
            None if to.as_bytes() == SEED_ADDR.as_bytes() => {
                let running: Vec<usize> = (0..self.slots.len())
                    .filter(|&s| s != from && self.slots[s].status == Status::Up)
                    .collect();
                if running.is_empty() {
                    return;
                }
                running[self.rng.random_range(0..running.len())]
            }
            None => return,
        };
        if let Some(tap) = &mut self.tap {
            tap.push(Tapped { from, to, bytes: bytes.clone() });
        }
        let copies = self.network.send(&mut self.rng, from, to, bytes);
        for copy in copies {
            let mut at = self.now + copy.delay_ms;
            if lane == Lane::Bulk {
                // The bulk lane is one ordered stream per peer (as in `src/transport.rs`): a
                // page may be lost, never overtaken by the next one.
                let due = self.bulk_due.entry((from, to)).or_insert(0);
                at = at.max(*due);
                *due = at;
            }
            let action = Action::Deliver { from, to, bytes: copy.bytes, corrupted: copy.corrupted };
            self.push(at, action);
        }
    }
}

/// The slot an address `n<slot>` names.
fn slot_of(addr: &Addr) -> Option<usize> {
    let digits = addr.as_bytes().strip_prefix(b"n")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}
