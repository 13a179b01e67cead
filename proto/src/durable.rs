//! A node's side of its data directory: restoring a [`Node`] from what was kept, and the
//! batches of changes its driver writes there (the format is in `disk.rs`).

use crate::clock::NodeId;
use crate::data::Key;
use crate::disk::{Batch, DiskLog, DiskState};
use crate::limits::MEMBERS_MAX;
use crate::message::Addr;
use crate::node::{Config, Node};
use crate::store::{Store, Update};

impl Node {
    /// This node, recording its changes for a data directory: the driver takes them with
    /// [`Node::take_batch`].
    pub fn keeping_journal(mut self) -> Node {
        self.disk.get_or_insert_with(DiskLog::default);
        self
    }

    /// A node restored from a data directory: `state` and the held `entries`, under the new
    /// identity in `config`, at wall time `now_ms`. It records its changes like
    /// [`Node::keeping_journal`]. The caller then joins `state.peers` (with any seeds).
    ///
    /// The identity that wrote the state may have issued writes after the last commit (and
    /// pushed them), so a restored node never takes it, nor any earlier one of the directory:
    /// their sequence numbers are not known to be unused. The restored state keeps its
    /// horizon, so the fence of its first exchanges decides whether it may be shared.
    pub fn restore(config: Config, now_ms: u64, state: DiskState, entries: Vec<Update>) -> Node {
        // Invariant (the caller's): a restored node takes an identity the directory never had.
        assert!(
            state.identities().all(|id| id != config.id),
            "a restored node takes a new identity"
        );
        let previous = state.renamed(config.id).previous;
        let newest = entries.iter().map(|update| update.stamp.hlc).max().unwrap_or_default();
        let mut node = Node::new(config, now_ms);
        node.store = Store::restore(node.config.hash_key(), entries, state.bases, state.horizon);
        // Every restored stamp and the clock's last reading are observed, so this node's next
        // writes beat what it held, even if the wall clock went back while it was down. Passing
        // the reading's own time as now skips the skew check, as `renew` does.
        let last = newest.max(state.clock);
        let _ = node.clock.observe(last, last.wall_ms());
        node.disk = Some(DiskLog { previous, ..DiskLog::default() });
        node
    }

    /// The changes since the last call and the state they belong with, taken in one step so
    /// that rows and bases on disk always agree; `None` unless the node keeps a journal.
    pub fn take_batch(&mut self) -> Option<Batch> {
        let mut peers: Vec<Addr> = self.seeds.clone();
        for member in self.members.list().into_iter().skip(1) {
            if !peers.contains(&member.addr) && peers.len() < MEMBERS_MAX {
                peers.push(member.addr);
            }
        }
        let disk = self.disk.as_mut()?;
        let journal = std::mem::take(&mut disk.journal);
        let state = DiskState {
            id: self.config.id,
            previous: disk.previous.clone(),
            clock: self.clock.last(),
            bases: self.store.vector().bases().clone(),
            horizon: self.store.horizon().clone(),
            peers,
        };
        Some(Batch { journal, state })
    }

    /// Whether changes wait in the journal (the driver wakes its writer).
    pub fn journal_pending(&self) -> bool {
        self.disk.as_ref().is_some_and(|disk| !disk.journal.is_empty())
    }

    /// Journals an update that became its key's entry.
    pub(crate) fn journal_upsert(&mut self, update: &Update) {
        if let Some(disk) = &mut self.disk {
            disk.journal.upsert(update);
        }
    }

    /// Journals collected keys.
    pub(crate) fn journal_collected(&mut self, keys: Vec<Key>) {
        self.stats.collected += keys.len() as u64;
        if let Some(disk) = &mut self.disk {
            keys.into_iter().for_each(|key| disk.journal.remove(key));
        }
    }

    /// Journals a new identity, and the state dropped with it when `dropped`.
    pub(crate) fn journal_renamed(&mut self, old: NodeId, dropped: bool) {
        if let Some(disk) = &mut self.disk {
            disk.renamed(old);
            if dropped {
                disk.journal.drop_all();
            }
        }
    }
}
