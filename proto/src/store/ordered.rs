//! `Ordered`: slab ids kept in an order the caller defines (the order of the entries' keys, or
//! of their dots), in sorted chunks of at most `CHUNK_LEN_MAX` ids.
//!
//! An id costs 4 bytes plus its chunk's spare room, where a B-tree slot would hold the key or
//! dot itself (16 to 32 bytes, in nodes about two thirds full). The ids carry no order of
//! their own: every search takes a predicate that looks the entry up, so the index cannot be
//! searched without the slab that gives its order, and the caller keeps both in step.
//!
//! Each chunk also keeps a *fence*: a `u128` summary of its last entry that orders like the
//! entries but coarser (a dot exactly, a key by its first 16 bytes), so that the search for
//! the chunk compares fences held side by side and reads entries only among chunks whose fence
//! ties with the target's. Before fences, each step of that search read a chunk and an entry
//! at scattered places: on 100,000 entries some 18 of a lookup's 27 cache misses.

/// Ids per chunk at most. Inserting into a full chunk splits it; an insert or a removal moves
/// at most this many ids (2 KiB), and a lookup is two binary searches.
pub(crate) const CHUNK_LEN_MAX: usize = 512;

/// Ids per chunk at least, once there are two chunks: a chunk that falls below is merged with
/// or refilled from a neighbour, so spare room stays under 3/4 of what the chunks reserve.
const CHUNK_LEN_MIN: usize = CHUNK_LEN_MAX / 4;

/// Slab ids in the caller's order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ordered {
    /// Sorted runs, in order; none is empty, except a sole chunk whose ids all went (it keeps
    /// its room: one key overwritten again and again takes its dot out of the dot index and
    /// puts the next one in, and would otherwise free and allocate the chunk every time).
    chunks: Vec<Vec<u32>>,
    /// The fence of each chunk's last id (0 for the sole empty chunk).
    fences: Vec<u128>,
    len: usize,
}

/// A place in an [`Ordered`]: valid until the next insert or removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) chunk: usize,
    pub(crate) index: usize,
}

/// How an insert changed the chunks (for an index that keeps something per chunk beside them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// The id went into an existing chunk, at this place.
    Into(Position),
    /// The id is alone in a new chunk, this one.
    Alone(usize),
    /// Chunk `chunk` was full: its second half became chunk `chunk + 1`, then the id went in
    /// at `at` (in one of the two).
    Split { chunk: usize, at: Position },
}

/// How a removal changed the chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Removed {
    /// The id left its chunk, from this place.
    From(Position),
    /// The id was its chunk's last, and the chunk went.
    Chunk(usize),
    /// The id left `at`, which fell below the minimum: chunks `left` and `left + 1` were
    /// merged into `left`, and split again evenly when `split` (so that there are still two).
    Rebalanced { at: Position, left: usize, split: bool },
}

impl Ordered {
    /// Number of ids held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first place whose id does not order before the target; `before(id)` says whether
    /// `id` orders before it (and must be monotonic over the index: true, then false), and
    /// `fence` is the target's fence: every id whose fence is below it orders before the
    /// target, every id whose fence is above it does not.
    pub(crate) fn seek(&self, fence: u128, before: impl Fn(u32) -> bool) -> Position {
        self.seek_within(fence, &before, |_, ids| ids.partition_point(|&id| before(id)))
    }

    /// [`Ordered::seek`], with `within(chunk, ids)` finding the first place in the chunk whose
    /// id does not order before the target.
    pub(crate) fn seek_within(
        &self,
        fence: u128,
        before: &impl Fn(u32) -> bool,
        within: impl FnOnce(usize, &[u32]) -> usize,
    ) -> Position {
        let chunks = self.chunks.len();
        // Appends (ascending keys, the last writer's next dot) skip the searches.
        let last = self.chunks.last().and_then(|ids| ids.last());
        if self.fences.last().is_some_and(|&last| last < fence)
            || last.is_some_and(|&id| before(id))
        {
            return Position { chunk: chunks, index: 0 };
        }
        let low = self.fences.partition_point(|&other| other < fence);
        let ties = self.fences[low..].partition_point(|&other| other == fence);
        let tied = &self.chunks[low..low + ties];
        let chunk = low + tied.partition_point(|ids| ids.last().is_some_and(|&id| before(id)));
        let index = self.chunks.get(chunk).map_or(0, |ids| within(chunk, ids));
        Position { chunk, index }
    }

