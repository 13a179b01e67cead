//! `chorus-proto`: the sans-IO core of chorus.
//!
//! Everything that decides what the cluster does lives here, and nothing here touches the
//! outside world: no sockets, files, threads, clocks or OS randomness. Time arrives as a
//! `now_ms` argument, randomness as a seed, and messages as values the caller encodes and
//! decodes. The tokio driver in the
//! `chorus` crate and the simulator in `chorus-sim` run this same code, which is what lets the
//! simulator prove things about the real node.
//!
//! The public surface is small: the modules callers reach by path ([`codec`], [`limits`],
//! [`message`], [`rpc`], [`disk`], [`keyspace`], [`resp`]) and the types re-exported here.
//! The state machines inside ([`Node`]'s member table, push outboxes, write waits, the
//! store's indexes and horizon rules) are private; [`Store`], [`VersionVector`] and [`Clock`] stay public because the
//! simulator reads a node's replica and the property tests and benchmarks drive them alone.
//!
//! - [`Stamp`], [`Hlc`], [`Clock`]: the hybrid logical clock.
//! - [`Key`], [`Value`]: validated data.
//! - [`Dot`], [`VersionVector`]: what a replica has seen.
//! - [`Store`], [`Update`], [`Delta`]: the replicated map of last-writer-wins registers.
//! - [`codec`]: bounded postcard encoding, frames, decoding that never panics.
//! - [`limits`]: every bound, with its reason.
//! - [`rpc`]: the client RPC's requests and responses.
//! - [`disk`]: the data directory's records and the [`disk::Journal`] of changes to write.
//! - [`Node`]: the replica as a state machine (membership, eager push, anti-entropy,
//!   collection, write waits), taking [`Write`] commands and exchanging [`message`]s:
//!   [`Envelope::decode`] before [`Node::handle_message`], [`Transmit::encode`] after
//!   [`Node::poll_transmit`].
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

#![warn(missing_docs)]

mod clock;
pub mod codec;
mod config;
mod data;
pub mod disk;
mod durable;
mod event;
mod exchange;
mod horizon;
pub mod keyspace;
pub mod limits;
mod membership;
pub mod message;
mod node;
mod offset;
mod push;
pub mod resp;
pub mod rpc;
mod selfcheck;
mod stats;
mod store;
mod transmit;
mod tree;
mod version;
mod wait;
mod write;

pub use clock::{Clock, Hlc, NodeId, SkewError, Stamp};
pub use codec::CodecError;
pub use data::{DataError, Key, Value};
pub use event::Event;
pub use horizon::Horizon;
pub use membership::{Member, MemberChange, MemberState};
pub use message::{
    Addr, ClockStamp, Echo, Envelope, InvalidMessage, MessageError, Name, ResetReason,
};
pub use node::{Config, Node, Sabotage};
pub use offset::{ClockCheck, ClockSample};
pub use stats::Stats;
pub use store::{Applied, Delta, Entry, Group, Listed, Replaced, Store, Update};
pub use transmit::{Lane, Transmit};
pub use version::{Dot, VersionVector};
pub use wait::{WaitId, WaitLevel, WaitOutcome};
pub use write::{Write, WriteError, Written, clock_offset_text};
