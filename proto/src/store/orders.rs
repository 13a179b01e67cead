//! The orders the store's indexes keep (`Ordered`), each with its fence: a `u128` that orders
//! like the entries but coarser, so an index can find a chunk by comparing fences side by
//! side (see `ordered.rs`).

use super::ordered::{Ordered, Position};
use super::slab::{Held, Slab};
use crate::clock::NodeId;
use crate::version::Dot;

/// An order of entries: their sort key, the fence of a sort key, and the part of a fence that
/// an index interpolates to guess where in a chunk an entry lies (`Ordered::find_id`). A
/// fence must never disagree with the order: `a < b` implies `fence(a) <= fence(b)`.
pub(super) struct Order<K> {
    pub(super) key: fn(Held<'_>) -> K,
    pub(super) fence: fn(&K) -> u128,
    pub(super) spread: fn(u128) -> u128,
}

/// The dot and tombstone indexes: by dot (writer, then sequence number); fenced exactly, and
/// a writer's held sequence numbers spread about evenly over a chunk.
pub(super) const BY_DOT: Order<Dot> =
    Order { key: |held| held.dot(), fence: dot_fence, spread: |fence| fence };

/// The expiry index: by expiry, then sequence number, then writer (a dot's two parts the other
/// way round: unique, so the order is total); fenced by expiry, then sequence number. Fenced by
/// expiry and writer, as it was, the writes of one writer in one millisecond shared a fence:
/// a pipelined stream has hundreds, so several chunks tied, and removing one of them searched
/// by reading entries instead of scanning ids (`Ordered::find_id`): on one replica of three,
/// 8% of the removals, and a sixth of its time, under `SET ... EX 3600` with 100,000 keys.
///
/// Interpolated by sequence number alone: a writer with one TTL gives expiries in the order of
/// its sequence numbers, but a hundred of them to a millisecond, so a chunk spans a few
/// milliseconds and interpolating whole fences (the expiry above the sequence number) placed an
/// entry only to its millisecond. Under the random overwrites of `ttl_overwrite_100k_keys_ns`
/// (`benches/apply.rs`), a temporary counter (not kept) had the first guess 55 places off on
/// average, against 3.5 this way; `Ordered`'s tests show the two guesses on such a chunk.
pub(super) const BY_EXPIRY: Order<(Option<u64>, u64, NodeId)> = Order {
    key: |held| {
        let Dot { node, seq } = held.dot();
        (held.expires_at_ms(), seq, node)
    },
    fence: expiry_fence,
    spread: |fence| fence & u128::from(u64::MAX),
};

fn dot_fence(dot: &Dot) -> u128 {
    (u128::from(dot.node.0) << 64) | u128::from(dot.seq)
}

/// No expiry before every expiry, an expiry `e` as `e + 1`; the two greatest expiries share
/// that high half, so they get no sequence part (found in review, when it was the writer: with
/// one, an entry expiring at `u64::MAX - 1` could get a greater fence than one expiring at
/// `u64::MAX`, and a peer sending such expiries made the index lose entries). Tied fences are
/// told apart by reading the entries.
fn expiry_fence((expiry, seq, _): &(Option<u64>, u64, NodeId)) -> u128 {
    let expiry = expiry.map_or(0, |at_ms| at_ms.saturating_add(1));
    let seq = if expiry == u64::MAX { 0 } else { *seq };
    (u128::from(expiry) << 64) | u128::from(seq)
}

/// The fence of a search past every entry that expires at `at_ms` or earlier: that expiry's
/// fence with the greatest sequence number (none for the two greatest expiries, whose fences
/// tie: the search reads the entries there).
pub(super) fn after_expiry_fence(at_ms: u64) -> u128 {
    expiry_fence(&(Some(at_ms), u64::MAX, NodeId(u64::MAX)))
}

/// The fence of the key index: a key's first 16 bytes, big-endian, padded with zeros (a
/// padding zero sorts no later than any byte, so the fence never disagrees with byte order).
pub(super) fn key_fence(key: &[u8]) -> u128 {
    let mut bytes = [0; 16];
    let len = key.len().min(16);
    bytes[..len].copy_from_slice(&key[..len]);
    u128::from_be_bytes(bytes)
}

/// The fence of the entry `id` in the key index.
pub(super) fn key_fence_of(slab: &Slab) -> impl Fn(u32) -> u128 + '_ {
    |id| key_fence(slab.get(id).key())
}

/// The place of `target` in `index`, whose ids are in `order`.
pub(super) fn seek<K: Ord>(index: &Ordered, slab: &Slab, order: &Order<K>, target: K) -> Position {
    index.seek((order.fence)(&target), |id| (order.key)(slab.get(id)) < target)
}

/// The place of `id` in `index`, whose ids are in `order`, then in id order. Dots are unique
/// per write, but a peer could send two writes with one dot; the ids keep the order total, so
/// each entry is still found and removed exactly.
fn place_of<K: Ord>(index: &Ordered, slab: &Slab, order: &Order<K>, id: u32) -> Position {
    let key = (order.key)(slab.get(id));
    let fence = (order.fence)(&key);
    let target = (key, id);
    index.seek(fence, |other| ((order.key)(slab.get(other)), other) < target)
}

/// Adds `id` to `index`, in `order`.
pub(super) fn add<K: Ord>(index: &mut Ordered, slab: &Slab, order: &Order<K>, id: u32) {
    let at = place_of(index, slab, order, id);
    index.insert(at, id, |id| (order.fence)(&(order.key)(slab.get(id))));
}

/// Takes `id` out of `index`, in `order`: found by its fence and then by the id itself
/// (`Ordered::find_id`), without reading other entries; by a search when many chunks tie.
pub(super) fn take<K: Ord>(index: &mut Ordered, slab: &Slab, order: &Order<K>, id: u32) {
    let fence = |id| (order.fence)(&(order.key)(slab.get(id)));
    let searched =
        || Some(place_of(index, slab, order, id)).filter(|&at| index.get(at) == Some(id));
    let found = index.find_id(fence(id), id, order.spread).or_else(searched);
    debug_assert!(found.is_some(), "every held entry is in its indexes");
    if let Some(at) = found {
        index.remove(at, fence);
    }
}