    /// The place of `id`, whose fence is `fence`, when the index holds it in one of at most
    /// two chunks that fence allows; `None` otherwise (absent, or more chunks tie with the
    /// fence: the caller searches then). Only those chunks' ids are read: no entry is looked
    /// up, where a search reads one at every step (on 100,000 entries, some 9 reads scattered
    /// through memory). `spread` picks the part of a fence to interpolate for where in its
    /// chunk the id probably is ([`Ordered::guess`]).
    pub(crate) fn find_id(
        &self,
        fence: u128,
        id: u32,
        spread: fn(u128) -> u128,
    ) -> Option<Position> {
        // The first chunk whose last fence is not below the id's, the chunks tied with it,
        // and the first one past them (its last entry orders after the id, but it may hold it).
        let low = self.fences.partition_point(|&other| other < fence);
        let ties = self.fences[low..].partition_point(|&other| other == fence);
        if ties > 1 {
            // Many entries share the fence (the two greatest expiries, or a hundred writers
            // with one expiry and sequence number): scanning them all on every removal would
            // cost their number each time (found in review).
            return None;
        }
        let high = (low + ties + 1).min(self.chunks.len());
        (low..high).find_map(|chunk| {
            let index = position_near(&self.chunks[chunk], id, self.guess(chunk, fence, spread))?;
            Some(Position { chunk, index })
        })
    }

    /// Where in chunk `chunk` an entry with fence `fence` probably is: as far into the chunk
    /// as `spread` of the fence is between `spread` of the previous chunk's last fence (0 for
    /// the first chunk) and of this chunk's; as far as the whole fence is, when `spread` of
    /// the three is not in that order. In the dot index, where the previous chunk ends with the
    /// same writer, that is how far its sequence number is into the chunk's range of them,
    /// where an overwrite stream leaves the held ones spread about evenly; elsewhere (the
    /// first chunk, a chunk after another writer's) the guess is poor, which only costs the
    /// scan of [`position_near`] more steps.
    fn guess(&self, chunk: usize, fence: u128, spread: fn(u128) -> u128) -> usize {
        let floor = chunk.checked_sub(1).map_or(0, |before| self.fences[before]);
        let ceiling = self.fences[chunk];
        let (floor, ceiling, fence) = match (spread(floor), spread(fence), spread(ceiling)) {
            (low, at, high) if low <= at && at <= high => (low, high, at),
            _ => (floor, ceiling, fence),
        };
        let span = ceiling.saturating_sub(floor);
        let len = self.chunks[chunk].len();
        if span == 0 {
            return 0;
        }
        // A float is exact enough for a guess, and cannot overflow where u128 products can.
        let share = fence.saturating_sub(floor) as f64 / span as f64;
        (share * len as f64) as usize
    }

    /// The id at the place where [`Ordered::find_id`] would start to look for an id whose
    /// fence is `fence` (0 when the index is empty): reading it brings that part of the chunk
    /// into the cache (for [`crate::store::Store::warm`]).
    pub(crate) fn id_near(&self, fence: u128, spread: fn(u128) -> u128) -> u32 {
        let Some(last) = self.chunks.len().checked_sub(1) else { return 0 };
        let chunk = self.fences.partition_point(|&other| other < fence).min(last);
        let ids = &self.chunks[chunk];
        ids.get(self.guess(chunk, fence, spread).min(ids.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    }

    /// Sets the fence of chunk `chunk` from its last id.
    fn refence(&mut self, chunk: usize, fence: &impl Fn(u32) -> u128) {
        self.fences[chunk] = self.chunks[chunk].last().map_or(0, |&id| fence(id));
    }

    /// The last id, if any.
    pub(crate) fn last(&self) -> Option<u32> {
        self.chunks.last()?.last().copied()
    }

    /// The id at `at`, or `None` at the end.
    pub(crate) fn get(&self, at: Position) -> Option<u32> {
        self.chunks.get(at.chunk)?.get(at.index).copied()
    }

    /// The ids from `at` on, in order.
    pub(crate) fn iter_from(&self, at: Position) -> impl Iterator<Item = u32> + '_ {
        let first =
            self.chunks.get(at.chunk).map_or(&[][..], |ids| &ids[at.index.min(ids.len())..]);
        let rest = self.chunks.get(at.chunk + 1..).unwrap_or(&[]);
        first.iter().chain(rest.iter().flatten()).copied()
    }

    /// Every id, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.chunks.iter().flatten().copied()
    }

