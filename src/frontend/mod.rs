//! The node's front ends: each translates its protocol onto the node's operations
//! (`crate::node::Driver`'s methods) and never reaches into the driver's state.
//!
//! - `rpc`: the QUIC RPC that `chorus::Client` and the CLI speak.
//! - `redis`: RESP2 and RESP3 on TCP (`--redis`).
//! - `http`: the HTTP API, watch, `/metrics`, `/health` and `/ready` (`--http`).

pub mod http;
pub mod redis;
pub mod rpc;

/// Compares two secrets (a Redis password, an HTTP token) in time that does not depend on
/// where they differ.
pub(crate) fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    expected.len() == given.len()
        && expected.iter().zip(given).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}
