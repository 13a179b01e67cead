//! The driver: the `proto::Node` of a running node, and the only code that calls it.
//!
//! It feeds the node wall-clock time, received messages, client operations and timer
//! expiries, and after every call drains the node's outputs (the drain contract of
//! `chorus-proto`): events answer waiting clients and feed watchers while the lock is held;
//! transmits and log lines are taken out and handled after it is released.
//!
//! The node sits behind one [`TimedMutex`], and the task that has something for it calls it
//! directly: a front end's task answers its own request, a gossip stream task merges its own
//! message, and the timer task runs the node's timers. A request thus costs no hop to another
//! task and back, and every call still sees the node alone, so reads on a node see every write
//! it accepted before (read-your-writes). No call awaits while holding the lock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chorus_proto::rpc::ChangeKind;
use chorus_proto::{Addr, Envelope, Event, Node, Transmit, WaitId};
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::Instant;

use super::clock::WallClock;
use super::history::History;
use super::lock::{Guard, Purpose, TimedMutex};
use super::outcome::Written;
use super::ready::{Readiness, ReadyInputs};
use super::skew::SkewLog;
use crate::gossip::{Inbound, Transport, TransportStats};
use crate::store::Persist;

/// The driver shared by every task that calls into the node. A panic inside the node poisons
/// the lock; from then on every call fails as if the node had stopped, and the timer task
/// ends, which `NodeHandle::failed` reports.
pub struct Driver {
    state: TimedMutex<State>,
    /// Sends transmits to peers; its own lanes are behind their own small lock.
    transport: Transport,
    /// Wakes the timer task when a call moved the node's next deadline earlier.
    pub(super) rearm: Notify,
    pub(super) transport_stats: Arc<TransportStats>,
    pub(super) started: Instant,
    /// Where wall time is read: the system, or tokio's clock in tests.
    pub(super) clock: WallClock,
    /// Counters the front ends keep by name (unknown Redis commands...), reported by stats.
    pub(super) named: std::sync::Mutex<BTreeMap<String, u64>>,
    /// The data directory and its writer, with `--data-dir`.
    pub(super) persist: Option<Persist>,
}

/// Distinct names [`Driver::count`] keeps; later names count under `<prefix>other`.
pub const NAMED_COUNTERS_MAX: usize = 256;

/// What the lock guards: the protocol node and the state that must change with it.
pub struct State {
    pub(super) node: Node,
    pub(super) waits: BTreeMap<WaitId, oneshot::Sender<Written>>,
    pub(super) history: History,
    /// What readiness is computed from, and where it is published after every step.
    pub(super) ready_inputs: ReadyInputs,
    ready: watch::Sender<Readiness>,
    pub(super) leaving: Vec<oneshot::Sender<()>>,
    skew: SkewLog,
    clock: WallClock,
    /// The deadline (wall ms) the timer task sleeps until.
    pub(super) timer_ms: u64,
    /// Outputs taken from the node, handled once the lock is released.
    outbox: Vec<Transmit>,
    /// Batches taken for the data directory so far (`persist.rs`).
    pub(super) batches_taken: u64,
    /// Something worth writing beyond the journal changed (membership, identity).
    pub(super) persist_wanted: bool,
}

impl Driver {
    /// A driver for `node`, shared.
    pub fn new(
        node: Node,
        transport: Transport,
        ready: watch::Sender<Readiness>,
        transport_stats: Arc<TransportStats>,
        clock: WallClock,
        persist: Option<Persist>,
    ) -> Arc<Driver> {
        let joined = ready.borrow().is_ok();
        let state = State {
            node,
            waits: BTreeMap::new(),
            history: History::new(),
            ready_inputs: ReadyInputs { joined, draining: false },
            ready,
            leaving: Vec::new(),
            skew: SkewLog::default(),
            clock,
            timer_ms: 0,
            outbox: Vec::new(),
            batches_taken: 0,
            persist_wanted: false,
        };
        let driver = Arc::new(Driver {
            state: TimedMutex::new(state),
            transport,
            rearm: Notify::new(),
            transport_stats,
            started: Instant::now(),
            clock,
            named: std::sync::Mutex::default(),
            persist,
        });
        // Whatever the node did before the driver existed (a join) goes out now.
        if let Some(state) = driver.lock(Purpose::Control) {
            driver.settle(state);
        }
        driver
    }

