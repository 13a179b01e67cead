//! Bounds on the work one Redis command does in one hold of the node's lock, through the real
//! binary: walks over many tombstones (SCAN, KEYS, DBSIZE, the RPC list) and commands on a
//! large hash (HGETALL, EXPIRE, DEL...) take several short holds and still do all their work;
//! a large request trickled in small writes is answered. The node counts its lock holds per
//! purpose in `stats`, so the tests count holds and never time them.

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

/// Lock holds of `purpose` that `work` took (the stats call that reads them counts one).
fn holds_of(node: &Node, purpose: &str, work: impl FnOnce()) -> u64 {
    let name = format!("lock_{purpose}_holds");
    let before = stat(node, &name);
    work();
    stat(node, &name) - before
}

/// A hash of 5,000 fields: outside MULTI, the commands on the whole hash read, rewrite, move
/// and delete it a page of fields per hold of the lock (many holds, each short), and do all of
/// it; inside MULTI, whose block is one hold, a hash that large is refused with a reason.
#[test]
fn a_large_hash_is_worked_on_a_page_of_fields_per_hold() {
    let cluster = Cluster::start("redis_large_hash", &["a"]);
    let node = cluster.node("a");
    let mut client = redis(node);
    let fields = 5_000;
    for chunk in (0..fields).collect::<Vec<_>>().chunks(1_000) {
        let mut hset = vec!["HSET".to_string(), "h".to_string()];
        hset.extend(chunk.iter().flat_map(|n| [format!("f{n:05}"), format!("v{n}")]));
        assert_eq!(call(&mut client, &hset), Resp::Integer(chunk.len() as i64));
    }
    let many = 10; // 5,000 fields at 256 a hold take 20 holds; one hold before the fix.
    let holds = holds_of(node, "read", || {
        let Resp::Array(all) = client.call(&["HGETALL", "h"]) else { panic!("HGETALL") };
        assert_eq!(all.len(), 2 * fields);
        assert_eq!((all[0].text(), all[1].text()), ("f00000".into(), "v0".into()));
    });
    assert!(holds >= many, "HGETALL read {fields} fields in {holds} holds");
    assert_eq!(client.call(&["HLEN", "h"]), Resp::Integer(fields as i64));
    let Resp::Array(values) = client.call(&["HVALS", "h"]) else { panic!("HVALS") };
    assert_eq!(values.len(), fields);

    let holds = holds_of(node, "write", || {
        assert_eq!(client.call(&["EXPIRE", "h", "600"]), Resp::Integer(1));
    });
    assert!(holds >= many, "EXPIRE rewrote {fields} fields in {holds} holds");
    let Resp::Integer(ttl) = client.call(&["TTL", "h"]) else { panic!("TTL") };
    assert!((590..=600).contains(&ttl), "{ttl}");
    assert_eq!(client.call(&["PERSIST", "h"]), Resp::Integer(1));
    assert_eq!(client.call(&["TTL", "h"]), Resp::Integer(-1));
    assert_eq!(client.call(&["PEXPIRE", "h", "900000", "XX"]), Resp::Integer(0));

    assert_eq!(client.call(&["RENAME", "h", "h2"]), Resp::Simple("OK".into()));
    assert_eq!(client.call(&["HLEN", "h2"]), Resp::Integer(fields as i64));
    assert_eq!(client.call(&["EXISTS", "h"]), Resp::Integer(0));
    assert_eq!(client.call(&["HGET", "h2", "f04999"]), Resp::Bulk(b"v4999".to_vec()));

    assert_eq!(client.call(&["MULTI"]), Resp::Simple("OK".into()));
    assert_eq!(client.call(&["HLEN", "h2"]), Resp::Simple("QUEUED".into()));
    let Resp::Array(replies) = client.call(&["EXEC"]) else { panic!("EXEC") };
    assert!(matches!(&replies[0], Resp::Error(e) if e.contains("outside MULTI")), "{replies:?}");

    // A string renamed onto a large hash, and a SET over one, replace every field.
    for target in ["h3", "h4"] {
        for chunk in (0..fields).collect::<Vec<_>>().chunks(1_000) {
            let mut hset = vec!["HSET".to_string(), target.to_string()];
            hset.extend(chunk.iter().flat_map(|n| [format!("f{n:05}"), format!("v{n}")]));
            assert_eq!(call(&mut client, &hset), Resp::Integer(chunk.len() as i64));
        }
    }
    assert_eq!(client.call(&["SET", "s", "1"]), Resp::Simple("OK".into()));
    assert_eq!(client.call(&["RENAME", "s", "h3"]), Resp::Simple("OK".into()));
    assert_eq!(client.call(&["SET", "h4", "2"]), Resp::Simple("OK".into()));
    for (key, value) in [("h3", "1"), ("h4", "2")] {
        assert_eq!(client.call(&["HLEN", key]), Resp::Integer(0), "{key} kept its fields");
        assert_eq!(client.call(&["GET", key]), Resp::Bulk(value.as_bytes().to_vec()));
    }

    let holds = holds_of(node, "write", || {
        assert_eq!(client.call(&["DEL", "h2", "missing"]), Resp::Integer(1));
    });
    assert!(holds >= many, "DEL deleted {fields} fields in {holds} holds");
    assert_eq!(client.call(&["HLEN", "h2"]), Resp::Integer(0));
    assert_eq!(client.call(&["EXISTS", "h2"]), Resp::Integer(0));
}

