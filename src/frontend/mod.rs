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

/// The test-only fault switch: an environment variable read by debug builds only (a release
/// build never reads it), so the black-box tests can make a part of the node fail or stall the
/// way a bug or a slow disk would. Values: `redis-accept-panic`, `redis-accept-return`,
/// `http-accept-panic`, `quic-accept-panic` (that accept loop panics, or returns, on its next
/// accepted connection), and `persist-commit-stall` (every commit with journal rows is held
/// until another commit is asked for, `node::persist::COMMIT_STALL`). ARCHITECTURE.md lists
/// it.
pub const TEST_FAULT_ENV: &str = "CHORUS_TEST_FAULT";

/// Whether the test-only fault `name` is switched on ([`TEST_FAULT_ENV`]); always false in a
/// release build.
pub(crate) fn test_fault(name: &str) -> bool {
    cfg!(debug_assertions) && std::env::var(TEST_FAULT_ENV).is_ok_and(|fault| fault == name)
}

/// How long an accept loop pauses after a failed accept: an error such as too many open
/// files lasts until a connection closes, and retrying at once would spin a core.
pub const ACCEPT_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// The next connection `listener` accepts for front end `door`: a failed accept is logged and
/// tried again after [`ACCEPT_RETRY_PAUSE`].
pub(crate) async fn accept(
    listener: &tokio::net::TcpListener,
    door: &str,
) -> (tokio::net::TcpStream, std::net::SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                tracing::warn!(door, %error, "accepting a connection failed; retrying");
                tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
            }
        }
    }
}
