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
//! the crate stays deterministic; the table is only probed, never iterated for what it holds, so
//! its layout cannot leak into any order the crate produces.
//!
//! The table grows as Redis's dictionaries do, a few buckets at a time. Left to itself,
//! hashbrown grows a full table in one step, hashing every key again: each a read of its entry
//! from the slab (a cache miss) and a SipHash. On one write that took the node's lock, and in
//! `chorus node` its only thread, for 79 ms at 250,000 keys, 347 ms at 1,000,000 and 823 ms at
//! 2,000,000 (`KEYS=2000000 STEP=250000 tests/growth_lock_hold.sh`), more than twice as long at
//! every doubling: every client and the gossip waited. Now a full table becomes the `old` one
//! beside a larger new one; each insert or removal then moves the entries of the next
//! `MIGRATE_BUCKETS` buckets of the old table into the new one, and lookups probe both until
//! the old one is empty. That takes an eighth of the old table's bucket count of inserts
//! and removals at most, each adding at most one entry, so the new table has room for that
//! many beside the old one's entries, and for twice those at least. ("Full" is hashbrown's: no
//! room left without a resize. The markers of removed entries take room too, so a table may be
//! full with few entries: kept to twice them, it would fill before the old one emptied.)

use std::hash::{DefaultHasher, Hasher};

use hashbrown::HashTable;

use super::slab::Slab;

/// Buckets of the old table whose entries each insert or removal moves into the new one while
/// the table grows.
const MIGRATE_BUCKETS: usize = 8;

