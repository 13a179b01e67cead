//! The clock self-check on real processes (DESIGN 3, issue 11 item 7): three nodes, one of
//! them started with its clock off by libfaketime (+2 s, -2 s, +10 min, -10 min). Its local
//! writes are refused with an error that says how far off it is (CLI exit 5, Redis `-ERR`),
//! it prints no ready line and its stats say why, no write acknowledged anywhere is lost, and
//! it recovers by itself once its clock is corrected, and after a restart with a right clock.
//!
//! Ignored by a plain `cargo test` (a fresh machine may lack libfaketime): `.ci/run` installs
//! Debian's `faketime` and runs `cargo test --test clock -- --ignored`, where a missing
//! library fails every test. `CHORUS_LIBFAKETIME` names another path to the library.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Cluster, Node, Process, READY_TIMEOUT, Redis, chorus, eventually};

/// Where Debian's `faketime` package puts the library.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// How long detection may take: a few gossip rounds, with slack for a loaded machine.
const DETECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The exit code of a write refused for the node's clock (README, CLI).
const EXIT_CLOCK: i32 = 5;

fn libfaketime() -> String {
    let path = std::env::var("CHORUS_LIBFAKETIME").unwrap_or_else(|_| LIBFAKETIME.to_string());
    assert!(
        Path::new(&path).exists(),
        "libfaketime is missing at {path}: install Debian's faketime package (.ci/run does)"
    );
    path
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for the skewed node's Redis door.
fn free_tcp_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free TCP port");
    listener.local_addr().expect("bound").to_string()
}

/// The skewed node: its wall clock read through libfaketime, whose offset is the content of
/// `offset_file` (read again at most a second later when it changes). Monotonic time is left
/// alone: only the wall clock is wrong, as on a machine without NTP.
fn spawn_skewed(
    listen: &str,
    redis: &str,
    seeds: &[&str],
    offset_file: &Path,
    dir: &Path,
) -> Process {
    let mut args = vec!["node", "--listen", listen, "--redis", redis, "--name", "skewed"];
    for seed in seeds {
        args.extend(["--join", seed]);
    }
    let library = libfaketime();
    let file = offset_file.to_str().expect("a UTF-8 scratch path");
    let env = [
        ("LD_PRELOAD", library.as_str()),
        ("FAKETIME_TIMESTAMP_FILE", file),
        ("FAKETIME_CACHE_DURATION", "1"),
        ("DONT_FAKE_MONOTONIC", "1"),
    ];
    Process::start("skewed", &args, &env, dir)
}

/// `chorus stats --json` of the node at `addr`, if it answered.
fn stats(addr: &str) -> Option<serde_json::Value> {
    let output = chorus(&["stats", "--json", "--node", addr]);
    (output.code == 0).then(|| output.json())
}

/// Unique writes, and which were acknowledged (exit 0): they must all survive.
#[derive(Default)]
struct Writes {
    acknowledged: Vec<(String, String)>,
    refused: usize,
    next: u32,
}

impl Writes {
    /// Puts a new key through the node at `addr`; records it if acknowledged.
    fn put(&mut self, addr: &str) -> common::Output {
        self.next += 1;
        let (key, value) = (format!("clock/{}", self.next), format!("v{}", self.next));
        let output = chorus(&["put", &key, &value, "--node", addr, "--connect-timeout", "1s"]);
        if output.code == 0 {
            eprintln!("acknowledged {key} by {addr}: {}", output.text().trim());
            self.acknowledged.push((key, value));
        } else {
            self.refused += 1;
        }
        output
    }

    /// Every acknowledged write reads back on `node`.
    fn all_held_by(&self, node: &Node) {
        for (key, value) in &self.acknowledged {
            node.await_value(key, Some(value.as_bytes()));
        }
    }
}

/// Writes on every node until the skewed one reports its clock off; returns how long that took.
fn until_detected(addrs: &[&str], skewed: &str, writes: &mut Writes) -> Duration {
    let started = Instant::now();
    eventually("the skewed node reports its clock off", DETECT_TIMEOUT, || {
        for addr in addrs {
            writes.put(addr);
        }
        let stats = stats(skewed).ok_or("no stats yet")?;
        let why = stats["not_ready"].as_str().unwrap_or_default().to_string();
        if why.starts_with("clock offset") { Ok(()) } else { Err(format!("not_ready={why:?}")) }
    });
    started.elapsed()
}

