//! `Hashed`: slab ids by a hash of their entry's key, for point lookups.
//!
//! The key index (`Ordered`) answers a lookup with two binary searches whose every step reads
//! an entry from the slab: on a store of 100,000 keys about 17 reads scattered through memory,
//! and `perf` put 44% of a replicated SET's CPU in them. A hash table finds the entry with
//! one probe and one read. It holds 4-byte ids (about 5 to 10 bytes per entry with the
//! table's control bytes and spare room) and no keys: the slab has them.
//!
//! The hash is std's SipHash over a secret 64-bit key (from the node's seed, `Config::hash_key`)
//! and then the key's bytes: with a fixed, public hash, anyone who can write keys could search
//! offline for keys that all land in one probe sequence and turn every lookup into a scan, on
//! every replica at once (found in review). A given seed gives the same table on every run, so
//! the crate stays deterministic; the table is only probed, never iterated, so its layout
//! cannot leak into any order the crate produces.

use std::hash::{DefaultHasher, Hasher};

use hashbrown::HashTable;

use super::slab::Slab;

/// Slab ids, found by their entry's key.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hashed {
    table: HashTable<u32>,
    /// The secret the hash starts from.
    secret: u64,
}

/// The hash of `key` under `secret`.
fn hash(secret: u64, key: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write_u64(secret);
    hasher.write(key);
    hasher.finish()
}

impl Hashed {
    /// An empty table hashing under `secret`.
    pub(crate) fn keyed(secret: u64) -> Hashed {
        Hashed { table: HashTable::new(), secret }
    }

    /// The hash of `key` in this table: a write that finds no entry inserts one under the hash
    /// it looked up with, instead of hashing the key again (SipHash is about 230 instructions
    /// for a 20-byte key, callgrind).
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        hash(self.secret, key)
    }

    /// The id of the entry for `key`, if one is held.
    pub(crate) fn find(&self, slab: &Slab, key: &[u8]) -> Option<u32> {
        self.find_hashed(slab, key, self.hash(key))
    }

    /// [`Hashed::find`] of a key whose [`Hashed::hash`] is `key_hash`.
    pub(crate) fn find_hashed(&self, slab: &Slab, key: &[u8], key_hash: u64) -> Option<u32> {
        self.table.find(key_hash, |&id| slab.get(id).key() == key).copied()
    }

    /// Adds `id`, whose entry is in `slab`, whose key no other id has, and whose key's
    /// [`Hashed::hash`] is `key_hash`.
    pub(crate) fn insert(&mut self, slab: &Slab, id: u32, key_hash: u64) {
        let secret = self.secret;
        debug_assert_eq!(key_hash, self.hash(slab.get(id).key()), "the hash of the entry's key");
        let rehash = |&held: &u32| hash(secret, slab.get(held).key());
        self.table.insert_unique(key_hash, id, rehash);
    }

    /// Takes `id` out; its entry must still be in `slab`.
    pub(crate) fn remove(&mut self, slab: &Slab, id: u32) {
        let key = slab.get(id).key();
        let found = self.table.find_entry(hash(self.secret, key), |&held| held == id);
        debug_assert!(found.is_ok(), "every held entry is in the hash table");
        if let Ok(found) = found {
            found.remove();
        }
    }

    /// Number of ids held.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}
