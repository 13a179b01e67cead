//! `Node::flush_pushes`: a driver that batches by readiness sends pushes before the window.

mod harness;

use chorus_proto::message::Body;
use chorus_proto::{Node, Write};
use harness::{Cluster, key, value};

/// The keys of the pushes among the node's queued transmits.
fn pushed(node: &mut Node) -> Vec<String> {
    let mut keys = Vec::new();
    while let Some(transmit) = node.poll_transmit() {
        if let Body::Push { updates, .. } = transmit.message.body {
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
