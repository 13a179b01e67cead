//! [`Transmit`]: a message the node wants sent, and the [`Lane`] it should travel on.

use std::sync::Arc;

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
/// the task that writes to the peer. A message sent to several peers (a push batch) is one
/// shared `Arc`: transmits whose messages are [`Transmit::shares_message`] encode to the same
/// bytes, so a driver may encode it once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: Addr,
    /// Which lane.
    pub lane: Lane,
    /// The message, shared with the other transmits of the same message.
    pub message: Arc<Envelope>,
}

impl Transmit {
    /// The message's bytes, through the bounded codec (see [`Envelope::encode`]).
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        self.message.encode()
    }

    /// The message as a frame for a stream: a `u32` length, then what `encode` gives.
    pub fn encode_frame(&self) -> Result<Vec<u8>, CodecError> {
        self.message.encode_frame()
    }

    /// Whether `other` carries this very message (not merely an equal one), so that its
    /// bytes are this one's.
    pub fn shares_message(&self, other: &Transmit) -> bool {
        Arc::ptr_eq(&self.message, &other.message)
    }
}
