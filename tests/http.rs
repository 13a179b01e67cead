//! The HTTP front end through the real binary: the API across two nodes, keys of any bytes,
//! listing by cursor, long poll and stream resumption, reset after lost history, `/ready`
//! through join and drain, `/metrics`, the token, and bad input answered 4xx.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{
    CONVERGE_TIMEOUT, Cluster, EXIT_TIMEOUT, Http, Node, Process, READY_TIMEOUT, Scratch,
    eventually, free_addrs, free_tcp_addr, read_response,
};
use serde_json::json;

/// Polls `GET target` on `http` until it answers `status`; the last answer.
#[track_caller]
fn await_status(http: &Http, target: &str, status: u16) -> common::HttpResponse {
    eventually(&format!("GET {target} answers {status}"), CONVERGE_TIMEOUT, || {
        let response = http.get(target);
        if response.status == status { Ok(response) } else { Err(format!("{response:?}")) }
    })
}

#[test]
fn a_put_on_one_node_is_read_over_http_on_another_with_ttl_delete_and_waits() {
    let cluster = Cluster::start("http_api", &["a", "b"]);
    let (a, b) = (cluster.node("a").http(), cluster.node("b").http());

    let written = a.put("/v1/kv/app/flags/dark_mode", b"on");
    assert_eq!(written.status, 200, "{}", written.text());
    let stamp = written.json()["stamp"]["text"].as_str().expect("a stamp").to_string();
    let read = await_status(&b, "/v1/kv/app/flags/dark_mode", 200);
    assert_eq!(read.body, b"on");
    assert_eq!(read.header("x-chorus-stamp"), Some(stamp.as_str()));
    assert_eq!(read.header("content-type"), Some("application/octet-stream"));

    let absent = b.get("/v1/kv/app/flags/absent");
    assert_eq!(absent.status, 404);
    assert_eq!(absent.json()["error"], "not_found");

    // A write confirmed by both nodes says who confirmed it.
    let waited = a.put("/v1/kv/app/waited?wait=all&timeout=10s", b"w");
    assert_eq!(waited.status, 200, "{}", waited.text());
    assert_eq!(waited.json()["wait"]["complete"], true);
    assert_eq!(waited.json()["wait"]["confirmed"].as_array().map(Vec::len), Some(2));

    let expiring = a.put("/v1/kv/app/session?ttl=1s", b"s");
    assert_eq!(expiring.status, 200, "{}", expiring.text());
    await_status(&b, "/v1/kv/app/session", 404);

    assert_eq!(b.request("DELETE", "/v1/kv/app/flags/dark_mode", None).status, 200);
    await_status(&a, "/v1/kv/app/flags/dark_mode", 404);

    let members = b.get("/v1/members").json();
    let states: Vec<&str> = members["members"]
        .as_array()
        .expect("a member list")
        .iter()
        .map(|m| m["state"].as_str().expect("a state"))
        .collect();
    assert_eq!(states, ["alive", "alive"]);
    let stats = a.get("/v1/stats").json();
    assert_eq!(stats["name"], "a");
    assert!(stats["keys"].as_u64().is_some(), "{stats}");
}

