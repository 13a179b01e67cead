//! `Node::flush_pushes`: a driver that batches by readiness sends pushes before the window.

mod harness;

use chorus_proto::Envelope;
use chorus_proto::message::Body;
use chorus_proto::{Node, WaitLevel, Write};
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

/// Writes `writes` in turn on node 0 (each a key and whether it is waited), then
/// [`deliver`]s node 0's pushes; returns the writer's first sequence number of the burst.
fn burst(cluster: &mut Cluster, writes: &[(&str, bool)]) -> (u64, Vec<Delivered>) {
    let now = cluster.local_now(0);
    let writer = cluster.id(0);
    let node = cluster.nodes[0].as_mut().expect("node 0 runs");
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
    let first = node.store().vector().base(writer) + 1;
    for (round, &(name, waited)) in writes.iter().enumerate() {
        let mut write = Write::put(key(name), value(&format!("v{round}")));
        if waited {
            write = write.with_wait(WaitLevel::All, 1_000);
        }
        node.write(now, write).expect("accepted");
    }
    (first, deliver(cluster, 0))
}

/// Flushes node `from`'s pushes and hands each to its peer at once, through the codec (other
/// messages are dropped); returns, for each push, its peer, its keys and its runs.
fn deliver(cluster: &mut Cluster, from: usize) -> Vec<Delivered> {
    let now = cluster.local_now(from);
    let node = cluster.nodes[from].as_mut().expect("the node runs");
    node.flush_pushes(now);
    let mut pushes = Vec::new();
    while let Some(transmit) = node.poll_transmit() {
        if let Body::Push { updates, replaced, .. } = &transmit.message.body {
            let to: usize = String::from_utf8_lossy(transmit.to.as_bytes())[1..].parse().unwrap();
            let keys: Vec<String> = updates.iter().map(|u| u.key.to_string()).collect();
            let runs: Runs = replaced.iter().map(|r| (r.by, r.first, r.last)).collect();
            pushes.push((to, keys, runs, transmit));
        }
    }
    while node.poll_event().is_some() {}
    let mut delivered = Vec::new();
    for (to, keys, runs, transmit) in pushes {
        let envelope = Envelope::decode(&transmit.encode().expect("encodes")).expect("decodes");
        let now = cluster.local_now(to);
        let replica = cluster.nodes[to].as_mut().expect("replica runs");
        replica.handle_message(now, addr(from), envelope).expect("valid");
        delivered.push((to, keys, runs));
    }
    delivered
}

/// A push as [`deliver`] saw it: to whom, its keys, its runs.
type Delivered = (usize, Vec<String>, Runs);

/// Runs of a push as `(by, first, last)`.
type Runs = Vec<(u32, u64, u64)>;

/// A hot key written many times between two flushes goes out once, where its first write was,
/// with the numbers of the writes it replaced; the replicas count every one of those writes
/// seen from the push alone (their bases reach the writer's last write). A waited write goes
/// out itself.
#[test]
fn a_hot_key_goes_out_once_a_batch_and_replicas_count_every_write_seen() {
    let mut cluster = Cluster::new(3);
    let writer = cluster.id(0);
    let mut writes = vec![("hot", false); 100];
    writes[50] = ("cold", false);
    writes[70] = ("hot", true);
    let (first, pushes) = burst(&mut cluster, &writes);
    assert_eq!(pushes.len(), 2, "one push per peer");
    for (_, keys, runs) in &pushes {
        assert_eq!(keys, &["hot", "cold", "hot"], "the waited write, then the last of the key");
        let (waited, last) = (first + 70, first + 99);
        assert_eq!(
            runs,
            &[(0, first, first + 49), (0, first + 51, waited - 1), (2, waited + 1, last - 1)]
        );
    }
    for replica in [1, 2] {
        assert_eq!(cluster.node(replica).store().vector().base(writer), first + 99);
        assert_eq!(cluster.get(replica, "hot").as_deref(), Some("v99"));
        assert_eq!(cluster.get(replica, "cold").as_deref(), Some("v50"));
    }
}

/// A push of more writes than a replica warms at once (16), each with a run: the runs stay
/// with their writes past the first group.
#[test]
fn runs_stay_with_their_writes_across_a_long_push() {
    let mut cluster = Cluster::new(3);
    let writer = cluster.id(0);
    let names: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    let writes: Vec<(&str, bool)> =
        names.iter().flat_map(|name| [(name.as_str(), false), (name.as_str(), false)]).collect();
    let (first, pushes) = burst(&mut cluster, &writes);
    for (_, keys, runs) in &pushes {
        assert_eq!(keys, &names);
        let expected: Runs = (0..40).map(|i| (i as u32, first + 2 * i, first + 2 * i)).collect();
        assert_eq!(runs, &expected);
    }
    for replica in [1, 2] {
        assert_eq!(cluster.node(replica).store().vector().base(writer), first + 79);
        assert_eq!(cluster.node(replica).stats().updates_ahead, 0, "each write in order");
        assert_eq!(cluster.get(replica, "k39").as_deref(), Some("v79"));
    }
}

/// Trees one wide: node 0's writes reach one node, which relays them to the third.
fn one_wide(config: &mut chorus_proto::Config) {
    harness::quick(config);
    config.tree_fanout = 1;
}

/// A relay forwards the last write of a hot key with the runs it came with, so the node behind
/// it also counts every write seen from pushes alone.
#[test]
fn a_relay_forwards_the_runs_so_the_node_behind_it_counts_every_write() {
    let mut cluster = Cluster::with(3, one_wide);
    let writer = cluster.id(0);
    let writes = vec![("hot", false); 30];
    let (first, pushes) = burst(&mut cluster, &writes);
    let [(relay, keys, runs)] = pushes.as_slice() else { panic!("one child: {pushes:?}") };
    assert_eq!(
        (keys.as_slice(), runs.as_slice()),
        (&["hot".to_string()][..], &[(0, first, first + 28)][..])
    );
    let relayed = deliver(&mut cluster, *relay);
    let [(behind, keys, runs)] = relayed.as_slice() else { panic!("one grandchild: {relayed:?}") };
    assert_ne!(*behind, 0);
    assert_eq!(
        (keys.as_slice(), runs.as_slice()),
        (&["hot".to_string()][..], &[(0, first, first + 28)][..])
    );
    for node in [*relay, *behind] {
        assert_eq!(cluster.node(node).store().vector().base(writer), first + 29, "node {node}");
        assert_eq!(cluster.get(node, "hot").as_deref(), Some("v29"));
    }
}
