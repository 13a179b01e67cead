//! The driver: the one task that owns the `proto::Node` and the only code that calls it.
//!
//! It feeds the node wall-clock time, received messages, client commands and timer expiries,
//! and after every call drains the node's outputs (the drain contract of `chorus-proto`):
//! transmits go to the transport's bounded lanes, events answer waiting clients, feed
//! watchers and the log.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chorus_proto::rpc::{
    Change, ChangeKind, MemberInfo, Request, Response, RpcError, StatsReport, WATCH_HISTORY_MAX,
    WaitReport,
};
use chorus_proto::{Addr, Event, Key, MemberState, Node, NodeId, WaitId, WaitOutcome, WriteError};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::transport::{Inbound, Transport};

/// Client commands queued for the driver before new ones wait.
pub const COMMAND_QUEUE_MAX: usize = 4096;

/// Received gossip messages queued for the driver before readers wait.
pub const INBOUND_QUEUE_MAX: usize = 4096;

/// What a watcher receives: missed changes, then live ones, and the cursor of the latest
/// change at the moment of subscribing.
pub type Subscription = (Vec<Change>, broadcast::Receiver<Change>, u64);

/// A request for the driver.
pub enum Command {
    /// An RPC request with one response.
    Request(Request, oneshot::Sender<Response>),
    /// Subscribe to changes after a cursor (or from now).
    Watch(Option<u64>, oneshot::Sender<Result<Subscription, RpcError>>),
    /// Leave gracefully; answered once the handoff is done.
    Leave(oneshot::Sender<()>),
}

/// The driver's state. Runs until every command sender and the inbound channel are gone.
pub struct Driver {
    node: Node,
    transport: Transport,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Receiver<Inbound>,
    waits: BTreeMap<WaitId, oneshot::Sender<Response>>,
    history: VecDeque<Change>,
    next_cursor: u64,
    changes: broadcast::Sender<Change>,
    joined: watch::Sender<bool>,
    leaving: Vec<oneshot::Sender<()>>,
    started: Instant,
    transport_stats: Arc<crate::transport::TransportStats>,
}

/// Wall-clock milliseconds since the Unix epoch: the only clock the protocol sees.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

impl Driver {
    /// A driver for `node`.
    pub fn new(
        node: Node,
        transport: Transport,
        commands: mpsc::Receiver<Command>,
        inbound: mpsc::Receiver<Inbound>,
        joined: watch::Sender<bool>,
        transport_stats: Arc<crate::transport::TransportStats>,
    ) -> Driver {
        let (changes, _) = broadcast::channel(WATCH_HISTORY_MAX);
        Driver {
            node,
            transport,
            commands,
            inbound,
            waits: BTreeMap::new(),
            history: VecDeque::new(),
            next_cursor: 1,
            changes,
            joined,
            leaving: Vec::new(),
            started: Instant::now(),
            transport_stats,
        }
    }

    /// Runs the node until its channels close.
    pub async fn run(mut self) {
        self.drain();
        loop {
            let now = now_ms();
            let wake = Instant::now()
                + Duration::from_millis(self.node.poll_timeout().saturating_sub(now));
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => break,
                },
                message = self.inbound.recv() => match message {
                    Some(message) => self.message(message),
                    None => break,
                },
                () = tokio::time::sleep_until(wake) => self.node.handle_timeout(now_ms()),
            }
            self.drain();
        }
    }

    fn message(&mut self, Inbound { from, bytes }: Inbound) {
        // A socket address in text is far shorter than ADDR_SIZE_MAX.
        let Ok(from) = Addr::new(from.to_string()) else { return };
        if let Err(why) = self.node.handle_message(now_ms(), from.clone(), &bytes) {
            tracing::warn!(peer = %from, %why, "dropped an invalid gossip message");
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Request(request, reply) => self.request(request, reply),
            Command::Watch(after, reply) => {
                let _ = reply.send(self.subscribe(after));
            }
            Command::Leave(done) => {
                self.leaving.push(done);
                self.node.leave(now_ms());
            }
        }
    }

    fn request(&mut self, request: Request, reply: oneshot::Sender<Response>) {
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
                let written = self.node.put(now, key, value, ttl_ms, wait, timeout_ms);
                return self.written(written, reply);
            }
            Request::Delete { key, wait, timeout_ms } => {
                let written = self.node.delete(now, key, wait, timeout_ms);
                return self.written(written, reply);
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
        let _ = reply.send(response);
    }

    fn written(
        &mut self,
        written: Result<chorus_proto::Written, WriteError>,
        reply: oneshot::Sender<Response>,
    ) {
        match written {
            Ok(written) => match written.wait {
                Some(wait) => {
                    self.waits.insert(wait, reply);
                }
                None => {
                    let _ = reply.send(Response::Written { stamp: written.stamp, wait: None });
                }
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
                let _ = reply.send(Response::Error(error));
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
            Event::Reset { old, new, reason } => {
                tracing::warn!(%old, %new, ?reason, "the cluster fenced this node out; it reset and rejoins with a full sync");
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
        let mut node = self.node.stats().clone();
        node.pushes_dropped +=
            self.transport_stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
        StatsReport {
            id: self.node.id(),
            name: self.node.config().name.to_string(),
            keys: (store.entry_count() as u64).saturating_sub(tombstones + expired),
            tombstones,
            expired,
            members,
            node,
            uptime_ms: self.started.elapsed().as_millis() as u64,
        }
    }
}