#[test]
fn keys_of_any_bytes_are_percent_encoded_and_listed_by_cursor() {
    let cluster = Cluster::start("http_keys", &["a", "b"]);
    let (a, b) = (cluster.node("a").http(), cluster.node("b").http());

    // `bin/`, NUL, 0xff, a space, `x`: read back on the other node, and by the CLI in hex.
    assert_eq!(a.put("/v1/kv/bin%2F%00%ff%20x", b"binary").status, 200);
    assert_eq!(await_status(&b, "/v1/kv/bin/%00%FF%20x", 200).body, b"binary");
    let cli = cluster.node("b").cli(&["get", "--hex", "62696e2f00ff2078"]);
    cli.expect_code(0);
    assert_eq!(cli.stdout, b"binary");
    let listed = b.get("/v1/kv?prefix=bin%2F").json();
    assert_eq!(listed["keys_hex"], json!(["62696e2f00ff2078"]), "{listed}");
    assert_eq!(listed["keys"], json!(["bin/\\x00\\xff x"]), "{listed}");

    for n in 1..=5 {
        assert_eq!(a.put(&format!("/v1/kv/list/k{n}"), b"v").status, 200);
    }
    await_status(&b, "/v1/kv/list/k5", 200);
    let mut seen = Vec::new();
    let mut target = "/v1/kv?prefix=list/&limit=2".to_string();
    for _page in 0..10 {
        let page = b.get(&target).json();
        seen.extend(
            page["keys"].as_array().expect("keys").iter().map(|k| k.as_str().unwrap().to_string()),
        );
        if page["more"] == false {
            break;
        }
        let next = page["next"].as_str().expect("a next key when more follow");
        target = format!("/v1/kv?prefix=list/&limit=2&after={}", next.replace('/', "%2F"));
    }
    assert_eq!(seen, ["list/k1", "list/k2", "list/k3", "list/k4", "list/k5"]);
}

