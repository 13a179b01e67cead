//! Bounds a user runs into (DESIGN section 14): write waits whose clients went away are
//! released, a wait that can never complete or would last too long is refused at once.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use chorus::tls::{ALPN_RPC, ClusterKey, SERVER_NAME, TlsIdentity};
use chorus_proto::codec;
use chorus_proto::limits::{WAIT_TIMEOUT_MS_MAX, WAITS_MAX};
use chorus_proto::rpc::Request;
use chorus_proto::{Key, Value, WaitLevel};
use common::{CONVERGE_TIMEOUT, Cluster, Node, block_on, eventually};

/// Streams a client opens at once on one connection (quinn's default credit).
const STREAMS_PER_CONNECTION: usize = 100;

/// How long the storm may take to fill every wait slot: longer than replication's timeout (on
/// a loaded 2-core machine, 15,300 of the 16,384 waits were in after 30 s), and below the
/// waits' own 60 s timeout, after which the first of them would end by themselves.
const STORM_FILL_TIMEOUT: Duration = Duration::from_secs(50);

fn stat(node: &Node, name: &str) -> u64 {
    let stats = node.cli(&["stats", "--json"]).expect_code(0).json();
    stats[name].as_u64().unwrap_or_else(|| panic!("no {name} in {stats}"))
}

/// Sends (and `kill`s, via `kill -STOP`/`-CONT`) a signal to a node's process.
fn signal(node: &Node, signal: &str) {
    let pid = node.process.pid().to_string();
    let status = std::process::Command::new("kill").args([signal, &pid]).status();
    assert!(status.expect("run kill").success(), "kill {signal} {pid}");
}

async fn connect(endpoint: &quinn::Endpoint, addr: SocketAddr) -> quinn::Connection {
    let identity = TlsIdentity::new(&[ClusterKey::development()]).expect("TLS identity");
    let config = identity.client_config(ALPN_RPC).expect("client config");
    let connecting = endpoint.connect_with(config, addr, SERVER_NAME).expect("connect");
    let connection = tokio::time::timeout(Duration::from_secs(10), connecting).await;
    connection.expect("connected in time").expect("handshake")
}

/// Sends `count` waited puts that nobody can confirm, on streams of their own, and returns
/// the streams (nobody reads the answers).
async fn waited_puts(
    connection: &quinn::Connection,
    count: usize,
    wait: WaitLevel,
) -> Vec<(quinn::SendStream, quinn::RecvStream)> {
    let mut streams = Vec::with_capacity(count);
    for index in 0..count {
        let (mut send, recv) = connection.open_bi().await.expect("open a stream");
        let request = Request::Put {
            key: Key::new(format!("storm/{index}")).expect("a valid key"),
            value: Value::new("v").expect("a valid value"),
            ttl_ms: None,
            wait,
            timeout_ms: WAIT_TIMEOUT_MS_MAX,
        };
        let bytes = codec::encode_frame(&request).expect("encode");
        send.write_all(&bytes).await.expect("send the request");
        streams.push((send, recv));
    }
    streams
}

/// Waits that cannot complete (a third node frozen) fill every wait slot of a node; their
/// clients then go away, half by closing their connections and half by abandoning the
/// requests' streams. The slots come back at once rather than at the waits' 60 s deadline,
/// and a waited write the two live nodes can confirm succeeds.
#[test]
fn waits_whose_clients_went_away_are_released() {
    let mut cluster = Cluster::start("leaked_waits", &["a", "b", "c"]);
    cluster.await_full_membership();
    let (a, c) = (cluster.node("a"), cluster.node("c"));
    let target: SocketAddr = a.addr().parse().expect("a socket address");
    signal(c, "-STOP");
    let connections = WAITS_MAX.div_ceil(STREAMS_PER_CONNECTION);
    // quinn's connections are driven by tasks on the runtime's workers, so they go on while
    // this thread polls the node's counters between awaits.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    let runtime = runtime.worker_threads(1).enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("an address"));
        let endpoint = endpoint.expect("a client endpoint");
        let mut clients = Vec::new();
        for _ in 0..connections {
            let connection = connect(&endpoint, target).await;
            let streams = waited_puts(&connection, STREAMS_PER_CONNECTION, WaitLevel::Count(3));
            clients.push((connection.clone(), streams.await));
        }
        let pending = eventually("every wait slot taken", STORM_FILL_TIMEOUT, || {
            let pending = stat(a, "waits_pending");
            (pending >= WAITS_MAX as u64).then_some(pending).ok_or(format!("{pending} pending"))
        });
        assert_eq!(pending, WAITS_MAX as u64, "the node bounds its waits");
        let refused = a.cli(&["put", "k", "v", "--wait", "2"]);
        assert_eq!(refused.code, 1, "every slot is taken: {}", refused.stderr);
        assert!(refused.stderr.contains("busy"), "{}", refused.stderr);
        for (index, (connection, streams)) in clients.into_iter().enumerate() {
            if index % 2 == 0 {
                connection.close(0u32.into(), b"gone");
            } else {
                // A client that gave up on its requests but keeps its connection.
                drop(streams);
            }
        }
        eventually("the abandoned waits released", CONVERGE_TIMEOUT, || {
            let pending = stat(a, "waits_pending");
            (pending == 0).then_some(()).ok_or(format!("{pending} still pending"))
        });
    });
    let written =
        a.cli(&["put", "after/storm", "v", "--wait", "2", "--json"]).expect_code(0).json();
    assert_eq!(written["wait"]["complete"], true, "{written}");
    assert!(stat(a, "waits_cancelled") >= WAITS_MAX as u64);
    signal(c, "-CONT");
}

#[test]
fn a_wait_for_more_nodes_than_members_is_refused_at_once() {
    let mut cluster = Cluster::start("wait_too_many", &["a", "b", "c"]);
    cluster.await_full_membership();
    let a = cluster.node("a");
    let started = std::time::Instant::now();
    let refused = a.cli(&["put", "k", "v", "--wait", "999", "--timeout", "30s"]);
    refused.expect_code(2);
    let line = refused.expect_one_stderr_line();
    assert!(line.contains("999") && line.contains("3 live members"), "{line}");
    // Not the wait's 30 s: refused before waiting (the bound is loose for slow machines).
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert_eq!(a.get("k"), None, "a refused write is not applied");
    let complete = a.cli(&["put", "k", "v", "--wait", "3", "--json"]).expect_code(0).json();
    assert_eq!(complete["wait"]["complete"], true, "{complete}");
}

#[test]
fn a_wait_timeout_above_the_maximum_is_refused() {
    let cluster = Cluster::start("wait_too_long", &["a"]);
    let a = cluster.node("a");
    let refused = a.cli(&["put", "k", "v", "--wait", "all", "--timeout", "2m"]);
    refused.expect_code(2);
    assert!(refused.stderr.contains("at most 60s"), "names the maximum: {}", refused.stderr);
    // A Rust client that skips the CLI's check is refused by the node itself.
    let node = a.addr().to_string();
    let answer = block_on(async {
        let client = chorus::Client::connect(&node, &[]).await.expect("connect");
        let options = chorus::client::WriteOptions {
            ttl: None,
            wait: WaitLevel::All,
            timeout: Duration::from_millis(WAIT_TIMEOUT_MS_MAX + 1),
        };
        client.put("k", "v", options).await
    });
    let error = answer.expect_err("refused").to_string();
    assert!(error.contains("maximum"), "{error}");
    assert_eq!(a.get("k"), None);
}