fn skewed_node_is_refused_then_recovers(offset: &str, offset_ms: i64) {
    let mut cluster = Cluster::start(&format!("clock{offset}"), &["good-1", "good-2"]);
    let (first, second) =
        (cluster.nodes[0].addr().to_string(), cluster.nodes[1].addr().to_string());
    let listen = common::free_addrs(1).remove(0);
    let redis = free_tcp_port();
    let offset_file = cluster.scratch.file("faketime", offset.as_bytes());
    let spawned = Instant::now();
    let mut skewed =
        spawn_skewed(&listen, &redis, &[&first, &second], &offset_file, cluster.scratch.path());
    let mut writes = Writes::default();
    let detected = until_detected(&[&first, &second, &listen], &listen, &mut writes);

    // What a user sees: the error with the offset, exit 5; the same text over Redis.
    let stats = stats(&listen).expect("stats");
    let estimated = stats["clock_offset_ms"].as_i64().expect("an offset");
    assert!((estimated - offset_ms).abs() < 250, "offset {offset}: estimated {estimated}");
    let refused = writes.put(&listen);
    refused.expect_code(EXIT_CLOCK);
    let side = if offset_ms > 0 { "ahead of" } else { "behind" };
    let line = refused.expect_one_stderr_line().to_string();
    assert!(line.contains(&format!("ms {side} its peers")) && line.contains("NTP"), "{line}");
    let mut door = Redis::connect(&redis);
    let reply = door.call(&["SET", "clock/redis", "x"]);
    assert!(format!("{reply:?}").contains(&format!("ms {side} its peers")), "{reply:?}");
    assert_eq!(skewed.next_line(Duration::ZERO), None, "a skewed node printed a ready line");
    eprintln!(
        "offset {offset}: detected {detected:?} after start ({:?} since spawn)",
        spawned.elapsed()
    );

    // Corrected while running (NTP steps the clock): ready by itself, and takes writes.
    std::fs::write(&offset_file, "+0s").expect("correct the clock");
    let corrected = Instant::now();
    let ready = skewed.expect_line(READY_TIMEOUT, |line| line.starts_with("ready "));
    let recovered = corrected.elapsed();
    assert!(ready.contains(&format!("listen={listen}")), "{ready}");
    writes.put(&listen).expect_code(0);
    eprintln!("offset {offset}: ready {recovered:?} after the correction");

    // The clock jumps again while it runs (writes on it go on: the step is noticed by the
    // next write), then it is restarted with a right clock: ready, and every acknowledged
    // write held everywhere.
    std::fs::write(&offset_file, offset).expect("skew the clock again");
    let mut again = Writes::default();
    until_detected(&[&first, &second, &listen], &listen, &mut again);
    skewed.kill();
    let restarted = Instant::now();
    let process = Node::spawn_at(
        "skewed",
        &listen,
        &[first.clone(), second.clone()],
        None,
        cluster.scratch.path(),
    );
    cluster.nodes.push(Node::await_ready(process, None));
    eprintln!("offset {offset}: restarted with a right clock, ready in {:?}", restarted.elapsed());
    cluster.node("skewed").put("clock/after-restart", "ok");
    writes.acknowledged.push(("clock/after-restart".into(), "ok".into()));
    writes.acknowledged.extend(again.acknowledged);
    for node in &cluster.nodes[..2] {
        writes.all_held_by(node);
    }
    writes.all_held_by(cluster.node("skewed"));
    eprintln!(
        "offset {offset}: {} writes acknowledged and held everywhere, {} refused",
        writes.acknowledged.len(),
        writes.refused + again.refused
    );
}

#[test]
#[ignore = "needs libfaketime: .ci/run installs it and runs these with --ignored"]
fn a_node_two_seconds_ahead_is_refused_then_recovers() {
    skewed_node_is_refused_then_recovers("+2s", 2_000);
}

#[test]
#[ignore = "needs libfaketime: .ci/run installs it and runs these with --ignored"]
fn a_node_two_seconds_behind_is_refused_then_recovers() {
    skewed_node_is_refused_then_recovers("-2s", -2_000);
}

#[test]
#[ignore = "needs libfaketime: .ci/run installs it and runs these with --ignored"]
fn a_node_ten_minutes_ahead_is_refused_then_recovers() {
    skewed_node_is_refused_then_recovers("+600s", 600_000);
}

#[test]
#[ignore = "needs libfaketime: .ci/run installs it and runs these with --ignored"]
fn a_node_ten_minutes_behind_is_refused_then_recovers() {
    skewed_node_is_refused_then_recovers("-600s", -600_000);
}
