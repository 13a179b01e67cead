//! The hybrid logical clock and the stamps it issues.
//!
//! An [`Hlc`] packs 48 bits of wall-clock milliseconds and a 16-bit logical counter into one
//! `u64`, so its order is plain integer order and "the next stamp" is `+ 1`: a logical counter
//! that overflows carries into the milliseconds, so the clock never issues the same reading twice.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::WALL_MS_MAX;

/// A node's identity in the cluster: chosen at random by the driver when a node starts
/// without state, so two nodes never share one (2^64 space).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A hybrid logical clock reading: wall milliseconds in the high 48 bits, a logical counter in
/// the low 16.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Hlc(u64);

impl Hlc {
    /// The reading for `wall_ms` (clamped to 48 bits) and `logical`.
    pub fn new(wall_ms: u64, logical: u16) -> Hlc {
        Hlc((wall_ms.min(WALL_MS_MAX) << 16) | u64::from(logical))
    }

    /// Wall-clock milliseconds since the Unix epoch.
    pub fn wall_ms(self) -> u64 {
        self.0 >> 16
    }

    /// The logical counter within the millisecond.
    pub fn logical(self) -> u16 {
        // Truncation is the point: the low 16 bits are the counter.
        self.0 as u16
    }

    /// The packed representation, for compact encodings.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The reading packed as `as_u64` gave it.
    pub(crate) fn from_u64(packed: u64) -> Hlc {
        Hlc(packed)
    }

    /// The smallest reading greater than `self`; the logical counter overflows into `wall_ms`.
    fn successor(self) -> Hlc {
        Hlc(self.0.saturating_add(1))
    }
}

/// A write's position in the last-writer-wins order: the clock reading, then the writer.
/// Unique cluster-wide because a node never issues the same `Hlc` twice and node ids differ.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Stamp {
    /// When the write happened, in hybrid time.
    pub hlc: Hlc,
    /// Who wrote it; breaks ties between equal readings on different nodes.
    pub node: NodeId,
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}@{}", self.hlc.wall_ms(), self.hlc.logical(), self.node)
    }
}

/// A remote stamp too far ahead of the local wall clock to be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stamp is {ahead_ms} ms ahead of the local clock")]
pub struct SkewError {
    /// How far ahead of the local wall clock the stamp was, in milliseconds.
    pub ahead_ms: u64,
}

/// One node's hybrid logical clock. Time is always passed in: `proto` never reads a clock.
#[derive(Clone, Debug)]
pub struct Clock {
    node: NodeId,
    last: Hlc,
    skew_ms_max: u64,
}

impl Clock {
    /// A clock for `node` that refuses remote readings more than `skew_ms_max` ahead.
    pub fn new(node: NodeId, skew_ms_max: u64) -> Clock {
        Clock { node, last: Hlc::default(), skew_ms_max }
    }

    /// The last reading issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// Issues a stamp for a local write at wall time `now_ms`: greater than every reading this
    /// clock issued or observed, and at least `now_ms` when the wall clock is ahead.
    pub fn tick(&mut self, now_ms: u64) -> Stamp {
        let wall = Hlc::new(now_ms, 0);
        self.last = if wall > self.last { wall } else { self.last.successor() };
        Stamp { hlc: self.last, node: self.node }
    }

    /// Checks that a remote reading is within the skew bound of wall time `now_ms`.
    pub fn check(&self, remote: Hlc, now_ms: u64) -> Result<(), SkewError> {
        let limit = now_ms.saturating_add(self.skew_ms_max);
        match remote.wall_ms().checked_sub(limit) {
            Some(excess) if excess > 0 => Err(SkewError { ahead_ms: remote.wall_ms() - now_ms }),
            _ => Ok(()),
        }
    }

    /// Observes a remote reading, so every later local stamp is greater than it. Refuses (and
    /// does not observe) a reading beyond the skew bound.
    pub fn observe(&mut self, remote: Hlc, now_ms: u64) -> Result<(), SkewError> {
        self.check(remote, now_ms)?;
        self.last = self.last.max(remote);
        Ok(())
    }
}
