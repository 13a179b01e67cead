//! The node's front ends: each translates its protocol onto the node's operations
//! (`crate::node::Driver`'s methods) and never reaches into the driver's state.
//!
//! - `rpc`: the QUIC RPC that `chorus::Client` and the CLI speak.

pub mod redis;
pub mod rpc;
