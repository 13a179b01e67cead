//! Bounds on the work one Redis command does in one hold of the node's lock, through the real
//! binary: walks over many tombstones (SCAN, KEYS, DBSIZE, the RPC list) take several short
//! holds, and still see every live key. The node counts its lock holds per purpose in
//! `stats`, so the tests count holds and never time them.

mod common;

use chorus_proto::limits::LIST_VISIT_MAX;
use common::{Cluster, Node, Redis, Resp};

fn redis(node: &Node) -> Redis {
    Redis::connect(node.ready.redis.as_deref().expect("test nodes serve Redis"))
}

fn stat(node: &Node, name: &str) -> u64 {
    let stats = node.cli(&["stats", "--json"]).expect_code(0).json();
    stats[name].as_u64().unwrap_or_else(|| panic!("no {name} in {stats}"))
}

/// Calls a command whose arguments are owned strings.
fn call(client: &mut Redis, args: &[String]) -> Resp {
    client.call(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Every key `SCAN` reports from cursor 0 to the end, and how many calls it took.
fn scan_all(client: &mut Redis) -> (Vec<String>, usize) {
    let (mut keys, mut cursor, mut calls) = (Vec::new(), "0".to_string(), 0);
    loop {
        let Resp::Array(reply) = client.call(&["SCAN", &cursor, "COUNT", "10"]) else {
            panic!("SCAN answers an array");
        };
        calls += 1;
        let Resp::Array(page) = &reply[1] else { panic!("SCAN's keys") };
        keys.extend(page.iter().map(Resp::text));
        cursor = reply[0].text();
        if cursor == "0" || calls > 10_000 {
            return (keys, calls);
        }
    }
}

/// Tombstones between two live keys: the walks visit at most `LIST_VISIT_MAX` entries per
/// hold of the lock, so they take several holds, and a page that found no live key before its
/// budget ran out is not taken for the end.
#[test]
fn walks_over_tombstones_take_short_holds_and_find_every_key() {
    let cluster = Cluster::start("redis_tombstones", &["a"]);
    let node = cluster.node("a");
    let mut client = redis(node);
    // More than one SCAN call's holds (8) of tombstones, in requests of 10,000 keys.
    let count = 9 * LIST_VISIT_MAX + 100;
    let names: Vec<String> = (0..count).map(|n| format!("t:{n:06}")).collect();
    for chunk in names.chunks(10_000) {
        let mut mset = vec!["MSET".to_string()];
        mset.extend(chunk.iter().flat_map(|name| [name.clone(), "v".to_string()]));
        assert_eq!(call(&mut client, &mset), Resp::Simple("OK".into()));
        let del: Vec<String> = std::iter::once("DEL".to_string()).chain(chunk.to_vec()).collect();
        assert_eq!(call(&mut client, &del), Resp::Integer(chunk.len() as i64));
    }
    for key in ["a", "z"] {
        assert_eq!(client.call(&["SET", key, "live"]), Resp::Simple("OK".into()));
    }

    let before = stat(node, "lock_read_holds");
    assert_eq!(client.call(&["DBSIZE"]), Resp::Integer(2));
    // One hold per stats call is counted too; the walk over the tombstones takes 9 or more.
    let holds = stat(node, "lock_read_holds") - before;
    assert!(holds >= 10, "DBSIZE walked {count} tombstones in {holds} holds");

    let keys = client.call(&["KEYS", "*"]);
    assert_eq!(keys, Resp::Array(vec![Resp::Bulk(b"a".to_vec()), Resp::Bulk(b"z".to_vec())]));
    let (scanned, calls) = scan_all(&mut client);
    assert_eq!(scanned, vec!["a".to_string(), "z".to_string()]);
    assert!(calls >= 2, "SCAN went through every tombstone in one call");
    let listed = node.cli(&["ls", ""]).expect_code(0).text();
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["a", "z"]);
    let first = node.cli(&["ls", "", "--limit", "1"]).expect_code(0).text();
    assert_eq!(first.lines().collect::<Vec<_>>(), ["a"]);
}
