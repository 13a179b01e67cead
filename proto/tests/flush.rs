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

/// Writes `keys` in turn on node 0, flushes, and hands each push to its peer; returns the
/// writer's first sequence number of the burst and each push's keys and runs.
fn burst(cluster: &mut Cluster, writes: &[(&str, bool)]) -> (u64, Vec<(Vec<String>, Runs)>) {
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
    node.flush_pushes(now);
    let mut pushes = Vec::new();
    let mut seen = Vec::new();
    while let Some(transmit) = node.poll_transmit() {
        if let Body::Push { updates, replaced, .. } = &transmit.message.body {
            let keys: Vec<String> = updates.iter().map(|u| u.key.to_string()).collect();
            let runs: Runs = replaced.iter().map(|r| (r.by, r.first, r.last)).collect();
            seen.push((keys, runs));
            pushes.push(transmit);
        }
    }
    for transmit in pushes {
        let to: usize = String::from_utf8_lossy(transmit.to.as_bytes())[1..].parse().unwrap();
        let envelope = Envelope::decode(&transmit.encode().expect("encodes")).expect("decodes");
        let now = cluster.local_now(to);
        let replica = cluster.nodes[to].as_mut().expect("replica runs");
        replica.handle_message(now, addr(0), envelope).expect("valid");
    }
    (first, seen)
}

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
    for (keys, runs) in &pushes {
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
    for (keys, runs) in &pushes {
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
