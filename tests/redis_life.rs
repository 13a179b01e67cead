//! The life of a node's Redis (and HTTP) front end: stopping a node frees its ports (QUIC,
//! Redis, HTTP) before `stop` returns; a front end whose accept loop panics or returns stops
//! the process with an error; a command that works a page per hold (`DBSIZE`, `FLUSHDB`,
//! `HLEN` of a large hash) lets the node's other Redis clients be served while it runs.
//! Orders of events, never timings.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use chorus::{HttpOptions, NodeHandle, NodeOptions, RedisOptions};
use common::{Cluster, EXIT_TIMEOUT, Node, Redis, Resp, Scratch, encode};

/// Stops and restarts of one node on the same addresses: a port still bound after `stop`
/// returned shows in one of them.
const ROUNDS: usize = 6;

/// Tries of an ordering that a busy machine could delay past the long commands' end.
const ATTEMPTS: usize = 3;

/// How long a reply may take before the test fails.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// A node started in this process and joined to a peer, stopped (`stop`, or `shutdown` every
/// other round), and started again on the same QUIC, Redis and HTTP addresses at once, with a
/// Redis and an HTTP client connected to the old one: each start binds, and every port binds
/// right after each stop returns (the QUIC one once the connections to the peer closed). On a
/// runtime of several workers, where Redis has a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_frees_its_ports_before_stop_returns() {
    stop_and_start_on_the_same_addresses().await;
}

/// The same on a runtime of one thread, as `chorus node` runs, where Redis is one of its tasks.
#[tokio::test(flavor = "current_thread")]
async fn a_stopped_node_on_one_thread_frees_its_ports_before_stop_returns() {
    stop_and_start_on_the_same_addresses().await;
}

async fn stop_and_start_on_the_same_addresses() {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let peer = NodeHandle::start(NodeOptions::new(loopback, Vec::new())).await.expect("the peer");
    let (mut listen, mut redis, mut http) = (loopback, loopback, loopback);
    for round in 0..ROUNDS {
        let mut options = NodeOptions::new(listen, Vec::new());
        options.join = vec![peer.addr().to_string()];
        options.redis = Some(RedisOptions { listen: redis, password: None });
        options.http = Some(HttpOptions { listen: http, token: None });
        let mut node = NodeHandle::start(options)
            .await
            .unwrap_or_else(|error| panic!("round {round}: start on the same addresses: {error}"));
        let joined = tokio::time::timeout(REPLY_TIMEOUT, node.ready()).await;
        assert!(joined.is_ok(), "round {round}: the node did not join its peer");
        listen = node.addr();
        (redis, http) = (node.redis_addr().expect("Redis"), node.http_addr().expect("HTTP"));
        // A client served, and still connected when the node stops; its blocking calls run off
        // the runtime's threads, which may be the node's only one.
        let client = tokio::task::spawn_blocking(move || {
            let mut client = Redis::connect(&redis.to_string());
            assert_eq!(client.call(&["SET", "k", "v"]), Resp::Simple("OK".into()));
            client
        });
        let client = client.await.expect("the Redis client");
        let held = TcpStream::connect(http).expect("connect to HTTP");
        if round % 2 == 0 {
            node.stop().await;
        } else {
            node.shutdown().await;
        }
        let quic = UdpSocket::bind(listen).map(drop);
        assert!(quic.is_ok(), "round {round}: QUIC port {listen} still bound: {quic:?}");
        for (door, addr) in [("Redis", redis), ("HTTP", http)] {
            let bound = TcpListener::bind(addr);
            assert!(bound.is_ok(), "round {round}: {door} port {addr} still bound: {bound:?}");
        }
        drop((client, held));
    }
    peer.stop().await;
}

/// A front end's accept loop, or the QUIC one that peers and the CLI connect through, that
/// panics or returns (the test-only fault switch, read by debug builds only) stops `chorus
/// node` with exit 1 and an error line naming it.
#[test]
fn a_front_end_that_stops_by_itself_stops_the_node_with_an_error() {
    if !common::fault_switch_read() {
        return;
    }
    let scratch = Scratch::new("redis_life_fault");
    // The fault, the node's threads (with two, the Redis front end has a thread of its own),
    // and what the node logs.
    let faults = [
        ("redis-accept-panic", "1", "the Redis front end stopped: its accept loop panicked"),
        ("redis-accept-return", "1", "the Redis front end stopped: its accept loop returned"),
        ("redis-accept-panic", "2", "the Redis front end stopped: its accept loop panicked"),
        ("redis-accept-return", "2", "the Redis front end stopped: its accept loop returned"),
        ("http-accept-panic", "1", "the HTTP front end stopped: its accept loop panicked"),
        ("quic-accept-panic", "1", "the node's QUIC accept loop stopped"),
    ];
    for (n, (fault, threads, logged)) in faults.into_iter().enumerate() {
        let name = format!("fault-{n}");
        let env = [(common::TEST_FAULT_ENV, fault), ("CHORUS_THREADS", threads)];
        let process = Node::spawn_with_env(&name, &env, scratch.path());
        let mut node = Node::await_ready(process, None);
        // The Redis thread names itself once it runs, so it is waited for.
        let threaded = threads != "1";
        let redis_thread = || thread_names(node.process.pid()).contains(&"chorus-redis".into());
        let deadline = std::time::Instant::now() + REPLY_TIMEOUT;
        while threaded && !redis_thread() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let names = thread_names(node.process.pid());
        assert_eq!(redis_thread(), threaded, "{fault}, {threads} threads: {names:?}");
        if fault.starts_with("quic") {
            // The CLI's connection is the first the loop takes; the node dies under it.
            let _ = node.cli(&["stats"]);
        } else {
            let door = match fault.starts_with("redis") {
                true => node.ready.redis.clone().expect("Redis"),
                false => node.ready.http.clone().expect("HTTP"),
            };
            let _client = TcpStream::connect(&door).expect("connect to the front end");
        }
        let status = node.process.wait_exit(EXIT_TIMEOUT);
        let log = node.process.log_tail();
        assert_eq!(status.and_then(|status| status.code()), Some(1), "{fault}: {status:?}\n{log}");
        assert!(log.contains("the node failed") && log.contains(logged), "{fault}:\n{log}");
    }
}

