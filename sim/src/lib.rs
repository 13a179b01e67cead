//! `chorus-sim`: the deterministic simulator of chorus.
//!
//! Many [`chorus_proto::Node`]s run in one thread, in virtual time, exchanging their encoded
//! messages through a simulated [`Network`] that loses, duplicates, delays, reorders, tears
//! and partitions them, on machines whose clocks are offset and drift, while nodes crash,
//! restart, leave and join. Every random choice comes from one generator seeded by the run's
//! seed, and nothing reads the OS clock or iterates a hash container: a seed replays the same
//! run, byte for byte, which the trace hash fingerprints.
//!
//! - [`run()`]: one seed of a profile ([`Profile::Lite`] for `cargo test`,
//!   [`Profile::Swarm`] for sweeps), checked by the [`Checker`]: safety after every call into
//!   a node, convergence and collection within stated budgets after the heal.
//! - [`sweep()`]: many seeds, on several threads.
//! - [`mod@bench`]: the Maelstrom broadcast shape (`glomers`) and one write into a large cluster
//!   (`scale`).
//! - [`Sabotage`]: rules broken on purpose, to prove the checkers catch them.

#![warn(missing_docs)]

pub mod bench;
mod checker;
mod clock;
mod cluster;
mod faults;
mod network;
mod pages;
mod quantile;
mod run;
mod sweep;
mod trace;
mod workload;

pub use checker::{Checker, Failure, LiveNode, Write};
pub use clock::{ClockModel, START_MS};
pub use cluster::{Cluster, Reached, SEED_ADDR, Slot, Status, Stepped, Tapped};
pub use faults::{
    ClockSpec, Crash, Episode, Latency, LinkFaults, Plan, Profile, Shape, WorkloadSpec,
};
pub use network::{Copy, Network, NetworkStats};
pub use pages::Pages;
pub use run::{COLLECT_BUDGET_MS, HEAL_BUDGET_MS, Options, Outcome, Sabotage, node_template, run};
pub use sweep::{SweepReport, run_caught, sweep};
pub use trace::TraceHash;
pub use workload::{Op, Workload};
