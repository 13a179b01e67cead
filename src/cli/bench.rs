//! `chorus bench`: throughput, latency and propagation of a real cluster, in the spirit of
//! `redis-benchmark`.
//!
//! Three tests, each optional:
//!
//! - `put` and `get`: `-c` clients, each on its own QUIC connection (as redis-benchmark opens
//!   one TCP connection per client), issue `-n` requests in total, one at a time per client,
//!   on keys drawn uniformly from `-k` keys, with `-d`-byte values; throughput and latency
//!   percentiles of the first node.
//! - `propagation`: one write at a time at the first node, watched on every other node; per
//!   write, the time from issuing the put until the last node's watch reported it; and the
//!   messages and bytes all nodes sent per write (counter deltas of every node's stats).
//!
//! The nodes are either running ones (`--node`, repeatable) or a local cluster this process
//! starts (`--local N`), real QUIC and mutual TLS on loopback, as `chorus demo` does.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chorus::client::{Client, WriteOptions};
use chorus_proto::rpc::ChangeKind;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::args::{BenchArgs, Test};
use super::local::LocalCluster;
use super::text;

/// How long a local cluster may take to form, and one propagated write to arrive everywhere.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// How often the progress line on stderr is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// Key prefix of everything the benchmark writes, so its keys are easy to find and drop.
const KEY_PREFIX: &str = "bench/";

/// Watch arrivals queued for the propagation test before watchers wait: the test takes them
/// as they come, so this only absorbs a burst.
const ARRIVALS_QUEUE_MAX: usize = 4096;

