//! The write command: one [`Write`] describes a put or a delete, what it waits for, and
//! how long; [`Node::write`](crate::Node::write) takes it and answers [`Written`] or a
//! [`WriteError`].

use serde::{Deserialize, Serialize};

use crate::clock::Stamp;
use crate::data::{Key, Value};
use crate::wait::{WaitId, WaitLevel};

/// A client write: a put when `value` is `Some`, a delete (a tombstone) when it is `None`.
/// [`Write::put`] and [`Write::delete`] build the common cases; the fields say the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The key written.
    pub key: Key,
    /// The new value, or `None` to delete the key.
    pub value: Option<Value>,
    /// Time to live from the write, for a put: between 1 ms and `TTL_MS_MAX`. A delete
    /// carries no expiry and ignores it.
    pub ttl_ms: Option<u64>,
    /// How many nodes must hold the write before [`Event::WaitDone`](crate::Event::WaitDone)
    /// reports it complete; `Local` completes at once and reports nothing.
    pub wait: WaitLevel,
    /// How long to wait for that level before reporting who is missing, in milliseconds: at
    /// most `WAIT_TIMEOUT_MS_MAX` when `wait` is not `Local` (a `Local` write ignores it).
    pub timeout_ms: u64,
}

impl Write {
    /// Puts `value` under `key`, without expiry and without waiting for other nodes.
    pub fn put(key: Key, value: Value) -> Write {
        Write { key, value: Some(value), ttl_ms: None, wait: WaitLevel::Local, timeout_ms: 0 }
    }

    /// Deletes `key`, without waiting for other nodes.
    pub fn delete(key: Key) -> Write {
        Write { key, value: None, ttl_ms: None, wait: WaitLevel::Local, timeout_ms: 0 }
    }

    /// The same write, expiring `ttl_ms` after it is made.
    pub fn with_ttl(self, ttl_ms: u64) -> Write {
        Write { ttl_ms: Some(ttl_ms), ..self }
    }

    /// The same write, reported complete once `wait` is reached or `timeout_ms` passed.
    pub fn with_wait(self, wait: WaitLevel, timeout_ms: u64) -> Write {
        Write { wait, timeout_ms, ..self }
    }
}

/// A write the node accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Its stamp.
    pub stamp: Stamp,
    /// The wait to expect a [`Event::WaitDone`](crate::Event::WaitDone) for, unless the level
    /// was `Local`.
    pub wait: Option<WaitId>,
}

/// Why a write was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WriteError {
    /// The value exceeds this node's limit.
    #[error("value too large: {size} bytes, the maximum is {size_max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        size_max: usize,
    },
    /// The TTL exceeds `TTL_MS_MAX` or is zero.
    #[error("invalid TTL: it must be between 1 ms and 365 days")]
    InvalidTtl,
    /// The node is leaving and takes no new writes.
    #[error("node shutting down: it takes no new writes")]
    ShuttingDown,
    /// Too many waited writes are pending.
    #[error("too many writes waiting for confirmation")]
    TooManyWaits,
    /// A wait timeout above `WAIT_TIMEOUT_MS_MAX`.
    #[error("wait timeout of {timeout_ms} ms: the maximum is {timeout_ms_max} ms")]
    TimeoutTooLong {
        /// The timeout asked for.
        timeout_ms: u64,
        /// The limit.
        timeout_ms_max: u64,
    },
    /// A wait for more nodes than this node knows to be alive: it could never complete.
    #[error(
        "cannot wait for {wanted} nodes: this node knows {members} live members (itself \
         included); wait for fewer, or for `all`"
    )]
    TooFewMembers {
        /// The nodes waited for.
        wanted: u32,
        /// Members not dead or left, this node included.
        members: usize,
    },
    /// This node's clock is off from most of its live peers by more than the skew bound:
    /// its writes would be held back by every peer, or lose to older ones (DESIGN 3).
    #[error("{}", clock_offset_text(*offset_ms, *bound_ms))]
    ClockOffset {
        /// The median offset from its live peers, in milliseconds (positive: ahead).
        offset_ms: i64,
        /// The skew bound.
        bound_ms: u64,
    },
    /// This node has peers (or seeds) but has not yet compared its clock with most of them:
    /// it has not reached them yet, or only just (a gossip round or two).
    #[error(
        "this node has not yet compared its clock with its peers (it has reached none yet, or \
         only just): retry shortly, or write to another node"
    )]
    ClockUnchecked,
}

/// What a client of a node with a bad clock is told, in one line it can act on.
pub fn clock_offset_text(offset_ms: i64, bound_ms: u64) -> String {
    let side = if offset_ms >= 0 { "ahead of" } else { "behind" };
    format!(
        "this node's clock is {} ms {side} its peers (the bound is {bound_ms} ms): it refuses \
         writes until its clock is corrected (check NTP on its host); write to another node",
        offset_ms.unsigned_abs()
    )
}
