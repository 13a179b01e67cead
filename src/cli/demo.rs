//! `chorus demo`: a guided run of a real local cluster (README, Quick start).
//!
//! Five nodes on loopback in this process, real QUIC and mutual TLS. It writes application
//! variables on one node and shows them arriving on the others with measured latencies; cuts
//! the cluster in two and writes on both sides, one key on both; heals it and shows every node
//! converging to the same values, with the last-writer-wins winner explained.

use std::time::{Duration, Instant};

use chorus::NodeHandle;
use chorus::client::{Client, WriteOptions};
use chorus_proto::Stamp;
use chorus_proto::rpc::ChangeKind;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::local::LocalCluster;

/// How long any one step may take before the demo gives up (it should take far less).
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the partition lasts: long enough to write on both sides, shorter than failure
/// detection, so the heal shows data convergence rather than membership churn.
const PARTITION_TIME: Duration = Duration::from_millis(1_500);

struct Demo {
    nodes: Vec<NodeHandle>,
    clients: Vec<Client>,
    json: bool,
}

/// Runs the demo with `count` nodes; returns the exit code.
pub async fn run(count: usize, json: bool) -> i32 {
    match tokio::time::timeout(Duration::from_secs(90), demo(count, json)).await {
        Ok(Ok(())) => 0,
        Ok(Err(why)) => {
            eprintln!("chorus demo: {why}");
            1
        }
        Err(_) => {
            eprintln!("chorus demo: gave up after 90 s");
            1
        }
    }
}

async fn demo(count: usize, json: bool) -> Result<(), String> {
    let started = Instant::now();
    let mut demo = Demo::start(count, json).await?;
    let names: Vec<String> = demo.nodes.iter().map(|n| n.name().to_string()).collect();
    demo.say(
        "cluster",
        &format!(
            "{count} nodes up on loopback, real QUIC with mutual TLS (development key): {}",
            names.join(", ")
        ),
        json!({ "nodes": names }),
    );

    let latencies = demo.propagation().await?;
    demo.redis().await?;
    let (left, right) = demo.partition_and_heal().await?;
    let stats = demo.clients[0].stats().await.map_err(|e| e.to_string())?;

    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let max = sorted[sorted.len() - 1];
    demo.say("summary", &format!(
        "Every write reached every node: median {median:.1} ms, slowest {max:.1} ms after the write \
         returned. During the partition, both sides kept taking writes; after healing, all {count} \
         nodes agreed on every key, and the conflicting key went to the later write \
         ({right}) over ({left}) on every node. {} messages sent by {} in {:.1} s.",
        stats.counter("messages_sent").unwrap_or(0), stats.name, started.elapsed().as_secs_f64()
    ), json!({
        "latency_ms_median": median, "latency_ms_max": max,
        "messages_sent_node1": stats.counter("messages_sent").unwrap_or(0), "seconds": started.elapsed().as_secs_f64(),
    }));
    for node in demo.nodes {
        node.stop().await;
    }
    Ok(())
}

impl Demo {
    async fn start(count: usize, json: bool) -> Result<Demo, String> {
        let LocalCluster { nodes, clients } =
            LocalCluster::start(count, "node", STEP_TIMEOUT, true).await?;
        Ok(Demo { nodes, clients, json })
    }