#[test]
fn a_long_poll_returns_at_a_change_made_on_another_node_and_resumes_from_its_index() {
    let cluster = Cluster::start("http_poll", &["a", "b"]);
    let b = cluster.node("b").http();
    let quiet = b.get("/v1/watch?prefix=lp/&wait=100ms");
    assert_eq!(quiet.status, 200);
    assert_eq!(quiet.json()["changes"], json!([]));
    let index = quiet.json()["index"].as_u64().expect("an index");

    let waiting = {
        let b = b.clone();
        std::thread::spawn(move || b.get(&format!("/v1/watch?prefix=lp/&index={index}&wait=60s")))
    };
    cluster.node("a").put("other/x", "not watched");
    cluster.node("a").put("lp/x", "1");
    let answer = waiting.join().expect("the poll thread");
    let body = answer.json();
    assert_eq!(body["reset"], false);
    let keys: Vec<&str> =
        body["changes"].as_array().unwrap().iter().map(|c| c["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["lp/x"], "{body}");
    let next = body["index"].as_u64().expect("an index");
    assert_eq!(answer.header("x-chorus-index"), Some(next.to_string().as_str()));

    // Changes made while nobody polled are there for the next poll from that index.
    cluster.node("a").put("lp/y", "2");
    cluster.node("a").put("lp/z", "3");
    cluster.node("b").await_value("lp/z", Some(b"3"));
    let mut resumed = Vec::new();
    let mut index = next;
    for _poll in 0..5 {
        let body = b.get(&format!("/v1/watch?prefix=lp/&index={index}&wait=5s")).json();
        index = body["index"].as_u64().expect("an index");
        resumed.extend(
            body["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["value"].as_str().unwrap().to_string()),
        );
        if resumed.len() >= 2 {
            break;
        }
    }
    assert_eq!(resumed, ["2", "3"]);
}

#[test]
fn the_event_stream_resumes_from_its_last_event_id() {
    let cluster = Cluster::start("http_sse", &["a", "b"]);
    let b = cluster.node("b").http();
    let mut stream = b.events("/v1/watch/stream?prefix=sse/", &[]);
    cluster.node("a").put("sse/1", "one");
    let first = stream.next(CONVERGE_TIMEOUT).expect("an event for sse/1");
    assert_eq!(first.event, "change");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&first.data).unwrap()["key"], "sse/1");
    drop(stream);

    cluster.node("a").put("sse/2", "two");
    cluster.node("a").put("sse/3", "three");
    cluster.node("b").await_value("sse/3", Some(b"three"));
    for resume in [vec![("Last-Event-ID", first.id.as_str())], vec![]] {
        let target = match resume.is_empty() {
            true => format!("/v1/watch/stream?prefix=sse/&index={}", first.id),
            false => "/v1/watch/stream?prefix=sse/".to_string(),
        };
        let mut stream = b.events(&target, &resume);
        let values: Vec<String> = (0..2)
            .map(|_| {
                let event = stream.next(CONVERGE_TIMEOUT).expect("a resumed event");
                let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
                data["value"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(values, ["two", "three"], "resumed with {target} {resume:?}");
    }
}

#[test]
fn watchers_behind_the_history_are_told_to_reset() {
    let cluster = Cluster::start("http_reset", &["a"]);
    let a = cluster.node("a").http();
    let from_another_life = a.get("/v1/watch?index=1000000&wait=10s").json();
    assert_eq!(from_another_life["reset"], true, "an index this node never issued");

    // 1 MiB values past the history's 64 MiB: the first changes are evicted.
    let value = vec![b'v'; 1024 * 1024 - 64];
    for n in 0..70 {
        assert_eq!(a.put(&format!("/v1/kv/big/{}", n % 4), &value).status, 200);
    }
    let behind = a.get("/v1/watch?prefix=big/&index=1&wait=10s").json();
    assert_eq!(behind["reset"], true, "{}", behind["index"]);
    let mut stream = a.events("/v1/watch/stream?prefix=big/&index=1", &[]);
    let first = stream.next(CONVERGE_TIMEOUT).expect("an event");
    assert_eq!(first.event, "reset");
    let resumed = a.get(&format!("/v1/watch?prefix=big/&index={}&wait=100ms", first.id)).json();
    assert_eq!(resumed["reset"], false, "the index given with a reset resumes");
}

/// Starts `chorus node` with `extra` arguments and HTTP on `http`, without waiting.
fn spawn_node(name: &str, http: &str, extra: &[&str], dir: &std::path::Path) -> Process {
    let mut args = vec!["node", "--listen", "127.0.0.1:0", "--http", http, "--name", name];
    args.extend(extra);
    Process::start(name, &args, &[], dir)
}

#[test]
fn ready_is_503_until_joined_200_after_and_503_while_draining_on_sigterm() {
    let scratch = Scratch::new("http_ready");
    let seed = free_addrs(1).remove(0);
    let addr = free_tcp_addr();
    let http = Http::new(&addr);
    let joining = spawn_node("b", &addr, &["--join", &seed, "--drain", "5s"], scratch.path());
    let before = eventually("/ready answers", READY_TIMEOUT, || {
        http.try_get("/ready").ok_or_else(|| "not listening yet".to_string())
    });
    assert_eq!(before.status, 503, "{}", before.text());
    assert!(before.text().contains("joining"), "{}", before.text());
    assert_eq!(http.get("/health").status, 200);

    let _a = Node::await_ready(Node::spawn_at("a", &seed, &[], None, scratch.path()), None);
    let mut b = Node::await_ready(joining, None);
    assert_eq!(http.get("/ready").status, 200);
    assert_eq!(http.put("/v1/kv/drain/k", b"v").status, 200);

    b.process.terminate();
    let draining = await_status(&http, "/ready", 503);
    assert!(draining.text().contains("draining"), "{}", draining.text());
    // Still serving while the load balancer takes it out.
    assert_eq!(http.get("/v1/kv/drain/k").status, 200);
    assert_eq!(http.get("/health").status, 200);
    let status = b.process.wait_exit(EXIT_TIMEOUT).expect("the node exits after its drain");
    assert!(status.success(), "{status:?}");
}

#[test]
fn ready_tells_the_truth_through_a_restart() {
    let scratch = Scratch::new("http_ready_restart");
    let [seed, listen] = <[String; 2]>::try_from(free_addrs(2)).expect("two addresses");
    let mut a = Node::await_ready(Node::spawn_at("a", &seed, &[], None, scratch.path()), None);
    // Picked once a holds its Redis and HTTP ports (both bound to port 0): picked before, the
    // free port was once the one a's Redis door was then given, and b could not bind it.
    let addr = free_tcp_addr();
    let http = Http::new(&addr);
    let args = ["--listen", listen.as_str(), "--join", seed.as_str(), "--http", addr.as_str()];
    let start = |name: &str| {
        let mut all = vec!["node", "--name", name];
        all.extend(args);
        Process::start(name, &all, &[], scratch.path())
    };
    let mut b = Node::await_ready(start("b"), None);
    assert_eq!(http.get("/ready").status, 200);

    // Both crash; b comes back first, while its only seed is down: not ready, and says why.
    a.process.kill();
    b.process.kill();
    let restarted = start("b");
    let waiting = eventually("/ready answers after the restart", READY_TIMEOUT, || {
        http.try_get("/ready").ok_or_else(|| "not listening yet".to_string())
    });
    assert_eq!(waiting.status, 503, "{}", waiting.text());
    assert!(waiting.text().contains("joining"), "{}", waiting.text());
    let _a = Node::await_ready(Node::spawn_at("a", &seed, &[], None, scratch.path()), None);
    let _b = Node::await_ready(restarted, None);
    await_status(&http, "/ready", 200);
}

/// The value of the sample `name{labels}` in a metrics text, 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_move_when_the_node_works() {
    let cluster = Cluster::start("http_metrics", &["a", "b"]);
    let a = cluster.node("a").http();
    let put_ok = r#"chorus_requests_total{frontend="http",kind="put",result="ok"}"#;
    let before = a.get("/metrics");
    assert_eq!(before.status, 200);
    assert!(
        before
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/openmetrics-text")
    );
    assert!(before.text().ends_with("# EOF\n"), "{}", before.text());
    for n in 0..3 {
        assert_eq!(a.put(&format!("/v1/kv/m/{n}"), b"v").status, 200);
    }
    cluster.node("b").put("m/remote", "r");
    cluster.node("a").await_value("m/remote", Some(b"r"));
    let after = a.get("/metrics").text();
    assert_eq!(sample(&after, put_ok) - sample(&before.text(), put_ok), 3.0, "{after}");
    assert!(sample(&after, "chorus_keys") >= 4.0, "{after}");
    assert_eq!(sample(&after, r#"chorus_members{state="alive"}"#), 2.0, "{after}");
    assert!(sample(&after, r#"chorus_gossip_messages_total{direction="received"}"#) > 0.0);
    assert!(sample(&after, "chorus_propagation_lag_seconds_count") >= 1.0, "{after}");
    assert_eq!(sample(&after, "chorus_ready"), 1.0);
    assert!(sample(&after, r#"chorus_connections{frontend="http"}"#) >= 1.0, "{after}");

    // The Redis and RPC front ends count their requests in the same family.
    let redis_set = r#"chorus_requests_total{frontend="redis",kind="SET",result="ok"}"#;
    let rpc_get = r#"chorus_requests_total{frontend="rpc",kind="get",result="ok"}"#;
    let addr = cluster.node("a").ready.redis.clone().expect("test nodes serve Redis");
    let mut redis = common::Redis::connect(&addr);
    assert_eq!(redis.call(&["SET", "m/redis", "v"]), common::Resp::Simple("OK".into()));
    assert_eq!(cluster.node("a").get("m/redis").as_deref(), Some(&b"v"[..]));
    let last = a.get("/metrics").text();
    assert_eq!(sample(&last, redis_set) - sample(&after, redis_set), 1.0, "{last}");
    assert!(sample(&last, rpc_get) > sample(&after, rpc_get), "{last}");
    assert_eq!(sample(&last, r#"chorus_connections{frontend="redis"}"#), 1.0, "{last}");
}

#[test]
fn serving_beyond_loopback_needs_a_token_and_the_token_guards_the_api() {
    let refused = common::chorus(&["node", "--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"]);
    refused.expect_code(2);
    assert!(refused.text().is_empty());
    let why = &refused.stderr;
    assert!(why.contains("--http-token"), "{why}");
    let empty = common::chorus(&[
        "node",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "0.0.0.0:0",
        "--http-token",
        "",
    ]);
    empty.expect_code(2);
    assert!(empty.stderr.contains("empty"), "{}", empty.stderr);

    let scratch = Scratch::new("http_token");
    let addr = free_tcp_addr();
    let node = spawn_node("a", &addr, &["--http-token", "s3cret"], scratch.path());
    let _node = Node::await_ready(node, None);
    let open = Http::new(&addr);
    let refused = open.get("/v1/kv/k");
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["error"], "unauthorised");
    assert_eq!(open.get("/metrics").status, 401);
    assert_eq!(open.get("/ready").status, 200, "probes need no token");
    let wrong = Http { token: Some("s3creT".into()), ..open.clone() };
    assert_eq!(wrong.get("/v1/kv/k").status, 401);
    let right = Http { token: Some("s3cret".into()), ..open };
    assert_eq!(right.put("/v1/kv/k", b"v").status, 200);
    assert_eq!(right.get("/v1/kv/k").body, b"v");
}

#[test]
fn bad_input_is_answered_4xx_and_the_node_goes_on() {
    let cluster = Cluster::start("http_bad", &["a"]);
    let a = cluster.node("a").http();
    assert_eq!(a.put("/v1/kv/kept", b"still here").status, 200);

    let huge = vec![b'x'; 1024 * 1024 + 1];
    assert_eq!(a.put("/v1/kv/huge", &huge).status, 413);
    let chunked = a.send("PUT", "/v1/kv/huge", None, &[("Transfer-Encoding", "chunked")]);
    let chunked = send_chunked(chunked, &huge);
    assert_eq!(chunked.status, 413, "{}", chunked.text());
    let broken = a.get("/v1/kv/a%zz");
    assert_eq!((broken.status, broken.json()["error"].clone()), (400, json!("invalid_request")));
    let long = format!("/v1/kv/{}", "k".repeat(600));
    assert_eq!(a.get(&long).json()["error"], "invalid_key");
    assert_eq!(a.put("/v1/kv/t?ttl=soon", b"v").status, 400);
    assert_eq!(a.put("/v1/kv/t?wait=most", b"v").status, 400);
    assert_eq!(a.get("/v1/kv?limit=0").status, 400);
    assert_eq!(a.get("/v1/watch?index=minus").status, 400);
    assert_eq!(a.get("/v1/nothing").status, 404);
    let post = a.request("POST", "/v1/kv/k", Some(b"v"));
    assert_eq!((post.status, post.json()["error"].clone()), (405, json!("invalid_request")));

    // A client that sends part of its body and stops is answered 408.
    let mut slow = a.send("PUT", "/v1/kv/slow", None, &[("Content-Length", "10")]);
    slow.write_all(b"12").expect("send part of the body");
    assert_eq!(read_response(slow).status, 408);
    // One that never finishes its headers has its connection closed.
    let mut stalled = std::net::TcpStream::connect(&a.addr).expect("connect");
    stalled.set_read_timeout(Some(Duration::from_secs(60))).expect("a read timeout");
    stalled.write_all(b"GET /v1/kv/kept HTTP/1.1\r\nHost: x\r\n").expect("send part of a head");
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    assert!(!String::from_utf8_lossy(&rest).contains("still here"), "a stalled head is not served");

    assert_eq!(a.get("/v1/kv/kept").body, b"still here");
    assert_eq!(a.get("/v1/kv/huge").status, 404);
    assert_eq!(a.get("/health").status, 200);
}

/// Sends `body` in 64 KiB chunks (stopping early if the node refuses), then reads the answer.
fn send_chunked(mut stream: std::net::TcpStream, body: &[u8]) -> common::HttpResponse {
    for chunk in body.chunks(64 * 1024) {
        if write!(stream, "{:x}\r\n", chunk.len())
            .and_then(|()| stream.write_all(chunk))
            .and_then(|()| stream.write_all(b"\r\n"))
            .is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    read_response(stream)
}
