//! The cluster key: a node with another key cannot join, a client with a wrong key is turned
//! away with exit 3, the right key works, and the development key stays on loopback.

mod common;

use std::time::{Duration, Instant};

use common::{CONVERGE_TIMEOUT, Cluster, Node, Process, chorus, chorus_with, eventually};

/// A new key from `chorus keygen`.
fn keygen() -> String {
    let output = chorus(&["keygen"]);
    output.expect_code(0);
    let key = output.text().trim().to_string();
    assert!(key.starts_with("chorus-key-") && key.len() == 75, "keygen prints a key: {output}");
    key
}

/// The address a node logs when it starts listening (before it has joined).
fn logged_addr(process: &Process) -> String {
    eventually("the node logs its address", CONVERGE_TIMEOUT, || {
        let log = process.log();
        let line = log.lines().find(|line| line.contains("listening"));
        let addr = line.and_then(|line| line.split("listen=").nth(1)?.split_whitespace().next());
        addr.map(str::to_string).ok_or_else(|| format!("log so far: {log}"))
    })
}

#[test]
fn a_node_with_another_cluster_key_cannot_join() {
    let (key, other_key) = (keygen(), keygen());
    assert_ne!(key, other_key, "keygen makes a new key each time");
    let mut cluster = Cluster::start_with_key("other_key", &["a", "b"], Some(&key));
    let seed = cluster.node("a").addr().to_string();
    let dir = cluster.scratch.path().to_path_buf();

    // Two nodes join through the same seed at the same time; only the key differs.
    let started = Instant::now();
    let mut intruder = Node::spawn("x", Some(&seed), Some(&other_key), &dir);
    let control = Node::spawn("y", Some(&seed), Some(&key), &dir);
    cluster.nodes.push(Node::await_ready(control, Some(&key)));
    // Give the intruder at least as long again, and a few seconds more, to prove it is not
    // merely slower.
    let grace = started.elapsed().max(Duration::from_secs(3));
    let line = intruder.next_line(grace);
    assert_eq!(line, None, "a node with another key printed a line\n{}", intruder.log_tail());
    assert!(intruder.is_running(), "it keeps trying its seed\n{}", intruder.log_tail());
    eventually("the intruder's log says why it cannot join", CONVERGE_TIMEOUT, || {
        let log = intruder.log();
        if log.contains("cluster key") { Ok(()) } else { Err(log) }
    });

    let intruder_addr = logged_addr(&intruder);
    let output = chorus(&["members", "--node", &intruder_addr, "--cluster-key", &other_key]);
    let lines: Vec<String> = output.expect_code(0).text().lines().map(str::to_string).collect();
    assert!(lines.len() == 1 && lines[0].starts_with("x "), "it knows only itself: {output}");

    for node in &cluster.nodes {
        let members = node.members();
        assert!(members.iter().all(|m| m.name != "x"), "{} lists x: {members:?}", node.name());
    }
    cluster.await_full_membership();
    eventually("the seed's log shows the refusal", CONVERGE_TIMEOUT, || {
        let log = cluster.node("a").process.log();
        if log.contains("refused a connection") { Ok(()) } else { Err(log) }
    });
}

#[test]
fn a_client_needs_the_cluster_key() {
    let (key, other_key) = (keygen(), keygen());
    let cluster = Cluster::start_with_key("client_key", &["a", "b", "c"], Some(&key));
    let a = cluster.node("a");
    a.put("secret", "42");
    cluster.node("c").await_value("secret", Some(b"42"));

    let wrong = chorus(&["get", "secret", "--node", a.addr(), "--cluster-key", &other_key]);
    let line = wrong.expect_code(3).expect_one_stderr_line();
    assert!(line.contains("cluster key"), "{wrong}");
    assert!(wrong.stdout.is_empty(), "{wrong}");
    let put = chorus(&["put", "secret", "stolen", "--node", a.addr(), "--cluster-key", &other_key]);
    put.expect_code(3).expect_one_stderr_line();
    let none = chorus(&["get", "secret", "--node", a.addr()]);
    assert!(none.expect_code(3).expect_one_stderr_line().contains("cluster key"), "{none}");

    // The right key, from the flag (the harness's default) and from the environment.
    assert_eq!(a.get("secret").as_deref(), Some(&b"42"[..]), "the wrong-key put changed nothing");
    let env = |keys: &str| {
        chorus_with(&["get", "secret", "--node", a.addr()], None, &[("CHORUS_CLUSTER_KEY", keys)])
    };
    assert_eq!(env(&key).expect_code(0).stdout, b"42");
    // During a rotation the first key signs and every key is trusted: the node trusts only
    // `key`, so a client must sign with it.
    env(&format!("{key},{other_key}")).expect_code(0);
    env(&format!("{other_key},{key}")).expect_code(3).expect_one_stderr_line();

    let malformed = chorus(&["get", "secret", "--node", a.addr(), "--cluster-key", "hunter2"]);
    assert!(malformed.expect_code(2).stderr.contains("chorus-key-"), "{malformed}");
}

#[test]
fn the_development_key_is_refused_off_loopback() {
    let scratch = common::Scratch::new("development_key");
    let mut node = Process::start(
        "exposed",
        &["node", "--listen", "0.0.0.0:0", "--name", "exposed"],
        &[],
        scratch.path(),
    );
    let status = node.wait_exit(common::EXIT_TIMEOUT);
    let status = status.unwrap_or_else(|| panic!("the node started\n{}", node.log_tail()));
    assert!(!status.success(), "{status:?}");
    assert_eq!(node.next_line(Duration::from_secs(1)), None, "no ready line");
    let log = node.log();
    assert!(log.contains("development key") && log.contains("--cluster-key"), "{log}");
}