    /// Writes three application variables on node 1 and measures when each other node's
    /// watch sees them.
    async fn propagation(&mut self) -> Result<Vec<f64>, String> {
        let (seen, mut arrivals) = mpsc::unbounded_channel();
        for (index, client) in self.clients.iter().enumerate().skip(1) {
            let mut watch = client.watch(b"app/", None).await.map_err(|e| e.to_string())?;
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Some(Ok(change)) = watch.next().await {
                    if change.kind == ChangeKind::Put
                        && seen.send((index, change.key.to_string(), Instant::now())).is_err()
                    {
                        return;
                    }
                }
            });
        }
        self.say(
            "write",
            "node1 writes three application variables; the other nodes watch app/",
            json!({}),
        );
        let writes = [
            ("app/flags/dark_mode", "on"),
            ("app/config/cache_ttl_s", "300"),
            ("app/banner", "Maintenance at 02:00 UTC"),
        ];
        let mut latencies = Vec::new();
        for (key, value) in writes {
            let wrote = Instant::now();
            self.clients[0]
                .put(key, value, WriteOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            let mut pending: Vec<usize> = (1..self.clients.len()).collect();
            let mut line = Vec::new();
            while !pending.is_empty() {
                let arrival = tokio::time::timeout(STEP_TIMEOUT, arrivals.recv()).await;
                let Ok(Some((index, seen_key, at))) = arrival else {
                    return Err(format!("{key} did not reach every node"));
                };
                if seen_key == key && pending.contains(&index) {
                    pending.retain(|i| *i != index);
                    let ms = at.saturating_duration_since(wrote).as_secs_f64() * 1_000.0;
                    latencies.push(ms);
                    line.push(format!("node{} {ms:.1} ms", index + 1));
                }
            }
            self.say(
                "arrived",
                &format!("  {key} = {value:?} -> {}", line.join(", ")),
                json!({ "key": key, "arrivals": line }),
            );
        }
        Ok(latencies)
    }

    /// Writes through node 1's Redis port, as any language's Redis client would, and reads
    /// the value on the last node with the chorus client: one data model behind every door.
    async fn redis(&mut self) -> Result<(), String> {
        let addr = self.nodes[0].redis_addr().ok_or("node1 serves no Redis")?;
        let (key, value) = ("app/flags/beta", "on");
        let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let command = format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
            key.len(),
            value.len()
        );
        stream.write_all(command.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut reply = [0u8; 5];
        stream.read_exact(&mut reply).await.map_err(|e| e.to_string())?;
        if &reply != b"+OK\r\n" {
            return Err(format!(
                "node1's Redis port answered {:?}",
                String::from_utf8_lossy(&reply)
            ));
        }
        let last = self.clients.len() - 1;
        self.until("the Redis write to reach the last node", || async {
            let found = self.clients[last].get(key).await.ok()??;
            (found.0.as_bytes() == value.as_bytes()).then_some(())
        })
        .await?;
        self.say(
            "redis",
            &format!(
                "node1 also speaks Redis on {addr}: a Redis client's `SET {key} {value}` there is read as \
                 {value:?} on node{} (any language's Redis client, or Lucee's, works this way)",
                last + 1
            ),
            json!({ "redis": addr.to_string(), "key": key, "read_on": format!("node{}", last + 1) }),
        );
        Ok(())
    }

    /// Cuts the cluster in two, writes on both sides (one key on both), heals, and waits
    /// until every node holds the same values. Returns the two conflicting stamps.
    async fn partition_and_heal(&mut self) -> Result<(String, String), String> {
        let split = self.nodes.len().div_ceil(2) - 1;
        let (left, right): (Vec<usize>, Vec<usize>) =
            (0..self.nodes.len()).partition(|i| *i < split.max(1));
        for &a in &left {
            for &b in &right {
                self.nodes[a].firewall().block(self.nodes[b].addr());
                self.nodes[b].firewall().block(self.nodes[a].addr());
            }
        }
        let side = |ids: &[usize]| {
            ids.iter().map(|i| format!("node{}", i + 1)).collect::<Vec<_>>().join(" ")
        };
        self.say(
            "partition",
            &format!("cut the cluster in two: [{}] | [{}]", side(&left), side(&right)),
            json!({}),
        );

        let (l, r) = (left[0], right[right.len() - 1]);
        self.put(l, "app/notes/left", "written during the partition, left side").await?;
        self.put(r, "app/notes/right", "written during the partition, right side").await?;
        let stamp_left = self.put(l, "app/flags/checkout", "v1").await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let stamp_right = self.put(r, "app/flags/checkout", "v2").await?;
        tokio::time::sleep(PARTITION_TIME).await;
        let (seen_left, seen_right) =
            (self.read(l, "app/flags/checkout").await, self.read(r, "app/flags/checkout").await);
        self.say("conflict", &format!(
            "  app/flags/checkout: node{} wrote v1 (stamp {stamp_left}), node{} wrote v2 (stamp {stamp_right}); \
             node{} reads {seen_left:?}, node{} reads {seen_right:?}",
            l + 1, r + 1, l + 1, r + 1
        ), json!({ "left_stamp": stamp_left.to_string(), "right_stamp": stamp_right.to_string() }));

        for node in &self.nodes {
            node.firewall().clear();
        }
        let healed = Instant::now();
        self.say(
            "heal",
            "healed the partition; anti-entropy exchanges what each side missed",
            json!({}),
        );
        let keys =
            ["app/flags/checkout", "app/notes/left", "app/notes/right", "app/flags/dark_mode"];
        self.until("every node to converge", || async {
            for key in keys {
                let mut values = Vec::new();
                for client in &self.clients {
                    values
                        .push(client.get(key).await.ok()?.map(|(v, s)| (v.as_bytes().to_vec(), s)));
                }
                if values.iter().any(|v| v != &values[0] || v.is_none()) {
                    return None;
                }
            }
            Some(())
        })
        .await?;
        let converged_ms = healed.elapsed().as_secs_f64() * 1_000.0;
        let winner =
            if stamp_right > stamp_left { (r, "v2", stamp_right) } else { (l, "v1", stamp_left) };
        self.say("converged", &format!(
            "  all {} nodes agree after {converged_ms:.0} ms: app/flags/checkout = {:?} everywhere, both notes on every node.\n  \
             Why {:?}: last writer wins by hybrid logical clock stamp (wall ms, logical counter, node id); \
             node{}'s stamp {} is the later one. {}",
            self.nodes.len(), winner.1, winner.1, winner.0 + 1, winner.2, explain(stamp_left, stamp_right)
        ), json!({ "converged_ms": converged_ms, "winner": winner.1, "winner_stamp": winner.2.to_string() }));
        Ok((stamp_left.to_string(), stamp_right.to_string()))
    }

    async fn put(&self, index: usize, key: &str, value: &str) -> Result<Stamp, String> {
        let result = self.clients[index].put(key, value, WriteOptions::default()).await;
        result.map(|written| written.stamp).map_err(|e| e.to_string())
    }

    async fn read(&self, index: usize, key: &str) -> String {
        let value = self.clients[index].get(key).await.ok().flatten();
        value.map(|(v, _)| String::from_utf8_lossy(v.as_bytes()).into_owned()).unwrap_or_default()
    }

    fn say(&self, step: &str, text: &str, mut detail: serde_json::Value) {
        if self.json {
            detail["step"] = json!(step);
            detail["text"] = json!(text);
            out!("{detail}");
        } else {
            out!("{text}");
        }
    }

    /// Polls `check` until it yields, within `STEP_TIMEOUT`.
    async fn until<F, T>(&self, what: &str, check: impl Fn() -> F) -> Result<T, String>
    where
        F: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(done) = check().await {
                return Ok(done);
            }
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for {what}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Which part of two stamps decided the order, in words.
fn explain(a: Stamp, b: Stamp) -> &'static str {
    if a.hlc.wall_ms() != b.hlc.wall_ms() {
        "The wall-clock part decided; clocks more than 500 ms ahead would have been refused."
    } else if a.hlc.logical() != b.hlc.logical() {
        "Same millisecond: the logical counter decided."
    } else {
        "Same clock reading: the node id broke the tie, the same way on every node."
    }
}
