//! [`Stats`]: the protocol's counters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::NodeId;

/// Counters, for `chorus stats` and the simulator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Messages sent.
    pub messages_sent: u64,
    /// Messages received and handled (the driver counts bytes, and messages that did not
    /// decode, since it decodes them).
    pub messages_received: u64,
    /// Updates merged that changed this replica.
    pub updates_applied: u64,
    /// Updates received that were already seen.
    pub updates_duplicate: u64,
    /// Pushed updates that arrived before an earlier write of their writer that this node
    /// had not seen: out of order, the slow path into the store's indexes. A lost or dropped
    /// push makes them, and so do a join's first pushes (before its catch-up), pushes missed
    /// while this node was suspected (out of the push trees), a write held back for its
    /// clock (the writer's later ones then count) and a tree that changed with the membership;
    /// a steady cluster of agreeing clocks on a healthy network makes none but one a push for
    /// each write that replaced queued writes of its key with other writes queued between
    /// them (it travels where the first of those was: `push.rs`).
    pub updates_ahead: u64,
    /// Updates held back because their stamp was too far ahead.
    pub skew_refused: u64,
    /// The largest lead of a refused stamp, in milliseconds.
    pub skew_ms_max: u64,
    /// Refused updates per peer.
    pub skew_by_peer: BTreeMap<NodeId, u64>,
    /// Pushes dropped because a peer's queue was full.
    pub pushes_dropped: u64,
    /// Events dropped because the driver did not drain them.
    pub events_dropped: u64,
    /// Tombstones and expired entries collected.
    pub collected: u64,
    /// Times this node took a new identity (fenced out, or its state dropped).
    pub resets: u64,
    /// Anti-entropy exchanges refused because one side's state was behind the other's
    /// collections.
    pub exchanges_refused: u64,
    /// Rounds opened at once because a peer's last page said it had more (catch-up).
    pub pulls: u64,
}
