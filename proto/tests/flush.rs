//! `Node::flush_pushes`: a driver that batches by readiness sends pushes before the window.

mod harness;

use chorus_proto::Envelope;
use chorus_proto::message::Body;
use chorus_proto::{Node, Write};
use harness::{Cluster, addr, key, value};

/// The keys of the pushes among the node's queued transmits.
fn pushed(node: &mut Node) -> Vec<String> {
    let mut keys = Vec::new();
    while let Some(transmit) = node.poll_transmit() {
        if let Body::Push { updates, .. } = &transmit.message.body {
            keys.extend(updates.iter().map(|update| update.key.to_string()));
        }
    }
    while node.poll_event().is_some() {}
    keys
}

#[test]
fn flush_pushes_sends_queued_writes_before_the_window_closes() {
    let mut cluster = Cluster::new(3);
    let now = cluster.local_now(0);
    let node = cluster.nodes[0].as_mut().expect("node 0 runs");
    for name in ["a", "b"] {
        node.write(now, Write::put(key(name), value("v"))).expect("accepted");
        assert!(pushed(node).is_empty(), "a push went out before the window or a flush");
    }
    assert!(node.poll_timeout() <= now + node.config().push_batch_ms, "a flush is scheduled");

    node.flush_pushes(now);
    let keys = pushed(node);
    // One push per peer, each carrying both writes of the burst.
    assert_eq!(keys, ["a", "b", "a", "b"]);

    // Nothing is left to flush: a second call sends nothing.
    node.flush_pushes(now);
    assert!(pushed(node).is_empty());
}

/// A batch bound for several peers is one message: the transmits share it, so a driver encodes
/// it once, and each peer still gets its own transmit.
#[test]
fn a_batch_for_several_peers_is_one_shared_message() {
    let mut cluster = Cluster::new(3);
    let now = cluster.local_now(0);
    let node = cluster.nodes[0].as_mut().expect("node 0 runs");
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
    for name in ["a", "b", "c"] {
        node.write(now, Write::put(key(name), value("v"))).expect("accepted");
    }
    node.flush_pushes(now);
    let mut pushes = Vec::new();
    while let Some(transmit) = node.poll_transmit() {
        if matches!(transmit.message.body, Body::Push { .. }) {
            pushes.push(transmit);
        }
    }
    while node.poll_event().is_some() {}
    assert_eq!(pushes.len(), 2, "one push per peer");
    assert_ne!(pushes[0].to, pushes[1].to, "to each peer");
    assert!(pushes[0].shares_message(&pushes[1]), "built once, shared");
    assert_eq!(pushes[0].encode(), pushes[1].encode());
}

/// A hot key written many times between two flushes goes out once, with the numbers of the
/// writes it replaced; the replicas count every one of those writes seen from the push alone
/// (their bases reach the writer's last write), and awaited writes still go out each.
#[test]
fn a_hot_key_goes_out_once_a_batch_and_replicas_count_every_write_seen() {
    let mut cluster = Cluster::new(3);
    let now = cluster.local_now(0);
    let writer = cluster.id(0);
    let node = cluster.nodes[0].as_mut().expect("node 0 runs");
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
    let first = node.store().vector().base(writer) + 1;
    for round in 0..100 {
        let name = if round == 50 { "cold" } else { "hot" };
        node.write(now, Write::put(key(name), value(&format!("v{round}")))).expect("accepted");
    }
    node.flush_pushes(now);
    let mut pushes = Vec::new();
    while let Some(transmit) = node.poll_transmit() {
        if let Body::Push { updates, replaced, .. } = &transmit.message.body {
            let keys: Vec<String> = updates.iter().map(|u| u.key.to_string()).collect();
            assert_eq!(keys, ["cold", "hot"], "the cold write, then the hot key's last");
            let runs: Vec<_> = replaced.iter().map(|r| (r.by, r.first, r.last)).collect();
            assert_eq!(runs, [(1, first, first + 49), (1, first + 51, first + 98)]);
            pushes.push(transmit);
        }
    }
    assert_eq!(pushes.len(), 2, "one push per peer");
    for transmit in pushes {
        let to: usize = String::from_utf8_lossy(transmit.to.as_bytes())[1..].parse().unwrap();
        let envelope = Envelope::decode(&transmit.encode().expect("encodes")).expect("decodes");
        let now = cluster.local_now(to);
        let replica = cluster.nodes[to].as_mut().expect("replica runs");
        replica.handle_message(now, addr(0), envelope).expect("valid");
        assert_eq!(replica.store().vector().base(writer), first + 99, "every write counted");
        assert_eq!(cluster.get(to, "hot").as_deref(), Some("v99"));
        assert_eq!(cluster.get(to, "cold").as_deref(), Some("v50"));
    }
}
