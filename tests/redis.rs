//! The Redis front end through the real binary, with a raw RESP client: what Lucee sends, a
//! write on one node read on another, hash fields merging one by one, keyspace notifications
//! across nodes, MULTI/EXEC, RESP3, passwords, and hostile input that must not stop a node.
//! (The real clients, redis-cli, redis-py, ioredis and node-redis, run from `.ci/run`: see
//! `tests/clients/`.)

mod common;

use common::{CONVERGE_TIMEOUT, Cluster, Node, Redis, Resp, chorus, encode, eventually};

fn redis(node: &Node) -> Redis {
    Redis::connect(node.ready.redis.as_deref().expect("test nodes serve Redis"))
}

fn bulk(text: &str) -> Resp {
    Resp::Bulk(text.as_bytes().to_vec())
}

/// Lucee's Redis extension, command for command (REDIS.md): AUTH and SELECT on connect, a
/// pipelined SET + EXPIRE per cachePut, KEYS * then MGET, EXISTS, DEL, DEBUG OBJECT, and INFO
/// read by its parser's rule.
#[test]
fn lucee_sequences_work_as_lucee_sends_them() {
    let cluster = Cluster::start("lucee", &["a"]);
    let mut lucee = redis(cluster.node("a"));
    assert_eq!(lucee.call(&["AUTH", "any-password"]), Resp::Simple("OK".into()));
    assert_eq!(lucee.call(&["SELECT", "2"]), Resp::Simple("OK".into()));
    assert_eq!(lucee.call(&["PING"]), Resp::Simple("PONG".into()));
    for key in ["lucee-storage:session:abc:app", "cache:x"] {
        lucee.send(&[b"SET", key.as_bytes(), b"serialized-bytes"]);
        lucee.send(&[b"EXPIRE", key.as_bytes(), b"1800"]);
    }
    let replies: Vec<Resp> = (0..4).map(|_| lucee.read().expect("pipelined reply")).collect();
    let (ok, one) = (Resp::Simple("OK".into()), Resp::Integer(1));
    assert_eq!(replies, vec![ok.clone(), one.clone(), ok, one]);

    let Resp::Array(mut keys) = lucee.call(&["KEYS", "*"]) else { panic!("KEYS gives an array") };
    keys.sort_by_key(Resp::text);
    assert_eq!(keys, vec![bulk("cache:x"), bulk("lucee-storage:session:abc:app")]);
    let values = lucee.call(&["MGET", "cache:x", "missing"]);
    assert_eq!(values, Resp::Array(vec![bulk("serialized-bytes"), Resp::Null]));
    assert_eq!(lucee.call(&["EXISTS", "cache:x"]), Resp::Integer(1));
    let Resp::Integer(ttl) = lucee.call(&["TTL", "cache:x"]) else { panic!("TTL gives a number") };
    assert!((1_790..=1_800).contains(&ttl), "ttl {ttl}");
    let debug = lucee.call(&["DEBUG", "OBJECT", "cache:x"]).text();
    assert!(
        debug.contains("serializedlength:16") && debug.contains("lru_seconds_idle:"),
        "{debug}"
    );
    assert_eq!(lucee.call(&["DEL", "cache:x", "lucee-storage:session:abc:app"]), Resp::Integer(2));
    assert_eq!(lucee.call(&["KEYS", "*"]), Resp::Array(vec![]));

    // Lucee's InfoParser: a `# Section` line before any `key:value`, and a ':' on every other
    // non-empty line, or it throws.
    let info = lucee.call(&["INFO"]).text();
    let mut in_section = false;
    for line in info.lines().filter(|line| !line.is_empty()) {
        if line.starts_with('#') {
            in_section = true;
        } else {
            assert!(in_section && line.contains(':'), "Lucee cannot parse {line:?} in:\n{info}");
        }
    }
    assert!(info.contains("loading:0"), "ioredis waits for loading:0: {info}");
}

