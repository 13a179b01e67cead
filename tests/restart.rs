//! Restarting a node on its own address (issue 11): every node is given the same seed list,
//! its own address included, and a node restarted on its address, after SIGTERM or kill -9,
//! is a full member again: ready, seeing every member alive and seen alive by them, caught
//! up, and confirming `put --wait all` through another node; the others log the restarts at
//! INFO, not WARN. A node that cannot reach any seed says why at WARN.
//! `tests/restart_to_ready.sh` measures how long a restart takes.

mod common;

use common::{
    CONVERGE_TIMEOUT, EXIT_TIMEOUT, Node, Scratch, chorus, eventually, free_addrs, start_together,
};

/// Restarts of the node under test: SIGTERM and kill -9 alternately.
const RESTARTS: usize = 4;

fn alive_ids(node: &Node) -> Vec<String> {
    node.members().into_iter().filter(|m| m.state == "alive").map(|m| m.id).collect()
}

/// Polls until `node` lists every id in `ids` alive and `gone` not alive.
#[track_caller]
fn await_sees_alive(node: &Node, ids: &[&str], gone: Option<&str>) {
    let what = format!("{} sees {ids:?} alive and {gone:?} not", node.name());
    eventually(&what, CONVERGE_TIMEOUT, || {
        let alive = alive_ids(node);
        let all = ids.iter().all(|id| alive.iter().any(|a| a == id));
        let stale = gone.is_some_and(|gone| alive.iter().any(|a| a == gone));
        if all && !stale { Ok(()) } else { Err(format!("alive: {alive:?}")) }
    });
}

#[test]
fn a_node_restarted_on_its_own_address_is_a_full_member_again() {
    let scratch = Scratch::new("restart_same_address");
    // Every node gets the same list, its own address included, and they start together.
    let (addrs, mut nodes) = start_together(&["a", "b", "c"], scratch.path());
    for (node, addr) in nodes.iter().zip(&addrs) {
        assert_eq!(node.addr(), addr, "{} listens where it was told", node.name());
    }
    let ids: Vec<String> = nodes.iter().map(|node| node.id().to_string()).collect();
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    for node in &nodes {
        await_sees_alive(node, &all, None);
    }
    // Where each staying node's log was when the restarts began (joining may WARN before).
    let logged: Vec<usize> = nodes[..2].iter().map(|node| node.process.log().len()).collect();

    for round in 0..RESTARTS {
        let key = format!("before/{round}");
        nodes[0].cli(&["put", &key, "kept", "--wait", "all", "--timeout", "20s"]).expect_code(0);

        let old = nodes.pop().expect("three nodes");
        let old_id = old.id().to_string();
        let mut process = old.process;
        let how = if round % 2 == 0 { "SIGTERM" } else { "kill -9" };
        if round % 2 == 0 {
            process.terminate();
            let status = process.wait_exit(EXIT_TIMEOUT);
            assert!(status.is_some(), "c still runs after SIGTERM\n{}", process.log_tail());
        } else {
            process.kill();
        }
        drop(process);

        let restarted = Node::spawn_at("c", &addrs[2], &addrs, None, scratch.path());
        let c = Node::await_ready(restarted, None);
        assert_eq!(c.addr(), addrs[2], "restart {round} ({how}) is on the same address");
        assert_ne!(c.id(), old_id, "a restart without data takes a new identity");
        let (a, b) = (&nodes[0], &nodes[1]);
        await_sees_alive(&c, &[a.id(), b.id()], None);
        for node in [a, b] {
            await_sees_alive(node, &[c.id()], Some(&old_id));
        }
        c.await_value(&key, Some(b"kept"));

        // A write through another node waits for every member, the restarted one included.
        let after = format!("after/{round}");
        let what = format!("put --wait all through a is confirmed by c after restart {round}");
        eventually(&what, CONVERGE_TIMEOUT, || {
            let output = a.cli(&["put", &after, "x", "--wait", "all", "--timeout", "5s"]);
            let text = output.text();
            let confirmed = text.lines().find_map(|line| line.strip_prefix("confirmed="));
            match (output.code, confirmed) {
                (0, Some(names)) if names.split(',').any(|name| name == "c") => Ok(()),
                _ => Err(format!("{output}")),
            }
        });
        c.await_value(&after, Some(b"x"));
        nodes.push(c);
    }
    // Restarts are routine (a redeploy restarts every instance): the nodes that stayed say
    // so at INFO (a member left, died, joined), never at WARN or ERROR.
    for (node, from) in nodes[..2].iter().zip(logged) {
        let log = node.process.log();
        let alarms: Vec<&str> = log[from..]
            .lines()
            .filter(|line| matches!(line.split_whitespace().nth(1), Some("WARN" | "ERROR")))
            .collect();
        assert!(alarms.is_empty(), "{} warned of routine restarts: {alarms:#?}", node.name());
    }
}

