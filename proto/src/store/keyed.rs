//! `Keyed`: the key index, an [`Ordered`] of slab ids in key order whose chunks also keep, for
//! each id, a 4-byte *tag*: the bytes of its key just after a prefix that every key of the
//! chunk starts with.
//!
//! The chunk-level search compares fences (`ordered.rs`); within a chunk a search for a key
//! compares tags, held side by side, and reads entries only among the ids whose tags tie with
//! the key's. Without tags it read an entry at every step of a binary search: 9 steps in a
//! chunk of 512, each two cache misses (the slab slot, then the entry) on a store that does not
//! fit in the cache, and `perf` put half of a new key's time there (`new_key_ttl_100k_keys_ns`
//! in `benches/apply.rs`). Every new key takes that search, on every node, as does every read
//! of a range (lists, scans). Tags cost 4 bytes an entry, 6 with the chunks' spare room.
//!
//! A chunk's prefix may be shorter than what its keys share, never longer. An insert whose key
//! does not start with it shortens it, and the tags follow without reading an entry (every
//! key started with the old prefix, so its new tag is the bytes given up, then its old tag).
//! A split, or a merge of two chunks, lengthens each resulting chunk's prefix to what its first
//! and last keys share, reading the chunk's keys only when that grew: a chunk whose keys were
//! once mixed (the first chunk of a store, holding every key family) would otherwise pass its
//! short prefix on, and its descendants' tags would all tie.

use super::ordered::{CHUNK_LEN_MAX, Inserted, Ordered, Position, Removed};
use super::orders::{key_fence, key_fence_of};
use super::slab::Slab;

/// What a chunk of the key index keeps beside its ids.
#[derive(Clone, Debug, Default)]
struct Tagged {
    /// Bytes that every key of the chunk starts with.
    prefix: Vec<u8>,
    /// Each id's tag, in the chunk's order: the 4 bytes of its key after `prefix`, padded with
    /// zeros, big-endian (so tags never disagree with the keys' order).
    tags: Vec<u32>,
}

/// Slab ids in key order, tagged.
#[derive(Clone, Debug, Default)]
pub(crate) struct Keyed {
    ordered: Ordered,
    /// One per chunk of `ordered`, in the same order, each as long as its chunk.
    tagged: Vec<Tagged>,
}

/// The 4 bytes of `key` after its first `skip`, padded with zeros.
fn tag(key: &[u8], skip: usize) -> u32 {
    let mut bytes = [0; 4];
    let rest = key.get(skip..).unwrap_or_default();
    let len = rest.len().min(4);
    bytes[..len].copy_from_slice(&rest[..len]);
    u32::from_be_bytes(bytes)
}

/// How many leading bytes `a` and `b` share.
fn shared(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(a, b)| a == b).count()
}

impl Tagged {
    /// The tags of `ids` (in key order), after what their first and last keys share.
    fn of(ids: &[u32], slab: &Slab) -> Tagged {
        let key = |id| slab.get(id).key();
        let prefix = match (ids.first(), ids.last()) {
            (Some(&first), Some(&last)) => {
                let first = key(first);
                first[..shared(first, key(last))].to_vec()
            }
            _ => Vec::new(),
        };
        let tags = ids.iter().map(|&id| tag(key(id), prefix.len())).collect();
        Tagged { prefix, tags }
    }

    /// Shortens the prefix to `len` bytes. Every key started with the old prefix, so its new
    /// tag is the bytes given up, then its old tag: no entry is read.
    fn shorten(&mut self, len: usize) {
        let Some(given_up) = self.prefix.get(len..).filter(|bytes| !bytes.is_empty()) else {
            return;
        };
        for tag in &mut self.tags {
            let mut bytes = [0; 4];
            let old = tag.to_be_bytes();
            for (slot, &byte) in bytes.iter_mut().zip(given_up.iter().chain(&old)) {
                *slot = byte;
            }
            *tag = u32::from_be_bytes(bytes);
        }
        self.prefix.truncate(len);
    }

    /// Puts `key`'s tag at `index`, shortening the prefix first when `key` does not start with it.
    fn insert(&mut self, index: usize, key: &[u8]) {
        self.shorten(shared(&self.prefix, key));
        self.tags.insert(index, tag(key, self.prefix.len()));
    }

