//! A partition cut and healed through the transport's firewall under write load (issue 11,
//! item 10). The firewall (`NodeHandle::firewall`) lives inside a node's process, so the three
//! nodes run in this process through the library, on loopback with real QUIC and TLS; clients
//! reach them through the RPC as any other client would.
//!
//! Writers on both sides put and delete a small set of keys before, during and after the cut.
//! Once healed, what a user notices: every node reads the same value for every key, the one of
//! the acknowledged write with the highest stamp, and a key whose latest acknowledged write
//! was a delete reads as absent everywhere (no delete comes back).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus::client::{Client, WriteOptions};
use chorus::{MemberState, NodeHandle, NodeOptions, Stamp};
use common::{CONVERGE_TIMEOUT, READY_TIMEOUT, Rng};

/// Keys the writers share: few, so that both sides of the cut write the same ones.
const KEYS: u64 = 24;

/// How long each phase (before, during and after the cut) of the load lasts.
const PHASE: Duration = Duration::from_secs(2);

/// One in this many writes is a delete.
const DELETE_ONE_IN: u64 = 4;

/// The acknowledged write with the highest stamp of each key: `None` for a delete.
type Latest = Arc<Mutex<BTreeMap<String, (Stamp, Option<String>)>>>;

async fn start_nodes(count: usize) -> Vec<NodeHandle> {
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for index in 0..count {
        let mut options = NodeOptions::new(([127, 0, 0, 1], 0).into(), Vec::new());
        options.name = Some(format!("n{index}"));
        options.join =
            nodes.first().map(|first| vec![first.addr().to_string()]).unwrap_or_default();
        let mut node = NodeHandle::start(options).await.expect("a node on loopback");
        tokio::time::timeout(READY_TIMEOUT, node.ready()).await.expect("ready in time");
        nodes.push(node);
    }
    nodes
}

async fn connect(node: &NodeHandle) -> Client {
    Client::connect(&node.addr().to_string(), &[]).await.expect("connect")
}

/// Polls until every client's node sees `count` members alive.
async fn await_members(clients: &[Client], count: usize) {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    for client in clients {
        loop {
            let members = client.members().await.expect("members");
            if members.iter().filter(|m| m.state == MemberState::Alive).count() == count {
                break;
            }
            assert!(Instant::now() < deadline, "the cluster did not form: {members:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Writes through one node until `until`, keeping each key's latest acknowledged write.
async fn write(client: Client, writer: usize, seed: u64, until: Instant, latest: Latest) -> Client {
    let mut rng = Rng::seeded(seed);
    let mut sequence = 0u64;
    while Instant::now() < until {
        sequence += 1;
        let key = format!("part/{}", rng.below(KEYS));
        let value = format!("w{writer}-{sequence}");
        let delete = rng.below(DELETE_ONE_IN) == 0;
        let written = if delete {
            client.delete(&key, WriteOptions::default()).await
        } else {
            client.put(&key, &value, WriteOptions::default()).await
        };
        let stamp = written.expect("a local write is acknowledged on either side").stamp;
        keep_latest(&latest, key, stamp, (!delete).then_some(value));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client
}

/// Records an acknowledged write if its stamp is the key's highest.
fn keep_latest(latest: &Latest, key: String, stamp: Stamp, value: Option<String>) {
    let mut latest = latest.lock().expect("the writers' map");
    let entry = latest.entry(key).or_insert((stamp, None));
    if stamp >= entry.0 {
        *entry = (stamp, value);
    }
}

/// Whether every node reads every key as its latest acknowledged write; the first difference.
async fn differences(clients: &[Client], latest: &Latest) -> Option<String> {
    let expected = latest.lock().expect("the writers' map").clone();
    for (index, client) in clients.iter().enumerate() {
        for (key, (stamp, value)) in &expected {
            let found = client.get(key.as_str()).await.expect("a read");
            let found = found.map(|(v, s)| (s, String::from_utf8_lossy(v.as_bytes()).into_owned()));
            let matches = match (value, &found) {
                (None, None) => true,
                (Some(value), Some((found_stamp, found_value))) => {
                    found_stamp == stamp && found_value == value
                }
                _ => false,
            };
            if !matches {
                return Some(format!(
                    "n{index} {key}: expected {value:?} at {stamp}, found {found:?}"
                ));
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healed_partition_keeps_the_highest_stamp_everywhere_and_no_delete_comes_back() {
    let seed = Rng::from_env("partition").below(u64::MAX);
    let nodes = start_nodes(3).await;
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(connect(node).await);
    }
    await_members(&clients, nodes.len()).await;

    // Writers on every node through three phases: joined, n0 cut from n1 and n2, healed.
    let latest: Latest = Arc::default();
    let until = Instant::now() + 3 * PHASE;
    let writers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(writer, client)| {
            let seed = seed.wrapping_add(writer as u64);
            tokio::spawn(write(client, writer, seed, until, latest.clone()))
        })
        .collect();
    tokio::time::sleep(PHASE).await;
    for other in &nodes[1..] {
        nodes[0].firewall().block(other.addr());
        other.firewall().block(nodes[0].addr());
    }
    // The cut is real: a write on n0 does not reach n1 while it lasts.
    let (n0, n1) = (connect(&nodes[0]).await, connect(&nodes[1]).await);
    n0.put("cut/marker", "n0", WriteOptions::default()).await.expect("a write on n0");
    tokio::time::sleep(PHASE).await;
    assert!(n1.get("cut/marker").await.expect("a read").is_none(), "the cut let a write through");
    for node in &nodes {
        node.firewall().clear();
    }
    let mut clients = Vec::new();
    for writer in writers {
        clients.push(writer.await.expect("a writer"));
    }

    let written = latest.lock().expect("the writers' map").len();
    assert!(written as u64 > KEYS / 2, "the writers wrote {written} keys");
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    while let Some(difference) = differences(&clients, &latest).await {
        assert!(
            Instant::now() < deadline,
            "not converged after {CONVERGE_TIMEOUT:?}: {difference}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for node in nodes {
        node.stop().await;
    }
}
