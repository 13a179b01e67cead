//! The node's operations: the one protocol-neutral set that every front end (the QUIC RPC,
//! later Redis and HTTP) translates its requests onto. None of them reaches into the driver's
//! state; each operation takes the lock once, for one short step, with its purpose named.

use std::collections::BTreeMap;

use chorus_proto::rpc::{LIST_LIMIT_MAX, MemberInfo, WaitReport};
use chorus_proto::{Key, MemberState, Node, NodeId, Stamp, Value, WaitOutcome, Write, WriteError};
use tokio::sync::oneshot;

use super::driver::Driver;
use super::history::Subscription;
use super::lock::Purpose;

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The node is stopping (or its driver failed) and takes no more requests.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// A value above the node's limit.
    #[error("value of {size} bytes is above this node's limit of {size_max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        size_max: usize,
    },
    /// Too many writes are waiting for confirmations; try again.
    #[error("too many writes are waiting for other nodes; try again")]
    Busy,
    /// A request that is not valid.
    #[error("{0}")]
    Invalid(String),
    /// A watch cursor older than the node's history: list again, then watch from now.
    #[error("the watch cursor is older than this node's history: list again, then watch from now")]
    CursorExpired,
}

impl From<WriteError> for OpError {
    fn from(error: WriteError) -> OpError {
        match error {
            WriteError::TooLarge { size, size_max } => OpError::TooLarge { size, size_max },
            WriteError::ShuttingDown => OpError::ShuttingDown,
            WriteError::TooManyWaits => OpError::Busy,
            WriteError::InvalidTtl => OpError::Invalid(error.to_string()),
        }
    }
}

/// A finished write: its stamp, and with a wait, who confirmed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The write's stamp.
    pub stamp: Stamp,
    /// Who confirmed and who did not, for a write that waited.
    pub wait: Option<WaitReport>,
}

/// A page of keys, and whether more follow.
pub type KeyPage = (Vec<Key>, bool);

impl Driver {
    /// The live value of `key` and its stamp, if any.
    pub fn get(&self, key: &Key) -> Result<Option<(Value, Stamp)>, OpError> {
        let state = self.lock(Purpose::Read).ok_or(OpError::ShuttingDown)?;
        let now = self.clock.now_ms();
        let entry = state.node.store().entry(key);
        Ok(entry.and_then(|entry| Some((entry.live_value(now)?.clone(), entry.stamp()))))
    }

    /// Writes, and with a wait level beyond local, returns once enough nodes hold the write or
    /// its timeout passed.
    pub async fn write(&self, write: Write) -> Result<Written, OpError> {
        let pending = {
            let mut state = self.lock(Purpose::Write).ok_or(OpError::ShuttingDown)?;
            let now = self.clock.now_ms();
            let written = state.node.write(now, write);
            let pending = match written {
                Ok(written) => match written.wait {
                    Some(wait) => {
                        let (reply, answer) = oneshot::channel();
                        state.waits.insert(wait, reply);
                        Ok(answer)
                    }
                    None => Err(Ok(Written { stamp: written.stamp, wait: None })),
                },
                Err(error) => Err(Err(OpError::from(error))),
            };
            self.settle(state);
            pending
        };
        match pending {
            // The node is gone if the wait's sender was dropped without an answer.
            Ok(answer) => answer.await.map_err(|_| OpError::ShuttingDown),
            Err(done) => done,
        }
    }

    /// Up to `limit` live keys under `prefix`, after `start_after` when given.
    pub fn list(
        &self,
        prefix: &[u8],
        start_after: Option<&Key>,
        limit: u32,
    ) -> Result<KeyPage, OpError> {
        let limit = limit.min(LIST_LIMIT_MAX) as usize;
        let state = self.lock(Purpose::Read).ok_or(OpError::ShuttingDown)?;
        let mut found =
            state.node.store().list(prefix, start_after, limit + 1, self.clock.now_ms());
        drop(state);
        let more = found.len() > limit;
        found.truncate(limit);
        Ok((found.into_iter().map(|(key, _)| key).collect(), more))
    }

    /// The members as this node sees them, itself included.
    pub fn members(&self) -> Result<Vec<MemberInfo>, OpError> {
        let state = self.lock(Purpose::Read).ok_or(OpError::ShuttingDown)?;
        Ok(member_infos(&state.node))
    }

    /// Subscribes to changes after a cursor (or from now).
    pub fn subscribe(&self, after: Option<u64>) -> Result<Subscription, OpError> {
        let state = self.lock(Purpose::Control).ok_or(OpError::ShuttingDown)?;
        state.history.subscribe(after)
    }

    /// Starts a graceful leave; the receiver completes once the handoff is done.
    pub fn leave(&self) -> oneshot::Receiver<()> {
        let (done, finished) = oneshot::channel();
        if let Some(mut state) = self.lock(Purpose::Control) {
            state.leaving.push(done);
            state.node.leave(self.clock.now_ms());
            self.settle(state);
        }
        finished
    }
}

/// The members of `node` as the RPC reports them.
fn member_infos(node: &Node) -> Vec<MemberInfo> {
    node.members()
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

/// The answer to a write whose wait ended: who confirmed and who is missing, named from one
/// snapshot of the members (not one per id).
pub(super) fn wait_written(node: &Node, outcome: WaitOutcome) -> Written {
    let members: BTreeMap<NodeId, MemberInfo> =
        member_infos(node).into_iter().map(|info| (info.id, info)).collect();
    let info = |id: &NodeId| {
        members.get(id).cloned().unwrap_or(MemberInfo {
            id: *id,
            name: String::new(),
            addr: String::new(),
            state: MemberState::Dead,
            incarnation: 0,
        })
    };
    let wait = WaitReport {
        complete: outcome.complete,
        confirmed: outcome.confirmed.iter().map(info).collect(),
        missing: outcome.missing.iter().map(info).collect(),
    };
    Written { stamp: outcome.stamp, wait: Some(wait) }
}