/// Slab ids, found by their entry's key.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hashed {
    /// Where inserts go.
    table: HashTable<u32>,
    /// While the table grows, the full table it replaced, emptied by `MIGRATE_BUCKETS` buckets
    /// at a time from `cursor` on; empty (and unallocated) otherwise.
    old: HashTable<u32>,
    /// The first bucket of `old` not yet moved.
    cursor: usize,
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
        Hashed { secret, ..Hashed::default() }
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
        let is_key = |&id: &u32| slab.get(id).key() == key;
        let found = self.table.find(key_hash, is_key);
        if found.is_none() && !self.old.is_empty() {
            return self.old.find(key_hash, is_key).copied();
        }
        found.copied()
    }

    /// The id that a lookup of a key whose [`Hashed::hash`] is `key_hash` would check first,
    /// if any: found without reading an entry, so without the key's own check (a guess, for
    /// [`crate::store::Store::warm`]).
    pub(crate) fn candidate(&self, key_hash: u64) -> Option<u32> {
        let first = |_: &u32| true;
        self.table.find(key_hash, first).or_else(|| self.old.find(key_hash, first)).copied()
    }

    /// Adds `id`, whose entry is in `slab`, whose key no other id has, and whose key's
    /// [`Hashed::hash`] is `key_hash`.
    pub(crate) fn insert(&mut self, slab: &Slab, id: u32, key_hash: u64) {
        debug_assert_eq!(key_hash, self.hash(slab.get(id).key()), "the hash of the entry's key");
        if self.table.len() == self.table.capacity() && self.old.is_empty() {
            // Full: hashbrown would grow it in one step here. It drains into a larger one.
            let (held, buckets) = (self.table.len(), self.table.num_buckets());
            let room = (2 * held).max(held + buckets / MIGRATE_BUCKETS + 1).max(16);
            self.old = std::mem::replace(&mut self.table, HashTable::with_capacity(room));
            self.cursor = 0;
        }
        self.migrate(slab);
        self.put(slab, key_hash, id);
    }

    /// Inserts `id` into the new table, which has room (the old one empties first).
    fn put(&mut self, slab: &Slab, key_hash: u64, id: u32) {
        debug_assert!(self.table.len() < self.table.capacity(), "the old table empties first");
        let secret = self.secret;
        let rehash = |&held: &u32| hash(secret, slab.get(held).key());
        self.table.insert_unique(key_hash, id, rehash);
    }

    /// Takes `id` out; its entry must still be in `slab`.
    pub(crate) fn remove(&mut self, slab: &Slab, id: u32) {
        let key_hash = hash(self.secret, slab.get(id).key());
        let found = match self.table.find_entry(key_hash, |&held| held == id) {
            Ok(found) => Ok(found),
            Err(_) => self.old.find_entry(key_hash, |&held| held == id),
        };
        debug_assert!(found.is_ok(), "every held entry is in the hash table");
        if let Ok(found) = found {
            found.remove();
        }
        self.migrate(slab);
    }

    /// Moves the entries of the next `MIGRATE_BUCKETS` buckets of the old table, if any, into
    /// the new one; lets the old table go once it is empty.
    fn migrate(&mut self, slab: &Slab) {
        if self.old.is_empty() {
            // An unallocated table counts one bucket; it allocates nothing.
            if self.old.allocation_size() > 0 {
                self.old = HashTable::new();
            }
            return;
        }
        let end = (self.cursor + MIGRATE_BUCKETS).min(self.old.num_buckets());
        for index in self.cursor..end {
            if let Ok(entry) = self.old.get_bucket_entry(index) {
                let (id, _) = entry.remove();
                self.put(slab, hash(self.secret, slab.get(id).key()), id);
            }
        }
        self.cursor = end;
    }

    /// Number of ids held.
    pub(crate) fn len(&self) -> usize {
        self.table.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{RngExt, SeedableRng};

    use super::*;
    use crate::store::tests::write;

    /// Random inserts and removals against a `BTreeMap`, through many growths: every held key
    /// is found (in whichever table holds it), no other is, and no insert grows a table in one
    /// step (the debug assertion in `put`; tests build with debug assertions).
    #[test]
    fn finds_every_key_while_the_table_grows_a_few_buckets_at_a_time() {
        let (mut migrations, mut found_in_old) = (0, 0);
        for seed in 0..4 {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let (mut hashed, mut slab) = (Hashed::keyed(rng.random()), Slab::default());
            let mut model: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
            let mut held: Vec<Vec<u8>> = Vec::new();
            for step in 0..40_000 {
                let context = format!("seed {seed} step {step}");
                let was_migrating = !hashed.old.is_empty();
                if !held.is_empty() && rng.random_range(0..4) == 0 {
                    let key = held.swap_remove(rng.random_range(0..held.len()));
                    let id = model.remove(&key).unwrap();
                    hashed.remove(&slab, id);
                    slab.remove(id);
                } else {
                    let key = format!("key:{}", rng.random_range(0..1_000_000u32)).into_bytes();
                    let key_hash = hashed.hash(&key);
                    match hashed.find_hashed(&slab, &key, key_hash) {
                        Some(id) => assert_eq!(model.get(&key), Some(&id), "{context}"),
                        None => {
                            assert!(!model.contains_key(&key), "{context}");
                            let id = slab.insert(&write(1, &key));
                            hashed.insert(&slab, id, key_hash);
                            model.insert(key.clone(), id);
                            held.push(key);
                        }
                    }
                }
                migrations += usize::from(!was_migrating && !hashed.old.is_empty());
                assert_eq!(hashed.len(), model.len(), "{context}");
                if step % 997 == 0 {
                    for (key, &id) in &model {
                        found_in_old += usize::from(
                            hashed.table.find(hashed.hash(key), |&h| h == id).is_none(),
                        );
                        assert_eq!(hashed.find(&slab, key), Some(id), "{context}");
                        // A warm-up's guess finds an id for every held key, in either table.
                        assert!(hashed.candidate(hashed.hash(key)).is_some(), "{context}");
                    }
                }
            }
        }
        // The cases happened: tables grew incrementally, and keys were found in the old one.
        assert!(migrations >= 4 * 8, "{migrations} migrations");
        assert!(found_in_old > 0, "no key looked up while in the old table");
    }
}
