//! chorus: a replicated key-value store for application variables, around `chorus-proto`.
//!
//! - [`NodeHandle`] starts and steers a node (QUIC endpoint, mutual TLS, driver task).
//! - [`Client`] talks to a node over the RPC.
//! - [`tls`] derives every TLS identity from the cluster key.
//!
//! The crate is laid out by owner: `node` (the driver, its lock, timers, watch history and the
//! protocol-neutral operations), `gossip` (node-to-node transport), `frontend` (the protocols
//! clients speak), `client` (the Rust client), and `frame` (length-prefixed frames, shared by
//! gossip, the RPC server and the client).

pub mod client;
mod frame;
mod frontend;
mod gossip;
mod node;
mod store;
pub mod text;
pub mod tls;

pub use client::{Client, ClientError, Watch, WriteOptions, WriteResult};
// Every type the public signatures use, so a Rust user depends on `chorus` alone.
pub use chorus_proto::rpc::{
    Change, ChangeKind, Counter, MemberInfo, RpcError, StatsReport, WaitReport,
};
pub use chorus_proto::{Config, DataError, Hlc, Key, MemberState, NodeId, Stamp, Value, WaitLevel};
pub use frontend::http::HttpOptions;
pub use frontend::redis::RedisOptions;
pub use gossip::Firewall;
pub use node::{
    Clock, FRONT_END_STOP_TIMEOUT, LISTEN_DEFAULT, NodeFailure, NodeHandle, NodeOptions, NotReady,
    Readiness, StartError, node_runtime,
};
pub use store::{DataDirError, Fsync};
