//! The driver: the `proto::Node` of a running node, and the only code that calls it.
//!
//! It feeds the node wall-clock time, received messages, client requests and timer expiries,
//! and after every call drains the node's outputs (the drain contract of `chorus-proto`):
//! transmits go to the transport's bounded lanes, events answer waiting clients, feed
//! watchers and the log.
//!
//! The node sits behind one mutex in [`Shared`], and the task that has something for it calls
//! it directly: an RPC stream task answers its own request, a gossip stream task merges its
//! own message, and the timer task ([`run_timers`]) runs the node's timers. A request thus
//! costs no hop to another task and back, and every call still sees the node alone, so reads
//! on a node see every write it accepted before (read-your-writes). No call awaits while
//! holding the lock: each is a short, synchronous step of the state machine.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chorus_proto::rpc::{
    Change, ChangeKind, MemberInfo, Request, Response, RpcError, StatsReport, WATCH_HISTORY_MAX,
    WaitReport,
};
use chorus_proto::{
    Addr, Envelope, Event, Key, MemberState, MessageError, Node, NodeId, WaitId, WaitOutcome,
    Write, WriteError,
};
use tokio::sync::{Notify, broadcast, oneshot, watch};
use tokio::time::Instant;

use crate::transport::{Inbound, Transport};

/// What a watcher receives: missed changes, then live ones, and the cursor of the latest
/// change at the moment of subscribing.
pub type Subscription = (Vec<Change>, broadcast::Receiver<Change>, u64);

/// A received message, decoded before the driver's lock was taken.
type DecodedMessage = Result<Envelope, MessageError>;

/// The answer to a request: at once, or once a write's wait ends.
pub enum Answer {
    /// The response.
    Now(Response),
    /// The response of a write that waits for other nodes, when the wait ends.
    Later(oneshot::Receiver<Response>),
}

/// The driver shared by the tasks that call into the node. A panic inside the node poisons
/// the lock; from then on every call fails as if the node had stopped, and the timer task
/// ends, which `NodeHandle::failed` reports.
pub struct Shared {
    driver: Mutex<Driver>,
    /// Wakes the timer task when a call moved the node's next deadline earlier.
    rearm: Notify,
}

/// The driver's state.
pub struct Driver {
    node: Node,
    transport: Transport,
    waits: BTreeMap<WaitId, oneshot::Sender<Response>>,
    history: VecDeque<Change>,
    next_cursor: u64,
    changes: broadcast::Sender<Change>,
    joined: watch::Sender<bool>,
    leaving: Vec<oneshot::Sender<()>>,
    started: Instant,
    transport_stats: Arc<crate::transport::TransportStats>,
    /// The deadline (wall ms) the timer task sleeps until.
    timer_ms: u64,
}

/// Wall-clock milliseconds since the Unix epoch: the only clock the protocol sees.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

impl Shared {
    /// A driver for `node`, shared.
    pub fn new(
        node: Node,
        transport: Transport,
        joined: watch::Sender<bool>,
        transport_stats: Arc<crate::transport::TransportStats>,
    ) -> Arc<Shared> {
        let (changes, _) = broadcast::channel(WATCH_HISTORY_MAX);
        let mut driver = Driver {
            node,
            transport,
            waits: BTreeMap::new(),
            history: VecDeque::new(),
            next_cursor: 1,
            changes,
            joined,
            leaving: Vec::new(),
            started: Instant::now(),
            transport_stats,
            timer_ms: 0,
        };
        // Whatever the node did before the driver existed (a join) goes out now.
        driver.drain();
        Arc::new(Shared { driver: Mutex::new(driver), rearm: Notify::new() })
    }

    /// Answers an RPC request (not `Watch`, which is a stream: see [`Shared::subscribe`]).
    pub fn request(&self, request: Request) -> Answer {
        let Some(mut driver) = self.lock() else {
            return Answer::Now(Response::Error(RpcError::ShuttingDown));
        };
        let answer = driver.request(request);
        self.settle(driver);
        answer
    }

    /// Merges a received gossip message.
    pub fn message(&self, inbound: Inbound) {
        // Decoding (a delta page holds up to 256 KiB) needs no node: it runs before the lock.
        let envelope = Envelope::decode(&inbound.bytes);
        if let Some(mut driver) = self.lock() {
            driver.message(inbound, envelope);
            self.settle(driver);
        }
    }

    /// Subscribes to changes after a cursor (or from now).
    pub fn subscribe(&self, after: Option<u64>) -> Result<Subscription, RpcError> {
        let mut driver = self.lock().ok_or(RpcError::ShuttingDown)?;
        driver.subscribe(after)
    }

    /// Starts a graceful leave; the receiver completes once the handoff is done.
    pub fn leave(&self) -> oneshot::Receiver<()> {
        let (done, finished) = oneshot::channel();
        if let Some(mut driver) = self.lock() {
            driver.leaving.push(done);
            driver.node.leave(now_ms());
            self.settle(driver);
        }
        finished
    }

