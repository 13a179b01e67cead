//! [`Transmit`]: a message the node wants sent, and the [`Lane`] it should travel on.

use crate::codec::CodecError;
use crate::message::{Addr, Envelope};

/// Which connection lane a message should travel on: catch-up pages go on their own lane so a
/// large sync never delays heartbeats and pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// Digests, pushes, acknowledgements: small and latency-sensitive.
    Control,
    /// Anti-entropy delta pages: large, may queue.
    Bulk,
}

/// A message for the driver to send. It carries the message, not its bytes, so the driver
/// encodes it ([`Transmit::encode`]) where it likes: outside the lock around its node, or on
/// the task that writes to the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: Addr,
    /// Which lane.
    pub lane: Lane,
    /// The message.
    pub message: Envelope,
}

impl Transmit {
    /// The message's bytes, through the bounded codec (see [`Envelope::encode`]).
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        self.message.encode()
    }
}