    /// The node's state, locked for `purpose`, unless a panic inside it poisoned the lock.
    pub(super) fn lock(&self, purpose: Purpose) -> Option<Guard<'_, State>> {
        self.state.lock(purpose)
    }

    /// The lock's hold figures by purpose.
    pub(super) fn lock_figures(&self) -> impl Iterator<Item = (Purpose, super::lock::HoldFigures)> {
        self.state.figures().into_iter()
    }

    /// After a call: drains the node's outputs, wakes the timer task if the node's next
    /// deadline is now earlier than the one it sleeps until (a push batch to flush), lets go
    /// of the lock, then sends what the node transmitted.
    pub(super) fn settle(&self, mut state: Guard<'_, State>) {
        state.drain();
        let next = state.node.poll_timeout();
        let rearm = next < state.timer_ms;
        if rearm {
            state.timer_ms = next;
        }
        let outbox = std::mem::take(&mut state.outbox);
        let changed = state.persist_wanted || state.node.journal_pending();
        drop(state);
        if rearm {
            self.rearm.notify_one();
        }
        if let Some(persist) = self.persist.as_ref().filter(|_| changed) {
            persist.wake();
        }
        for transmit in outbox {
            self.transport.send(transmit);
        }
    }
}

impl Driver {
    /// Adds one to the counter `prefix` + `name` (kept beside the lock, reported by stats).
    pub fn count(&self, prefix: &str, name: &str) {
        self.count_by(prefix, name, 1);
    }

    /// Adds `amount` to the counter `prefix` + `name`.
    pub fn count_by(&self, prefix: &str, name: &str, amount: u64) {
        // A poisoned lock only means a panic elsewhere while holding it; the map is still valid.
        let mut named = self.named.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut key = format!("{prefix}{name}");
        if !named.contains_key(&key) && named.len() >= NAMED_COUNTERS_MAX {
            key = format!("{prefix}other");
        }
        *named.entry(key).or_default() += amount;
    }

    /// Merges a received gossip message, decoded before the lock is taken (a delta page
    /// holds up to 256 KiB).
    pub fn message(&self, Inbound { from, bytes }: Inbound) {
        self.transport_stats.bytes_received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        // A socket address in text is far shorter than ADDR_SIZE_MAX.
        let Ok(from) = Addr::new(from.to_string()) else { return };
        let merged = match Envelope::decode(&bytes) {
            Ok(envelope) => {
                let Some(mut state) = self.lock(Purpose::Gossip) else { return };
                let merged = state.node.handle_message(self.clock.now_ms(), from.clone(), envelope);
                self.settle(state);
                merged
            }
            Err(error) => Err(error),
        };
        if let Err(why) = merged {
            self.transport_stats.messages_invalid.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(peer = %from, %why, "dropped an invalid gossip message");
        }
    }
}

impl State {
    /// Drains the node's outputs: the drain contract (after every input and command).
    pub(super) fn drain(&mut self) {
        while let Some(transmit) = self.node.poll_transmit() {
            self.outbox.push(transmit);
        }
        while let Some(event) = self.node.poll_event() {
            self.event(event);
        }
        let readiness = self.ready_inputs.readiness();
        self.ready.send_if_modified(|published| {
            let changed = *published != readiness;
            *published = readiness;
            changed
        });
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Put { key, value, stamp } => {
                self.history.record(ChangeKind::Put, key, Some(value), Some(stamp))
            }
            Event::Delete { key, stamp } => {
                self.history.record(ChangeKind::Delete, key, None, Some(stamp))
            }
            Event::Expire { key } => self.history.record(ChangeKind::Expire, key, None, None),
            Event::Member(change) => {
                // The peers a restart rejoins are part of what a data directory keeps.
                self.persist_wanted = true;
                match change.state {
                    Some(state) => {
                        tracing::info!(member = %change.name, id = %change.id, state = state.as_str(), "member")
                    }
                    None => {
                        tracing::info!(member = %change.name, id = %change.id, "member removed")
                    }
                }
            }
            Event::WaitDone(outcome) => {
                if let Some(reply) = self.waits.remove(&outcome.id) {
                    let _ = reply.send(super::outcome::wait_written(&self.node, outcome));
                }
            }
            Event::Joined => {
                self.ready_inputs.joined = true;
            }
            Event::Left => {
                for done in self.leaving.drain(..) {
                    let _ = done.send(());
                }
            }
            Event::Reset { old, new, reason } if reason.dropped_state() => {
                tracing::warn!(%old, %new, ?reason, "this node's state missed deletes the cluster already collected; it dropped its state and syncs again from empty");
            }
            Event::Reset { old, new, reason } => {
                tracing::warn!(%old, %new, ?reason, "the cluster removed this node's identity; it rejoins under a new one and keeps its state");
            }
            Event::Skew { peer, ahead_ms } => {
                self.skew.held_back(peer, ahead_ms, self.clock.now_ms())
            }
        }
    }
}
