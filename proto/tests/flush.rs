//! `Node::flush_pushes`: a driver that batches by readiness sends pushes before the window.

mod harness;

use chorus_proto::message::Body;
use chorus_proto::{Node, Write};
use harness::{Cluster, key, value};

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
