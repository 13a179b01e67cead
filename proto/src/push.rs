//! Eager push: writes forwarded down each origin's tree, batched per peer.
//!
//! [`Pushes`] owns the per-peer outboxes (writes, the dots whose writer wants an `Ack`, and
//! acknowledgements to send), the batching deadline, and the cache of this node's children
//! in each origin's tree (`tree.rs`). `Node::forward` and `Node::flush` (in `exchange.rs`)
//! connect it to the membership, the counters and the transmit queue, so that this module
//! does not depend on the node that owns it.

use std::collections::BTreeMap;

use crate::clock::NodeId;
use crate::limits::{MEMBERS_MAX, PUSH_QUEUE_SIZE_MAX};
use crate::membership::{MemberState, Members};
use crate::message::Body;
use crate::store::Update;
use crate::version::Dot;

/// Writes queued for one peer, sent together when the batching window closes.
#[derive(Clone, Debug, Default)]
struct Outbox {
    updates: Vec<Update>,
    acks_wanted: Vec<Dot>,
    acks: Vec<Dot>,
    /// Bound on the encoded size of `updates`, checked against `PUSH_QUEUE_SIZE_MAX`.
    size: usize,
}

/// The eager-push state of one node: outboxes, batching deadline, tree cache.
#[derive(Clone, Debug)]
pub(crate) struct Pushes {
    outboxes: BTreeMap<NodeId, Outbox>,
    flush_at_ms: Option<u64>,
    /// This node's children in each origin's tree, computed on first use and forgotten
    /// whenever membership changes (a tree depends only on the live members).
    children: BTreeMap<NodeId, Vec<NodeId>>,
    batch_ms: u64,
    fanout: usize,
    /// Size a push message aims at (`Config::delta_page_size_target`).
    page_size: usize,
}

impl Pushes {
    /// Nothing queued; pushes batched for `batch_ms`, trees `fanout` wide, messages split
    /// near `page_size`.
    pub(crate) fn new(batch_ms: u64, fanout: usize, page_size: usize) -> Pushes {
        Pushes {
            outboxes: BTreeMap::new(),
            flush_at_ms: None,
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

    /// This node's (`me`) children in `origin`'s tree over the `Alive` members, cached per
    /// origin so a forwarded write costs a lookup, not a sort of every member.
    pub(crate) fn children(
        &mut self,
        origin: NodeId,
        me: NodeId,
        members: &Members,
    ) -> Vec<NodeId> {
        if let Some(children) = self.children.get(&origin) {
            return children.clone();
        }
        let live: Vec<NodeId> = members.peers_in(&[MemberState::Alive]).map(|m| m.id).collect();
        let children = crate::tree::children(origin, me, &live, self.fanout);
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

    /// Queues `update` for `peer`, asking for an `Ack` when `ack`. Returns false when the
    /// peer's outbox is full and the update was dropped (anti-entropy delivers it instead).
    pub(crate) fn queue(&mut self, peer: NodeId, update: &Update, ack: bool, now_ms: u64) -> bool {
        let outbox = self.outboxes.entry(peer).or_default();
        if outbox.size + update.size_bound() > PUSH_QUEUE_SIZE_MAX {
            return false;
        }
        outbox.size += update.size_bound();
        outbox.updates.push(update.clone());
        if ack {
            outbox.acks_wanted.push(update.dot());
        }
        self.schedule(now_ms);
        true
    }

    /// Queues an acknowledgement of `dot` for its writer `peer`.
    pub(crate) fn queue_ack(&mut self, peer: NodeId, dot: Dot, now_ms: u64) {
        self.outboxes.entry(peer).or_default().acks.push(dot);
        self.schedule(now_ms);
    }

    fn schedule(&mut self, now_ms: u64) {
        let at = now_ms + self.batch_ms;
        self.flush_at_ms = Some(self.flush_at_ms.map_or(at, |current| current.min(at)));
    }

    /// Empties every outbox: per peer, the messages to send, acknowledgements first, then
    /// pushes split below the page target (a single large update goes alone).
    pub(crate) fn take(&mut self) -> Vec<(NodeId, Vec<Body>)> {
        self.flush_at_ms = None;
        let outboxes = std::mem::take(&mut self.outboxes);
        let page_size = self.page_size;
        outboxes.into_iter().map(|(peer, outbox)| (peer, outbox.into_bodies(page_size))).collect()
    }

    /// Drops everything queued: the state the writes came from is gone.
    pub(crate) fn clear(&mut self) {
        self.outboxes.clear();
        self.flush_at_ms = None;
    }
}

impl Outbox {
    fn into_bodies(self, page_size: usize) -> Vec<Body> {
        let mut bodies = Vec::new();
        if !self.acks.is_empty() {
            bodies.push(Body::Ack(self.acks));
        }
        let mut updates = Vec::new();
        let mut size = 0;
        for update in self.updates {
            if size + update.size_bound() > page_size && !updates.is_empty() {
                bodies.push(push(std::mem::take(&mut updates), &self.acks_wanted));
                size = 0;
            }
            size += update.size_bound();
            updates.push(update);
        }
        if !updates.is_empty() {
            bodies.push(push(updates, &self.acks_wanted));
        }
        bodies
    }
}

/// A push of `updates`, asking for acknowledgements of those among `acks_wanted`.
fn push(updates: Vec<Update>, acks_wanted: &[Dot]) -> Body {
    let acks = acks_wanted
        .iter()
        .filter(|dot| updates.iter().any(|u| u.dot() == **dot))
        .copied()
        .collect();
    Body::Push { updates, acks }
}