    /// Inserts `id` at `at` (a place [`Ordered::seek`] gave for it); `fence` gives an id's fence.
    /// Says how the chunks changed.
    pub(crate) fn insert(
        &mut self,
        at: Position,
        id: u32,
        fence: impl Fn(u32) -> u128,
    ) -> Inserted {
        self.len += 1;
        let Some(last) = self.chunks.len().checked_sub(1) else {
            self.chunks.push(vec![id]);
            self.fences.push(fence(id));
            return Inserted::Alone(0);
        };
        // Past the end means at the end of the last chunk.
        let (chunk, index) = match at.chunk > last {
            true => (last, self.chunks[last].len()),
            false => (at.chunk, at.index),
        };
        if self.chunks[chunk].len() < CHUNK_LEN_MAX {
            self.chunks[chunk].insert(index, id);
            // Only a new last id moves the fence; reading the last entry for nothing would be
            // a cache miss on every insert of a new key.
            if index + 1 == self.chunks[chunk].len() {
                self.refence(chunk, &fence);
            }
            Inserted::Into(Position { chunk, index })
        } else if chunk == last && index == CHUNK_LEN_MAX {
            // Appending (ascending keys, a writer's next dot): keep the full chunk full.
            self.chunks.push(vec![id]);
            self.fences.push(fence(id));
            Inserted::Alone(chunk + 1)
        } else {
            let tail = self.chunks[chunk].split_off(CHUNK_LEN_MAX / 2);
            self.chunks.insert(chunk + 1, tail);
            self.fences.insert(chunk + 1, 0);
            let at = match index.checked_sub(CHUNK_LEN_MAX / 2) {
                Some(index) => Position { chunk: chunk + 1, index },
                None => Position { chunk, index },
            };
            self.chunks[at.chunk].insert(at.index, id);
            self.refence(chunk, &fence);
            self.refence(chunk + 1, &fence);
            Inserted::Split { chunk, at }
        }
    }

    /// Removes the id at `at`, which must hold one; `fence` gives an id's fence. Says how the
    /// chunks changed.
    pub(crate) fn remove(&mut self, at: Position, fence: impl Fn(u32) -> u128) -> Removed {
        self.chunks[at.chunk].remove(at.index);
        self.len -= 1;
        let len = self.chunks[at.chunk].len();
        if len == 0 && self.chunks.len() > 1 {
            self.chunks.remove(at.chunk);
            self.fences.remove(at.chunk);
            Removed::Chunk(at.chunk)
        } else if len < CHUNK_LEN_MIN && self.chunks.len() > 1 {
            // Pair the small chunk with its next neighbour, or its previous for the last one.
            let left = at.chunk.min(self.chunks.len() - 2);
            let split = self.rebalance(left, &fence);
            Removed::Rebalanced { at, left, split }
        } else {
            if at.index == len {
                self.refence(at.chunk, &fence);
            }
            Removed::From(at)
        }
    }

    /// Merges the chunks at `left` and `left + 1`, and splits the result evenly again when it
    /// does not fit in one; says whether it split.
    fn rebalance(&mut self, left: usize, fence: &impl Fn(u32) -> u128) -> bool {
        let right = self.chunks.remove(left + 1);
        self.fences.remove(left + 1);
        let chunk = &mut self.chunks[left];
        chunk.extend(right);
        let split = chunk.len() > CHUNK_LEN_MAX;
        if split {
            let tail = chunk.split_off(chunk.len() / 2);
            chunk.shrink_to(CHUNK_LEN_MAX);
            self.chunks.insert(left + 1, tail);
            self.fences.insert(left + 1, 0);
            self.refence(left + 1, fence);
        }
        self.refence(left, fence);
        split
    }

    /// Number of chunks.
    #[cfg(test)]
    pub(crate) fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// The ids of chunk `chunk`, in order.
    pub(crate) fn chunk(&self, chunk: usize) -> &[u32] {
        &self.chunks[chunk]
    }
}

/// Ids [`position_of`] compares at a time, without a branch between them.
const SCAN_LANES: usize = 16;

