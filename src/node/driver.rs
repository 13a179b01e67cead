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
use std::time::Duration;

use chorus_proto::rpc::ChangeKind;
use chorus_proto::{ClockCheck, Envelope, Event, Node, Stamp, Transmit, WaitId, clock_offset_text};
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::Instant;

use super::clock::WallClock;
use super::history::History;
use super::lock::{Guard, Purpose, TimedMutex};
use super::metrics::{Buckets, Metrics};
use super::outcome::Written;
use super::ready::{Readiness, ReadyInputs};
use super::sends::InOrder;
use super::skew::SkewLog;
use crate::gossip::{Inbound, Transport, TransportStats};
use crate::store::Persist;

/// The driver shared by every task that calls into the node. A panic inside the node poisons
/// the lock; from then on every call fails as if the node had stopped, and the timer task
/// ends, which `NodeHandle::failed` reports.
pub struct Driver {
    state: TimedMutex<State>,
    /// Sends transmits to peers; its own lanes are behind their own small lock.
    pub(super) transport: Transport,
    /// Wakes the timer task when a call moved the node's next deadline earlier.
    pub(super) rearm: Notify,
    pub(super) transport_stats: Arc<TransportStats>,
    pub(super) started: Instant,
    /// Where wall time is read: the system, or tokio's clock in tests.
    pub(super) clock: WallClock,
    /// Counters the front ends keep by name (unknown Redis commands...), reported by stats.
    pub(super) named: std::sync::Mutex<BTreeMap<String, u64>>,
    /// Request counts and latencies, connections, propagation lag (`/metrics`).
    pub(super) metrics: Metrics,
    /// The data directory and its writer, with `--data-dir`.
    pub(super) persist: Option<Persist>,
    /// Outboxes taken from the node, sent in the order the lock took them (`sends.rs`).
    sends: InOrder<Vec<Transmit>>,
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
    /// The readiness last published on `ready`, compared without the channel's lock (every
    /// write drains the node, and taking that lock each time cost a share of each one).
    published: Readiness,
    pub(super) leaving: Vec<oneshot::Sender<()>>,
    skew: SkewLog,
    clock: WallClock,
    /// Where remote writes' arrival lag is observed (shared with `Driver::metrics`).
    lag: Buckets,
    /// The wall clock's lead over monotonic time at the last reading (see `now_ms`).
    wall_lead_ms: i64,
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
        let metrics = Metrics::default();
        // The handle starts a node without seeds ready, and one with seeds joining.
        let seeded = ready.borrow().is_err();
        let published = ready.borrow().clone();
        let state = State {
            published,
            ready_inputs: ReadyInputs::new(seeded, &node),
            node,
            waits: BTreeMap::new(),
            history: History::new(),
            ready,
            leaving: Vec::new(),
            skew: SkewLog::default(),
            wall_lead_ms: clock.lead_ms(clock.now_ms()),
            clock,
            lag: metrics.propagation_lag.clone(),
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
            metrics,
            persist,
            sends: InOrder::default(),
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
    /// deadline is now earlier than the one it sleeps until (a push batch to flush) or a
    /// queued push is awaited, lets go of the lock, then sends what the node transmitted.
    pub(super) fn settle(&self, mut state: Guard<'_, State>) {
        state.drain();
        let next = state.node.poll_timeout();
        let earlier = next < state.timer_ms;
        if earlier {
            state.timer_ms = next;
        }
        // Pushes a client waits on go at once, even while the timer task spaces its flushes.
        let rearm = earlier || state.node.pushes_awaited();
        let outbox = std::mem::take(&mut state.outbox);
        // Queued under the lock, so that outboxes reach each peer's lane in the lock's order.
        let sender = !outbox.is_empty()
            && self.sends.push(outbox).unwrap_or_else(|dropped| {
                let dropped = dropped.len() as u64;
                self.transport_stats.dropped.fetch_add(dropped, Ordering::Relaxed);
                false
            });
        let changed = state.persist_wanted || state.node.journal_pending();
        drop(state);
        if rearm {
            self.rearm.notify_one();
        }
        if let Some(persist) = self.persist.as_ref().filter(|_| changed) {
            persist.wake();
        }
        if sender {
            self.sends.send(|outbox| self.transport.send_all(outbox));
        }
    }
}

impl Driver {
    /// The metrics kept beside the lock: request counts and latencies, connections,
    /// propagation lag.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

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
        let merged = match Envelope::decode(&bytes) {
            Ok(envelope) => {
                let Some(mut state) = self.lock(Purpose::Gossip) else { return };
                let now_ms = state.now_ms();
                let merged = state.node.handle_message(now_ms, from.clone(), envelope);
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
    /// Wall time for a call into the node. A wall clock that stepped by more than half the
    /// skew bound since the last reading (its lead over monotonic time changed) voids the
    /// node's clock estimates first, so that a write never carries the stepped time before
    /// the node has compared its clock again (see `Node::clock_stepped`).
    pub(super) fn now_ms(&mut self) -> u64 {
        let now_ms = self.clock.now_ms();
        let lead_ms = self.clock.lead_ms(now_ms);
        let step_ms = lead_ms.abs_diff(self.wall_lead_ms);
        self.wall_lead_ms = lead_ms;
        if step_ms > self.node.config().clock_skew_ms_max / 2 {
            tracing::warn!(step_ms, "the wall clock stepped: comparing it with the peers again");
            self.node.clock_stepped(now_ms);
            self.drain();
        }
        now_ms
    }

    /// Whether messages wait to be sent (taken out by `Driver::settle`).
    pub(super) fn has_outbox(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// The readiness last published.
    pub(super) fn readiness(&self) -> Readiness {
        self.published.clone()
    }

    /// Drains the node's outputs: the drain contract (after every input and command).
    pub(super) fn drain(&mut self) {
        while let Some(transmit) = self.node.poll_transmit() {
            self.outbox.push(transmit);
        }
        // Read once for the lag of every remote write this drain reports, when there is one.
        let mut now_ms = None;
        while let Some(event) = self.node.poll_event() {
            self.event(event, &mut now_ms);
        }
        self.ready_inputs.observe(&self.node);
        let readiness = self.ready_inputs.readiness();
        if readiness != self.published {
            self.published = readiness.clone();
            let _previous = self.ready.send_replace(readiness);
        }
    }

    /// How long a write made on another node took to arrive here, by its stamp's wall time and
    /// `now_ms` (read on first use).
    fn observe_lag(&self, stamp: &Stamp, now_ms: &mut Option<u64>) {
        if stamp.node != self.node.id() {
            let now_ms = *now_ms.get_or_insert_with(|| self.clock.now_ms());
            let lag_ms = now_ms.saturating_sub(stamp.hlc.wall_ms());
            self.lag.observe(Duration::from_millis(lag_ms), 1);
        }
    }

    fn event(&mut self, event: Event, now_ms: &mut Option<u64>) {
        match event {
            Event::Put { key, value, stamp } => {
                self.observe_lag(&stamp, now_ms);
                self.history.record(ChangeKind::Put, key, Some(value), Some(stamp))
            }
            Event::Delete { key, stamp } => {
                self.observe_lag(&stamp, now_ms);
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
            Event::Joined => {}
            Event::Clock(ClockCheck::Off { offset_ms }) => {
                let why = clock_offset_text(offset_ms, self.node.config().clock_skew_ms_max);
                tracing::warn!(offset_ms, "{why}");
            }
            Event::Clock(ClockCheck::Within) => {
                let offset_ms = self.node.clock_offset_ms();
                tracing::info!(?offset_ms, "this node's clock is within the bound of its peers");
            }
            Event::Clock(ClockCheck::Unchecked) => {}
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
