//! Eager push: writes forwarded down each origin's tree, batched per peer.
//!
//! [`Pushes`] owns the per-peer outboxes (writes, the dots whose writer wants an `Ack`, and
//! acknowledgements to send), the batching deadline, and the cache of this node's children
//! in each origin's tree (`tree.rs`). `Node::forward` and `Node::flush` (in `exchange.rs`)
//! connect it to the membership, the counters and the transmit queue, so that this module
//! does not depend on the node that owns it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::clock::NodeId;
use crate::limits::{MEMBERS_MAX, PUSH_QUEUE_SIZE_MAX};
use crate::membership::{MemberState, Members};
use crate::message::Body;
use crate::store::Update;
use crate::version::Dot;

/// What is queued for one peer until the batching window closes: which of the queued writes
/// go to it (indices into `Pushes::updates`) and the acknowledgements to send it.
#[derive(Clone, Debug, Default)]
struct Outbox {
    updates: Vec<usize>,
    acks: Vec<Dot>,
    /// Bound on the encoded size of its writes, checked against `PUSH_QUEUE_SIZE_MAX`.
    size: usize,
}

/// Queued writes whose room a node keeps between batches (per peer, and once for the writes
/// themselves, about 80 bytes each): a steady stream of writes reuses its buffers instead of
/// growing them again for every batch, and a burst gives the rest back.
const PUSH_BATCH_KEPT: usize = 1024;

/// A queued write and whether its writer wants an `Ack` for it.
#[derive(Clone, Debug)]
struct Queued {
    update: Update,
    ack: bool,
}

/// The eager-push state of one node: the queued writes, kept once however many peers they go
/// to, the per-peer outboxes, the batching deadline, and the tree cache.
#[derive(Clone, Debug)]
pub(crate) struct Pushes {
    updates: Vec<Queued>,
    outboxes: BTreeMap<NodeId, Outbox>,
    flush_at_ms: Option<u64>,
    /// Something queued is awaited: a write whose writer wants acknowledgements, or an
    /// acknowledgement for one.
    awaited: bool,
    /// This node's children in each origin's tree, computed on first use and forgotten
    /// whenever membership changes (a tree depends only on the live members).
    children: BTreeMap<NodeId, Arc<[NodeId]>>,
    batch_ms: u64,
    fanout: usize,
    /// Size a push message aims at (`Config::delta_page_size_target`).
    page_size: usize,
}

/// Messages a flush sends: each body goes to every peer listed with it (peers whose outboxes
/// held the same writes share the message, so it is encoded once).
pub(crate) type Flushed = Vec<(Vec<NodeId>, Body)>;

impl Pushes {
    /// Nothing queued; pushes batched for `batch_ms`, trees `fanout` wide, messages split
    /// near `page_size`.
    pub(crate) fn new(batch_ms: u64, fanout: usize, page_size: usize) -> Pushes {
        Pushes {
            updates: Vec::new(),
            outboxes: BTreeMap::new(),
            flush_at_ms: None,
            awaited: false,
            children: BTreeMap::new(),
            batch_ms,
            fanout,
            page_size,
        }
    }

    /// When the batching window of the queued pushes closes, if any are queued.
    pub(crate) fn flush_at_ms(&self) -> Option<u64> {
        self.flush_at_ms
    }

    /// Whether a client waits on something queued (see [`crate::Node::pushes_awaited`]).
    pub(crate) fn awaited(&self) -> bool {
        self.awaited
    }

    /// This node's (`me`) children in `origin`'s tree over the `Alive` members, cached per
    /// origin so a forwarded write costs a lookup, not a sort of every member.
    pub(crate) fn children(
        &mut self,
        origin: NodeId,
        me: NodeId,
        members: &Members,
    ) -> Arc<[NodeId]> {
        if let Some(children) = self.children.get(&origin) {
            return children.clone();
        }
        let live: Vec<NodeId> = members.peers_in(&[MemberState::Alive]).map(|m| m.id).collect();
        let children: Arc<[NodeId]> = crate::tree::children(origin, me, &live, self.fanout).into();
        // Origins include retired writers; bound the cache by the member limit.
        if self.children.len() >= MEMBERS_MAX {
            self.children.clear();
        }
        self.children.insert(origin, children.clone());
        children
    }

    /// Forgets every cached tree: membership changed, or this node's identity did.
    pub(crate) fn forget_trees(&mut self) {
        self.children.clear();
    }

    /// Queues `update` once for each of `peers`, asking for an `Ack` when `ack`. Returns how
    /// many peers' outboxes were full, so that it was dropped for them (anti-entropy delivers
    /// it instead).
    pub(crate) fn queue(
        &mut self,
        peers: impl IntoIterator<Item = NodeId>,
        update: &Update,
        ack: bool,
        now_ms: u64,
    ) -> u64 {
        let index = self.updates.len();
        let (mut queued, mut dropped) = (false, 0);
        for peer in peers {
            let outbox = self.outboxes.entry(peer).or_default();
            if outbox.size + update.size_bound() > PUSH_QUEUE_SIZE_MAX {
                dropped += 1;
                continue;
            }
            outbox.size += update.size_bound();
            outbox.updates.push(index);
            queued = true;
        }
        if queued {
            self.awaited |= ack;
            self.updates.push(Queued { update: update.clone(), ack });
            self.schedule(now_ms);
        }
        dropped
    }

