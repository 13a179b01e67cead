//! Readiness (DESIGN 7.1): one predicate, shared by the `ready` line and the HTTP `/ready`.
//!
//! The driver recomputes it after every step of the node and publishes it on a watch channel,
//! so a reader never takes the node's lock to ask.

/// Why a node is not ready. The `Display` text is what `/ready` and the logs say.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// The node has seeds and has not yet completed an exchange with any of them.
    #[error("joining: no seed has answered yet")]
    Joining,
    /// The node is stopping: it takes no new writes and hands its writes to a peer.
    #[error("draining: the node is stopping")]
    Draining,
}

/// The node's readiness: `Ok` when ready, else why not.
pub type Readiness = Result<(), NotReady>;

/// What the predicate reads, kept beside the node under the driver's lock.
#[derive(Clone, Debug, Default)]
pub(super) struct ReadyInputs {
    /// Completed an exchange with a peer (or has no seeds).
    pub(super) joined: bool,
    /// A graceful leave has begun.
    pub(super) draining: bool,
}

impl ReadyInputs {
    /// The predicate of DESIGN 7.1. Draining comes first: a load balancer must stop sending.
    pub(super) fn readiness(&self) -> Readiness {
        if self.draining {
            Err(NotReady::Draining)
        } else if !self.joined {
            Err(NotReady::Joining)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draining_wins_over_everything_and_joined_is_ready() {
        let mut inputs = ReadyInputs::default();
        assert_eq!(inputs.readiness(), Err(NotReady::Joining));
        inputs.joined = true;
        assert_eq!(inputs.readiness(), Ok(()));
        inputs.draining = true;
        assert_eq!(inputs.readiness(), Err(NotReady::Draining));
        inputs.joined = false;
        assert_eq!(inputs.readiness(), Err(NotReady::Draining));
    }
}
