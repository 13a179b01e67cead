//! `Hashed`: slab ids by a hash of their entry's key, for point lookups.
//!
//! The key index (`Ordered`) answers a lookup with two binary searches whose every step reads
//! an entry from the slab: on a store of 100,000 keys about 17 reads scattered through memory,
//! and `perf` put 44% of a replicated SET's CPU in them. A hash table finds the entry with
//! one probe and one read. It holds 4-byte ids (about 5 to 10 bytes per entry with the
//! table's control bytes and spare room) and no keys: the slab has them.
//!
//! The hash is std's SipHash with fixed keys, so a store's table is the same on every run (the
//! crate is deterministic); the table is only probed, never iterated, so its layout cannot
//! leak into any order the crate produces.

use std::hash::{DefaultHasher, Hasher};

use hashbrown::HashTable;

use super::slab::Slab;

/// Slab ids, found by their entry's key.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hashed {
    table: HashTable<u32>,
}

/// The hash of `key`.
fn hash(key: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(key);
    hasher.finish()
}

impl Hashed {
    /// The id of the entry for `key`, if one is held.
    pub(crate) fn find(&self, slab: &Slab, key: &[u8]) -> Option<u32> {
        self.table.find(hash(key), |&id| slab.get(id).key() == key).copied()
    }

    /// Adds `id`, whose entry is in `slab` and whose key no other id has.
    pub(crate) fn insert(&mut self, slab: &Slab, id: u32) {
        let key = slab.get(id).key();
        self.table.insert_unique(hash(key), id, |&held| hash(slab.get(held).key()));
    }

    /// Takes `id` out; its entry must still be in `slab`.
    pub(crate) fn remove(&mut self, slab: &Slab, id: u32) {
        let key = slab.get(id).key();
        if let Ok(found) = self.table.find_entry(hash(key), |&held| held == id) {
            found.remove();
        }
    }

    /// Number of ids held.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}
