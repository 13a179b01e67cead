//! `chorus bench --local N -t heal`: convergence after a partition under write load. The
//! local cluster is cut in two through each node's transport firewall (the first node alone on
//! one side), every client writes and deletes keys of one shared key space on its side for
//! `--partition-secs`, then the cut is healed, the writes stop, and the test times how long
//! until every node has seen every write: the same count of writes seen (the sum of its
//! version vector), the same count of live keys, and no change between two polls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chorus::NodeHandle;
use chorus::client::{Client, WriteOptions};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use tokio::task::JoinSet;

use super::args::BenchArgs;
use super::text;

/// How often the nodes' counters are compared after the heal.
const HEAL_POLL: Duration = Duration::from_millis(50);

/// How long after the heal the test gives up.
const HEAL_TIMEOUT: Duration = Duration::from_secs(120);

/// What the heal test measured.
pub struct Healed {
    writes: u64,
    errors: u64,
    converged_ms: f64,
}

/// Runs the heal test on a local cluster of two nodes or more.
pub async fn heal(nodes: &[NodeHandle], args: &BenchArgs) -> Result<Healed, String> {
    if nodes.len() < 2 {
        return Err("the heal test needs a local cluster of two nodes or more".into());
    }
    let keys = &args.cluster.cluster_keys;
    let mut observers = Vec::new();
    for node in nodes {
        observers.push(Client::connect(&node.addr().to_string(), keys).await.map_err(text)?);
    }
    cut(nodes);
    let (writes, errors) = write_on_both_sides(nodes, args).await?;
    for node in nodes {
        node.firewall().clear();
    }
    let healed = Instant::now();
    let mut last = None;
    while healed.elapsed() < HEAL_TIMEOUT {
        tokio::time::sleep(HEAL_POLL).await;
        let mut seen = Vec::new();
        for observer in &observers {
            let stats = observer.stats().await.map_err(text)?;
            seen.push((stats.counter("writes_seen").unwrap_or(0), stats.keys));
        }
        let agree = seen.windows(2).all(|pair| pair[0] == pair[1]);
        if agree && last.as_ref() == Some(&seen[0]) {
            // Converged at the first of the two agreeing polls.
            let converged = healed.elapsed().saturating_sub(HEAL_POLL);
            return Ok(Healed { writes, errors, converged_ms: converged.as_secs_f64() * 1e3 });
        }
        last = agree.then(|| seen[0]);
    }
    Err(format!("the nodes did not converge within {HEAL_TIMEOUT:?} of the heal"))
}

/// Cuts the first node off from all the others, both ways.
fn cut(nodes: &[NodeHandle]) {
    let (first, rest) = nodes.split_first().expect("two nodes or more");
    for other in rest {
        first.firewall().block(other.addr());
        other.firewall().block(first.addr());
    }
}

/// `-c` clients spread over the nodes, each putting (and one time in ten deleting) keys drawn
/// from `-k` keys until the partition ends; the writes acknowledged and the errors.
async fn write_on_both_sides(nodes: &[NodeHandle], args: &BenchArgs) -> Result<(u64, u64), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let (written, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = JoinSet::new();
    for index in 0..usize::from(args.clients) {
        let addr = nodes[index % nodes.len()].addr().to_string();
        let client = Client::connect(&addr, &args.cluster.cluster_keys).await.map_err(text)?;
        let (stop, written, failed) = (stop.clone(), written.clone(), failed.clone());
        let (keys, size) = (args.keys, args.data_size as usize);
        tasks.spawn(async move {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(index as u64);
            while !stop.load(Ordering::Relaxed) {
                let key = format!("heal/{:08}", rng.random_range(0..keys));
                let outcome = if rng.random_range(0..10) == 0 {
                    client.delete(&key, WriteOptions::default()).await.map(drop)
                } else {
                    let value = vec![b'a' + rng.random_range(0..26u8); size];
                    client.put(&key, &value, WriteOptions::default()).await.map(drop)
                };
                let counter = if outcome.is_ok() { &written } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(args.partition_secs)).await;
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    Ok((written.load(Ordering::Relaxed), failed.load(Ordering::Relaxed)))
}

/// Prints the heal test's figures, as a line or as JSON.
pub fn report(healed: &Healed, args: &BenchArgs) {
    if args.json {
        out!(
            "{}",
            json!({"heal": {
                "nodes": args.local, "partition_s": args.partition_secs, "writes": healed.writes,
                "errors": healed.errors, "converged_ms": healed.converged_ms,
            }})
        );
    } else {
        out!(
            "heal: {} writes ({} failed) on both sides of a {} s partition; every node had seen \
             every write {:.0} ms after the heal",
            healed.writes,
            healed.errors,
            args.partition_secs,
            healed.converged_ms
        );
    }
}
