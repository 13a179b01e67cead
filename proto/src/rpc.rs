//! The client RPC: requests and responses between `chorus::Client` and a node on QUIC
//! bidirectional streams, each a postcard frame. A stream carries requests one at a time, each
//! answered before the next, until the client finishes it; concurrent requests use separate
//! streams (a `watch` answers with a stream of frames until either side closes it).

use serde::{Deserialize, Serialize};

use crate::clock::{NodeId, Stamp};
use crate::data::{Key, Value};
use crate::limits::KEY_SIZE_MAX;
use crate::membership::MemberState;
use crate::wait::WaitLevel;

/// Most keys one `List` returns: a page of the largest keys stays well under a message.
pub const LIST_LIMIT_MAX: u32 = 1_000;

/// Changes a node keeps for watchers to resume from; an older cursor must re-list.
pub const WATCH_HISTORY_MAX: usize = 16 * 1024;

/// Bytes of keys and values the watch history keeps (64 MiB), beside its count: the history
/// holds the values it reports, so a count alone let a stream of 1 MiB overwrites keep
/// 16 GiB (a node measured at 2.33 GB after 30 s). 64 MiB still holds the last 64 changes of
/// the largest values, far more than a watcher that keeps up ever lags, and all
/// `WATCH_HISTORY_MAX` changes of values under 4 KiB; a watcher behind it lists again.
pub const WATCH_HISTORY_SIZE_MAX: usize = 64 * 1024 * 1024;

const _: () =
    assert!((LIST_LIMIT_MAX as usize) * (KEY_SIZE_MAX + 8) < crate::limits::MESSAGE_SIZE_MAX);
const _: () = assert!(
    WATCH_HISTORY_SIZE_MAX >= 16 * crate::limits::MESSAGE_SIZE_MAX,
    "the history keeps a burst of the largest changes"
);

/// What a client asks of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The live value of a key.
    Get {
        /// The key.
        key: Key,
    },
    /// Write a value.
    Put {
        /// The key.
        key: Key,
        /// The value.
        value: Value,
        /// Time to live, if any.
        ttl_ms: Option<u64>,
        /// How many nodes must hold it before the answer.
        wait: WaitLevel,
        /// How long to wait for them.
        timeout_ms: u64,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: Key,
        /// How many nodes must hold the tombstone before the answer.
        wait: WaitLevel,
        /// How long to wait for them.
        timeout_ms: u64,
    },
    /// Live keys with a prefix, in order.
    List {
        /// The prefix (empty for every key); at most `KEY_SIZE_MAX` bytes.
        prefix: Vec<u8>,
        /// Start after this key (pagination).
        start_after: Option<Key>,
        /// At most this many (capped at `LIST_LIMIT_MAX`).
        limit: u32,
    },
    /// A stream of changes to keys with a prefix.
    Watch {
        /// The prefix (empty for every key).
        prefix: Vec<u8>,
        /// Resume after this cursor (from a previous `Change`), replaying what was missed.
        after: Option<u64>,
    },
    /// The member table.
    Members,
    /// Counters.
    Stats,
}

impl Request {
    /// Checks bounds the codec alone does not.
    pub fn validate(&self) -> Result<(), RpcError> {
        match self {
            Request::List { prefix, .. } | Request::Watch { prefix, .. }
                if prefix.len() > KEY_SIZE_MAX =>
            {
                Err(RpcError::InvalidKey(format!(
                    "prefix of {} bytes, the maximum is {KEY_SIZE_MAX}",
                    prefix.len()
                )))
            }
            _ => Ok(()),
        }
    }
}

/// A member, as reported to clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Identity.
    pub id: NodeId,
    /// Name.
    pub name: String,
    /// Advertised address.
    pub addr: String,
    /// State as the answering node believes it.
    pub state: MemberState,
    /// Incarnation.
    pub incarnation: u64,
}

/// Who confirmed a waited write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitReport {
    /// Whether the level was reached in time.
    pub complete: bool,
    /// Members holding the write.
    pub confirmed: Vec<MemberInfo>,
    /// Members waited for that had not confirmed.
    pub missing: Vec<MemberInfo>,
}