/// Database 0 strings are the very entries the CLI sees; each database is its own key space.
#[test]
fn redis_and_the_cli_share_one_key_space_and_databases_are_apart() {
    let cluster = Cluster::start("redis_cli", &["a", "b"]);
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    let mut on_a = redis(a);
    assert_eq!(on_a.call(&["SET", "app/flags/dark", "on"]), Resp::Simple("OK".into()));
    b.await_value("app/flags/dark", Some(b"on"));
    b.put("app/config/colour", "blue");
    let mut on_b = redis(b);
    eventually("the CLI's write read through Redis on the other node", CONVERGE_TIMEOUT, || {
        match on_a.call(&["GET", "app/config/colour"]) {
            Resp::Bulk(value) if value == b"blue" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    on_b.call(&["SELECT", "1"]);
    assert_eq!(on_b.call(&["GET", "app/flags/dark"]), Resp::Null, "database 1 is apart");
    assert_eq!(on_b.call(&["SET", "only-in-1", "x"]), Resp::Simple("OK".into()));
    assert_eq!(on_a.call(&["GET", "only-in-1"]), Resp::Null);
}

/// Two nodes writing different fields of one hash at once: both fields survive everywhere,
/// and an EXPIRE after HSET works as in Redis.
#[test]
fn hash_fields_written_on_two_nodes_both_survive() {
    let cluster = Cluster::start("redis_hash", &["a", "b"]);
    let (mut on_a, mut on_b) = (redis(cluster.node("a")), redis(cluster.node("b")));
    on_a.call(&["HSET", "session:1", "user", "ada"]);
    on_b.call(&["HSET", "session:1", "cart", "3 items"]);
    for node in [&mut on_a, &mut on_b] {
        eventually("both fields on every node", CONVERGE_TIMEOUT, || {
            match node.call(&["HGETALL", "session:1"]) {
                Resp::Array(items) if items.len() == 4 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    }
    assert_eq!(on_a.call(&["EXPIRE", "session:1", "600"]), Resp::Integer(1));
    let Resp::Integer(ttl) = on_a.call(&["TTL", "session:1"]) else { panic!("TTL gives a number") };
    assert!((590..=600).contains(&ttl), "ttl {ttl}");
    assert_eq!(on_a.call(&["TYPE", "session:1"]), Resp::Simple("hash".into()));
    assert_eq!(on_a.call(&["HDEL", "session:1", "cart"]), Resp::Integer(1));
    assert_eq!(on_a.call(&["HLEN", "session:1"]), Resp::Integer(1));
}

/// A write through node A is published to a subscriber on node B, in RESP2 and as RESP3 push
/// frames after `HELLO 3`.
#[test]
fn keyspace_notifications_reach_subscribers_on_every_node() {
    let cluster = Cluster::start("redis_notify", &["a", "b"]);
    let mut subscriber = redis(cluster.node("b"));
    let subscribed = subscriber.call(&["PSUBSCRIBE", "__keyevent@0__:*"]);
    assert_eq!(
        subscribed,
        Resp::Array(vec![bulk("psubscribe"), bulk("__keyevent@0__:*"), Resp::Integer(1)])
    );
    let mut resp3 = redis(cluster.node("b"));
    let Resp::Map(hello) = resp3.call(&["HELLO", "3"]) else { panic!("HELLO 3 gives a map") };
    assert!(hello.contains(&(bulk("proto"), Resp::Integer(3))), "{hello:?}");
    let confirmed = resp3.call(&["SUBSCRIBE", "__keyspace@0__:flag"]);
    assert!(matches!(confirmed, Resp::Push(_)), "RESP3 confirms with a push: {confirmed:?}");

    redis(cluster.node("a")).call(&["SET", "flag", "on"]);
    let message = subscriber.read().expect("a notification");
    let expected =
        vec![bulk("pmessage"), bulk("__keyevent@0__:*"), bulk("__keyevent@0__:set"), bulk("flag")];
    assert_eq!(message, Resp::Array(expected));
    assert_eq!(
        resp3.read(),
        Some(Resp::Push(vec![bulk("message"), bulk("__keyspace@0__:flag"), bulk("set")]))
    );
    // In RESP3 a subscribed connection still runs commands.
    assert_eq!(resp3.call(&["GET", "flag"]), bulk("on"));
}

/// MULTI/EXEC runs its block at once on this node; an unknown command aborts the block.
#[test]
fn multi_exec_applies_a_batch_and_refuses_a_broken_one() {
    let cluster = Cluster::start("redis_multi", &["a"]);
    let mut client = redis(cluster.node("a"));
    assert_eq!(client.call(&["MULTI"]), Resp::Simple("OK".into()));
    assert_eq!(client.call(&["MSET", "k1", "1", "k2", "2"]), Resp::Simple("QUEUED".into()));
    assert_eq!(client.call(&["EXPIRE", "k1", "100"]), Resp::Simple("QUEUED".into()));
    assert_eq!(client.call(&["GET", "k2"]), Resp::Simple("QUEUED".into()));
    let done = client.call(&["EXEC"]);
    assert_eq!(done, Resp::Array(vec![Resp::Simple("OK".into()), Resp::Integer(1), bulk("2")]));

    client.call(&["MULTI"]);
    assert!(matches!(client.call(&["NOSUCHCOMMAND"]), Resp::Error(_)));
    client.call(&["SET", "k3", "3"]);
    assert!(matches!(client.call(&["EXEC"]), Resp::Error(e) if e.starts_with("EXECABORT")));
    assert_eq!(client.call(&["GET", "k3"]), Resp::Null, "nothing of an aborted block is applied");
    let refused = client.call(&["INCR", "k1"]);
    assert!(matches!(&refused, Resp::Error(e) if e.contains("last-writer-wins")), "{refused:?}");
}

/// Garbage, absurd headers, deep nesting and half-sent frames get an error or a closed
/// connection; the node goes on serving everyone else.
#[test]
fn hostile_input_gets_an_error_and_the_node_goes_on() {
    let cluster = Cluster::start("redis_hostile", &["a"]);
    let node = cluster.node("a");
    let hostile: [&[u8]; 5] = [
        b"*99999999999\r\n",
        b"*1\r\n$99999999999\r\n",
        &b"*1\r\n".repeat(200_000),
        b"*2\r\n$3\r\nGET\r\n:5\r\n",
        b"*1\r\n$3\r\nGETX\r\n",
    ];
    for bytes in hostile {
        let mut client = redis(node);
        let sent = client.try_raw(bytes);
        match client.read() {
            Some(Resp::Error(error)) => assert!(error.starts_with("ERR Protocol error"), "{error}"),
            // The node answered and closed while the 800 KB were still going out (or still
            // unread in its socket): the reset that met the rest may have taken the answer
            // with it.
            None if sent.is_err() || bytes.len() > 64 * 1024 => {}
            other => panic!("expected a protocol error, got {other:?} (sent: {sent:?})"),
        }
        assert_eq!(client.read(), None, "the connection is closed after a protocol error");
    }
    // A half-sent frame, then the client goes away.
    let mut half = redis(node);
    half.raw(b"*2\r\n$3\r\nSET\r\n$100\r\nonly part");
    drop(half);
    let mut fine = redis(node);
    assert_eq!(fine.call(&["SET", "still", "here"]), Resp::Simple("OK".into()));
    assert_eq!(node.get("still").as_deref(), Some(b"here".as_slice()));
}

/// Inline commands (as typed at a terminal) mixed with multibulk ones in one write run in
/// the order sent: a pipelined batch of data commands is cut where an inline one comes.
#[test]
fn inline_commands_run_in_order_with_pipelined_ones() {
    let cluster = Cluster::start("redis_inline", &["a"]);
    let mut client = redis(cluster.node("a"));
    client.raw(b"set inline \"v 1\"\r\n*2\r\n$3\r\nGET\r\n$6\r\ninline\r\nSET inline 2\r\n*2\r\n$3\r\nGET\r\n$6\r\ninline\r\nPING\r\n");
    let replies: Vec<Option<Resp>> = (0..5).map(|_| client.read()).collect();
    let expected = [Resp::Simple("OK".into()), bulk("v 1"), Resp::Simple("OK".into()), bulk("2")];
    let expected: Vec<Option<Resp>> =
        expected.into_iter().chain([Resp::Simple("PONG".into())]).map(Some).collect();
    assert_eq!(replies, expected);
}

/// Off loopback a password is required; with one, nothing runs before AUTH.
#[test]
fn a_password_guards_the_redis_port() {
    let exposed = chorus(&["node", "--listen", "127.0.0.1:0", "--redis", "0.0.0.0:0"]);
    exposed.expect_code(2);
    assert!(exposed.stderr.contains("--redis-password"), "{exposed}");

    let scratch = common::Scratch::new("redis_password");
    let args = ["node", "--listen", "127.0.0.1:0", "--redis", "127.0.0.1:0", "--name", "p"];
    let env = [("CHORUS_REDIS_PASSWORD", "s3cret")];
    let process = common::Process::start("p", &args, &env, scratch.path());
    let node = Node::await_ready(process, None);
    let mut client = redis(&node);
    assert!(matches!(client.call(&["GET", "k"]), Resp::Error(e) if e.starts_with("NOAUTH")));
    assert!(
        matches!(client.call(&["AUTH", "wrong"]), Resp::Error(e) if e.starts_with("WRONGPASS"))
    );
    assert_eq!(client.call(&["AUTH", "default", "s3cret"]), Resp::Simple("OK".into()));
    assert_eq!(client.call(&["GET", "k"]), Resp::Null);
    let mut hello = redis(&node);
    let Resp::Map(_) = hello.call(&["HELLO", "3", "AUTH", "default", "s3cret"]) else {
        panic!("HELLO with AUTH authenticates")
    };
}

/// What the real clients found (tests/clients): FLUSHDB on an empty database, a key written
/// as a hash and then as a string, and PING on a subscribed RESP2 connection.
#[test]
fn key_types_flushes_and_subscribed_pings_behave_as_in_redis() {
    let cluster = Cluster::start("redis_types", &["a"]);
    let mut client = redis(cluster.node("a"));
    assert_eq!(client.call(&["SELECT", "9"]), Resp::Simple("OK".into()));
    assert_eq!(client.call(&["FLUSHDB"]), Resp::Simple("OK".into()), "an empty database");
    assert_eq!(client.call(&["FLUSHALL"]), Resp::Simple("OK".into()));

    client.call(&["HSET", "k", "f", "v"]);
    let refused = client.call(&["GET", "k"]);
    assert!(matches!(&refused, Resp::Error(e) if e.starts_with("WRONGTYPE")), "{refused:?}");
    assert_eq!(client.call(&["SET", "k", "s"]), Resp::Simple("OK".into()));
    assert_eq!(client.call(&["HGETALL", "k"]), Resp::Array(vec![]), "SET replaced the hash");
    let refused = client.call(&["HSET", "k", "f", "v"]);
    assert!(matches!(&refused, Resp::Error(e) if e.starts_with("WRONGTYPE")), "{refused:?}");
    assert_eq!(client.call(&["DEL", "k"]), Resp::Integer(1));
    assert_eq!(client.call(&["EXISTS", "k"]), Resp::Integer(0));

    let mut subscriber = redis(cluster.node("a"));
    subscriber.call(&["SUBSCRIBE", "__keyspace@0__:x"]);
    let pong = subscriber.call(&["PING", "hi"]);
    assert_eq!(pong, Resp::Array(vec![bulk("pong"), bulk("hi")]));
}

/// What a review found (each fails on the code before its fix): a pipelined command runs with
/// the state it was sent in, a huge reply is refused instead of allocated, a key too long to
/// name a hash can still be deleted and flushed, a two-year TTL is held at a year, and a SCAN
/// cursor may be retried.
#[test]
fn pipelines_replies_long_keys_ttls_and_cursors_behave() {
    let cluster = Cluster::start("redis_review", &["a"]);
    let mut client = redis(cluster.node("a"));
    client.send(&[b"SET", b"only0", b"v"]);
    client.send(&[b"SELECT", b"1"]);
    client.send(&[b"GET", b"only0"]);
    let replies: Vec<Resp> = (0..3).map(|_| client.read().expect("a reply")).collect();
    assert_eq!(replies, vec![Resp::Simple("OK".into()), Resp::Simple("OK".into()), Resp::Null]);
    client.call(&["SELECT", "0"]);
    assert_eq!(client.call(&["GET", "only0"]), bulk("v"), "the SET before SELECT went to db 0");

    let long = "k".repeat(510);
    assert_eq!(client.call(&["SET", &long, "v"]), Resp::Simple("OK".into()));
    assert_eq!(client.call(&["EXISTS", &long]), Resp::Integer(1));
    assert_eq!(client.call(&["DEL", &long]), Resp::Integer(1));
    assert_eq!(client.call(&["SET", &long, "v"]), Resp::Simple("OK".into()));
    assert_eq!(client.call(&["FLUSHDB"]), Resp::Simple("OK".into()));

    assert_eq!(client.call(&["SET", "session", "s", "EX", "63072000"]), Resp::Simple("OK".into()));
    let Resp::Integer(ttl) = client.call(&["TTL", "session"]) else { panic!("TTL gives a number") };
    assert!((31_535_000..=31_536_000).contains(&ttl), "held at a year: {ttl}");

    for n in 0..30 {
        client.call(&["SET", &format!("scan:{n}"), "x"]);
    }
    let Resp::Array(first) = client.call(&["SCAN", "0", "COUNT", "5"]) else { panic!("SCAN") };
    let cursor = first[0].text();
    let page = |client: &mut Redis| match client.call(&["SCAN", &cursor, "COUNT", "5"]) {
        Resp::Array(reply) => reply[1].clone(),
        other => panic!("SCAN with a cursor: {other:?}"),
    };
    let (once, again) = (page(&mut client), page(&mut client));
    assert_eq!(once, again, "a retried cursor gives the same page");

    let big = "x".repeat(1024 * 1024);
    assert_eq!(client.call(&["SET", "big", &big]), Resp::Simple("OK".into()));
    let mut args = vec!["MGET"];
    args.extend(std::iter::repeat_n("big", 40));
    let refused = client.call(&args);
    assert!(matches!(&refused, Resp::Error(e) if e.contains("output limit")), "{refused:?}");
    assert_eq!(client.read(), None, "and the connection is closed");
    assert_eq!(redis(cluster.node("a")).call(&["STRLEN", "big"]), Resp::Integer(1024 * 1024));
}

/// Before AUTH, a client may not send a large request: a password protects memory too.
#[test]
fn an_unauthenticated_client_cannot_send_a_large_request() {
    let scratch = common::Scratch::new("redis_unauthenticated");
    let args = ["node", "--listen", "127.0.0.1:0", "--redis", "127.0.0.1:0", "--name", "u"];
    let process =
        common::Process::start("u", &args, &[("CHORUS_REDIS_PASSWORD", "pw")], scratch.path());
    let node = Node::await_ready(process, None);
    let mut client = redis(&node);
    client.raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n");
    client.raw(&vec![b'v'; 100_000]);
    let refused = client.read();
    assert!(matches!(&refused, Some(Resp::Error(e)) if e.starts_with("NOAUTH")), "{refused:?}");
    assert_eq!(client.read(), None, "the connection is closed");
}

/// A long command's reply longer than one part (`ENCODE_PART`, 4,096 elements) is encoded part
/// by part with the Redis thread yielding between parts: a `KEYS` reply (an array) and an
/// `HGETALL` reply (a map in RESP3) still arrive whole, in RESP2 and RESP3, and the pipelined
/// command after each is answered after it.
#[test]
fn long_replies_encoded_in_parts_arrive_whole_and_in_order() {
    let cluster = Cluster::start("redis_keys_parts", &["a"]);
    let mut client = redis(cluster.node("a"));
    let names: Vec<String> = (0..10_000).map(|n| format!("part:{n}")).collect();
    for chunk in names.chunks(2_000) {
        let mut args = vec!["MSET"];
        chunk.iter().for_each(|name| args.extend([name.as_str(), "v"]));
        assert_eq!(client.call(&args), Resp::Simple("OK".into()));
    }
    let expected: std::collections::BTreeSet<Vec<u8>> =
        names.iter().map(|name| name.as_bytes().to_vec()).collect();
    for hello in ["2", "3"] {
        assert!(matches!(client.call(&["HELLO", hello]), Resp::Array(_) | Resp::Map(_)));
        client.send(&[b"KEYS", b"part:*"]);
        client.send(&[b"PING"]);
        let Some(Resp::Array(keys)) = client.read() else { panic!("KEYS gives an array") };
        let got: std::collections::BTreeSet<Vec<u8>> =
            keys.iter().map(|key| key.bytes().to_vec()).collect();
        assert_eq!((keys.len(), got == expected), (10_000, true), "RESP{hello}");
        assert_eq!(client.read(), Some(Resp::Simple("PONG".into())), "RESP{hello}");
    }
    let values: Vec<String> = names.iter().map(|name| format!("value of {name}")).collect();
    let mut hset = vec!["HSET", "big"];
    names.iter().zip(&values).for_each(|(name, value)| hset.extend([name.as_str(), value]));
    assert_eq!(client.call(&hset), Resp::Integer(10_000));
    for hello in ["2", "3"] {
        assert!(matches!(client.call(&["HELLO", hello]), Resp::Array(_) | Resp::Map(_)));
        client.send(&[b"HGETALL", b"big"]);
        client.send(&[b"PING"]);
        let fields: Vec<(Vec<u8>, Vec<u8>)> = match client.read() {
            Some(Resp::Map(pairs)) => {
                pairs.iter().map(|(f, v)| (f.bytes().to_vec(), v.bytes().to_vec())).collect()
            }
            Some(Resp::Array(flat)) => {
                flat.chunks(2).map(|p| (p[0].bytes().to_vec(), p[1].bytes().to_vec())).collect()
            }
            other => panic!("HGETALL gives a map or an array: {other:?}"),
        };
        let with_its_value = |(field, value): &&(Vec<u8>, Vec<u8>)| {
            *value == format!("value of {}", String::from_utf8_lossy(field)).into_bytes()
        };
        let got: std::collections::BTreeSet<Vec<u8>> =
            fields.iter().filter(with_its_value).map(|(field, _)| field.clone()).collect();
        assert_eq!((fields.len(), got == expected), (10_000, true), "RESP{hello}");
        assert_eq!(client.read(), Some(Resp::Simple("PONG".into())), "RESP{hello}");
    }
}

/// A writer's pushes reach each replica in the order it made them, while its Redis thread and
/// its runtime workers both flush pushes (`src/node/sends.rs`): clients pipeline SETs to node a
/// from several connections at once, and neither replica receives a pushed write before an
/// earlier one of a (`updates_ahead`). Before the outboxes were queued in the lock's order, this
/// load met 356 to 839 such writes of its 20,480 in each of 5 runs. `chorus node` runs on one
/// thread unless given `--threads`, and there no two callers send at once: the nodes here run
/// two workers with the Redis thread beside them.
/// A hot key written through pipelines reaches the replicas as the last of each batch's writes
/// (a push names the others instead of carrying them), and each replica still counts every one
/// of those writes seen: its vector covers the writer's, with nothing left for anti-entropy.
#[test]
fn a_hot_key_reaches_replicas_as_its_last_writes_and_every_write_counts_seen() {
    const BATCHES: usize = 20;
    const PIPELINE: usize = 64;
    let mut cluster = Cluster::start("redis_hot_key", &["a", "b", "c"]);
    cluster.await_full_membership();
    let stats = |name: &str| cluster.node(name).cli(&["stats", "--json"]).expect_code(0).json();
    let count = |name: &str, field: &str| stats(name)[field].as_u64().expect(field);
    let applied_before = ["b", "c"].map(|name| count(name, "updates_applied"));
    let addr = cluster.node("a").ready.redis.clone().expect("test nodes serve Redis");
    let mut client = Redis::connect(&addr);
    for batch in 0..BATCHES {
        // One write for the whole pipeline, so the node takes it in one read and one session.
        let mut bytes = Vec::new();
        for n in 0..PIPELINE {
            let value = format!("v{batch}-{n}");
            bytes.extend(encode(&[b"SET", b"hot", value.as_bytes()]));
        }
        client.raw(&bytes);
        for _ in 0..PIPELINE {
            assert_eq!(client.read(), Some(Resp::Simple("OK".into())));
        }
    }
    let last = format!("v{}-{}", BATCHES - 1, PIPELINE - 1);
    let seen = count("a", "writes_seen");
    for (name, before) in ["b", "c"].into_iter().zip(applied_before) {
        cluster.node(name).await_value("hot", Some(last.as_bytes()));
        eventually(&format!("{name} counts every write of a seen"), CONVERGE_TIMEOUT, || {
            let theirs = count(name, "writes_seen");
            if theirs >= seen { Ok(()) } else { Err(format!("{theirs} of {seen}")) }
        });
        let applied = count(name, "updates_applied") - before;
        let written = (BATCHES * PIPELINE) as u64;
        assert!(applied <= written / 2, "{name} applied {applied} of {written} writes of one key");
    }
}

#[test]
fn replicas_receive_a_writers_pushes_in_order() {
    const CONNECTIONS: usize = 8;
    const BATCHES: usize = 40;
    const PIPELINE: usize = 64;
    let threads = [("CHORUS_THREADS", "2")];
    let mut cluster = Cluster::start_with_env("redis_push_order", &["a", "b", "c"], &threads);
    cluster.await_full_membership();
    let stats = |name: &str| cluster.node(name).cli(&["stats", "--json"]).expect_code(0).json();
    let count = |stats: &serde_json::Value, name: &str| stats[name].as_u64().expect(name);
    let before: Vec<u64> = ["b", "c"].map(|name| count(&stats(name), "updates_ahead")).to_vec();
    let dropped_before = count(&stats("a"), "messages_dropped");
    let addr = cluster.node("a").ready.redis.clone().expect("test nodes serve Redis");
    let writers: Vec<_> = (0..CONNECTIONS)
        .map(|connection| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut client = Redis::connect(&addr);
                for batch in 0..BATCHES {
                    for n in 0..PIPELINE {
                        // Each key once: a write of a key still queued would replace the
                        // queued one and travel ahead of the writes between (`push.rs`).
                        let key = format!("order:{connection}:{}", batch * PIPELINE + n);
                        client.send(&[b"SET", key.as_bytes(), b"a value of some length"]);
                    }
                    for _ in 0..PIPELINE {
                        assert_eq!(client.read(), Some(Resp::Simple("OK".into())));
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("a writer finishes");
    }
    // The last write: once a replica holds it, every earlier push has reached it, or it came
    // ahead of one and was counted.
    assert_eq!(
        redis(cluster.node("a")).call(&["SET", "order:done", "yes"]),
        Resp::Simple("OK".into())
    );
    for (name, before) in ["b", "c"].into_iter().zip(before) {
        cluster.node(name).await_value("order:done", Some(b"yes"));
        let ahead = count(&stats(name), "updates_ahead") - before;
        // A push dropped on a full queue leaves a gap that proves nothing about the order.
        let dropped = count(&stats("a"), "messages_dropped") - dropped_before;
        assert_eq!(
            (dropped, ahead),
            (0, 0),
            "{name}: a dropped {dropped} messages, {name} received {ahead} pushed writes before earlier ones of a"
        );
    }
}
