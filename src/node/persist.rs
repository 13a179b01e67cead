//! The node's data directory at run time: the writer task that commits the node's changes in
//! batches (group commit), and how a write waits until it is durable.
//!
//! The node journals every change it makes (`chorus_proto::disk::Journal`, coalesced by key).
//! After each step the driver wakes the writer when the journal holds something. The writer
//! takes the journal and the state with it in one short hold of the lock (`Purpose::Persist`),
//! numbering each batch, then encodes and commits it on a blocking thread, outside the lock;
//! once the commit is on disk it publishes the batch's number. While one commit runs, the
//! changes of every client pile up in the journal and go in the next one: the writes of many
//! clients share one fsync.
//!
//! A write under `--fsync always` notes, under the lock, the number of the batch that will
//! hold it (the next one if the journal holds anything, else the last one taken) and, after
//! the lock is released, waits until that number is published. Under `batch=` and `never`
//! it does not wait; the writer sleeps the interval before taking each batch.
//!
//! Commits are serialised (one at a time, in batch order). A commit that fails stops the
//! writer for good: later batches would write rows beside a missing one, and the file would
//! claim writes it lacks. The file keeps its last good commit, which is a consistent state,
//! every write waiting for durability gets the error, and the node is not ready from then on
//! (`NotReady::DataDir`).

use std::path::PathBuf;
use std::sync::Arc;

use chorus_proto::disk::Batch;
use chorus_proto::{Config, Node, NodeId};
use rand::RngExt;

use super::driver::{Driver, State};
use super::lock::Purpose;
use super::outcome::OpError;
use crate::store::{DataDir, DataDirError, Fsync, Persist, Restored};

impl State {
    /// The batch a write made now must wait for under `--fsync always`: the next one if the
    /// journal holds anything, else the last one taken. `None` when writes do not wait.
    pub(super) fn durability_ticket(&self, persist: Option<&Persist>) -> Option<u64> {
        persist.filter(|persist| persist.fsync == Fsync::Always)?;
        Some(self.batches_taken + u64::from(self.node.journal_pending()))
    }
}

impl Driver {
    /// Waits until the batch `ticket` is on disk; at once without a ticket.
    pub(super) async fn durable(&self, ticket: Option<u64>) -> Result<(), OpError> {
        let (Some(ticket), Some(persist)) = (ticket, self.persist.as_ref()) else { return Ok(()) };
        let mut durable = persist.durable.subscribe();
        let reached = durable.wait_for(|d| d.batch >= ticket || d.failed.is_some()).await;
        match reached.map(|durable| durable.failed.clone()) {
            Ok(None) => Ok(()),
            Ok(Some(why)) => Err(OpError::NotDurable(why)),
            Err(_) => Err(OpError::ShuttingDown),
        }
    }

    /// Waits until every write this node applied so far is on disk, under `--fsync always`
    /// (the Redis front end calls it before it answers a pipeline that wrote).
    pub async fn synced(&self) -> Result<(), OpError> {
        if self.persist.as_ref().is_none_or(|persist| persist.fsync != Fsync::Always) {
            return Ok(());
        }
        let ticket = {
            let state = self.lock(Purpose::Persist).ok_or(OpError::ShuttingDown)?;
            state.durability_ticket(self.persist.as_ref())
        };
        self.durable(ticket).await
    }

    /// Takes the next batch, numbered; `None` once the lock is poisoned.
    fn take_batch(&self) -> Option<(u64, Batch)> {
        let mut state = self.lock(Purpose::Persist)?;
        let batch = state.node.take_batch()?;
        state.batches_taken += 1;
        state.persist_wanted = false;
        Some((state.batches_taken, batch))
    }