    /// The driver, unless a panic inside it poisoned the lock.
    fn lock(&self) -> Option<MutexGuard<'_, Driver>> {
        self.driver.lock().ok()
    }

    /// After a call: drains the node's outputs, and wakes the timer task if the node's next
    /// deadline is now earlier than the one it sleeps until (a push batch to flush).
    fn settle(&self, mut driver: MutexGuard<'_, Driver>) {
        driver.drain();
        let next = driver.node.poll_timeout();
        if next < driver.timer_ms {
            driver.timer_ms = next;
            drop(driver);
            self.rearm.notify_one();
        }
    }
}

/// Runs the node's timers (anti-entropy rounds, wait deadlines, expiries) until the driver
/// fails, and sends eager pushes as soon as the calls that queued them are over.
///
/// Pushes are batched by readiness rather than by the protocol's window: a call that queues
/// a push wakes this task, which first yields until its worker has run every other task that
/// was ready (tokio runs a yielded task after them), then flushes. A burst of writes thus
/// shares one message per peer, and an isolated write waits microseconds, not the window's
/// milliseconds at every hop.
pub async fn run_timers(shared: Arc<Shared>) {
    while let Some(wake) = shared.arm() {
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {
                if !shared.timeout() {
                    return;
                }
            }
            // A call queued pushes, or moved another deadline earlier.
            () = shared.rearm.notified() => tokio::task::yield_now().await,
        }
    }
}

impl Shared {
    /// Flushes queued pushes, then says when the timer task should wake next; `None` once the
    /// driver failed.
    fn arm(&self) -> Option<Instant> {
        let mut driver = self.lock()?;
        let now = now_ms();
        // A deadline within the batching window is a push flush (or, rarely, another timer
        // that close, for which flushing early is harmless).
        if driver.node.poll_timeout() <= now.saturating_add(driver.node.config().push_batch_ms) {
            driver.node.flush_pushes(now);
            driver.drain();
        }
        driver.timer_ms = driver.node.poll_timeout();
        let wait_ms = driver.timer_ms.saturating_sub(now);
        Some(Instant::now() + Duration::from_millis(wait_ms))
    }

    /// Runs the timers due now; false once the driver failed.
    fn timeout(&self) -> bool {
        let Some(mut driver) = self.lock() else { return false };
        driver.node.handle_timeout(now_ms());
        driver.drain();
        true
    }
}

impl Driver {
    fn message(&mut self, Inbound { from, bytes }: Inbound, envelope: DecodedMessage) {
        let stats = &self.transport_stats;
        stats.bytes_received.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        // A socket address in text is far shorter than ADDR_SIZE_MAX.
        let Ok(from) = Addr::new(from.to_string()) else { return };
        let result = envelope
            .and_then(|envelope| self.node.handle_message(now_ms(), from.clone(), envelope));
        if let Err(why) = result {
            stats.messages_invalid.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(peer = %from, %why, "dropped an invalid gossip message");
        }
    }

    fn request(&mut self, request: Request) -> Answer {
        let now = now_ms();
        let response = match request {
            Request::Get { key } => {
                let entry = self.node.store().entry(&key);
                match entry.and_then(|entry| Some((entry.live_value(now)?.clone(), entry.stamp())))
                {
                    Some((value, stamp)) => Response::Value { value, stamp },
                    None => Response::Error(RpcError::NotFound),
                }
            }
            Request::Put { key, value, ttl_ms, wait, timeout_ms } => {
                let write = Write { key, value: Some(value), ttl_ms, wait, timeout_ms };
                let written = self.node.write(now, write);
                return self.written(written);
            }
            Request::Delete { key, wait, timeout_ms } => {
                let written = self.node.write(now, Write::delete(key).with_wait(wait, timeout_ms));
                return self.written(written);
            }
            Request::List { prefix, start_after, limit } => {
                let limit = limit.min(chorus_proto::rpc::LIST_LIMIT_MAX) as usize;
                let mut found =
                    self.node.store().list(&prefix, start_after.as_ref(), limit + 1, now);
                let more = found.len() > limit;
                found.truncate(limit);
                Response::Keys { keys: found.into_iter().map(|(key, _)| key).collect(), more }
            }
            Request::Members => Response::Members(self.member_infos()),
            Request::Stats => Response::Stats(Box::new(self.stats(now))),
            Request::Watch { .. } => {
                Response::Error(RpcError::InvalidRequest("watch is a stream".into()))
            }
        };
        Answer::Now(response)
    }