/// The kind of a watched change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// A value was written.
    Put,
    /// The key was deleted.
    Delete,
    /// The key expired.
    Expire,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Position in the node's change history, to resume after.
    pub cursor: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// The key.
    pub key: Key,
    /// The new value, for `Put`.
    pub value: Option<Value>,
    /// The write's stamp (none for an expiry).
    pub stamp: Option<Stamp>,
}

/// Counters and sizes of one node.
///
/// Counters travel by name, so a node that counts something new adds a name and changes no
/// wire format: an older client prints the new counter, a newer client finds an old node's
/// counter absent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    /// The node.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Live keys.
    pub keys: u64,
    /// Tombstones held.
    pub tombstones: u64,
    /// Expired entries not yet collected.
    pub expired: u64,
    /// Members by state: alive, suspect, dead, left (this node counted alive).
    pub members: [u64; 4],
    /// Milliseconds since the node started.
    pub uptime_ms: u64,
    /// Named counters (messages, bytes, updates, refusals, lock hold times...), in a stable
    /// order.
    pub counters: Vec<Counter>,
    /// Writes held back per writer for being stamped too far ahead of this node's clock.
    pub skew_by_peer: Vec<(NodeId, u64)>,
    /// The median of this node's clock offsets from its live peers, in milliseconds
    /// (positive: ahead), when any was measured.
    pub clock_offset_ms: Option<i64>,
    /// The latest offset estimate from each peer: (peer, offset ms, round trip ms).
    pub clock_peers: Vec<(NodeId, i64, u64)>,
    /// Why the node is not ready (DESIGN 7.1), or `None` when it is.
    pub not_ready: Option<String>,
}

/// One named counter of a [`StatsReport`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Its name, in `snake_case` (`messages_sent`, `lock_gossip_hold_ns_max`).
    pub name: String,
    /// Its value.
    pub value: u64,
}

impl StatsReport {
    /// The counter named `name`, if the node reports it.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters.iter().find(|counter| counter.name == name).map(|counter| counter.value)
    }
}

/// Why a request failed. It travels to the client, so causes are carried as text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RpcError {
    /// The key has no live value.
    #[error("not found")]
    NotFound,
    /// A value above the node's limit.
    #[error("value too large: {size} bytes, the maximum is {size_max}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        size_max: u64,
    },
    /// A key or prefix that is not valid.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A request that is not valid for another reason.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The node did not answer in time.
    #[error("timed out")]
    Timeout,
    /// The client's credentials were refused.
    #[error("unauthorised: wrong cluster key")]
    Unauthorised,
    /// The node is shutting down and takes no new writes.
    #[error("node shutting down")]
    ShuttingDown,
    /// A watch cursor older than the node's history: list again, then watch from now.
    #[error("watch cursor expired: list again, then watch")]
    CursorExpired,
    /// The node is overloaded; try again.
    #[error("node busy, try again")]
    Busy,
    /// The node's clock is off from most of its peers by more than the skew bound: it
    /// refuses writes until its clock is corrected. Write to another node.
    #[error("{}", crate::write::clock_offset_text(*offset_ms, *bound_ms))]
    ClockOffset {
        /// The node's median offset from its live peers, in milliseconds (positive: ahead).
        offset_ms: i64,
        /// The skew bound.
        bound_ms: u64,
    },
    /// The node has not yet compared its clock with most of its peers; retry shortly.
    #[error("{}", crate::write::WriteError::ClockUnchecked)]
    ClockUnchecked,
    /// The write was applied on the node but could not be made durable there.
    #[error("not durable: {0}")]
    NotDurable(String),
}

/// What a node answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The value of a `Get` and the stamp of the write that set it.
    Value {
        /// The value.
        value: Value,
        /// Its stamp.
        stamp: Stamp,
    },
    /// A write was accepted (and, with a wait level, how the wait ended).
    Written {
        /// Its stamp.
        stamp: Stamp,
        /// The wait's outcome, unless the level was `Local`.
        wait: Option<WaitReport>,
    },
    /// Keys of a `List`, and whether more follow.
    Keys {
        /// The keys.
        keys: Vec<Key>,
        /// Whether the limit cut the list short.
        more: bool,
    },
    /// A watch is established; changes follow.
    Watching,
    /// One change of a watch.
    Change(Change),
    /// The member table.
    Members(Vec<MemberInfo>),
    /// Counters.
    Stats(Box<StatsReport>),
    /// The request failed.
    Error(RpcError),
}