    /// Takes a batch and commits it; false once writing stopped (a failed commit, a poisoned
    /// lock), after which it does nothing.
    pub(super) async fn commit(&self) -> bool {
        let Some(persist) = self.persist.as_ref() else { return false };
        if cfg!(debug_assertions) {
            COMMITS_ASKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let _order = persist.commit.lock().await;
        if persist.durable.borrow().failed.is_some() {
            return false;
        }
        let Some((ticket, batch)) = self.take_batch() else { return false };
        let dir = persist.dir.clone();
        let stall = !batch.journal.rows.is_empty() && crate::frontend::test_fault(COMMIT_STALL);
        let written = tokio::task::spawn_blocking(move || {
            if stall {
                hold_until_committed_again();
            }
            dir.write(&batch)
        })
        .await;
        let failed = match written {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(error) => Some(format!("the writer thread failed: {error}")),
        };
        if let Some(why) = &failed {
            tracing::error!(file = %persist.dir.path().display(), %why, "writing the data directory failed; this node no longer persists, is not ready, and writes waiting to be durable fail; restart it once the disk is fixed (it restores its last good commit and syncs the rest from its peers)");
            // Not ready from now on: a load balancer or platform takes the instance out
            // rather than sending it writes that all fail.
            if let Some(mut state) = self.lock(Purpose::Persist) {
                state.ready_inputs.data_dir_failed = Some(why.clone());
                self.settle(state);
            }
        }
        let ok = failed.is_none();
        persist.durable.send_modify(|durable| match failed {
            None => durable.batch = ticket,
            Some(why) => durable.failed = Some(why),
        });
        ok
    }
}

/// The test-only fault (`crate::frontend::TEST_FAULT_ENV`) that holds every commit with
/// journal rows, as a slow disk would, until another commit is asked for or `COMMIT_STALL_MAX`
/// passed. The writer's loop waits for the held one, so the next to ask is the shutdown's: a
/// test stops the node while a write waits to be durable, that commit certain to come while
/// this one is under way.
const COMMIT_STALL: &str = "persist-commit-stall";
const COMMIT_STALL_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Calls of `Driver::commit`, counted by debug builds only, for `COMMIT_STALL`.
static COMMITS_ASKED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Holds the writer's thread (`COMMIT_STALL`) until a later commit is asked for, or
/// `COMMIT_STALL_MAX`; logs both ends.
fn hold_until_committed_again() {
    use std::sync::atomic::Ordering::Relaxed;
    let asked = COMMITS_ASKED.load(Relaxed);
    tracing::info!("test fault: this commit is held until another is asked for");
    let deadline = std::time::Instant::now() + COMMIT_STALL_MAX;
    while COMMITS_ASKED.load(Relaxed) == asked && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    tracing::info!("test fault: the held commit goes to disk");
}

/// Runs the writer until writing stops or the node's tasks are aborted.
pub async fn run_writer(driver: Arc<Driver>) {
    let Some(persist) = driver.persist.as_ref() else { return };
    let interval = persist.fsync.interval();
    loop {
        persist.wake.notified().await;
        if !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
        if !driver.commit().await {
            return;
        }
    }
}

/// The protocol node of a node started with `--data-dir dir`: restored from the directory
/// when it holds a state, under a new identity (see `chorus_proto::disk`), else new; either
/// way keeping a journal. Also returns the writer's side and the peers the directory knew.
pub async fn open(
    dir: PathBuf,
    fsync: Fsync,
    markers: Vec<[u8; 16]>,
    mut config: Config,
    now_ms: u64,
) -> Result<(Node, Persist, Vec<String>), DataDirError> {
    let shown = dir.clone();
    let opened = tokio::task::spawn_blocking(move || DataDir::open(&dir, &markers)).await;
    let opened = opened.map_err(|error| DataDirError::Io {
        path: shown,
        source: std::io::Error::other(format!("the reading thread failed: {error}")),
    })?;
    let (data_dir, restored) = opened?;
    let Some(Restored { state, entries }) = restored else {
        tracing::info!(file = %data_dir.path().display(), "data directory is new: starting empty");
        return Ok((
            Node::new(config, now_ms).keeping_journal(),
            Persist::new(data_dir, fsync),
            Vec::new(),
        ));
    };
    while state.identities().any(|id| id == config.id) {
        config.id = NodeId(rand::rng().random_range(1..u64::MAX));
    }
    let peers: Vec<String> = state
        .peers
        .iter()
        .map(|addr| String::from_utf8_lossy(addr.as_bytes()).into_owned())
        .collect();
    tracing::info!(
        file = %data_dir.path().display(),
        entries = entries.len(),
        previous = %state.id,
        id = %config.id,
        peers = peers.len(),
        "restored the replica from the data directory under a new identity; it rejoins the peers it knew"
    );
    let node = Node::restore(config, now_ms, state, entries);
    Ok((node, Persist::new(data_dir, fsync), peers))
}
