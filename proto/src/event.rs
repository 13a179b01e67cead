//! [`Event`]: what a node reports to its driver after an input or a command.

use crate::clock::{NodeId, Stamp};
use crate::data::{Key, Value};
use crate::membership::MemberChange;
use crate::message::ResetReason;
use crate::offset::ClockCheck;
use crate::wait::WaitOutcome;

/// Something the driver (or a watching client) should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A key now has this value (local or replicated write).
    Put {
        /// The key.
        key: Key,
        /// Its new value.
        value: Value,
        /// The write's stamp.
        stamp: Stamp,
    },
    /// A live key was deleted.
    Delete {
        /// The key.
        key: Key,
        /// The tombstone's stamp.
        stamp: Stamp,
    },
    /// A live key reached its expiry.
    Expire {
        /// The key.
        key: Key,
    },
    /// A member changed state, joined, or was removed.
    Member(MemberChange),
    /// A write wait ended.
    WaitDone(WaitOutcome),
    /// The first exchange with a peer completed: the node has joined.
    Joined,
    /// A graceful leave finished its handoff (or had no one to hand off to).
    Left,
    /// The cluster fenced this identity out and the node took a new one; it also dropped its
    /// state if `reason` says so ([`ResetReason::dropped_state`]).
    Reset {
        /// The identity fenced out.
        old: NodeId,
        /// The new identity.
        new: NodeId,
        /// Why.
        reason: ResetReason,
    },
    /// The clock self-check changed its verdict (DESIGN 3).
    Clock(ClockCheck),
    /// A peer sent a write stamped too far ahead; it was held back.
    Skew {
        /// The peer.
        peer: NodeId,
        /// How far ahead, in milliseconds.
        ahead_ms: u64,
    },
}
