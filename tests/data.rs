//! Reads and writes through the CLI on a real three-node cluster: replication, deletes, TTL
//! expiry, listing, binary values, watches and JSON output.

mod common;

use std::collections::BTreeSet;

use chorus_proto::limits::VALUE_SIZE_MAX;
use common::{CONVERGE_TIMEOUT, Cluster, Node, Output, Rng, block_on, eventually};

/// The names on the `confirmed=` line of a waited write.
fn confirmed(output: &Output) -> BTreeSet<String> {
    names_after(output, "confirmed=")
}

fn names_after(output: &Output, prefix: &str) -> BTreeSet<String> {
    let text = output.text();
    let line = text.lines().find_map(|line| line.strip_prefix(prefix));
    let line = line.unwrap_or_else(|| panic!("no {prefix} line: {output}"));
    line.split(',').filter(|name| !name.is_empty()).map(str::to_string).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

/// `ls ARGS` on `node`, one key a line.
fn ls(node: &Node, args: &[&str]) -> Vec<String> {
    let mut command = vec!["ls"];
    command.extend(args);
    let output = node.cli(&command);
    output.expect_code(0);
    output.text().lines().map(str::to_string).collect()
}

#[test]
fn a_write_on_one_node_is_read_on_every_other_and_a_delete_reaches_all() {
    let cluster = Cluster::start("write_read_delete", &["a", "b", "c"]);
    let (a, b, c) = (cluster.node("a"), cluster.node("b"), cluster.node("c"));

    let put = a.cli(&["put", "app/color", "blue"]);
    put.expect_code(0);
    let stamp = put.text();
    assert!(stamp.trim_end().ends_with(&format!("@{}", a.id())), "put prints its stamp: {put}");
    assert_eq!(a.get("app/color").as_deref(), Some(&b"blue"[..]), "read-your-writes");
    for node in [b, c] {
        node.await_value("app/color", Some(b"blue"));
    }

    // b has read blue, so its write is stamped after it and wins everywhere.
    b.put("app/color", "green");
    for node in &cluster.nodes {
        node.await_value("app/color", Some(b"green"));
    }

    let del = c.cli(&["del", "app/color"]);
    del.expect_code(0);
    assert!(del.text().trim_end().ends_with(&format!("@{}", c.id())), "del prints a stamp: {del}");
    for node in &cluster.nodes {
        node.await_value("app/color", None);
        assert_eq!(ls(node, &["app/"]), Vec::<String>::new(), "a deleted key is not listed");
    }
    let absent = b.cli(&["get", "app/color"]);
    absent.expect_code(1);
    assert!(absent.stdout.is_empty(), "an absent key prints nothing: {absent}");
}

#[test]
fn a_key_with_a_ttl_expires_on_every_node() {
    let cluster = Cluster::start("ttl", &["a", "b", "c"]);
    let a = cluster.node("a");
    a.put("app/stays", "here");
    // Waiting for all proves every node held the key, so its absence later is its expiry.
    let put =
        a.cli(&["put", "app/session", "token", "--ttl", "2s", "--wait", "all", "--timeout", "20s"]);
    put.expect_code(0);
    assert_eq!(confirmed(&put), set(&["a", "b", "c"]), "{put}");

    for node in &cluster.nodes {
        node.await_value("app/session", None);
        node.await_value("app/stays", Some(b"here"));
        assert_eq!(ls(node, &["app/"]), ["app/stays"], "an expired key is not listed");
    }
}

#[test]
fn ls_lists_keys_with_a_prefix_in_order_and_honours_limit() {
    let cluster = Cluster::start("ls", &["a", "b", "c"]);
    let (a, b, c) = (cluster.node("a"), cluster.node("b"), cluster.node("c"));
    for key in ["app/b", "app/a", "other/x", "app/c", "apple"] {
        a.put(key, "v");
    }
    eventually("b lists every key", CONVERGE_TIMEOUT, || {
        let keys = ls(b, &[]);
        let all = ["app/a", "app/b", "app/c", "apple", "other/x"];
        if keys == all { Ok(()) } else { Err(format!("{keys:?}")) }
    });
    assert_eq!(ls(b, &["app/"]), ["app/a", "app/b", "app/c"]);
    assert_eq!(ls(b, &["app"]), ["app/a", "app/b", "app/c", "apple"]);
    assert_eq!(ls(b, &["app/", "--limit", "2"]), ["app/a", "app/b"]);
    assert_eq!(ls(b, &["nothing/"]), Vec::<String>::new());

    // More keys than one list page holds: the CLI pages through them.
    const MANY: usize = 1_205;
    let many: Vec<String> = (0..MANY).map(|i| format!("many/{i:05}")).collect();
    block_on(async {
        let client = chorus::Client::connect(a.addr(), &[]).await.expect("connect to a");
        for key in &many {
            let options = chorus::WriteOptions::default();
            client.put(key.as_bytes(), b"x", options).await.expect("put");
        }
    });
    eventually("c lists every key of a large prefix", CONVERGE_TIMEOUT, || {
        let keys = ls(c, &["many/"]);
        if keys == many { Ok(()) } else { Err(format!("{} keys", keys.len())) }
    });
    assert_eq!(ls(c, &["many/", "--limit", "1100"]), many[..1100]);
}

#[test]
fn binary_values_round_trip_exactly_through_stdin_and_files() {
    let mut rng = Rng::from_env("binary_values");
    let cluster = Cluster::start("binary", &["a", "b", "c"]);
    let (a, b, c) = (cluster.node("a"), cluster.node("b"), cluster.node("c"));

    // Every byte value, line ends, NUL and invalid UTF-8.
    let mut value: Vec<u8> = (0..=255u8).collect();
    value.extend(b"\r\n\0\n\xff\xfe");
    value.extend(rng.bytes(64 * 1024));
    a.cli_stdin(&["put", "bin/stdin", "-"], Some(&value)).expect_code(0);
    b.await_value("bin/stdin", Some(&value));

    // The largest value allowed, from a file.
    let largest = rng.bytes(VALUE_SIZE_MAX);
    let path = cluster.scratch.file("largest", &largest);
    a.cli(&["put", "bin/file", &format!("@{}", path.display())]).expect_code(0);
    c.await_value("bin/file", Some(&largest));

    // An empty value is a value, not an absent key.
    b.cli_stdin(&["put", "bin/empty", "-"], Some(b"")).expect_code(0);
    a.await_value("bin/empty", Some(b""));

    let missing = cluster.scratch.path().join("no-such-file");
    let output = a.cli(&["put", "bin/missing", &format!("@{}", missing.display())]);
    assert_ne!(output.code, 0, "a missing file is an error: {output}");
    assert!(output.expect_one_stderr_line().contains("no-such-file"), "{output}");
    assert_eq!(a.get("bin/missing"), None);
}

#[test]
fn watch_sees_puts_deletes_and_expiries_made_on_other_nodes() {
    let cluster = Cluster::start("watch", &["a", "b", "c"]);
    let (a, b, c) = (cluster.node("a"), cluster.node("b"), cluster.node("c"));
    let mut watch = b.watch("app/", false, cluster.scratch.path());
    let mut json_watch = c.watch("app/", true, cluster.scratch.path());

    a.await_watches("app/sync", &mut [&mut watch, &mut json_watch]);

    // A change is only seen where it wins: each step waits until both watches saw the
    // previous one, so that every node applies them in this order.
    let mut cursors = Vec::new();
    let mut step = |plain: &str, kind: &str, key: &str| {
        watch.expect_line(CONVERGE_TIMEOUT, |line| line == plain);
        let line = json_watch.expect_line(CONVERGE_TIMEOUT, |line| {
            let change: serde_json::Value = serde_json::from_str(line).expect("one JSON a line");
            change["kind"] == kind && change["key"] == key
        });
        let change: serde_json::Value = serde_json::from_str(&line).expect("checked above");
        cursors.push(change["cursor"].as_u64().expect("a change has a numeric cursor"));
        change
    };
    a.put("other/x", "outside the prefix");
    a.put("app/flag", "on");
    let put = step("put app/flag on", "put", "app/flag");
    assert_eq!(put["value"], "on", "{put}");
    c.cli(&["del", "app/flag"]).expect_code(0);
    step("del app/flag", "del", "app/flag");
    a.put("app/note", "two\nlines");
    step("put app/note two\\nlines", "put", "app/note");
    // Waiting for all puts the key on every node while it is live, so every node expires it.
    let ttl = ["put", "app/temp", "soon gone", "--ttl", "3s", "--wait", "all", "--timeout", "20s"];
    a.cli(&ttl).expect_code(0);
    step("put app/temp soon gone", "put", "app/temp");
    step("expire app/temp", "expire", "app/temp");
    assert!(cursors.is_sorted(), "cursors grow: {cursors:?}");
    assert!(
        watch.seen().iter().all(|line| !line.contains("other/")),
        "a watch shows only its prefix: {:?}",
        watch.seen()
    );
}

#[test]
fn json_output_has_named_fields() {
    let cluster = Cluster::start("json", &["a", "b", "c"]);
    let (a, b, c) = (cluster.node("a"), cluster.node("b"), cluster.node("c"));

    let put = a.cli(&["put", "app/x", "1", "--json"]);
    let put = put.expect_code(0).json();
    assert_eq!(put["stamp"]["node"], a.id(), "{put}");
    assert!(put["stamp"]["wall_ms"].is_u64() && put["stamp"]["text"].is_string(), "{put}");
    assert!(put.get("wait").is_none(), "no wait was asked for: {put}");

    let waited = a.cli(&["put", "app/y", "2", "--wait", "all", "--timeout", "20s", "--json"]);
    let waited = waited.expect_code(0).json();
    assert_eq!(waited["wait"]["complete"], true, "{waited}");
    let names: BTreeSet<String> = waited["wait"]["confirmed"]
        .as_array()
        .expect("confirmed is a list")
        .iter()
        .map(|member| member["name"].as_str().expect("a member has a name").to_string())
        .collect();
    assert_eq!(names, set(&["a", "b", "c"]), "{waited}");
    assert_eq!(waited["wait"]["missing"], serde_json::json!([]), "{waited}");

    let get = a.cli(&["get", "app/y", "--json"]);
    let get = get.expect_code(0).json();
    assert_eq!(
        (&get["key"], &get["found"], &get["value"]),
        (&"app/y".into(), &true.into(), &"2".into())
    );
    assert_eq!(get["stamp"], waited["stamp"], "get returns the write's stamp");

    a.cli_stdin(&["put", "app/bin", "-"], Some(b"\xff\x00")).expect_code(0);
    let binary = a.cli(&["get", "app/bin", "--json"]);
    let binary = binary.expect_code(0).json();
    assert_eq!(binary["value_hex"], "ff00", "bytes that are not UTF-8 come as hex: {binary}");

    let absent = a.cli(&["get", "app/none", "--json"]);
    assert_eq!(absent.expect_code(1).json()["found"], false);

    let del = a.cli(&["del", "app/x", "--json"]);
    assert_eq!(del.expect_code(0).json()["stamp"]["node"], a.id());

    let expected: BTreeSet<String> = cluster.nodes.iter().map(|n| n.id().to_string()).collect();
    eventually("members --json lists every node alive", CONVERGE_TIMEOUT, || {
        let members = b.cli(&["members", "--json"]);
        let members = members.expect_code(0).json();
        let list = members["members"].as_array().unwrap_or_else(|| panic!("{members}"));
        let mut alive = BTreeSet::new();
        for member in list {
            assert!(member["name"].is_string() && member["addr"].is_string(), "{members}");
            assert!(member["incarnation"].is_u64(), "{members}");
            if member["state"] == "alive" {
                alive.insert(member["id"].as_str().expect("an id").to_string());
            }
        }
        if alive == expected { Ok(()) } else { Err(members.to_string()) }
    });

    eventually("c counts two keys and a tombstone", CONVERGE_TIMEOUT, || {
        let stats = c.cli(&["stats", "--json"]);
        let stats = stats.expect_code(0).json();
        assert_eq!((&stats["name"], &stats["id"]), (&"c".into(), &c.id().into()), "{stats}");
        for field in ["messages_sent", "bytes_sent", "messages_received", "bytes_received"] {
            assert!(stats[field].as_u64().is_some_and(|n| n > 0), "{field}: {stats}");
        }
        assert!(stats["skew_refused"].is_u64() && stats["skew_ms_max"].is_u64(), "{stats}");
        let counts = (&stats["keys"], &stats["tombstones"], &stats["members_alive"]);
        if counts == (&2.into(), &1.into(), &3.into()) { Ok(()) } else { Err(stats.to_string()) }
    });

    let ls = c.cli(&["ls", "app/", "--json"]);
    assert_eq!(ls.expect_code(0).json()["keys"], serde_json::json!(["app/bin", "app/y"]));

    let keygen = common::chorus(&["keygen", "--json"]);
    let keygen = keygen.expect_code(0).json();
    let key = keygen["cluster_key"].as_str().unwrap_or_else(|| panic!("{keygen}"));
    assert!(key.starts_with("chorus-key-") && keygen["fingerprint"].is_string(), "{keygen}");
}

/// A key can never forge a line of `watch` or `ls`: newlines, spaces and bytes that are not
/// UTF-8 are escaped. Keys that are not UTF-8 are addressed with `--hex`, and JSON gives their
/// exact bytes as `key_hex` beside the escaped `key`.
#[test]
fn keys_are_escaped_in_lines_and_keys_that_are_not_text_can_be_addressed() {
    let cluster = Cluster::start("escaped_keys", &["a", "b"]);
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    let mut watch = b.watch("", false, cluster.scratch.path());
    let mut json_watch = b.watch("", true, cluster.scratch.path());
    a.await_watches("sync", &mut [&mut watch, &mut json_watch]);

    // A key with a newline that tries to forge a second change.
    a.put("evil\nput app/flags/dark_mode off", "x");
    let forged = "put evil\\nput\\x20app/flags/dark_mode\\x20off x";
    watch.expect_line(CONVERGE_TIMEOUT, |line| line == forged);
    // A key that is not UTF-8: "bin" then 0xff, written and read back through --hex.
    a.cli(&["put", "--hex", "62696eff", "binary key"]).expect_code(0);
    watch.expect_line(CONVERGE_TIMEOUT, |line| line == "put bin\\xff binary key");
    let line = json_watch.expect_line(CONVERGE_TIMEOUT, |line| line.contains("62696eff"));
    let change: serde_json::Value = serde_json::from_str(&line).expect("one JSON a line");
    assert_eq!((&change["key"], &change["key_hex"]), (&"bin\\xff".into(), &"62696eff".into()));
    assert!(
        watch.seen().iter().all(|line| !line.starts_with("put app/")),
        "no forged line: {:?}",
        watch.seen()
    );

    b.await_value("sync", Some(b"1"));
    let got = eventually("the binary key replicated", CONVERGE_TIMEOUT, || {
        let got = b.cli(&["get", "--hex", "62696eff"]);
        if got.code == 0 { Ok(got) } else { Err(got.to_string()) }
    });
    assert_eq!(got.stdout, b"binary key");
    let json = b.cli(&["get", "--hex", "62696eff", "--json"]).expect_code(0).json();
    assert_eq!((&json["key"], &json["key_hex"]), (&"bin\\xff".into(), &"62696eff".into()));
    assert_eq!(json["value"], "binary key");

    assert_eq!(
        ls(b, &[]),
        ["bin\\xff", "evil\\nput\\x20app/flags/dark_mode\\x20off", "sync"],
        "one line a key"
    );
    assert_eq!(ls(b, &["--hex", "62"]), ["bin\\xff"], "a prefix in hex");
    let listed = b.cli(&["ls", "--json"]).expect_code(0).json();
    assert_eq!(listed["keys"][0], "bin\\xff", "{listed}");
    assert_eq!(listed["keys"][1], "evil\nput app/flags/dark_mode off", "JSON keeps text exact");
    assert_eq!(listed["keys_hex"][0], "62696eff", "{listed}");
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(3), "{listed}");

    a.cli(&["del", "--hex", "62696eff"]).expect_code(0);
    watch.expect_line(CONVERGE_TIMEOUT, |line| line == "del bin\\xff");
    for bad in ["6", "zz"] {
        let refused = a.cli(&["get", "--hex", bad]);
        refused.expect_code(2);
        assert!(refused.stderr.contains("--hex"), "{refused}");
    }
}