/// The names of process `pid`'s threads (Linux's `/proc`).
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the node's threads");
    let comm = |task: std::fs::DirEntry| std::fs::read_to_string(task.path().join("comm"));
    tasks.filter_map(|task| comm(task.ok()?).ok()).map(|name| name.trim().to_string()).collect()
}

/// Keys the long commands walk: enough that a walk takes many pages.
const KEYS: usize = 200_000;

/// Fields of the large hash.
const FIELDS: usize = 60_000;

/// With 200,000 keys, `DBSIZE` pipelined ten times, a `FLUSHDB`, and `HLEN` of a 60,000-field
/// hash ten times each let another connection's `PING` and `GET` be answered while they run.
#[test]
fn a_long_command_lets_other_clients_be_served_while_it_runs() {
    let cluster = Cluster::start("redis_life_long", &["a"]);
    let addr = cluster.node("a").ready.redis.clone().expect("test nodes serve Redis");
    let mut other = Redis::connect(&addr);
    let mut client = Redis::connect(&addr);
    let keys: Vec<String> = (0..KEYS).map(|n| format!("key:{n:07}")).collect();
    for chunk in keys.chunks(10_000) {
        let mut mset = vec!["MSET"];
        mset.extend(chunk.iter().flat_map(|key| [key.as_str(), "v"]));
        assert_eq!(client.call(&mset), Resp::Simple("OK".into()));
    }
    let fields: Vec<String> = (0..FIELDS).map(|n| format!("f{n:06}")).collect();
    for chunk in fields.chunks(1_000) {
        let mut hset = vec!["HSET", "big"];
        hset.extend(chunk.iter().flat_map(|field| [field.as_str(), "v"]));
        assert_eq!(client.call(&hset), Resp::Integer(chunk.len() as i64));
    }
    let dbsize = vec![vec!["DBSIZE"]; 10];
    let expected = format!(":{}\r\n", KEYS + 1);
    served_during(&addr, &mut other, &dbsize, &expected);
    let hlen = vec![vec!["HLEN", "big"]; 10];
    served_during(&addr, &mut other, &hlen, &format!(":{FIELDS}\r\n"));
    served_during(&addr, &mut other, &[vec!["FLUSHDB"]], "+OK\r\n");
    assert_eq!(client.call(&["DBSIZE"]), Resp::Integer(0));
}

/// Sends `PING`, the `long` commands and `ECHO end` in one write on a new connection. Its
/// `PONG` comes back before the long commands run (their connection sends the replies before
/// such a command first); `other` then sends `PING` and `GET`, whose replies must come before
/// `end` does, in one of [`ATTEMPTS`] tries. Every long command's reply must be `expected`.
fn served_during(addr: &str, other: &mut Redis, long: &[Vec<&str>], expected: &str) {
    for _ in 0..ATTEMPTS {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).expect("a timeout can be set");
        let mut pipeline = encode(&[b"PING"]);
        for command in long {
            let args: Vec<&[u8]> = command.iter().map(|arg| arg.as_bytes()).collect();
            pipeline.extend(encode(&args));
        }
        pipeline.extend(encode(&[b"ECHO", b"end"]));
        stream.write_all(&pipeline).expect("send the pipeline");
        let mut replies = Vec::new();
        read_until(&mut stream, &mut replies, b"+PONG\r\n");
        assert_eq!(other.call(&["PING"]), Resp::Simple("PONG".into()));
        assert_eq!(other.call(&["GET", "nothing"]), Resp::Null);
        // What the long commands' connection received by then, without waiting for more.
        stream.set_nonblocking(true).expect("non-blocking");
        let mut chunk = [0; 4096];
        while let Ok(read @ 1..) = stream.read(&mut chunk) {
            replies.extend_from_slice(&chunk[..read]);
        }
        let ended_first = contains(&replies, b"$3\r\nend\r\n");
        stream.set_nonblocking(false).expect("blocking");
        read_until(&mut stream, &mut replies, b"$3\r\nend\r\n");
        let text = String::from_utf8_lossy(&replies);
        assert_eq!(text.matches(expected).count(), long.len(), "{long:?} answered {text:?}");
        if !ended_first {
            return;
        }
    }
    panic!("{long:?}: every try answered the other client only after the long commands");
}

/// Reads from `stream` into `replies` until they hold `marker`.
fn read_until(stream: &mut TcpStream, replies: &mut Vec<u8>, marker: &[u8]) {
    let mut chunk = [0; 4096];
    while !contains(replies, marker) {
        let read = stream.read(&mut chunk).expect("a reply within the timeout");
        assert!(read > 0, "the node closed the connection");
        replies.extend_from_slice(&chunk[..read]);
    }
}

fn contains(bytes: &[u8], marker: &[u8]) -> bool {
    bytes.windows(marker.len()).any(|window| window == marker)
}
