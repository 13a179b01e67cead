//! What the node's operations answer: [`OpError`], [`Written`], and the member reports they
//! build from the protocol node. A leaf module, so that the driver, the history and the
//! operations all use it without depending on each other in a circle.

use std::collections::BTreeMap;

use chorus_proto::rpc::{MemberInfo, WaitReport};
use chorus_proto::{
    Key, MemberState, Node, NodeId, Stamp, WaitOutcome, WriteError, clock_offset_text,
};

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
    /// This node's clock is off from most of its peers: it refuses writes until corrected.
    #[error("{}", clock_offset_text(*offset_ms, *bound_ms))]
    ClockOffset {
        /// The median offset from its live peers, in milliseconds (positive: ahead).
        offset_ms: i64,
        /// The skew bound.
        bound_ms: u64,
    },
    /// This node has not yet compared its clock with most of its peers; retry shortly.
    #[error("{}", WriteError::ClockUnchecked)]
    ClockUnchecked,
    /// The write was applied in memory, but this node could not make it durable: its data
    /// directory stopped accepting commits.
    #[error("the write was applied but is not durable: the data directory failed ({0})")]
    NotDurable(String),
}

impl From<WriteError> for OpError {
    fn from(error: WriteError) -> OpError {
        match error {
            WriteError::TooLarge { size, size_max } => OpError::TooLarge { size, size_max },
            WriteError::ShuttingDown => OpError::ShuttingDown,
            WriteError::TooManyWaits => OpError::Busy,
            WriteError::ClockOffset { offset_ms, bound_ms } => {
                OpError::ClockOffset { offset_ms, bound_ms }
            }
            WriteError::ClockUnchecked => OpError::ClockUnchecked,
            WriteError::InvalidTtl
            | WriteError::TimeoutTooLong { .. }
            | WriteError::TooFewMembers { .. } => OpError::Invalid(error.to_string()),
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

/// The members of `node` as the RPC reports them.
pub(super) fn member_infos(node: &Node) -> Vec<MemberInfo> {
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