/// Latency percentiles and throughput of one test.
#[derive(Clone, Debug, Default)]
struct Figures {
    /// Completed operations.
    done: u64,
    /// Failed operations (not in the percentiles).
    errors: u64,
    /// Operations per second over the whole test.
    ops_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Gossip messages and bytes all nodes sent during the test, per operation (background
    /// anti-entropy included).
    msgs_per_op: f64,
    bytes_per_op: f64,
}

/// Runs `chorus bench`; returns the exit code: 0, or 3 when a node cannot be reached (or the
/// local cluster cannot start).
pub async fn run(args: BenchArgs) -> i32 {
    match bench(args).await {
        Ok(()) => 0,
        Err(why) => {
            eprintln!("chorus bench: {why}");
            3
        }
    }
}

async fn bench(mut args: BenchArgs) -> Result<(), String> {
    if args.local.is_none() && args.nodes.is_empty() {
        args.nodes.push(chorus::LISTEN_DEFAULT.to_string());
    }
    if args.fill {
        args.requests = args.keys;
    }
    let local = match args.local {
        Some(count) => LocalCluster::start(count.into(), "bench", STEP_TIMEOUT, false).await?.nodes,
        None => Vec::new(),
    };
    if !local.is_empty() {
        args.nodes = local.iter().map(|node| node.addr().to_string()).collect();
    }
    let result = measure(&args).await;
    let healed = match (result.is_ok(), args.tests.contains(&Test::Heal)) {
        (true, true) if local.is_empty() => Err("the heal test needs --local".to_string()),
        (true, true) => super::heal::heal(&local, &args).await.map(Some),
        _ => Ok(None),
    };
    for node in local {
        node.stop().await;
    }
    let (put, get, propagation) = result?;
    if let Some(healed) = healed? {
        super::heal::report(&healed, &args);
    }
    if put.is_none() && get.is_none() && propagation.is_none() {
        return Ok(());
    }
    if args.json {
        out!("{}", report_json(&args, put.as_ref(), get.as_ref(), propagation.as_ref()));
    } else {
        print_table(&args, put.as_ref(), get.as_ref(), propagation.as_ref());
    }
    Ok(())
}

type Measured = (Option<Figures>, Option<Figures>, Option<Figures>);

async fn measure(args: &BenchArgs) -> Result<Measured, String> {
    let (mut put, mut get, mut propagation) = (None, None, None);
    let wants = |test| args.tests.contains(&test);
    // One client per node, apart from the load, reads every node's counters.
    let mut observers = Vec::new();
    for node in &args.nodes {
        observers.push(Client::connect(node, &args.cluster.cluster_keys).await.map_err(text)?);
    }
    if wants(Test::Put) || wants(Test::Get) {
        let count = args.clients.into();
        let clients = Client::connect_many(&args.nodes[0], &args.cluster.cluster_keys, count).await;
        let clients: Vec<Arc<Client>> = clients.map_err(text)?.into_iter().map(Arc::new).collect();
        for (test, slot) in [(Test::Put, &mut put), (Test::Get, &mut get)] {
            if wants(test) {
                let before = traffic(&observers).await?;
                let mut figures = load(test, &clients, args).await;
                figures.count_traffic(before, traffic(&observers).await?, args.requests);
                *slot = Some(figures);
            }
        }
    }
    if wants(Test::Propagation) {
        if args.nodes.len() < 2 {
            if !args.json {
                eprintln!("chorus bench: propagation needs two nodes or more; skipped");
            }
        } else {
            propagation = Some(propagate(args, &observers).await?);
        }
    }
    Ok((put, get, propagation))
}

/// Runs one put or get test: every client takes the next request number until `requests`
/// are issued, one request in flight per client.
async fn load(test: Test, clients: &[Arc<Client>], args: &BenchArgs) -> Figures {
    let issued = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicU64::new(0));
    let value: Arc<[u8]> = vec![b'x'; args.data_size as usize].into();
    let progress = Progress::start(test_name(test), args.requests, finished.clone(), args.json);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (index, client) in clients.iter().enumerate() {
        let (client, value) = (client.clone(), value.clone());
        let (issued, finished) = (issued.clone(), finished.clone());
        let (requests, keys, fill) = (args.requests, args.keys, args.fill);
        tasks.spawn(async move {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(index as u64);
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut key = Vec::new();
            loop {
                let number = issued.fetch_add(1, Ordering::Relaxed);
                if number >= requests {
                    break;
                }
                key_name(&mut key, if fill { number % keys } else { rng.random_range(0..keys) });
                let begun = Instant::now();
                let outcome = match test {
                    Test::Get => client.get(&key).await.map(drop),
                    _ => client.put(&key, &value, WriteOptions::default()).await.map(drop),
                };
                match outcome {
                    Ok(()) => latencies.push(begun.elapsed()),
                    Err(_) => errors += 1,
                }
                finished.fetch_add(1, Ordering::Relaxed);
                // A closed connection would fail every request it took at once, eating the
                // others' share: its requests go to the clients still connected.
                if client.is_closed() {
                    break;
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::with_capacity(args.requests as usize);
    let mut errors = 0;
    while let Some(Ok((some, failed))) = tasks.join_next().await {
        latencies.extend(some);
        errors += failed;
    }
    // Requests no client took (every connection closed) failed too: done + errors = requests.
    errors += args.requests.saturating_sub(issued.load(Ordering::Relaxed));
    let elapsed = started.elapsed();
    progress.stop();
    figures(latencies, errors, elapsed)
}

/// The propagation test: writes at the first node, watches on all the others.
async fn propagate(args: &BenchArgs, observers: &[Client]) -> Result<Figures, String> {
    let writer = Client::connect(&args.nodes[0], &args.cluster.cluster_keys).await.map_err(text)?;
    // A fresh prefix per run, so earlier runs' keys never count as arrivals.
    let prefix = format!("{KEY_PREFIX}propagation/{:x}/", rand::random::<u32>());
    let (arrived, mut arrivals) = mpsc::channel(ARRIVALS_QUEUE_MAX);
    let mut watchers = JoinSet::new();
    for (index, observer) in observers.iter().enumerate().skip(1) {
        let mut watch = observer.watch(prefix.as_bytes(), None).await.map_err(text)?;
        let (arrived, prefix) = (arrived.clone(), prefix.clone());
        watchers.spawn(async move {
            while let Some(Ok(change)) = watch.next().await {
                let sequence = change.key.as_bytes().strip_prefix(prefix.as_bytes());
                let sequence = sequence.and_then(|s| std::str::from_utf8(s).ok()?.parse().ok());
                if let (ChangeKind::Put, Some(sequence)) = (change.kind, sequence)
                    && arrived.send((index, sequence, Instant::now())).await.is_err()
                {
                    return;
                }
            }
        });
    }
    let before = traffic(observers).await?;
    let value = vec![b'x'; args.data_size as usize];
    let finished = Arc::new(AtomicU64::new(0));
    let progress = Progress::start("propagation", args.writes, finished.clone(), args.json);
    let started = Instant::now();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for sequence in 0..args.writes {
        let key = format!("{prefix}{sequence}");
        let issued = Instant::now();
        writer.put(&key, &value, WriteOptions::default()).await.map_err(text)?;
        match last_arrival(&mut arrivals, sequence, args.nodes.len() - 1).await {
            Some(last) => latencies.push(last.saturating_duration_since(issued)),
            None => errors += 1,
        }
        finished.fetch_add(1, Ordering::Relaxed);
    }
    let elapsed = started.elapsed();
    progress.stop();
    watchers.abort_all();
    let mut figures = figures(latencies, errors, elapsed);
    figures.count_traffic(before, traffic(observers).await?, args.writes);
    Ok(figures)
}

/// Waits until `expected` watchers reported write `sequence`; the moment the last did.
/// Arrivals of earlier writes that timed out are skipped.
async fn last_arrival(
    arrivals: &mut mpsc::Receiver<(usize, u64, Instant)>,
    sequence: u64,
    expected: usize,
) -> Option<Instant> {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    let mut seen = Vec::with_capacity(expected);
    let mut last = None;
    while seen.len() < expected {
        let (index, got, at) = tokio::time::timeout_at(deadline, arrivals.recv()).await.ok()??;
        if got == sequence && !seen.contains(&index) {
            seen.push(index);
            last = Some(at);
        }
    }
    last
}

/// Messages and bytes sent so far, summed over the nodes of `clients`. A node of another
/// version, whose stats this client cannot read, counts nothing (so an older node can still be
/// measured for throughput and latency).
async fn traffic(clients: &[Client]) -> Result<(u64, u64), String> {
    let (mut messages, mut bytes) = (0, 0);
    for client in clients {
        let stats = match client.stats().await {
            Ok(stats) => stats,
            Err(chorus::ClientError::Protocol(why)) => {
                eprintln!("chorus bench: stats unreadable ({why}); traffic not counted");
                continue;
            }
            Err(error) => return Err(text(error)),
        };
        messages += stats.counter("messages_sent").unwrap_or(0);
        bytes += stats.counter("bytes_sent").unwrap_or(0);
    }
    Ok((messages, bytes))
}

/// Writes the name of key `number` into `key`: the prefix, then redis-benchmark's
/// `key:<12 digits>` (by hand: formatting is a visible share of the client's work).
fn key_name(key: &mut Vec<u8>, mut number: u64) {
    const DIGITS: usize = 12;
    key.clear();
    key.extend_from_slice(KEY_PREFIX.as_bytes());
    key.extend_from_slice(b"key:");
    let start = key.len();
    key.resize(start + DIGITS, b'0');
    for digit in key[start..].iter_mut().rev() {
        *digit = b'0' + (number % 10) as u8;
        number /= 10;
    }
}

impl Figures {
    /// Records the gossip traffic between two readings of [`traffic`], over `operations`.
    fn count_traffic(&mut self, before: (u64, u64), after: (u64, u64), operations: u64) {
        let operations = operations.max(1) as f64;
        self.msgs_per_op = after.0.saturating_sub(before.0) as f64 / operations;
        self.bytes_per_op = after.1.saturating_sub(before.1) as f64 / operations;
    }
}

fn figures(mut latencies: Vec<Duration>, errors: u64, elapsed: Duration) -> Figures {
    latencies.sort_unstable();
    let ms = |duration: Duration| duration.as_secs_f64() * 1_000.0;
    let at = |quantile: f64| {
        let rank = ((quantile * latencies.len() as f64).ceil() as usize).max(1);
        latencies.get(rank - 1).map_or(0.0, |latency| ms(*latency))
    };
    Figures {
        done: latencies.len() as u64,
        errors,
        ops_per_s: latencies.len() as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: latencies.last().map_or(0.0, |latency| ms(*latency)),
        msgs_per_op: 0.0,
        bytes_per_op: 0.0,
    }
}

fn figures_json(figures: &Figures) -> serde_json::Value {
    json!({
        "ops_per_s": round(figures.ops_per_s, 1),
        "p50_ms": round(figures.p50_ms, 3),
        "p99_ms": round(figures.p99_ms, 3),
        "max_ms": round(figures.max_ms, 3),
        "done": figures.done,
        "errors": figures.errors,
        "msgs_per_op": round(figures.msgs_per_op, 2),
        "bytes_per_op": round(figures.bytes_per_op, 1),
    })
}

fn report_json(
    args: &BenchArgs,
    put: Option<&Figures>,
    get: Option<&Figures>,
    propagation: Option<&Figures>,
) -> serde_json::Value {
    let propagation = propagation.map(|p| {
        let mut object = figures_json(p);
        object["writes"] = json!(args.writes);
        object["msgs_per_write"] = json!(round(p.msgs_per_op, 2));
        object["bytes_per_write"] = json!(round(p.bytes_per_op, 1));
        object
    });
    json!({
        "nodes": args.nodes.len(),
        "local": args.local.is_some(),
        "clients": args.clients,
        "requests": args.requests,
        "data_size": args.data_size,
        "keys": args.keys,
        "put": put.map(figures_json),
        "get": get.map(figures_json),
        "propagation": propagation,
    })
}

fn print_table(
    args: &BenchArgs,
    put: Option<&Figures>,
    get: Option<&Figures>,
    propagation: Option<&Figures>,
) {
    let place = match args.local {
        Some(count) => format!("local cluster of {count}"),
        None => args.nodes.join(", "),
    };
    out!(
        "chorus bench: {place}; {} clients, {} requests, {}-byte values, {} keys",
        args.clients,
        args.requests,
        args.data_size,
        args.keys
    );
    out!(
        "{:<12} {:>10} {:>9} {:>9} {:>9} {:>7} {:>8} {:>9}",
        "test",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "msgs/op",
        "bytes/op"
    );
    let row = |name: &str, f: &Figures| {
        out!(
            "{name:<12} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>7} {:>8.2} {:>9.0}",
            f.ops_per_s,
            f.p50_ms,
            f.p99_ms,
            f.max_ms,
            f.errors,
            f.msgs_per_op,
            f.bytes_per_op
        );
    };
    put.inspect(|f| row("put", f));
    get.inspect(|f| row("get", f));
    propagation.inspect(|f| row("propagation", f));
    if propagation.is_some() {
        out!(
            "propagation: {} writes at {}, one at a time, each timed from the put until the \
             last of the other {} nodes' watches reported it",
            args.writes,
            args.nodes[0],
            args.nodes.len() - 1
        );
    }
    out!("msgs/op, bytes/op: gossip sent by all nodes during the test, per operation");
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn test_name(test: Test) -> &'static str {
    match test {
        Test::Put => "put",
        Test::Get => "get",
        Test::Propagation => "propagation",
        Test::Heal => "heal",
    }
}

/// A progress line on stderr, redrawn in place while a test runs; shown only when stderr is a
/// terminal and no JSON was asked for, so logs and pipes stay clean.
struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(name: &'static str, total: u64, done: Arc<AtomicU64>, quiet: bool) -> Progress {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress { task: None };
        }
        let started = Instant::now();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROGRESS_INTERVAL).await;
                let done = done.load(Ordering::Relaxed).min(total);
                let rate = done as f64 / started.elapsed().as_secs_f64();
                let percent = done * 100 / total.max(1);
                let mut stderr = std::io::stderr().lock();
                let _ = write!(stderr, "\r{name}: {done}/{total} ({percent}%), {rate:.0}/s  ");
                let _ = stderr.flush();
            }
        });
        Progress { task: Some(task) }
    }

    fn stop(self) {
        if let Some(task) = self.task {
            task.abort();
            // Clear the progress line.
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_redis_benchmark_style() {
        let mut key = Vec::new();
        key_name(&mut key, 42);
        assert_eq!(key, b"bench/key:000000000042");
        key_name(&mut key, 999_999_999_999);
        assert_eq!(key, b"bench/key:999999999999");
    }

    #[test]
    fn percentiles_are_ranks_of_the_sorted_latencies() {
        let latencies: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let figures = figures(latencies, 3, Duration::from_secs(2));
        assert_eq!((figures.done, figures.errors), (100, 3));
        assert_eq!(figures.ops_per_s, 50.0);
        assert_eq!((figures.p50_ms, figures.p99_ms, figures.max_ms), (50.0, 99.0, 100.0));
        let none = super::figures(Vec::new(), 0, Duration::from_secs(1));
        assert_eq!((none.p50_ms, none.max_ms, none.ops_per_s), (0.0, 0.0, 0.0));
    }
}
