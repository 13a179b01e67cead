//! Hostile and mistaken input: garbage datagrams, malformed RPC and gossip frames, oversized
//! keys and values, usage errors and unreachable nodes. The node goes on; the CLI says what is
//! wrong and exits with the documented code.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use chorus::tls::{ALPN_GOSSIP, ALPN_RPC, ClusterKey, SERVER_NAME, TlsIdentity};
use chorus_proto::codec::{self, FRAME_HEADER_SIZE};
use chorus_proto::limits::{KEY_SIZE_MAX, MESSAGE_SIZE_MAX, VALUE_SIZE_MAX};
use chorus_proto::rpc::{Request, Response, RpcError};
use chorus_proto::{Key, Value, WaitLevel};
use common::{CONVERGE_TIMEOUT, Cluster, Node, Rng, block_on, chorus, chorus_with, eventually};

/// Fails the test unless `node` is running and still reads and writes, and the write
/// reaches `other`.
#[track_caller]
fn assert_serving(node: &mut Node, other: &Node, key: &str) {
    assert!(node.process.is_running(), "{} stopped\n{}", node.name(), node.process.log_tail());
    node.put(key, "still here");
    assert_eq!(node.get(key).as_deref(), Some(&b"still here"[..]));
    other.await_value(key, Some(b"still here"));
}

fn addr(node: &Node) -> SocketAddr {
    node.addr().parse().expect("a ready line holds a socket address")
}

#[test]
fn garbage_datagrams_do_not_stop_a_node() {
    let mut rng = Rng::from_env("garbage_datagrams");
    let mut cluster = Cluster::start("garbage_datagrams", &["a", "b", "c"]);
    let target = addr(cluster.node("a"));
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    for i in 0..3_000u64 {
        let len = 1 + rng.below(1_400) as usize;
        let mut datagram = rng.bytes(len);
        match i % 4 {
            // A QUIC v1 long header (Initial, Handshake, 0-RTT, Retry) with garbage after it.
            0 if len > 5 => {
                datagram[0] |= 0xc0;
                datagram[1..5].copy_from_slice(&1u32.to_be_bytes());
            }
            // A short header, as if for a connection the node does not know.
            1 => datagram[0] = (datagram[0] & 0x3f) | 0x40,
            _ => {}
        }
        // Datagrams may be dropped by the kernel under load; that is fine.
        let _ = socket.send_to(&datagram, target);
    }
    let (a, b) = split(&mut cluster.nodes, 0, 1);
    assert_serving(a, b, "after/garbage");
}

/// Two distinct nodes of a cluster, the first mutable.
fn split(nodes: &mut [Node], first: usize, second: usize) -> (&mut Node, &Node) {
    assert!(first < second);
    let (left, right) = nodes.split_at_mut(second);
    (&mut left[first], &right[0])
}

/// A raw QUIC connection with the development key, speaking `alpn`.
async fn connect(addr: SocketAddr, alpn: &[u8]) -> (quinn::Endpoint, quinn::Connection) {
    let identity = TlsIdentity::new(&[ClusterKey::development()]).expect("TLS identity");
    let config = identity.client_config(alpn).expect("client config");
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("an address"));
    let endpoint = endpoint.expect("a client endpoint");
    let connecting = endpoint.connect_with(config, addr, SERVER_NAME).expect("connect");
    let connection = tokio::time::timeout(Duration::from_secs(10), connecting).await;
    (endpoint, connection.expect("connected in time").expect("handshake"))
}

/// Sends `bytes` on a new request stream, finishes it, and returns what the node answered
/// before closing the stream.
async fn exchange(connection: &quinn::Connection, bytes: &[u8]) -> Vec<u8> {
    let (mut send, mut recv) = connection.open_bi().await.expect("open a stream");
    send.write_all(bytes).await.expect("send");
    let _ = send.finish();
    let answer = recv.read_to_end(FRAME_HEADER_SIZE + MESSAGE_SIZE_MAX);
    let answer = tokio::time::timeout(Duration::from_secs(10), answer).await;
    answer.expect("the node answers in time").expect("an answer")
}

/// The response frames in `bytes`.
fn responses(mut bytes: &[u8]) -> Vec<Response> {
    let mut found = Vec::new();
    while !bytes.is_empty() {
        let header: [u8; FRAME_HEADER_SIZE] =
            bytes[..FRAME_HEADER_SIZE].try_into().expect("header");
        let size = codec::frame_length(header).expect("a valid frame from the node");
        let body = &bytes[FRAME_HEADER_SIZE..FRAME_HEADER_SIZE + size];
        found.push(codec::decode(body).expect("a response"));
        bytes = &bytes[FRAME_HEADER_SIZE + size..];
    }
    found
}