    /// The first place among `ids` (this chunk's) whose key does not order before `key`, by
    /// `before` (which compares entries' keys with `key`, and must be monotonic).
    fn seek(&self, ids: &[u32], key: &[u8], before: &impl Fn(u32) -> bool) -> usize {
        let head = &key[..key.len().min(self.prefix.len())];
        match head.cmp(&self.prefix[..head.len()]) {
            // Every key of the chunk starts with the prefix: a key that does not orders before
            // them all, or after them all.
            std::cmp::Ordering::Less => return 0,
            std::cmp::Ordering::Greater => return ids.len(),
            std::cmp::Ordering::Equal if head.len() < self.prefix.len() => return 0,
            std::cmp::Ordering::Equal => {}
        }
        let target = tag(key, self.prefix.len());
        let low = self.tags.partition_point(|&other| other < target);
        let ties = self.tags[low..].partition_point(|&other| other == target);
        low + ids[low..low + ties].partition_point(|&id| before(id))
    }
}

impl Keyed {
    /// Number of ids held.
    pub(crate) fn len(&self) -> usize {
        self.ordered.len()
    }

    /// The last id, if any.
    pub(crate) fn last(&self) -> Option<u32> {
        self.ordered.last()
    }

    /// The id at `at`, or `None` at the end.
    pub(crate) fn get(&self, at: Position) -> Option<u32> {
        self.ordered.get(at)
    }

