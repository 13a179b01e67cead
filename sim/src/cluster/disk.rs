//! Simulated data directories (`--disks`): each node keeps a journal; its batches go to the
//! slot's disk, written through the on-disk encoding (`chorus_proto::disk`) and made durable
//! at most every [`SYNC_INTERVAL_MS`], as `--fsync batch=` does. A crash draws what the disk
//! keeps ([`DiskMode`]): everything (as `--fsync always` would), everything but the batches
//! since the last sync, an old snapshot of the directory, or nothing. A node restarted from a
//! disk is restored under a new identity, as the real node is, and the fence decides whether
//! its state may stay.

use std::collections::BTreeMap;

use chorus_proto::disk::{Batch, DiskEntry, DiskImage};
use chorus_proto::{Addr, Key, Node, NodeId};
use rand::{Rng, RngExt};

use super::Cluster;

/// How often a disk makes its pending batches durable (virtual milliseconds).
pub const SYNC_INTERVAL_MS: u64 = 200;

/// How old a disk's snapshot is: every this many milliseconds the last candidate becomes the
/// snapshot and the durable image the next candidate, so a snapshot is one to two periods
/// old, old enough for deletes made since to have been collected (grace 5 s in simulation).
const SNAPSHOT_EVERY_MS: u64 = 5_000;

/// What a crashed node's disk gives back when it restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskMode {
    /// Every batch, synced or not (`--fsync always`).
    Kept,
    /// Only what was synced: the batches since the last sync are lost.
    LoseUnsynced,
    /// The snapshot taken early in the run: an old copy restored from a backup.
    Snapshot,
    /// Nothing: the disk is gone, the node starts empty.
    Lost,
}

impl DiskMode {
    /// Draws a crash's disk: kept 40 %, unsynced batches lost 30 %, rolled back to the
    /// snapshot 20 %, gone 10 %.
    pub fn draw(rng: &mut impl Rng) -> DiskMode {
        match rng.random_range(0..10u32) {
            0..=3 => DiskMode::Kept,
            4..=6 => DiskMode::LoseUnsynced,
            7..=8 => DiskMode::Snapshot,
            _ => DiskMode::Lost,
        }
    }
}

/// One slot's disk.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    durable: DiskImage,
    pending: Vec<Batch>,
    last_sync_ms: u64,
    snapshot: Option<DiskImage>,
    candidate: Option<(u64, DiskImage)>,
    /// The last crash rolled the disk back to the snapshot.
    rolled_back: bool,
}

impl Disk {
    fn sync(&mut self, now_ms: u64) {
        for batch in self.pending.drain(..) {
            self.durable.apply(batch);
        }
        self.last_sync_ms = now_ms;
        let due = self.candidate.as_ref().is_none_or(|(at, _)| now_ms >= at + SNAPSHOT_EVERY_MS);
        if due {
            let taken = self.candidate.replace((now_ms, self.durable.clone()));
            self.snapshot = taken.map(|(_, image)| image).or(self.snapshot.take());
        }
    }
}

/// Every slot's disk, and the sabotage that breaks restores.
#[derive(Clone, Debug, Default)]
pub struct Disks {
    slots: BTreeMap<usize, Disk>,
    /// Sabotage: a restored node gets back only half of its rows, as if the disk had
    /// acknowledged writes it never kept.
    drops_rows: bool,
}

impl<S> Cluster<S> {
    /// Gives every node started from now on a data directory; with `drops_rows`, restores
    /// lose rows on purpose (the sabotage `restore-drops-rows`).
    pub fn keep_disks(&mut self, drops_rows: bool) {
        self.disks = Some(Disks { slots: BTreeMap::new(), drops_rows });
    }

    /// Whether nodes keep data directories.
    pub fn has_disks(&self) -> bool {
        self.disks.is_some()
    }

    /// Takes the batch of `slot`'s node into its disk after a call, syncing when due.
    pub(super) fn record_disk(&mut self, slot: usize) {
        let now = self.now;
        let Some(disks) = self.disks.as_mut() else { return };
        let Some(batch) = self.slots[slot].node.as_mut().and_then(Node::take_batch) else {
            return;
        };
        let disk = disks.slots.entry(slot).or_default();
        disk.pending.push(batch);
        if now >= disk.last_sync_ms + SYNC_INTERVAL_MS {
            disk.sync(now);
        }
    }

    /// Decides what `slot`'s disk gives back when its node crashes now (call it before
    /// [`Cluster::crash`]). Every batch the node ever gave must add up to its replica: the
    /// journal missed nothing (`disk-journal`).
    pub fn crash_disk(&mut self, slot: usize, mode: DiskMode) {
        let node = self.slots[slot].node.as_ref();
        let Some(disk) = self.disks.as_mut().and_then(|disks| disks.slots.get_mut(&slot)) else {
            return;
        };
        let mut everything = disk.durable.clone();
        let pending = std::mem::take(&mut disk.pending);
        pending.iter().cloned().for_each(|batch| everything.apply(batch));
        if let Some(node) = node {
            let held: BTreeMap<Key, Vec<u8>> =
                node.store().updates().map(|u| (u.key.clone(), DiskEntry::encode(&u))).collect();
            let bases = everything.state().map(|state| &state.bases);
            if held != *everything.rows()
                || bases.is_some_and(|b| b != node.store().vector().bases())
            {
                let why = format!("n{slot}'s disk does not add up to its replica at a crash");
                self.checker.fail("disk-journal", why);
            }
        }
        disk.rolled_back = mode == DiskMode::Snapshot && disk.snapshot.is_some();
        match mode {
            DiskMode::Kept => disk.durable = everything,
            DiskMode::LoseUnsynced => {}
            DiskMode::Snapshot => disk.durable = disk.snapshot.clone().unwrap_or_default(),
            DiskMode::Lost => disk.durable = DiskImage::default(),
        }
        self.log(|| format!("n{slot} disk {mode:?}"));
        self.trace.word(0x4449_534b ^ mode as u64);
    }

    /// Restarts `slot` from its disk when it holds a state (else as [`Cluster::start`]),
    /// joining `seeds` and the peers the disk knew.
    pub fn restart(&mut self, slot: usize, seeds: Vec<Addr>) {
        let disk = self.disks.as_ref().and_then(|disks| disks.slots.get(&slot));
        let Some((state, mut entries)) = disk.and_then(|disk| disk.durable.restorable()) else {
            return self.start(slot, seeds);
        };
        self.reached.restored += 1;
        self.reached.restored_old += u64::from(disk.is_some_and(|disk| disk.rolled_back));
        if self.disks.as_ref().is_some_and(|disks| disks.drops_rows) {
            entries.truncate(entries.len() / 2);
        }
        let previous: Vec<NodeId> = state.identities().collect();
        let config = self.fresh_config(slot, &previous);
        let local = self.local_now(slot);
        let mut join = seeds;
        join.extend(state.peers.iter().filter(|peer| **peer != config.addr).cloned());
        let mut node = Node::restore(config, local, state, entries);
        node.join(local, join);
        self.checker.started(slot);
        self.checker.restored(&node);
        self.install(slot, node, 0x5245_5354, "restored");
    }
}
