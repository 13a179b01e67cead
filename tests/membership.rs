//! Membership seen through the CLI: failure detection after `kill -9`, a restarted node
//! catching up, a graceful leave on SIGTERM, and `put --wait all` around a failure.

mod common;

use std::collections::BTreeSet;

use common::{
    CONVERGE_TIMEOUT, Cluster, DETECT_TIMEOUT, EXIT_TIMEOUT, Member, Output, block_on, eventually,
};

fn names_after(output: &Output, prefix: &str) -> Option<BTreeSet<String>> {
    let text = output.text();
    let line = text.lines().find_map(|line| line.strip_prefix(prefix))?;
    Some(line.split(',').filter(|name| !name.is_empty()).map(str::to_string).collect())
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

#[test]
fn a_killed_node_is_seen_dead_and_once_restarted_catches_up() {
    let mut cluster = Cluster::start("kill_restart", &["a", "b", "c"]);
    let expected: Vec<Member> = cluster
        .nodes
        .iter()
        .map(|node| Member {
            name: node.name().to_string(),
            id: node.id().to_string(),
            addr: node.addr().to_string(),
            state: "alive".to_string(),
        })
        .collect();
    for node in &cluster.nodes {
        eventually(&format!("{} lists every node alive", node.name()), CONVERGE_TIMEOUT, || {
            let mut members = node.members();
            members.sort_by(|x, y| x.name.cmp(&y.name));
            if members == expected { Ok(()) } else { Err(format!("{members:?}")) }
        });
    }

    let a = cluster.node("a");
    for key in ["before/kept", "before/deleted"] {
        a.cli(&["put", key, "1", "--wait", "all", "--timeout", "20s"]).expect_code(0);
    }

    let old_c = cluster.node("c").id().to_string();
    cluster.node_mut("c").process.kill();
    for name in ["a", "b"] {
        cluster.node(name).await_member_state(&old_c, "dead", DETECT_TIMEOUT);
    }

    // Writes made while c is down, on both survivors.
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    a.put("during/a", "from a");
    b.put("during/b", "from b");
    b.cli(&["del", "before/deleted"]).expect_code(0);

    // A restarted node is a new process on a new port with a new identity.
    let new_c = cluster.add("c");
    assert_ne!(new_c.id(), old_c, "a restarted node without data takes a new id");
    new_c.await_value("during/a", Some(b"from a"));
    new_c.await_value("during/b", Some(b"from b"));
    new_c.await_value("before/kept", Some(b"1"));
    new_c.await_value("before/deleted", None);
    let new_c = new_c.id().to_string();
    for name in ["a", "b"] {
        cluster.node(name).await_member_state(&new_c, "alive", CONVERGE_TIMEOUT);
        cluster.node(name).await_member_state(&old_c, "dead", CONVERGE_TIMEOUT);
    }
    // And it is a full member: its writes reach the others.
    cluster.node("c").put("after/c", "from the new c");
    cluster.node("a").await_value("after/c", Some(b"from the new c"));
}

#[test]
fn sigterm_leaves_gracefully_and_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start("sigterm", &["a", "b", "c"]);
    let leaving = cluster.node("b");
    let id = leaving.id().to_string();
    for i in 0..3 {
        leaving.put(&format!("cli/{i}"), &format!("value {i}"));
    }
    // A burst through the library, acknowledged one by one, right before the signal.
    const BURST: usize = 200;
    let addr = leaving.addr().to_string();
    block_on(async {
        let client = chorus::Client::connect(&addr, &[]).await.expect("connect to b");
        for i in 0..BURST {
            let (key, value) = (format!("burst/{i:03}"), format!("value {i}"));
            client.put(key, value, chorus::WriteOptions::default()).await.expect("put");
        }
    });

    let process = &mut cluster.node_mut("b").process;
    process.terminate();
    let status = process.wait_exit(EXIT_TIMEOUT);
    let status =
        status.unwrap_or_else(|| panic!("b still runs after SIGTERM\n{}", process.log_tail()));
    assert_eq!(status.code(), Some(0), "a graceful leave exits 0\n{}", process.log_tail());

    for name in ["a", "c"] {
        let node = cluster.node(name);
        node.await_member_state(&id, "left", CONVERGE_TIMEOUT);
        for i in 0..3 {
            node.await_value(&format!("cli/{i}"), Some(format!("value {i}").as_bytes()));
        }
        let expected: Vec<(String, String)> =
            (0..BURST).map(|i| (format!("burst/{i:03}"), format!("value {i}"))).collect();
        let addr = node.addr().to_string();
        eventually(&format!("{name} holds every write b acknowledged"), CONVERGE_TIMEOUT, || {
            block_on(async {
                let client =
                    chorus::Client::connect(&addr, &[]).await.map_err(|e| e.to_string())?;
                for (key, value) in &expected {
                    match client.get(key.as_bytes()).await.map_err(|e| e.to_string())? {
                        Some((found, _)) if found.as_bytes() == value.as_bytes() => {}
                        other => return Err(format!("{key}: {other:?}")),
                    }
                }
                Ok(())
            })
        });
    }
}