/// A frame with `body` and a header announcing `announced` bytes.
fn frame(announced: u32, body: &[u8]) -> Vec<u8> {
    let mut frame = announced.to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

fn is_refusal(response: &Response) -> bool {
    matches!(
        response,
        Response::Error(
            RpcError::InvalidRequest(_) | RpcError::InvalidKey(_) | RpcError::CursorExpired
        )
    )
}

#[test]
fn malformed_rpc_frames_do_not_stop_a_node() {
    let mut rng = Rng::from_env("malformed_rpc");
    let mut cluster = Cluster::start("malformed_rpc", &["a", "b", "c"]);
    let target = addr(cluster.node("a"));
    block_on(async {
        let (_endpoint, connection) = connect(target, ALPN_RPC).await;
        let oversized = (MESSAGE_SIZE_MAX + 1) as u32;
        // A 513-byte key in a Get, encoded by hand: variant 0, a varint length, the bytes.
        let mut long_key = vec![0x00, 0x81, 0x04];
        long_key.extend(vec![b'k'; KEY_SIZE_MAX + 1]);
        // A variant that does not exist, then random bytes.
        let mut unknown = vec![0x70];
        unknown.extend(rng.bytes(64));
        let refused: Vec<(&str, Vec<u8>)> = vec![
            ("a length of u32::MAX", frame(u32::MAX, &[])),
            ("a length above the maximum", frame(oversized, &rng.bytes(100))),
            ("half a header", vec![0x00, 0x00]),
            ("a body shorter than announced", frame(1_000, &rng.bytes(10))),
            ("an unknown request", frame(unknown.len() as u32, &unknown)),
            ("a key above the maximum", frame(long_key.len() as u32, &long_key)),
            ("trailing bytes", frame(3, &[0x05, 0x00, 0x00])),
            (
                "a list prefix above the maximum",
                codec::encode_frame(&Request::List {
                    prefix: vec![b'p'; KEY_SIZE_MAX + 88],
                    start_after: None,
                    limit: u32::MAX,
                })
                .expect("encode"),
            ),
        ];
        for (what, bytes) in &refused {
            let answer = responses(&exchange(&connection, bytes).await);
            assert!(answer.len() == 1 && is_refusal(&answer[0]), "{what}: {answer:?}");
        }

        // Hostile but well-formed requests get a sensible answer.
        let key = Key::new("hostile").expect("a valid key");
        let hostile = [
            // A cursor this node never issued: resuming after it would silently skip changes.
            Request::Watch { prefix: Vec::new(), after: Some(u64::MAX) },
            Request::Put {
                key: key.clone(),
                value: Value::new("v").expect("a valid value"),
                ttl_ms: Some(u64::MAX),
                wait: WaitLevel::All,
                timeout_ms: u64::MAX,
            },
            Request::Put {
                key: key.clone(),
                value: Value::new("v").expect("a valid value"),
                ttl_ms: None,
                wait: WaitLevel::Count(u32::MAX),
                timeout_ms: 1,
            },
            Request::Delete { key, wait: WaitLevel::Count(0), timeout_ms: u64::MAX },
            Request::List { prefix: Vec::new(), start_after: None, limit: 0 },
        ];
        let mut answers = Vec::new();
        for request in &hostile {
            let bytes = codec::encode_frame(request).expect("encode");
            answers.push(responses(&exchange(&connection, &bytes).await));
        }
        assert!(
            matches!(
                answers[0][..],
                [Response::Watching, Response::Error(RpcError::CursorExpired)]
            ),
            "{:?}",
            answers[0]
        );
        assert!(
            matches!(answers[1][..], [Response::Error(RpcError::InvalidRequest(_))]),
            "{answers:?}"
        );
        // More nodes than exist can never confirm; a wait past the maximum holds a slot too
        // long: both refused at once.
        for refused in &answers[2..4] {
            assert!(
                matches!(refused[..], [Response::Error(RpcError::InvalidRequest(_))]),
                "{refused:?}"
            );
        }
        assert!(
            matches!(&answers[4][..], [Response::Keys { keys, .. }] if keys.is_empty()),
            "{:?}",
            answers[4]
        );

        // Random frames, some with a plausible first byte, many at once.
        let mut streams = Vec::new();
        for _ in 0..50 {
            let len = rng.below(200) as usize;
            let mut body = rng.bytes(len);
            if let Some(first) = body.first_mut() {
                *first %= 8;
            }
            let (mut send, recv) = connection.open_bi().await.expect("open a stream");
            send.write_all(&frame(len as u32, &body)).await.expect("send");
            let _ = send.finish();
            streams.push((send, recv));
        }
        // A stream that announces a frame and stalls, left open while the node goes on.
        let (mut stalled, _stalled_recv) = connection.open_bi().await.expect("open a stream");
        stalled.write_all(&frame(1_000, b"partial")).await.expect("send");
        drop(streams);
    });
    let (a, b) = split(&mut cluster.nodes, 0, 1);
    assert_serving(a, b, "after/rpc");
}

#[test]
fn malformed_gossip_frames_do_not_stop_a_node() {
    let mut rng = Rng::from_env("malformed_gossip");
    let mut cluster = Cluster::start("malformed_gossip", &["a", "b", "c"]);
    let target = addr(cluster.node("a"));
    block_on(async {
        let (_endpoint, connection) = connect(target, ALPN_GOSSIP).await;
        let mut send = connection.open_uni().await.expect("open a stream");
        for _ in 0..200 {
            let len = 1 + rng.below(300) as usize;
            let mut body = rng.bytes(len);
            body[0] %= 4;
            send.write_all(&frame(len as u32, &body)).await.expect("send");
        }
        let mut oversized = connection.open_uni().await.expect("open a stream");
        oversized.write_all(&frame(u32::MAX, &rng.bytes(64))).await.expect("send");
        // Wait until the node has read both streams (or given up on them).
        for mut stream in [send, oversized] {
            let _ = stream.finish();
            let done = tokio::time::timeout(Duration::from_secs(20), stream.stopped()).await;
            assert!(done.is_ok(), "the node reads or stops a gossip stream");
        }
    });
    let (a, b) = split(&mut cluster.nodes, 0, 1);
    eventually("invalid messages are counted", CONVERGE_TIMEOUT, || {
        let stats = a.cli(&["stats", "--json"]);
        let invalid = stats.expect_code(0).json()["messages_invalid"].as_u64();
        if invalid.is_some_and(|n| n > 0) { Ok(()) } else { Err(stats.to_string()) }
    });
    assert_serving(a, b, "after/gossip");
}

#[test]
fn oversized_keys_and_values_are_refused_with_a_clear_message() {
    let mut rng = Rng::from_env("oversized");
    let cluster = Cluster::start("oversized", &["a", "b", "c"]);
    let a = cluster.node("a");

    let longest = "k".repeat(KEY_SIZE_MAX);
    let too_long = "k".repeat(KEY_SIZE_MAX + 1);
    a.put(&longest, "fits");
    cluster.node("b").await_value(&longest, Some(b"fits"));
    for command in [vec!["put", &too_long, "v"], vec!["get", &too_long], vec!["del", &too_long]] {
        let output = a.cli(&command);
        assert_ne!(output.code, 0, "{} of a 513-byte key: {output}", command[0]);
        let line = output.expect_one_stderr_line();
        assert!(line.contains("too large") && line.contains("512"), "{output}");
    }

    let largest = rng.bytes(VALUE_SIZE_MAX + 1);
    let path = cluster.scratch.file("too-large", &largest);
    let from_file = a.cli(&["put", "big", &format!("@{}", path.display())]);
    let from_stdin = a.cli_stdin(&["put", "big", "-"], Some(&largest));
    for output in [from_file, from_stdin] {
        assert_ne!(output.code, 0, "{output}");
        let line = output.expect_one_stderr_line();
        assert!(line.contains("too large") && line.contains("1048576"), "{output}");
    }
    assert_eq!(a.get("big"), None, "nothing was written");
}

#[test]
fn usage_errors_exit_2() {
    let cases: [&[&str]; 9] = [
        &["put", "k", "v", "--bogus"],
        &["put", "k", "v", "--ttl", "5x"],
        &["put", "k", "v", "--ttl", "1.5s"],
        &["put", "k", "v", "--timeout", "10"],
        &["put", "k", "v", "--wait", "most"],
        &["get"],
        &["ls", "--limit", "many"],
        &["frobnicate"],
        &["node", "--listen", "not-an-address"],
    ];
    for args in cases {
        let output = chorus(args);
        assert_eq!(output.code, 2, "chorus {}: {output}", args.join(" "));
        assert!(!output.stderr.trim().is_empty() && output.stdout.is_empty(), "{output}");
    }
}

#[test]
fn an_unreachable_node_exits_3_with_one_line() {
    let output = chorus(&["get", "k", "--node", "127.0.0.1:1"]);
    assert!(output.expect_code(3).expect_one_stderr_line().contains("unreachable"), "{output}");
    let env = [("CHORUS_NODE", "127.0.0.1:1")];
    let output = chorus_with(&["put", "k", "v"], None, &env);
    assert!(output.expect_code(3).expect_one_stderr_line().contains("127.0.0.1:1"), "{output}");
    // A shorter handshake deadline is taken (its effect is a time, which tests never assert).
    let output = chorus(&["get", "k", "--node", "127.0.0.1:1", "--connect-timeout", "300ms"]);
    assert!(output.expect_code(3).expect_one_stderr_line().contains("unreachable"), "{output}");
    chorus(&["get", "k", "--connect-timeout", "soon"]).expect_code(2);
}
