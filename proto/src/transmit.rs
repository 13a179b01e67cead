//! [`Transmit`]: a message the node wants sent, and the [`Lane`] it should travel on.

use crate::message::Addr;

/// Which connection lane a message should travel on: catch-up pages go on their own lane so a
/// large sync never delays heartbeats and pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// Digests, pushes, acknowledgements: small and latency-sensitive.
    Control,
    /// Anti-entropy delta pages: large, may queue.
    Bulk,
}

/// A message for the driver to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: Addr,
    /// Which lane.
    pub lane: Lane,
    /// The encoded [`Envelope`].
    pub bytes: Vec<u8>,
}