#[test]
fn wait_all_names_a_killed_member_until_it_is_known_dead() {
    let mut cluster = Cluster::start("wait_all", &["a", "b", "c"]);
    let a = cluster.node("a");
    let all = a.cli(&["put", "k", "1", "--wait", "all", "--timeout", "20s"]);
    all.expect_code(0);
    assert_eq!(names_after(&all, "confirmed="), Some(set(&["a", "b", "c"])), "{all}");
    assert_eq!(names_after(&all, "missing="), None, "nothing is missing: {all}");
    let two = a.cli(&["put", "k", "2", "--wait", "2", "--timeout", "20s"]);
    assert!(names_after(two.expect_code(0), "confirmed=").is_some_and(|n| n.len() >= 2), "{two}");

    let c = cluster.node("c").id().to_string();
    cluster.node_mut("c").process.kill();
    // c is silent but not yet dead (that takes seconds): a waits for it and gives up.
    let a = cluster.node("a");
    let timed_out = a.cli(&["put", "k", "3", "--wait", "all", "--timeout", "1s"]);
    timed_out.expect_code(4);
    assert_eq!(names_after(&timed_out, "missing="), Some(set(&["c"])), "{timed_out}");
    assert_eq!(names_after(&timed_out, "confirmed="), Some(set(&["a", "b"])), "{timed_out}");
    assert!(timed_out.expect_one_stderr_line().contains("timed out"), "{timed_out}");
    let json = a.cli(&["del", "k", "--wait", "all", "--timeout", "1s", "--json"]);
    let json = json.expect_code(4).json();
    assert_eq!(json["wait"]["complete"], false, "{json}");
    assert_eq!(json["wait"]["missing"][0]["name"], "c", "{json}");
    assert_eq!(json["wait"]["missing"].as_array().map(Vec::len), Some(1), "{json}");

    a.await_member_state(&c, "dead", common::DETECT_TIMEOUT);
    let after = a.cli(&["put", "k", "4", "--wait", "all", "--timeout", "20s"]);
    after.expect_code(0);
    assert_eq!(names_after(&after, "confirmed="), Some(set(&["a", "b"])), "{after}");
    assert_eq!(names_after(&after, "missing="), None, "a dead member is not waited for: {after}");
    a.cli(&["del", "k", "--wait", "all", "--timeout", "20s"]).expect_code(0);
}

/// A watch learns that its node went away: at once after SIGTERM (the node closes client
/// connections as it exits), and within the client's idle timeout (4 s) after kill -9, where
/// it used to hang for the 30 s of the nodes' own timeout. The deadline below is a bound on
/// liveness, generous for a loaded machine, not a timing.
#[test]
fn a_watch_notices_its_node_stopped_by_sigterm_or_kill() {
    for graceful in [true, false] {
        let mut cluster = Cluster::start("watch_notices", &["a"]);
        let dir = cluster.scratch.path().to_path_buf();
        let mut watch = cluster.node("a").watch("app/", false, &dir);
        cluster.node("a").await_watches("app/sync", &mut [&mut watch]);
        let node = cluster.node_mut("a");
        if graceful {
            node.process.terminate()
        } else {
            node.process.kill()
        }
        let status = watch.wait_exit(std::time::Duration::from_secs(20));
        assert!(
            status.is_some(),
            "graceful={graceful}: the watch still runs 20 s after its node stopped\n{}",
            watch.log_tail()
        );
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(3),
            "unreachable: exit 3\n{}",
            watch.log_tail()
        );
    }
}
