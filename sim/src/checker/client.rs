//! What clients see: every read against the oracle, and every finished write wait against
//! what the nodes it counts really hold. Part of [`Checker`], kept apart to keep each file
//! readable in one sitting.

use chorus_proto::{Dot, Key, Node, Value, WaitOutcome};

use super::{Checker, Nodes};

impl Checker {
    /// A client read `key` at a node and got `value`. The writer must see its own newest
    /// write of it or a newer one; and whatever the reader, `value` must be what the oracle
    /// says the write the node holds reads as: its value, unless it is a delete or its expiry
    /// (as the writer's clock set it) has passed on this node's clock. The oracle shares no
    /// code with the store, so a broken TTL rule in the read path is reported.
    pub fn read(
        &mut self,
        slot: usize,
        node: &Node,
        local_ms: u64,
        key: &Key,
        value: Option<&Value>,
    ) {
        self.read_your_writes(slot, node, local_ms, key);
        // Which write the node holds, by the checker's own record of its entries (checked
        // against the oracle after every call); without deep checks, by its entry's stamp.
        let held = if self.deep {
            self.slots[slot].held.get(key).copied()
        } else {
            node.store().stamp(key)
        };
        let write = held.and_then(|stamp| self.writes.get(&stamp));
        let expected = write.filter(|w| !w.dead_at(local_ms)).and_then(|w| w.value.as_ref());
        if value != expected {
            let detail = format!(
                "n{slot} read {key:?} at {local_ms} as {value:?}, but it holds {held:?}, which \
                 reads as {expected:?} (expiry {:?})",
                write.and_then(|w| w.expires_at_ms)
            );
            self.fail("read-value", detail);
        }
    }

    /// A writer reads its own newest write of a key, or a newer one.
    fn read_your_writes(&mut self, slot: usize, node: &Node, local_ms: u64, key: &Key) {
        let Some(own) = self.slots[slot].own.get(key).copied() else { return };
        let entry = node.store().entry(key);
        let fine = match &entry {
            Some(entry) => entry.stamp() >= own,
            // Collected: only a delete or an expired write may be, so the newest write this
            // node held for the key must be one (and not older than its own).
            None => {
                let newest = self.slots[slot].held.get(key).copied().unwrap_or(own).max(own);
                self.writes.get(&newest).is_some_and(|w| w.dead_at(local_ms))
            }
        };
        if !fine {
            let held = entry.map(|e| e.stamp());
            self.fail(
                "read-your-writes",
                format!("n{slot} wrote {key:?} at {own} but then read the entry at {held:?}"),
            );
        }
    }

    /// A wait ended: every node it counts as holding the write must hold it (or a newer
    /// write of its key) or have it covered by its vector, which [`Checker::check_vector`]
    /// holds to account. Identities whose state is gone (crash, drop) are not checked.
    pub(super) fn confirmed(&mut self, slot: usize, outcome: &WaitOutcome, nodes: &dyn Nodes) {
        let Some(write) = self.writes.get(&outcome.stamp) else {
            let detail = format!("n{slot} ended a wait for {}, never written", outcome.stamp);
            return self.fail("wait-confirmed", detail);
        };
        let dot = Dot { node: outcome.stamp.node, seq: write.seq };
        for id in outcome.confirmed.iter().filter(|id| !self.gone.contains(id)) {
            let Some((other, node)) = nodes.running().find(|(_, n)| nodes.was(n.id(), *id)) else {
                continue;
            };
            let held = match self.deep {
                true => self.slots[other].held.get(&write.key).copied(),
                false => node.store().stamp(&write.key),
            };
            if held.is_none_or(|held| held < outcome.stamp) && !node.store().vector().contains(dot)
            {
                let detail = format!(
                    "n{slot}'s wait for {:?} at {} counts {id} (n{other}) as holding it, but \
                     n{other} holds {held:?} and its vector does not cover it",
                    write.key, outcome.stamp
                );
                return self.fail("wait-confirmed", detail);
            }
        }
    }
}
