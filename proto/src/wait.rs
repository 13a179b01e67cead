//! Write waits: a write that completes only once enough members hold it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::clock::{NodeId, Stamp};
use crate::version::Dot;

/// How many replicas must hold a write before it is reported complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaitLevel {
    /// This node only: complete at once.
    Local,
    /// Every member not known to be dead or left.
    All,
    /// At least this many nodes, this one included.
    Count(u32),
}

/// Identifies a pending wait, to match its outcome to the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WaitId(pub u64);

/// How a wait ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitOutcome {
    /// The wait.
    pub id: WaitId,
    /// The write's stamp.
    pub stamp: Stamp,
    /// Whether the level was reached before the deadline.
    pub complete: bool,
    /// Members known to hold the write, this node included.
    pub confirmed: Vec<NodeId>,
    /// Members waited for that had not confirmed (empty when complete).
    pub missing: Vec<NodeId>,
}

/// A write waiting for confirmations.
#[derive(Clone, Debug)]
pub(crate) struct Wait {
    pub(crate) id: WaitId,
    pub(crate) dot: Dot,
    pub(crate) stamp: Stamp,
    pub(crate) level: WaitLevel,
    pub(crate) deadline_ms: u64,
    pub(crate) confirmed: BTreeSet<NodeId>,
}

impl Wait {
    /// The outcome if the wait ended now, given the members currently waited for under
    /// `All` (every member not dead or left, this node included).
    pub(crate) fn outcome(
        &self,
        required: &BTreeSet<NodeId>,
        deadline_passed: bool,
    ) -> Option<WaitOutcome> {
        let complete = match self.level {
            WaitLevel::Local => true,
            WaitLevel::All => required.is_subset(&self.confirmed),
            WaitLevel::Count(count) => self.confirmed.len() >= count as usize,
        };
        if !complete && !deadline_passed {
            return None;
        }
        let missing = if complete {
            Vec::new()
        } else {
            required.difference(&self.confirmed).copied().collect()
        };
        Some(WaitOutcome {
            id: self.id,
            stamp: self.stamp,
            complete,
            confirmed: self.confirmed.iter().copied().collect(),
            missing,
        })
    }
}
