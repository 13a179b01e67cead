//! Faults on real processes under write load (issue 11, item 10), asserting what a user would
//! notice: no acknowledged write lost.
//!
//! - A rolling restart of every node of three on its own address (SIGTERM, restart, wait for
//!   ready, next) under continuous local writes: every acknowledged write is read back on every
//!   node. Each restart's time to ready is printed, not asserted.
//! - `kill -9` of one node of three under writes with `--wait 2`: every write acknowledged at
//!   that level is read back on every node, the killed one once restarted.
//!
//! The partition through the transport's firewall is in `partition.rs` (in-process nodes:
//! the firewall is not reachable from outside a process); the leaked-wait storm in
//! `bounds.rs`. The 1 MiB overwrite memory bound stays a measurement on a release build
//! (`overwrite_memory.sh`): a debug build writes too slowly to tell a bounded history from an
//! unbounded one within a test's time (10 s: 110 MB peak bounded, 94 MB with the byte bound
//! lifted; 30 s: 153 MB bounded, 68 s of test).

mod common;

use std::time::{Duration, Instant};

use chorus::WaitLevel;
use common::load::{Load, await_all_held};
use common::{EXIT_TIMEOUT, Node, Scratch, start_together};

/// How long the load runs between two faults, so that each node takes writes before and
/// after each.
const LOAD_BETWEEN: Duration = Duration::from_secs(2);

#[test]
fn a_rolling_restart_under_load_loses_no_acknowledged_write() {
    let scratch = Scratch::new("rolling_restart");
    let (addrs, mut nodes) = start_together(&["a", "b", "c"], scratch.path());
    let load = Load::start("rolling", addrs.clone(), WaitLevel::Local);
    let mut to_ready = Vec::new();
    for index in 0..nodes.len() {
        std::thread::sleep(LOAD_BETWEEN);
        let name = nodes[index].name().to_string();
        let process = &mut nodes[index].process;
        process.terminate();
        let status = process.wait_exit(EXIT_TIMEOUT);
        assert!(status.is_some_and(|s| s.success()), "{name} exits 0\n{}", process.log_tail());
        let started = Instant::now();
        let restarted = Node::spawn_at(&name, &addrs[index], &addrs, None, scratch.path());
        nodes[index] = Node::await_ready(restarted, None);
        to_ready.push(started.elapsed());
    }
    std::thread::sleep(LOAD_BETWEEN);
    let acked = load.stop();
    eprintln!(
        "rolling restart: {} writes acknowledged, {} failed; restart to ready: {to_ready:?}",
        acked.keys.len(),
        acked.failed
    );
    assert!(acked.keys.len() > 100, "the load wrote: {acked:?}");
    await_all_held(&addrs, &acked.keys);
}

#[test]
fn kill_9_under_load_with_wait_2_loses_no_acknowledged_write() {
    let scratch = Scratch::new("kill_under_load");
    let (addrs, mut nodes) = start_together(&["a", "b", "c"], scratch.path());
    let load = Load::start("killed", addrs.clone(), WaitLevel::Count(2));
    std::thread::sleep(LOAD_BETWEEN);
    nodes[2].process.kill();
    std::thread::sleep(LOAD_BETWEEN);
    let acked = load.stop();
    eprintln!("kill -9: {} writes acknowledged, {} failed", acked.keys.len(), acked.failed);
    assert!(acked.keys.len() > 100, "the load wrote: {acked:?}");
    await_all_held(&addrs[..2], &acked.keys);
    // Restarted on its address, the killed node catches up with all of them too.
    let restarted = Node::spawn_at("c", &addrs[2], &addrs, None, scratch.path());
    nodes[2] = Node::await_ready(restarted, None);
    await_all_held(&addrs[2..], &acked.keys);
}
