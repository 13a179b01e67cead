//! The driver in virtual time: tokio's paused clock drives the node's timers, expiries and
//! wait deadlines through the clock seam ([`Clock::Tokio`]), so these tests run in
//! milliseconds and the same way every time, however long the protocol's periods are.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chorus_proto::rpc::ChangeKind;
use chorus_proto::{Key, Value, WaitLevel, Write};

use super::{Clock, NodeHandle, NodeOptions, NotReady, OpError, Readiness};

async fn node() -> NodeHandle {
    let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let options = NodeOptions { clock: Clock::Tokio, ..NodeOptions::new(listen, Vec::new()) };
    NodeHandle::start(options).await.expect("a node on loopback starts")
}

fn key(text: &str) -> Key {
    Key::new(text.as_bytes()).expect("a valid key")
}

fn put(name: &str, ttl_ms: Option<u64>, wait: WaitLevel, timeout_ms: u64) -> Write {
    let value = Value::new(b"on").expect("a valid value");
    Write { key: key(name), value: Some(value), ttl_ms, wait, timeout_ms }
}

#[tokio::test(start_paused = true)]
async fn a_ttl_expires_in_virtual_time_and_watchers_hear_of_it() {
    let node = node().await;
    let driver = node.driver().clone();
    let mut live = driver.subscribe(None).expect("subscribed");
    let ten_minutes_ms = 10 * 60_000;
    driver.write(put("flags/a", Some(ten_minutes_ms), WaitLevel::Local, 0)).await.expect("put");
    assert_eq!(live.recv().await.expect("the put").kind, ChangeKind::Put);

    tokio::time::sleep(Duration::from_millis(ten_minutes_ms - 1_000)).await;
    assert!(driver.get(&key("flags/a")).expect("read").is_some(), "not yet expired");

    let expired = tokio::time::timeout(Duration::from_secs(5), live.recv()).await;
    let change = expired.expect("the expiry comes within seconds of the TTL").expect("a change");
    assert_eq!((change.kind, change.key), (ChangeKind::Expire, key("flags/a")));
    assert!(driver.get(&key("flags/a")).expect("read").is_none(), "expired keys read absent");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_wait_for_more_nodes_than_live_members_is_refused_without_taking_a_slot() {
    let node = node().await;
    let driver = node.driver().clone();
    let started = tokio::time::Instant::now();
    let written = driver.write(put("flags/b", None, WaitLevel::Count(2), 30_000)).await;
    let Err(OpError::Invalid(why)) = written else { panic!("not refused: {written:?}") };
    assert!(why.contains("1 live members"), "{why}");
    assert_eq!(started.elapsed(), Duration::ZERO, "refused before any wait");
    assert!(driver.get(&key("flags/b")).expect("read").is_none(), "a refused write is not applied");
    let stats = driver.stats().expect("stats");
    assert_eq!(stats.counter("waits_pending"), Some(0));
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn every_lock_site_is_counted_by_purpose() {
    let node = node().await;
    let driver = node.driver().clone();
    driver.write(put("flags/c", None, WaitLevel::Local, 0)).await.expect("put");
    driver.get(&key("flags/c")).expect("read");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = driver.stats().expect("stats");
    for name in ["lock_read_holds", "lock_write_holds", "lock_timer_holds", "lock_flush_holds"] {
        assert!(stats.counter(name).is_some_and(|holds| holds > 0), "{name}: {stats:?}");
    }
    node.stop().await;
}

/// `stop` returns once the node's QUIC port can be bound again, though the node had
/// connections to a peer and a caller still holds its driver, whose transport held the
/// endpoint.
#[tokio::test]
async fn a_stopped_node_frees_its_quic_port_while_its_driver_is_held() {
    let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let first = NodeHandle::start(NodeOptions::new(listen, Vec::new())).await.expect("starts");
    let mut options = NodeOptions::new(listen, Vec::new());
    options.join = vec![first.addr().to_string()];
    let mut second = NodeHandle::start(options).await.expect("starts");
    tokio::time::timeout(Duration::from_secs(20), second.ready()).await.expect("joins");
    let (addr, held) = (second.addr(), second.driver().clone());
    second.stop().await;
    let bound = std::net::UdpSocket::bind(addr);
    assert!(bound.is_ok(), "{addr} still bound after stop: {bound:?}");
    drop(held);
    first.stop().await;
}

/// Pushes are flushed as soon as they are due, so a session's second write can find the
/// first one's pushes queued for a peer: a session must drain between its writes (the
/// drain contract), or a debug build panics and a release build breaks the contract silently.
/// Found by the real-client tests (an MSET through redis-cli crashed a node).
#[tokio::test]
async fn a_session_drains_between_its_writes() {
    fn no_batching(config: &mut chorus_proto::Config) {
        config.push_batch_ms = 0;
    }
    let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let first = NodeHandle::start(NodeOptions {
        tune: Some(no_batching),
        ..NodeOptions::new(listen, Vec::new())
    })
    .await
    .expect("starts");
    let mut options =
        NodeOptions { tune: Some(no_batching), ..NodeOptions::new(listen, Vec::new()) };
    options.join = vec![first.addr().to_string()];
    let mut second = NodeHandle::start(options).await.expect("starts");
    tokio::time::timeout(Duration::from_secs(20), second.ready()).await.expect("joins");
    let driver = first.driver().clone();
    for _ in 0..200 {
        let alive = driver
            .members()
            .expect("members")
            .iter()
            .filter(|m| m.state == chorus_proto::MemberState::Alive)
            .count();
        if alive == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let value = Value::new(b"v").expect("a valid value");
    let written = driver.session(super::Purpose::Write, |session| {
        (0..5)
            .map(|n| session.put(key(&format!("batch/{n}")), value.clone(), None))
            .collect::<Result<Vec<_>, _>>()
    });
    assert_eq!(written.expect("the lock is not poisoned").expect("every write taken").len(), 5);
    assert!(driver.get(&key("batch/4")).expect("the node still serves").is_some());
    first.stop().await;
    second.stop().await;
}

/// Three nodes on loopback, the third with its clock `offset` off: it is not ready and
/// refuses writes with the offset in its error, the others take writes; once its clock is
/// corrected (stepped, as NTP does) it becomes ready by itself.
async fn a_skewed_node_refuses_writes_until_corrected(offset_ms: i64) {
    let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let first = NodeHandle::start(NodeOptions::new(listen, Vec::new())).await.expect("starts");
    let join = |clock| NodeOptions {
        clock,
        join: vec![first.addr().to_string()],
        ..NodeOptions::new(listen, Vec::new())
    };
    let mut second = NodeHandle::start(join(Clock::System)).await.expect("starts");
    tokio::time::timeout(Duration::from_secs(20), second.ready()).await.expect("ready");
    let offset: &'static AtomicI64 = Box::leak(Box::new(AtomicI64::new(offset_ms)));
    let skewed = NodeHandle::start(join(Clock::Skewed(offset))).await.expect("starts");
    let mut readiness = skewed.readiness_watch();
    let off = |r: &Readiness| matches!(r, Err(NotReady::ClockOffset { .. }));
    let waited = tokio::time::timeout(Duration::from_secs(20), readiness.wait_for(off)).await;
    let why = waited.expect("reported off within 20 s").expect("the node runs").clone();
    let Err(NotReady::ClockOffset { offset_ms: estimated, bound_ms: 500 }) = why else {
        unreachable!()
    };
    assert!((estimated - offset_ms).abs() < 100, "{offset_ms}: estimated {estimated}");
    let written = skewed.driver().write(put("flags/skewed", None, WaitLevel::Local, 0)).await;
    let Err(error @ OpError::ClockOffset { .. }) = written else { panic!("taken: {written:?}") };
    let side = if offset_ms > 0 { "ahead of" } else { "behind" };
    assert!(error.to_string().contains(&format!("ms {side} its peers")), "{error}");
    let stats = skewed.driver().stats().expect("stats");
    assert!(stats.clock_offset_ms.is_some_and(|o| (o - offset_ms).abs() < 100), "{stats:?}");
    assert!(stats.not_ready.is_some_and(|why| why.contains("clock")));
    for node in [&first, &second] {
        let taken = node.driver().write(put("flags/honest", None, WaitLevel::Local, 0)).await;
        assert!(taken.is_ok(), "{taken:?}");
        assert_eq!(node.readiness(), Ok(()));
    }
    offset.store(0, Ordering::Relaxed);
    let ready = tokio::time::timeout(Duration::from_secs(20), readiness.wait_for(Result::is_ok));
    ready.await.expect("ready again within 20 s of the correction").expect("runs");
    let taken = skewed.driver().write(put("flags/skewed", None, WaitLevel::Local, 0)).await;
    assert!(taken.is_ok(), "{taken:?}");
    // The clock jumps while the node runs: the very next write is refused, before any
    // gossip round could have measured the new offset.
    offset.store(offset_ms, Ordering::Relaxed);
    let written = skewed.driver().write(put("flags/jumped", None, WaitLevel::Local, 0)).await;
    let refused = matches!(written, Err(OpError::ClockUnchecked | OpError::ClockOffset { .. }));
    assert!(refused, "a write right after the jump: {written:?}");
    for node in [first, second, skewed] {
        node.stop().await;
    }
}

#[tokio::test]
async fn a_node_ten_minutes_ahead_refuses_writes_until_corrected() {
    a_skewed_node_refuses_writes_until_corrected(600_000).await;
}

#[tokio::test]
async fn a_node_two_seconds_behind_refuses_writes_until_corrected() {
    a_skewed_node_refuses_writes_until_corrected(-2_000).await;
}

#[tokio::test]
async fn a_lone_node_without_seeds_is_ready_at_once() {
    let node = node().await;
    assert_eq!(node.readiness(), Ok(()));
    node.stop().await;
}
