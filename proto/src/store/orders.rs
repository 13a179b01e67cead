//! The orders the store's indexes keep (`Ordered`), each with its fence: a `u128` that orders
//! like the entries but coarser, so an index can find a chunk by comparing fences side by
//! side (see `ordered.rs`).

use super::ordered::{Ordered, Position};
use super::slab::{Held, Slab};
use crate::version::Dot;

/// An order of entries: their sort key, and the fence of a sort key. A fence must never
/// disagree with the order: `a < b` implies `fence(a) <= fence(b)`.
pub(super) struct Order<K> {
    pub(super) key: fn(Held<'_>) -> K,
    pub(super) fence: fn(&K) -> u128,
}

/// The dot and tombstone indexes: by dot (writer, then sequence number); fenced exactly.
pub(super) const BY_DOT: Order<Dot> = Order { key: |held| held.dot(), fence: dot_fence };

/// The expiry index: by expiry, then dot (unique, so the order is total); fenced by expiry,
/// then writer.
pub(super) const BY_EXPIRY: Order<(Option<u64>, Dot)> =
    Order { key: |held| (held.expires_at_ms(), held.dot()), fence: expiry_fence };

fn dot_fence(dot: &Dot) -> u128 {
    (u128::from(dot.node.0) << 64) | u128::from(dot.seq)
}

/// No expiry before every expiry, an expiry `e` as `e + 1`; the two greatest expiries share
/// that high half, so they get no writer part (found in review: with one, an entry expiring
/// at `u64::MAX - 1` could get a greater fence than one expiring at `u64::MAX`, and a peer
/// sending such expiries made the index lose entries). Tied fences are told apart by reading
/// the entries.
fn expiry_fence((expiry, dot): &(Option<u64>, Dot)) -> u128 {
    let expiry = expiry.map_or(0, |at_ms| at_ms.saturating_add(1));
    let writer = if expiry == u64::MAX { 0 } else { dot.node.0 };
    (u128::from(expiry) << 64) | u128::from(writer)
}

/// The fence of a search past every entry that expires at `at_ms` or earlier: that expiry's
/// fence with the greatest writer.
pub(super) fn after_expiry_fence(at_ms: u64) -> u128 {
    let last = Dot { node: crate::clock::NodeId(u64::MAX), seq: u64::MAX };
    expiry_fence(&(Some(at_ms), last))
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
    let found = index.find_id(fence(id), id).or_else(searched);
    debug_assert!(found.is_some(), "every held entry is in its indexes");
    if let Some(at) = found {
        index.remove(at, fence);
    }
}