#[test]
fn a_node_whose_only_seed_is_itself_is_ready_alone() {
    let scratch = Scratch::new("join_self");
    let addr = free_addrs(1).remove(0);
    let process = Node::spawn_at("solo", &addr, std::slice::from_ref(&addr), None, scratch.path());
    let node = Node::await_ready(process, None);
    node.put("solo/key", "v");
    assert_eq!(node.get("solo/key").as_deref(), Some(&b"v"[..]));
    let members = node.members();
    assert_eq!(members.len(), 1, "it lists only itself, never itself twice: {members:?}");
}

#[test]
fn a_node_that_cannot_reach_any_seed_says_why_at_warn() {
    let scratch = Scratch::new("dead_seed");
    let addrs = free_addrs(2);
    // The second address has nobody behind it.
    let mut process = Node::spawn_at("lonely", &addrs[0], &addrs, None, scratch.path());
    eventually("the node logs why it is not ready", CONVERGE_TIMEOUT, || {
        let log = process.log();
        let line = log.lines().find(|line| line.contains("WARN") && line.contains("not ready"));
        match line {
            Some(line) if line.contains(&addrs[1]) => Ok(()),
            _ => Err(log.lines().rev().take(5).collect::<Vec<_>>().join("\n")),
        }
    });
    assert!(process.next_line(std::time::Duration::ZERO).is_none(), "no ready line");
    assert!(process.is_running(), "it keeps trying\n{}", process.log_tail());
    // Not joined, it does not confirm `--wait all` by itself alone; nor does it take a plain
    // write, stamped by a clock it could not compare with any peer (exit 5).
    let waited = chorus(&["put", "k", "v", "--wait", "all", "--node", &addrs[0]]);
    assert!(waited.expect_code(2).stderr.contains("not joined"), "{waited}");
    let refused = chorus(&["put", "k", "v", "--node", &addrs[0]]);
    assert!(refused.expect_code(5).stderr.contains("not yet compared its clock"), "{refused}");
}

/// On a platform that starts instances together, a peer's DNS name exists only once it runs:
/// a seed name that does not resolve yet is kept (with a WARN) and the node joins through the
/// others; a seed that is not `host:port` is a typo and fails the start.
#[test]
fn a_seed_name_that_does_not_resolve_yet_is_kept() {
    let scratch = Scratch::new("unresolved_seed");
    let addrs = free_addrs(2);
    let mut seeds = addrs.clone();
    seeds.push("not-started-yet.invalid:7420".to_string());
    let a = Node::spawn_at("a", &addrs[0], &seeds, None, scratch.path());
    let b = Node::spawn_at("b", &addrs[1], &seeds, None, scratch.path());
    let (a, _b) = (Node::await_ready(a, None), Node::await_ready(b, None));
    assert!(a.process.log().contains("seed does not resolve yet"), "{}", a.process.log_tail());
    let typo = chorus(&["node", "--listen", "127.0.0.1:0", "--join", "not-started-yet.invalid"]);
    assert_eq!(typo.code, 2, "a seed without a port is refused: {typo}");
}