    /// Every id, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.ordered.iter()
    }

    /// The ids from `at` on, in key order.
    pub(crate) fn iter_from(&self, at: Position) -> impl Iterator<Item = u32> + '_ {
        self.ordered.iter_from(at)
    }

    /// The place of `id`, whose key is `key`, found by its id (see [`Ordered::find_id`]).
    pub(crate) fn find_id(&self, key: &[u8], id: u32) -> Option<Position> {
        self.ordered.find_id(key_fence(key), id, |fence| fence)
    }

    /// The first place whose id does not order before `key`: `before(id)` compares the
    /// entry's key with `key` (`<` for the place of `key`, `<=` for the place after it).
    pub(crate) fn seek(&self, key: &[u8], before: impl Fn(u32) -> bool) -> Position {
        let within = |chunk: usize, ids: &[u32]| self.tagged[chunk].seek(ids, key, &before);
        self.ordered.seek_within(key_fence(key), &before, within)
    }

    /// Inserts `id`, whose entry is in `slab`, at `at` (a place [`Keyed::seek`] gave for it);
    /// says how the chunks changed.
    pub(crate) fn insert(&mut self, slab: &Slab, at: Position, id: u32) -> Inserted {
        let key = slab.get(id).key();
        let inserted = self.ordered.insert(at, id, key_fence_of(slab));
        match inserted {
            Inserted::Into(at) => self.tagged[at.chunk].insert(at.index, key),
            Inserted::Alone(chunk) => {
                self.tagged.insert(chunk, Tagged { prefix: key.to_vec(), tags: vec![0] });
            }
            Inserted::Split { chunk, at } => {
                let tags = self.tagged[chunk].tags.split_off(CHUNK_LEN_MAX / 2);
                let prefix = self.tagged[chunk].prefix.clone();
                self.tagged.insert(chunk + 1, Tagged { prefix, tags });
                self.tagged[at.chunk].insert(at.index, key);
                self.lengthen(slab, chunk);
                self.lengthen(slab, chunk + 1);
            }
        }
        inserted
    }

    /// Removes the id at `at`, which must hold one; says how the chunks changed.
    pub(crate) fn remove(&mut self, slab: &Slab, at: Position) -> Removed {
        let removed = self.ordered.remove(at, key_fence_of(slab));
        match removed {
            Removed::From(at) => {
                self.tagged[at.chunk].tags.remove(at.index);
            }
            Removed::Chunk(chunk) => {
                self.tagged.remove(chunk);
            }
            Removed::Rebalanced { at, left, split } => {
                self.tagged[at.chunk].tags.remove(at.index);
                let mut right = self.tagged.remove(left + 1);
                let merged = &mut self.tagged[left];
                let len = shared(&merged.prefix, &right.prefix);
                merged.shorten(len);
                right.shorten(len);
                merged.tags.extend(right.tags);
                if split {
                    let tags = merged.tags.split_off(merged.tags.len() / 2);
                    // As `Ordered::rebalance` shrinks the ids: the merge grew the room.
                    merged.tags.shrink_to(CHUNK_LEN_MAX);
                    let prefix = merged.prefix.clone();
                    self.tagged.insert(left + 1, Tagged { prefix, tags });
                    self.lengthen(slab, left + 1);
                }
                // The merged prefix is what both shared; the keys may share more.
                self.lengthen(slab, left);
            }
        }
        removed
    }

    /// Retags chunk `chunk` when its first and last keys share more than its prefix.
    fn lengthen(&mut self, slab: &Slab, chunk: usize) {
        let ids = self.ordered.chunk(chunk);
        let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else { return };
        if shared(slab.get(first).key(), slab.get(last).key()) > self.tagged[chunk].prefix.len() {
            self.tagged[chunk] = Tagged::of(ids, slab);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{RngExt, SeedableRng};

    use super::*;
    use crate::store::tests::write;

    /// Families of keys that share prefixes of many lengths, one a prefix of another, with zero
    /// bytes (which tie with the tags' padding) and 0xff.
    fn random_key(rng: &mut Xoshiro256PlusPlus) -> Vec<u8> {
        const FAMILIES: [&[u8]; 5] = [b"", b"sess:", b"session/0000", b"\0", b"tenant/cache/v1/"];
        const BYTES: [u8; 6] = [0, 1, b'a', b'b', b'z', 0xff];
        let mut key = FAMILIES[rng.random_range(0..FAMILIES.len())].to_vec();
        for _ in 0..rng.random_range(1..9) {
            key.push(BYTES[rng.random_range(0..BYTES.len())]);
        }
        key
    }

    /// Every chunk's keys start with its prefix, and its tags are theirs.
    fn check_tags(keyed: &Keyed, slab: &Slab, context: &str) {
        let mut chunk = 0;
        let mut seen = 0;
        assert_eq!(keyed.tagged.len(), keyed.ordered.chunk_count(), "{context}");
        while seen < keyed.len() || chunk < keyed.tagged.len() {
            let ids = keyed.ordered.chunk(chunk);
            let tagged = &keyed.tagged[chunk];
            assert_eq!(ids.len(), tagged.tags.len(), "{context} chunk {chunk}");
            for (&id, &held) in ids.iter().zip(&tagged.tags) {
                let key = slab.get(id).key();
                assert!(key.starts_with(&tagged.prefix), "{context} chunk {chunk}");
                assert_eq!(held, tag(key, tagged.prefix.len()), "{context} chunk {chunk}");
            }
            seen += ids.len();
            chunk += 1;
        }
    }

    /// Random inserts, removals and searches against a `BTreeMap`, through splits, merges and
    /// prefixes that shorten and lengthen.
    #[test]
    fn keeps_key_order_and_true_tags_under_random_inserts_and_removals() {
        // How often each way of changing the chunks happened, and removals found by id.
        let (mut changes, mut removals, mut found_by_id) = (BTreeMap::new(), 0, 0);
        for seed in 0..8 {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let (mut keyed, mut slab) = (Keyed::default(), Slab::default());
            let mut model: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
            let mut held_keys: Vec<Vec<u8>> = Vec::new();
            // Grow past several chunks, shrink to a few (chunks merge), then grow again.
            for (phase, steps, grow) in [(0, 12_000, true), (1, 3_000, false), (2, 6_000, true)] {
                for step in 0..steps {
                    let context = format!("seed {seed} phase {phase} step {step}");
                    // Half the time a held key: searched, and in the shrinking phase removed.
                    let pick = !held_keys.is_empty() && rng.random_range(0..2) == 0;
                    let key = match pick {
                        true => held_keys[rng.random_range(0..held_keys.len())].clone(),
                        false => random_key(&mut rng),
                    };
                    let at = keyed.seek(&key, |id| slab.get(id).key() < &key[..]);
                    // The place of the key: its own id, or the next key's.
                    let first = model.range(key.clone()..).next().map(|(_, &id)| id);
                    assert_eq!(keyed.get(at), first, "{context}");
                    let after = keyed.seek(&key, |id| slab.get(id).key() <= &key[..]);
                    let next = model.range(key.clone()..).find(|(other, _)| **other != key);
                    assert_eq!(keyed.get(after), next.map(|(_, &id)| id), "{context}");
                    let shrink = !grow && model.len() > 2 * CHUNK_LEN_MAX;
                    match model.get(&key).copied() {
                        Some(_) if shrink || (grow && rng.random_range(0..4) == 0) => {
                            // A run of neighbours goes, in the shrinking phase: one chunk
                            // empties while the next stays full, and they share ids again.
                            let run = if grow { 1 } else { rng.random_range(1..300) };
                            let doomed: Vec<(Vec<u8>, u32)> = model
                                .range(key.clone()..)
                                .take(run)
                                .map(|(key, &id)| (key.clone(), id))
                                .collect();
                            for (key, id) in doomed {
                                let at = keyed.seek(&key, |id| slab.get(id).key() < &key[..]);
                                let found = keyed.find_id(&key, id);
                                assert!(found.is_none() || found == Some(at), "{context}");
                                found_by_id += usize::from(found.is_some());
                                *changes.entry(removed(keyed.remove(&slab, at))).or_insert(0) += 1;
                                removals += 1;
                                slab.remove(id);
                                model.remove(&key);
                                let index = held_keys.iter().position(|held| *held == key);
                                held_keys.swap_remove(index.unwrap());
                            }
                        }
                        None if grow => {
                            let id = slab.insert(&write(1, &key));
                            let change = inserted(keyed.insert(&slab, at, id));
                            *changes.entry(change).or_insert(0) += 1;
                            model.insert(key.clone(), id);
                            held_keys.push(key);
                        }
                        _ => {}
                    }
                    if step % 50 == 0 {
                        check_tags(&keyed, &slab, &context);
                    }
                }
                let context = format!("seed {seed} phase {phase}: {} keys", model.len());
                assert!(keyed.iter().eq(model.values().copied()), "{context}");
                check_tags(&keyed, &slab, &context);
            }
        }
        // Every way of changing the chunks was taken but a chunk dropping whole, which needs a
        // chunk of one id (a chunk below a quarter full merges first): the ascending test.
        let taken = ["into", "alone", "split", "from", "merged", "merged and split"];
        assert!(taken.iter().all(|name| changes.contains_key(name)), "{changes:?}");
        assert!(found_by_id * 2 > removals, "{found_by_id} of {removals} found by id");
    }

    /// The name of a change to the chunks, to count them.
    fn inserted(change: Inserted) -> &'static str {
        match change {
            Inserted::Into(_) => "into",
            Inserted::Alone(_) => "alone",
            Inserted::Split { .. } => "split",
        }
    }

    /// The name of a change to the chunks, to count them.
    fn removed(change: Removed) -> &'static str {
        match change {
            Removed::From(_) => "from",
            Removed::Chunk(_) => "chunk",
            Removed::Rebalanced { split: false, .. } => "merged",
            Removed::Rebalanced { split: true, .. } => "merged and split",
        }
    }

    /// Keys inserted in ascending order (a snapshot restored) fill chunks by appending, each
    /// new chunk starting with its first key as the prefix and shortening it as keys arrive.
    #[test]
    fn ascending_keys_shorten_each_new_chunks_prefix_as_they_come() {
        let (mut keyed, mut slab) = (Keyed::default(), Slab::default());
        for index in 0..3 * CHUNK_LEN_MAX {
            let key = format!("session/{index:08}");
            let at = keyed.seek(key.as_bytes(), |id| slab.get(id).key() < key.as_bytes());
            let id = slab.insert(&write(1, key.as_bytes()));
            keyed.insert(&slab, at, id);
        }
        check_tags(&keyed, &slab, "ascending");
        // The second chunk holds 00000512 to 00001023: they share "session/0000".
        assert_eq!(keyed.tagged[1].prefix, b"session/0000");
        let tags = &keyed.tagged[1].tags;
        assert!(tags.windows(2).all(|pair| pair[0] < pair[1]), "distinct tags: no entry read");
        // One more key starts a chunk of its own; removing it drops the chunk whole.
        let key = b"session/99999999";
        let at = keyed.seek(key, |id| slab.get(id).key() < &key[..]);
        let id = slab.insert(&write(1, key));
        assert_eq!(inserted(keyed.insert(&slab, at, id)), "alone");
        let at = keyed.seek(key, |id| slab.get(id).key() < &key[..]);
        assert_eq!(removed(keyed.remove(&slab, at)), "chunk");
        slab.remove(id);
        check_tags(&keyed, &slab, "a chunk dropped whole");
    }

    /// A store's first chunk holds every key family, so its prefix shrinks to nothing; the
    /// chunks split from it lengthen theirs to what their keys share, or every tag would tie.
    #[test]
    fn chunks_split_from_mixed_ones_lengthen_their_prefixes() {
        let (mut keyed, mut slab) = (Keyed::default(), Slab::default());
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let sessions = (0..4 * CHUNK_LEN_MAX)
            .map(|_| format!("session/{:08}", rng.random_range(0..100_000_000)));
        for key in ["a".to_string(), "z".to_string()].into_iter().chain(sessions) {
            let at = keyed.seek(key.as_bytes(), |id| slab.get(id).key() < key.as_bytes());
            if keyed.get(at).is_some_and(|id| slab.get(id).key() == key.as_bytes()) {
                continue;
            }
            let id = slab.insert(&write(1, key.as_bytes()));
            keyed.insert(&slab, at, id);
        }
        check_tags(&keyed, &slab, "mixed, then sessions");
        let chunks = keyed.tagged.len();
        assert!(chunks >= 4, "{chunks} chunks");
        // The chunks between the first and the last hold sessions only.
        for tagged in &keyed.tagged[1..chunks - 1] {
            assert!(tagged.prefix.starts_with(b"session/"), "{:?}", tagged.prefix);
        }
    }
}
