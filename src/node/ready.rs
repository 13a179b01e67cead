//! Readiness (DESIGN 7.1): one predicate, shared by the `ready` line and the HTTP `/ready`.
//!
//! The driver recomputes it after every step of the node and publishes it on a watch channel,
//! so a reader never takes the node's lock to ask.

use chorus_proto::{ClockCheck, Node, clock_offset_text};

/// Why a node is not ready. The `Display` text is what `/ready` and the logs say.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// The node has seeds and has not yet completed an exchange with any of them.
    #[error("joining: no seed has answered yet")]
    Joining,
    /// The node joined and is still receiving the data its peers hold.
    #[error("catching up: still receiving the data its peers hold")]
    CatchingUp,
    /// The node has not yet compared its clock with most of its live peers.
    #[error("checking the clock: not yet compared with most of its peers")]
    CheckingClock,
    /// The node's clock is off from most of its live peers by more than the skew bound: it
    /// refuses writes until its clock is corrected.
    #[error("clock offset: {}", clock_offset_text(*offset_ms, *bound_ms))]
    ClockOffset {
        /// The median offset from its live peers, in milliseconds (positive: ahead).
        offset_ms: i64,
        /// The skew bound.
        bound_ms: u64,
    },
    /// The node is stopping: it takes no new writes and hands its writes to a peer.
    #[error("draining: the node is stopping")]
    Draining,
    /// Writing the data directory failed: the node persists nothing more until it is
    /// restarted on a working disk (under `--fsync always`, every write through it fails as
    /// not durable meanwhile).
    #[error("the data directory failed ({0}): restart the node once the disk is fixed")]
    DataDir(String),
}

/// The node's readiness: `Ok` when ready, else why not.
pub type Readiness = Result<(), NotReady>;

/// What the predicate reads, kept beside the node under the driver's lock.
#[derive(Clone, Debug, Default)]
pub(super) struct ReadyInputs {
    /// The node was given seeds (other than itself): it has a cluster to join.
    pub(super) seeded: bool,
    /// Completed an exchange with a peer (or has no seeds).
    pub(super) joined: bool,
    /// Received every page of a catch-up from a peer (or has no seeds).
    pub(super) caught_up: bool,
    /// The clock self-check's verdict.
    pub(super) clock: ClockCheck,
    /// The skew bound.
    pub(super) bound_ms: u64,
    /// A graceful leave has begun.
    pub(super) draining: bool,
    /// Why writing the data directory failed, once it did (it never recovers by itself).
    pub(super) data_dir_failed: Option<String>,
}

impl ReadyInputs {
    /// Inputs for a node given seeds or not, nothing observed yet.
    pub(super) fn new(seeded: bool, node: &Node) -> ReadyInputs {
        let mut inputs = ReadyInputs { seeded, ..ReadyInputs::default() };
        inputs.observe(node);
        inputs
    }

    /// Reads what the predicate needs from the node (each an O(1) getter).
    pub(super) fn observe(&mut self, node: &Node) {
        self.joined = !self.seeded || node.is_joined();
        self.caught_up = !self.seeded || node.is_caught_up();
        self.clock = node.clock_check();
        self.bound_ms = node.config().clock_skew_ms_max;
    }

    /// The predicate of DESIGN 7.1, and a data directory that can still be written. Draining
    /// comes first: a load balancer must stop sending. A failed data directory and a clock
    /// beyond the bound come next: they last until someone fixes them, where joining and
    /// catching up pass by themselves.
    pub(super) fn readiness(&self) -> Readiness {
        if self.draining {
            Err(NotReady::Draining)
        } else if let Some(why) = &self.data_dir_failed {
            Err(NotReady::DataDir(why.clone()))
        } else if let ClockCheck::Off { offset_ms } = self.clock {
            Err(NotReady::ClockOffset { offset_ms, bound_ms: self.bound_ms })
        } else if !self.joined {
            Err(NotReady::Joining)
        } else if !self.caught_up {
            Err(NotReady::CatchingUp)
        } else if self.clock == ClockCheck::Unchecked {
            Err(NotReady::CheckingClock)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> ReadyInputs {
        ReadyInputs {
            seeded: true,
            joined: true,
            caught_up: true,
            clock: ClockCheck::Within,
            bound_ms: 500,
            draining: false,
            data_dir_failed: None,
        }
    }

    #[test]
    fn draining_wins_over_everything_and_joined_is_ready() {
        let mut inputs = ReadyInputs { joined: false, ..ready() };
        assert_eq!(inputs.readiness(), Err(NotReady::Joining));
        inputs.joined = true;
        assert_eq!(inputs.readiness(), Ok(()));
        inputs.draining = true;
        assert_eq!(inputs.readiness(), Err(NotReady::Draining));
        inputs.joined = false;
        assert_eq!(inputs.readiness(), Err(NotReady::Draining));
    }

    #[test]
    fn a_failed_data_directory_is_not_ready_until_restart_and_says_why() {
        let failed = Some("File too large (os error 27)".to_string());
        let inputs = ReadyInputs { data_dir_failed: failed.clone(), ..ready() };
        let why = inputs.readiness().unwrap_err();
        assert_eq!(why, NotReady::DataDir("File too large (os error 27)".to_string()));
        assert!(why.to_string().contains("restart the node once the disk is fixed"), "{why}");
        let clock = ClockCheck::Off { offset_ms: 2_000 };
        let inputs = ReadyInputs { data_dir_failed: failed.clone(), clock, ..ready() };
        assert!(matches!(inputs.readiness(), Err(NotReady::DataDir(_))), "before the clock");
        let inputs = ReadyInputs { data_dir_failed: failed, draining: true, ..ready() };
        assert_eq!(inputs.readiness(), Err(NotReady::Draining), "draining still first");
    }

    #[test]
    fn ready_needs_caught_up_and_a_checked_clock() {
        let inputs = ReadyInputs { caught_up: false, ..ready() };
        assert_eq!(inputs.readiness(), Err(NotReady::CatchingUp));
        let inputs = ReadyInputs { clock: ClockCheck::Unchecked, ..ready() };
        assert_eq!(inputs.readiness(), Err(NotReady::CheckingClock));
        let off = ClockCheck::Off { offset_ms: -600_000 };
        let inputs = ReadyInputs { clock: off, joined: false, ..ready() };
        let why = inputs.readiness().unwrap_err();
        assert_eq!(why, NotReady::ClockOffset { offset_ms: -600_000, bound_ms: 500 });
        let text = why.to_string();
        assert!(text.contains("clock is 600000 ms behind its peers"), "{text}");
        let inputs = ReadyInputs { clock: ClockCheck::Off { offset_ms: 2_000 }, ..ready() };
        assert!(inputs.readiness().unwrap_err().to_string().contains("2000 ms ahead of"));
    }
}