/// Where `id` is in `ids`, if anywhere. Every overwrite scans up to two chunks of the dot
/// index (`CHUNK_LEN_MAX` ids each) for its old dot's id; comparing `SCAN_LANES` ids before
/// each branch lets the compiler use vector compares (SSE2, which every x86-64 build has),
/// where `position` branches on every id. Under `SHAPE=3 KEYS=100000 tests/profile_vs_redis.sh`
/// (20,000 SETs, most of them new keys), `find_id`'s own instructions on a replica went from
/// 346 to 161 per SET.
fn position_of(ids: &[u32], id: u32) -> Option<usize> {
    let groups = ids.chunks_exact(SCAN_LANES);
    let rest = groups.remainder();
    for (group, held) in groups.enumerate() {
        if held.iter().fold(false, |hit, &other| hit | (other == id)) {
            let index = held.iter().position(|&other| other == id)?;
            return Some(group * SCAN_LANES + index);
        }
    }
    let index = rest.iter().position(|&other| other == id)?;
    Some(ids.len() - rest.len() + index)
}

/// Where `id` is in `ids`, if anywhere, scanning outwards from `guess`: `SCAN_LANES` ids at a
/// time above it, then below it, and so on. With a good guess an overwrite reads a few cache
/// lines of its old dot's chunk instead of half of its 2 KiB; with a poor one, all of them.
fn position_near(ids: &[u32], id: u32, guess: usize) -> Option<usize> {
    let start = guess.min(ids.len()) / SCAN_LANES * SCAN_LANES;
    let (mut down, mut up) = (start, start);
    while down > 0 || up < ids.len() {
        if up < ids.len() {
            let end = (up + SCAN_LANES).min(ids.len());
            if let Some(index) = position_of(&ids[up..end], id) {
                return Some(up + index);
            }
            up = end;
        }
        if down > 0 {
            let begin = down - SCAN_LANES;
            if let Some(index) = position_of(&ids[begin..down], id) {
                return Some(begin + index);
            }
            down = begin;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{RngExt, SeedableRng};

    use super::*;

    /// A coarse fence, so that searches meet ties and resolve them by the ids.
    fn fence(id: u32) -> u128 {
        u128::from(id / 7)
    }

    /// Random inserts and removals of numbers ordered as themselves, against a `BTreeSet`.
    fn check(seed: u64, span: u32, steps: usize, ascending: bool) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut ordered = Ordered::default();
        let mut model = BTreeSet::new();
        let mut next = 0;
        for step in 0..steps {
            let value = match ascending {
                true => {
                    next += 1;
                    next
                }
                false => rng.random_range(0..span),
            };
            let at = ordered.seek(fence(value), |id| id < value);
            let held = ordered.get(at) == Some(value);
            assert_eq!(held, model.contains(&value), "seed {seed} step {step}");
            // Exactly where the search says, unless more chunks tie than it scans.
            let found = ordered.find_id(fence(value), value, |fence| fence);
            let tied = ordered.fences.iter().filter(|&&other| other == fence(value)).count();
            if tied <= 1 {
                assert_eq!(found, held.then_some(at), "seed {seed} step {step}");
            } else {
                assert!(found.is_none() || found == held.then_some(at), "seed {seed} step {step}");
            }
            // Where a warm-up reads: the chunk that holds the id, when no chunk ties its fence.
            let near = ordered.id_near(fence(value), |fence| fence);
            if let (Some(found), 0) = (found, tied) {
                assert!(ordered.chunks[found.chunk].contains(&near), "seed {seed} step {step}");
            }
            if held && rng.random_range(0..3) > 0 {
                ordered.remove(at, fence);
                model.remove(&value);
            } else if !held {
                ordered.insert(at, value, fence);
                model.insert(value);
            }
            if ascending && step % 3 == 0 {
                // Overwrites remove old dots from anywhere below.
                let old = rng.random_range(0..next);
                let at = ordered.seek(fence(old), |id| id < old);
                if ordered.get(at) == Some(old) {
                    ordered.remove(at, fence);
                    model.remove(&old);
                }
            }
        }
        // Then most go, scattered: chunks must merge rather than linger nearly empty.
        let doomed: Vec<u32> =
            model.iter().copied().filter(|_| rng.random_range(0..10) > 0).collect();
        for value in doomed {
            let at = ordered.seek(fence(value), |id| id < value);
            assert_eq!(ordered.get(at), Some(value), "seed {seed}");
            ordered.remove(at, fence);
            model.remove(&value);
        }
        assert_eq!(ordered.len(), model.len());
        assert!(ordered.iter().eq(model.iter().copied()), "seed {seed}");
        let last = ordered.chunks.len().saturating_sub(1);
        assert_eq!(ordered.fences.len(), ordered.chunks.len(), "seed {seed}");
        for (index, chunk) in ordered.chunks.iter().enumerate() {
            assert_eq!(
                ordered.fences[index],
                chunk.last().map_or(0, |&id| fence(id)),
                "seed {seed}"
            );
            assert!(chunk.len() <= CHUNK_LEN_MAX, "seed {seed}");
            assert!(!chunk.is_empty() || ordered.chunks.len() == 1, "seed {seed}");
            assert!(index == last || chunk.len() >= CHUNK_LEN_MIN, "seed {seed}");
        }
        let low = span / 2;
        let from: Vec<u32> = ordered.iter_from(ordered.seek(fence(low), |id| id < low)).collect();
        assert!(from.iter().copied().eq(model.range(low..).copied()), "seed {seed}");
    }

    /// The guess is the fence's share of the span from the previous chunk's last fence.
    #[test]
    fn the_guess_is_how_far_the_fence_lies_into_its_chunk() {
        let ordered = Ordered {
            chunks: vec![(0..10).collect(), (10..20).collect(), (20..30).collect()],
            fences: vec![100, 200, 200],
            len: 30,
        };
        let guesses = [(0, 50), (1, 100), (1, 150), (1, 200), (2, 200)];
        let guesses = guesses.map(|(chunk, fence)| ordered.guess(chunk, fence, |fence| fence));
        // Halfway from 0 in the first; from the start to the end of the second; none in a
        // chunk whose fence ties with the one before.
        assert_eq!(guesses, [5, 0, 5, 10, 0]);
    }

    /// A writer's stream with one TTL, a hundred writes to a millisecond: a chunk spans
    /// milliseconds, and the expiry index's guess follows the sequence numbers within it, where
    /// the whole fences would place an entry only to its millisecond.
    #[test]
    fn the_expiry_index_guesses_by_sequence_number_across_milliseconds() {
        let fence = |at_ms: u128, seq: u128| (at_ms << 64) | seq;
        let ordered = Ordered {
            chunks: vec![(0..100).collect(), (100..200).collect()],
            // Sequence numbers 1,000 to 1,099 expire at 5 ms, 1,100 to 1,199 at 6 and 7 ms.
            fences: vec![fence(5, 1_099), fence(7, 1_199)],
            len: 200,
        };
        let spread = crate::store::orders::BY_EXPIRY.spread;
        // Sequence number 1,110 is the 11th of the second chunk.
        assert_eq!(ordered.guess(1, fence(6, 1_110), spread), 11);
        assert_eq!(ordered.guess(1, fence(6, 1_110), |fence| fence), 50, "whole fences");
        // A spread that is out of order (another writer's numbers) falls back to the fences.
        assert_eq!(ordered.guess(1, fence(6, 900), spread), 50);
    }

    #[test]
    fn position_of_finds_what_position_finds() {
        for len in [0, 1, SCAN_LANES - 1, SCAN_LANES, SCAN_LANES + 1, 3 * SCAN_LANES + 5] {
            let ids: Vec<u32> = (0..len as u32).map(|n| n.wrapping_mul(2_654_435_761)).collect();
            for &id in ids.iter().chain(&[7, u32::MAX]) {
                let expected = ids.iter().position(|&other| other == id);
                assert_eq!(position_of(&ids, id), expected, "len {len}, id {id}");
                for guess in [0, 1, len / 2, len.saturating_sub(1), len, len + 40] {
                    assert_eq!(position_near(&ids, id, guess), expected, "guess {guess}");
                }
            }
        }
    }

    #[test]
    fn keeps_the_order_of_a_sorted_set_under_random_inserts_and_removals() {
        for seed in 0..20 {
            check(seed, 5_000, 20_000, false);
            check(seed, 200, 2_000, false);
        }
    }

    #[test]
    fn appends_fill_chunks_and_removals_keep_them_bounded() {
        for seed in 0..5 {
            check(seed, 0, 20_000, true);
        }
        let mut ordered = Ordered::default();
        for id in 0..(CHUNK_LEN_MAX as u32 * 4) {
            ordered.insert(ordered.seek(fence(id), |held| held < id), id, fence);
        }
        assert_eq!(ordered.chunks.len(), 4, "ascending inserts leave full chunks");
    }
}