    /// Queues an acknowledgement of `dot` for its writer `peer`.
    pub(crate) fn queue_ack(&mut self, peer: NodeId, dot: Dot, now_ms: u64) {
        self.outboxes.entry(peer).or_default().acks.push(dot);
        self.awaited = true;
        self.schedule(now_ms);
    }

    fn schedule(&mut self, now_ms: u64) {
        let at = now_ms + self.batch_ms;
        self.flush_at_ms = Some(self.flush_at_ms.map_or(at, |current| current.min(at)));
    }

    /// Empties every outbox: the messages to send and to whom. Acknowledgements come first,
    /// then pushes, split below the page target (a single large update goes alone); peers
    /// whose outboxes hold the same writes are sent the same messages.
    pub(crate) fn take(&mut self) -> Flushed {
        self.flush_at_ms = None;
        self.awaited = false;
        let mut flushed = Flushed::new();
        let mut shared: BTreeMap<&[usize], Vec<NodeId>> = BTreeMap::new();
        for (&peer, outbox) in &mut self.outboxes {
            if !outbox.acks.is_empty() {
                flushed.push((vec![peer], Body::Ack(std::mem::take(&mut outbox.acks))));
            }
            if !outbox.updates.is_empty() {
                shared.entry(&outbox.updates).or_default().push(peer);
            }
        }
        for (indices, peers) in shared {
            for body in bodies(&self.updates, indices, self.page_size) {
                flushed.push((peers.clone(), body));
            }
        }
        // The buffers stay for the next batch (within a bound); a peer sent nothing goes.
        self.outboxes.retain(|_, outbox| {
            let used = !outbox.updates.is_empty();
            outbox.updates.clear();
            outbox.updates.shrink_to(PUSH_BATCH_KEPT);
            outbox.size = 0;
            used
        });
        self.updates.clear();
        self.updates.shrink_to(PUSH_BATCH_KEPT);
        flushed
    }

    /// Drops everything queued: the state the writes came from is gone.
    pub(crate) fn clear(&mut self) {
        self.updates.clear();
        self.outboxes.clear();
        self.awaited = false;
        self.flush_at_ms = None;
    }
}

/// The pushes carrying the writes at `indices` of `queued`, split below `page_size` (a single
/// larger write goes alone), each asking for acknowledgement of those whose writer wants it.
fn bodies(queued: &[Queued], indices: &[usize], page_size: usize) -> Vec<Body> {
    let mut bodies = Vec::new();
    let (mut updates, mut acks, mut size) = (Vec::with_capacity(indices.len()), Vec::new(), 0);
    for queued in indices.iter().map(|&index| &queued[index]) {
        let bound = queued.update.size_bound();
        if size + bound > page_size && !updates.is_empty() {
            bodies.push(Body::Push {
                updates: std::mem::take(&mut updates),
                acks: std::mem::take(&mut acks),
            });
            size = 0;
        }
        size += bound;
        if queued.ack {
            acks.push(queued.update.dot());
        }
        updates.push(queued.update.clone());
    }
    if !updates.is_empty() {
        bodies.push(Body::Push { updates, acks });
    }
    bodies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Hlc, Stamp};
    use crate::data::{Key, Value};

    fn update(seq: u64) -> Update {
        Update {
            key: Key::new(format!("k{seq}")).unwrap(),
            stamp: Stamp { hlc: Hlc::new(1_000, 0), node: NodeId(1) },
            seq,
            value: Some(Value::new("v").unwrap()),
            expires_at_ms: None,
        }
    }

    fn keys(body: &Body) -> Vec<u64> {
        match body {
            Body::Push { updates, .. } => updates.iter().map(|u| u.seq).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn peers_with_the_same_writes_share_a_message_and_the_others_get_their_own() {
        let (a, b, c) = (NodeId(2), NodeId(3), NodeId(4));
        let mut pushes = Pushes::new(2, 6, 64 * 1024);
        assert_eq!(pushes.queue([a, b, c], &update(1), false, 0), 0);
        assert_eq!(pushes.queue([a, b], &update(2), true, 0), 0);
        pushes.queue_ack(c, Dot { node: NodeId(9), seq: 7 }, 0);
        assert!(pushes.awaited());
        let flushed = pushes.take();
        assert!(!pushes.awaited() && pushes.flush_at_ms().is_none());
        let to = |peers: &[NodeId]| flushed.iter().filter(|(p, _)| p == peers).collect::<Vec<_>>();
        let ab = to(&[a, b]);
        assert_eq!(ab.len(), 1, "a and b share one push");
        assert_eq!(keys(&ab[0].1), [1, 2]);
        let Body::Push { acks, .. } = &ab[0].1 else { panic!("a push") };
        assert_eq!(acks, &[Dot { node: NodeId(1), seq: 2 }], "only the waited write asks");
        let c_only = to(&[c]);
        assert!(matches!(c_only[0].1, Body::Ack(_)), "acknowledgements go first");
        assert_eq!(keys(&c_only[1].1), [1]);
        assert_eq!(flushed.len(), 3);
        // Nothing stays queued, and the next batch starts from indices 0 again.
        assert!(pushes.take().is_empty());
        pushes.queue([a], &update(3), false, 0);
        assert_eq!(keys(&pushes.take()[0].1), [3]);
    }
}
