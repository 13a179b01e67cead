//! `chorus-proto`: the sans-IO core of chorus.
//!
//! Everything that decides what the cluster does lives here, and nothing here touches the
//! outside world: no sockets, files, threads, clocks or OS randomness. Time arrives as a
//! `now_ms` argument, randomness as a seed, and bytes as slices. The tokio driver in the
//! `chorus` crate and the simulator in `chorus-sim` run this same code, which is what lets the
//! simulator prove things about the real node.
//!
//! - [`clock`]: the hybrid logical clock and [`Stamp`]s.
//! - [`data`]: validated [`Key`]s and [`Value`]s.
//! - [`version`]: [`Dot`]s and [`VersionVector`]s.
//! - [`store`]: the replicated map of last-writer-wins registers and its deltas.
//! - [`horizon`]: what a state lacks by collection; the fence that keeps stale state out.
//! - [`codec`]: bounded postcard encoding, frames, decoding that never panics.
//! - [`limits`]: every bound, with its reason.
//! - [`rpc`]: the client RPC's requests and responses.
//! - [`Node`]: the replica as a state machine (membership, eager push, anti-entropy,
//!   collection, write waits), with its wire [`message`]s.
//!
//! # The drain contract
//!
//! [`Node`] is driven in the style of quinn-proto and str0m: mutate, then drain. After every
//! input ([`Node::handle_message`], [`Node::handle_timeout`]) and every command
//! ([`Node::write`], [`Node::join`], [`Node::leave`],
//! [`Node::flush_pushes`]), the caller must call [`Node::poll_transmit`] until it returns
//! `None` and [`Node::poll_event`] until it returns `None`, then read [`Node::poll_timeout`]
//! to learn when to call [`Node::handle_timeout`] next. Debug builds assert that transmits
//! were drained before the next call.

pub mod clock;
pub mod codec;
pub mod data;
mod event;
mod exchange;
pub mod horizon;
pub mod limits;
pub mod membership;
pub mod message;
mod node;
mod push;
pub mod rpc;
mod stats;
pub mod store;
mod transmit;
mod tree;
pub mod version;
mod wait;
mod write;

pub use clock::{Clock, Hlc, NodeId, SkewError, Stamp};
pub use codec::CodecError;
pub use data::{DataError, Key, Value};
pub use event::Event;
pub use horizon::Horizon;
pub use membership::{Member, MemberChange, MemberState};
pub use message::{Addr, Envelope, InvalidMessage, MessageError, Name, ResetReason};
pub use node::{Config, Node, Sabotage};
pub use stats::Stats;
pub use store::{Applied, Delta, Entry, Group, Store, Update};
pub use transmit::{Lane, Transmit};
pub use version::{Dot, VersionVector};
pub use wait::{WaitId, WaitLevel, WaitOutcome};
pub use write::{Write, WriteError, Written};
