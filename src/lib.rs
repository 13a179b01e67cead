//! chorus: the node driver, RPC server and client, and CLI around `chorus-proto`.
//!
//! - [`NodeHandle`] starts and steers a node (QUIC endpoint, mutual TLS, driver task).
//! - [`Client`] talks to a node over the RPC.
//! - [`tls`] derives every TLS identity from the cluster key.

pub mod client;
mod driver;
mod frame;
mod node;
mod server;
pub mod tls;
mod transport;

pub use client::{Client, ClientError, Watch, WriteOptions, WriteResult};
pub use node::{LISTEN_DEFAULT, NodeHandle, NodeOptions, StartError};
pub use transport::Firewall;
