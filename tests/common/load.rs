//! Write load for fault tests: a thread that writes unique keys through several nodes in turn
//! until stopped, keeping the writes the nodes acknowledged; and the check that every one of
//! them can be read back on every node.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chorus::WaitLevel;
use chorus::client::{Client, WriteOptions};

use super::{CONVERGE_TIMEOUT, block_on};

/// Writes one load sends at most, whatever happens (a bound on the loop).
pub const LOAD_WRITES_MAX: u64 = 100_000;

/// The pause between two writes: a steady load, not a benchmark.
pub const LOAD_PAUSE: Duration = Duration::from_millis(4);

/// How long the load waits for a node's handshake before counting the write as failed.
const LOAD_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// What a load did.
#[derive(Debug, Default)]
pub struct Acked {
    /// Keys whose write was acknowledged (at the load's wait level); each key's value is itself.
    pub keys: Vec<String>,
    /// Writes that failed, timed out or whose wait did not complete.
    pub failed: u64,
}

/// A writer running on its own thread.
pub struct Load {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Acked>,
}

impl Load {
    /// Starts writing `PREFIX/I/N` = `PREFIX/I/N` through each node `I` of `addrs`, at `wait`.
    pub fn start(prefix: &str, addrs: Vec<String>, wait: WaitLevel) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let prefix = prefix.to_string();
        let thread = std::thread::spawn(move || block_on(write(prefix, addrs, wait, stopped)));
        Load { stop, thread }
    }

    /// Stops the writer and returns what it did.
    pub fn stop(self) -> Acked {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the load thread")
    }
}

/// One writer per node, so that a node that hangs (killed, its connection not yet known dead)
/// does not hold back the writes to the others.
async fn write(
    prefix: String,
    addrs: Vec<String>,
    wait: WaitLevel,
    stop: Arc<AtomicBool>,
) -> Acked {
    let writers: Vec<_> = addrs
        .into_iter()
        .enumerate()
        .map(|(index, addr)| {
            let prefix = format!("{prefix}/{index}");
            tokio::spawn(write_through(prefix, addr, wait, stop.clone()))
        })
        .collect();
    let mut acked = Acked::default();
    for writer in writers {
        let done = writer.await.expect("a writer");
        acked.keys.extend(done.keys);
        acked.failed += done.failed;
    }
    acked
}

async fn write_through(
    prefix: String,
    addr: String,
    wait: WaitLevel,
    stop: Arc<AtomicBool>,
) -> Acked {
    let options = WriteOptions { ttl: None, wait, timeout: Duration::from_secs(5) };
    let mut client: Option<Client> = None;
    let mut acked = Acked::default();
    for sequence in 0..LOAD_WRITES_MAX {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(LOAD_PAUSE).await;
        if client.is_none() {
            client = Client::connect_within(&addr, &[], LOAD_CONNECT_TIMEOUT).await.ok();
        }
        let Some(connected) = &client else {
            acked.failed += 1;
            continue;
        };
        let key = format!("{prefix}/{sequence}");
        match connected.put(&key, &key, options).await {
            Ok(result) if result.wait.as_ref().is_none_or(|wait| wait.complete) => {
                acked.keys.push(key)
            }
            Ok(_) => acked.failed += 1,
            Err(_) => {
                acked.failed += 1;
                // The node went away (or is going): connect again.
                client = None;
            }
        }
    }
    acked
}

/// Polls until every node at `addrs` holds every key of `keys` with its value (the key
/// itself); fails the test with what is still missing where when [`CONVERGE_TIMEOUT`] passes.
#[track_caller]
pub fn await_all_held(addrs: &[String], keys: &[String]) {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    for addr in addrs {
        let mut missing: BTreeSet<&String> = keys.iter().collect();
        while !missing.is_empty() {
            let still = block_on(async {
                let client = Client::connect(addr, &[]).await.expect("connect to a node");
                let mut still = BTreeSet::new();
                for key in &missing {
                    let found = client.get(key.as_str()).await.expect("a read");
                    if found.is_none_or(|(value, _)| value.as_bytes() != key.as_bytes()) {
                        still.insert(*key);
                    }
                }
                client.close().await;
                still
            });
            missing = still;
            if !missing.is_empty() && Instant::now() >= deadline {
                let shown: Vec<_> = missing.iter().take(20).collect();
                panic!(
                    "{addr} lacks {} of {} acknowledged writes after {CONVERGE_TIMEOUT:?}: {shown:?}",
                    missing.len(),
                    keys.len()
                );
            }
            if !missing.is_empty() {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