    fn written(&mut self, written: Result<chorus_proto::Written, WriteError>) -> Answer {
        match written {
            Ok(written) => match written.wait {
                Some(wait) => {
                    let (reply, answer) = oneshot::channel();
                    self.waits.insert(wait, reply);
                    Answer::Later(answer)
                }
                None => Answer::Now(Response::Written { stamp: written.stamp, wait: None }),
            },
            Err(error) => {
                let error = match error {
                    WriteError::TooLarge { size, size_max } => {
                        RpcError::TooLarge { size: size as u64, size_max: size_max as u64 }
                    }
                    WriteError::ShuttingDown => RpcError::ShuttingDown,
                    WriteError::TooManyWaits => RpcError::Busy,
                    WriteError::InvalidTtl => RpcError::InvalidRequest(error.to_string()),
                };
                Answer::Now(Response::Error(error))
            }
        }
    }

    fn subscribe(&mut self, after: Option<u64>) -> Result<Subscription, RpcError> {
        let receiver = self.changes.subscribe();
        let latest = self.next_cursor - 1;
        let Some(after) = after else { return Ok((Vec::new(), receiver, latest)) };
        let oldest = self.history.front().map_or(self.next_cursor, |change| change.cursor);
        // A cursor above the latest was never issued here (it comes from before a restart, or
        // from another node): resuming after it would skip every change up to it, silently.
        if after > latest || after.saturating_add(1) < oldest {
            return Err(RpcError::CursorExpired);
        }
        let missed = self.history.iter().filter(|change| change.cursor > after).cloned().collect();
        Ok((missed, receiver, latest))
    }

    /// Drains the node's outputs: the drain contract.
    fn drain(&mut self) {
        while let Some(transmit) = self.node.poll_transmit() {
            self.transport.send(transmit);
        }
        while let Some(event) = self.node.poll_event() {
            self.event(event);
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Put { key, value, stamp } => {
                self.change(ChangeKind::Put, key, Some(value), Some(stamp))
            }
            Event::Delete { key, stamp } => self.change(ChangeKind::Delete, key, None, Some(stamp)),
            Event::Expire { key } => self.change(ChangeKind::Expire, key, None, None),
            Event::Member(change) => match change.state {
                Some(state) => {
                    tracing::info!(member = %change.name, id = %change.id, state = state.as_str(), "member")
                }
                None => tracing::info!(member = %change.name, id = %change.id, "member removed"),
            },
            Event::WaitDone(outcome) => {
                if let Some(reply) = self.waits.remove(&outcome.id) {
                    let _ = reply.send(self.wait_response(outcome));
                }
            }
            Event::Joined => {
                self.joined.send_replace(true);
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
                tracing::warn!(%peer, ahead_ms, "held back a write stamped too far ahead of this clock");
            }
        }
    }

    fn change(
        &mut self,
        kind: ChangeKind,
        key: Key,
        value: Option<chorus_proto::Value>,
        stamp: Option<chorus_proto::Stamp>,
    ) {
        let change = Change { cursor: self.next_cursor, kind, key, value, stamp };
        self.next_cursor += 1;
        if self.history.len() >= WATCH_HISTORY_MAX {
            self.history.pop_front();
        }
        self.history.push_back(change.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(change);
    }

    fn wait_response(&self, outcome: WaitOutcome) -> Response {
        let infos = |ids: &[NodeId]| ids.iter().map(|id| self.member_info(*id)).collect();
        let wait = WaitReport {
            complete: outcome.complete,
            confirmed: infos(&outcome.confirmed),
            missing: infos(&outcome.missing),
        };
        Response::Written { stamp: outcome.stamp, wait: Some(wait) }
    }

    fn member_info(&self, id: NodeId) -> MemberInfo {
        self.member_infos().into_iter().find(|info| info.id == id).unwrap_or(MemberInfo {
            id,
            name: String::new(),
            addr: String::new(),
            state: MemberState::Dead,
            incarnation: 0,
        })
    }

    fn member_infos(&self) -> Vec<MemberInfo> {
        self.node
            .members()
            .into_iter()
            .map(|m| MemberInfo {
                id: m.id,
                name: m.name.to_string(),
                addr: m.addr.to_string(),
                state: m.state,
                incarnation: m.incarnation,
            })
            .collect()
    }

    fn stats(&self, now: u64) -> StatsReport {
        let store = self.node.store();
        let mut members = [0u64; 4];
        for member in self.node.members() {
            members[member.state as usize] += 1;
        }
        let expired = store.expired_count(now) as u64;
        let tombstones = store.tombstone_count() as u64;
        let transport = &self.transport_stats;
        let load = |counter: &std::sync::atomic::AtomicU64| {
            counter.load(std::sync::atomic::Ordering::Relaxed)
        };
        let mut node = self.node.stats().clone();
        node.pushes_dropped += load(&transport.dropped);
        StatsReport {
            id: self.node.id(),
            name: self.node.config().name.to_string(),
            keys: (store.entry_count() as u64).saturating_sub(tombstones + expired),
            tombstones,
            expired,
            members,
            node,
            bytes_sent: load(&transport.bytes_sent),
            bytes_received: load(&transport.bytes_received),
            messages_invalid: load(&transport.messages_invalid),
            uptime_ms: self.started.elapsed().as_millis() as u64,
        }
    }
}
