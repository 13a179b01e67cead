//! The running node: the driver around the protocol node (one lock, short steps), its timers,
//! the watch history, write waits, and the protocol-neutral operations every front end uses.
//!
//! - `handle`: [`NodeHandle`] starts a node and steers it (leave, shutdown, stop).
//! - `front_ends`: the Redis front end (a task, or a thread) and the HTTP task: stopped and
//!   waited for, and watched for an end nobody asked for ([`NodeFailure`]).
//! - `driver`: the `proto::Node` behind the lock, and the drain contract.
//! - `ops`: the operations front ends call (get, write, list, members, stats, subscribe);
//!   `outcome`: what they answer (`OpError`, `Written`).
//! - `ready`: the readiness predicate (DESIGN 7.1) behind the `ready` line and `/ready`.
//! - `lock`: the lock taken with a purpose, its hold times measured.
//! - `metrics`: request counts and latencies, connections and propagation lag, kept beside
//!   the lock for `/metrics`.
//! - `history`, `skew`, `timers`, `clock`: the watch history, the held-back-write log, the
//!   timer task, and the clock seam.

mod clock;
mod driver;
mod front_ends;
mod handle;
mod history;
mod lock;
mod metrics;
mod ops;
mod outcome;
mod persist;
mod ready;
mod runtime;
mod sends;
mod session;
mod skew;
mod stats;
mod timers;

#[cfg(test)]
mod tests;

pub use clock::Clock;
pub use driver::Driver;
pub use front_ends::{FRONT_END_STOP_TIMEOUT, NodeFailure};
pub use handle::{LISTEN_DEFAULT, NodeHandle, NodeOptions, StartError};
pub use history::Live;
pub use lock::Purpose;
pub use metrics::SeriesCache;
pub use outcome::{OpError, Written};
pub use ready::{NotReady, Readiness};
pub use runtime::node_runtime;
pub use session::{Found, Session};