/// The whole-key commands run apart from a pipeline's batch, in the order they were sent.
#[test]
fn whole_key_commands_keep_their_place_in_a_pipeline() {
    let cluster = Cluster::start("redis_whole_pipeline", &["a"]);
    let mut client = redis(cluster.node("a"));
    let commands: [&[&[u8]]; 7] = [
        &[b"SET", b"k", b"v"],
        &[b"HSET", b"h", b"f", b"1", b"g", b"2"],
        &[b"DEL", b"k"],
        &[b"GET", b"k"],
        &[b"DEBUG", b"OBJECT", b"h"],
        &[b"EXPIRE", b"h", b"100"],
        &[b"PTTL", b"h"],
    ];
    for command in commands {
        client.send(command);
    }
    let replies: Vec<Resp> = (0..commands.len()).map(|_| client.read().expect("a reply")).collect();
    assert_eq!(
        replies[..4],
        [Resp::Simple("OK".into()), Resp::Integer(2), Resp::Integer(1), Resp::Null]
    );
    assert!(replies[4].text().contains("serializedlength:4 "), "{:?}", replies[4]);
    assert_eq!(replies[5], Resp::Integer(1));
    assert!(matches!(replies[6], Resp::Integer(ms) if ms > 90_000), "{:?}", replies[6]);
}

/// Whole-key commands on strings and small hashes stay in their pipeline's batch (Lucee sends
/// `SET` + `EXPIRE` pipelined for every cache put: one hold for all of them); one on a large
/// hash ends the batch there, works a page per hold, and the commands after it follow in order.
#[test]
fn only_a_large_hash_leaves_the_pipeline_batch() {
    let cluster = Cluster::start("redis_whole_batch", &["a"]);
    let node = cluster.node("a");
    let mut client = redis(node);
    let puts = 20;
    let holds = holds_of(node, "write", || {
        let mut pipeline = Vec::new();
        for n in 0..puts {
            pipeline.extend(common::encode(&[b"SET", format!("k{n}").as_bytes(), b"v"]));
            pipeline.extend(common::encode(&[b"EXPIRE", format!("k{n}").as_bytes(), b"100"]));
        }
        client.raw(&pipeline);
        for n in 0..2 * puts {
            let expected = if n % 2 == 0 { Resp::Simple("OK".into()) } else { Resp::Integer(1) };
            assert_eq!(client.read(), Some(expected));
        }
    });
    assert!(holds < 5, "{puts} pipelined SET + EXPIRE took {holds} holds");

    let fields = 300; // more than one hold's page of 256
    let mut hset = vec!["HSET".to_string(), "big".to_string()];
    hset.extend((0..fields).flat_map(|n| [format!("f{n}"), "v".to_string()]));
    assert_eq!(call(&mut client, &hset), Resp::Integer(fields));
    assert_eq!(client.call(&["SET", "a", "1"]), Resp::Simple("OK".into()));
    let commands: [&[&[u8]]; 6] = [
        &[b"PERSIST", b"a"],
        &[b"HLEN", b"big"],
        &[b"GET", b"a"],
        &[b"DEL", b"big", b"a"],
        &[b"HLEN", b"big"],
        &[b"GET", b"a"],
    ];
    let holds = holds_of(node, "write", || {
        // One write, so that the node reads the pipeline at once and batches it.
        client
            .raw(&commands.iter().flat_map(|command| common::encode(command)).collect::<Vec<u8>>());
        let replies: Vec<Resp> =
            (0..commands.len()).map(|_| client.read().expect("a reply")).collect();
        let expected = [Resp::Integer(0), Resp::Integer(fields), Resp::Bulk(b"1".to_vec())];
        assert_eq!(replies[..3], expected);
        assert_eq!(replies[3..], [Resp::Integer(2), Resp::Integer(0), Resp::Null]);
    });
    assert!(holds >= 2, "DEL of {fields} fields took {holds} holds");
}

/// A large request that arrives a few bytes at a time, followed by another in the same writes,
/// is answered once whole: the connection keeps its decoding progress between reads and starts
/// the next request afresh. (`proto`'s `resp` tests count the decoding work.)
#[test]
fn a_request_trickled_in_small_writes_is_answered() {
    let cluster = Cluster::start("redis_trickle", &["a"]);
    let mut client = redis(cluster.node("a"));
    let fields = 5_000;
    let mut args: Vec<Vec<u8>> = vec![b"HSET".to_vec(), b"t".to_vec()];
    args.extend((0..fields).flat_map(|n| [format!("f{n}").into_bytes(), b"v".to_vec()]));
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let mut bytes = common::encode(&refs);
    bytes.extend_from_slice(&common::encode(&[b"HLEN", b"t"]));
    for piece in bytes.chunks(97) {
        client.raw(piece);
    }
    assert_eq!(client.read(), Some(Resp::Integer(fields)));
    assert_eq!(client.read(), Some(Resp::Integer(fields)));
}
