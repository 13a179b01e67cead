//! How a [`Node`] handles gossip messages: anti-entropy rounds, eager pushes, acknowledgements
//! and the fence.
//!
//! An anti-entropy round between A (initiator) and B is Scuttlebutt's push-pull:
//!
//! 1. A -> B `Syn`: A's record and digest (heartbeats of every member, version vector bases).
//! 2. B -> A `SynAck`: B's record and digest, the member records A lacks; then `Delta` pages
//!    with the writes A lacks, on the bulk lane.
//! 3. A -> B `Members` with the records B lacks, if any; then `Delta` pages for B.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;

use crate::clock::{Clock, NodeId};
use crate::event::Event;
use crate::horizon::Horizon;
use crate::limits::SYNC_PAGES_MAX;
use crate::message::{Addr, Body, Digest, Envelope, MessageError, Record, Replaced, ResetReason};
use crate::node::{Node, streams_recently};
use crate::push::Queue;
use crate::store::{Applied, Delta, Group, Store, Update, WARM_GROUP};
use crate::transmit::Lane;
use crate::version::Dot;

impl Node {
    /// Handles one message received from `from` at `now_ms`. The caller decodes it first
    /// with [`Envelope::decode`], outside any lock it holds: decoding a delta page costs far
    /// more than merging most messages. Peer input never panics the node: an envelope that
    /// breaks a bound (checked again here, so one built by hand is held to the same rules)
    /// yields an error, and nothing else changes.
    pub fn handle_message(
        &mut self,
        now_ms: u64,
        from: Addr,
        envelope: Envelope,
    ) -> Result<(), MessageError> {
        self.assert_drained();
        envelope.body.validate()?;
        self.stats.messages_received += 1;
        self.dispatch(now_ms, from, envelope);
        self.after_call(now_ms);
        Ok(())
    }

    fn dispatch(&mut self, now_ms: u64, from: Addr, Envelope { sender, body }: Envelope) {
        if sender == self.config.id {
            return;
        }
        if self.members.is_removed(sender)
            && !matches!(body, Body::Reset { .. })
            && !announces_left(&body)
        {
            let reset = Body::Reset { id: sender, reason: ResetReason::Removed };
            self.send(from, Lane::Control, reset);
            return;
        }
        self.members.heard_from(sender, now_ms);
        match body {
            Body::Syn { sender: record, digest } => self.answer_syn(now_ms, &from, record, &digest),
            Body::SynAck { sender: record, digest, records } => {
                self.answer_syn_ack(now_ms, &from, record, &digest, &records);
            }
            Body::Members(records) => self.merge_records(now_ms, &records),
            Body::Delta { receiver, bases, horizon, delta, more, pull } => {
                // A page computed for an earlier identity of this node (before it dropped its
                // state) skips writes that state had; applied now, its ranges would overclaim
                // (found by chorus-sim, seed 1781 of `--long-partitions`).
                if receiver == self.config.id
                    && self.merge_delta(now_ms, sender, &bases, &horizon, delta)
                {
                    if !more {
                        // The last page of a round: this node holds what the sender had then,
                        // but for writes held back for skew (theirs to resend) and writes on
                        // their way as pushes (`first_page`).
                        self.caught_up = true;
                    }
                    if pull {
                        self.pull_more(now_ms, sender);
                    }
                }
            }
            Body::Push { updates, acks, replaced } => {
                self.merge_push(now_ms, sender, updates, &acks, &replaced);
            }
            Body::Ack(dots) => {
                for dot in dots {
                    self.waits.confirm(sender, dot);
                }
            }
            Body::Reset { id, reason } => {
                // Only nodes holding the cluster key can send this (mutual TLS), and it names
                // the identity it fences, so a late copy cannot reset a new identity again.
                // A leaving node ignores it: that identity is being retired anyway. Only the
                // identity goes; whether the state may stay is for the horizon check.
                if id == self.config.id && !self.leaving && !reason.dropped_state() {
                    self.renew(now_ms, reason, from);
                }
            }
        }
    }

    /// Takes the answer to a round this node opened: the members it lacked, then (when the
    /// two states may exchange writes) the delta pages the peer lacks.
    fn answer_syn_ack(
        &mut self,
        now_ms: u64,
        from: &Addr,
        record: Record,
        digest: &Digest,
        records: &[Record],
    ) {
        self.merge_records(now_ms, records);
        let Some(exchange) = self.merge_digest(now_ms, from, &record, digest) else {
            return;
        };
        let missing = self.members.missing_records(&digest.members);
        if !missing.is_empty() {
            self.send(record.addr.clone(), Lane::Control, Body::Members(missing));
        }
        if exchange {
            self.send_delta(record.addr, record.heartbeat.id, digest);
            if !self.joined {
                self.joined = true;
                self.emit(Event::Joined);
            }
            self.check_caught_up(&digest.bases);
        }
    }

    /// Answers a round's opening: `SynAck` with the records the initiator lacks, then the
    /// delta pages it lacks when the two states may exchange writes.
    fn answer_syn(&mut self, now_ms: u64, from: &Addr, record: Record, digest: &Digest) {
        let Some(exchange) = self.merge_digest(now_ms, from, &record, digest) else {
            return;
        };
        let records = self.members.missing_records(&digest.members);
        let digest_back = self.digest(&record.addr, now_ms);
        let reply =
            Body::SynAck { sender: self.members.own_record(), digest: digest_back, records };
        self.send(record.addr.clone(), Lane::Control, reply);
        if exchange {
            self.send_delta(record.addr, record.heartbeat.id, digest);
            self.check_caught_up(&digest.bases);
        }
    }

    /// The digest this node sends to `to` at `now_ms`.
    pub(crate) fn digest(&self, to: &Addr, now_ms: u64) -> Digest {
        Digest {
            members: self.members.heartbeats(),
            bases: self.store.vector().bases().clone(),
            streams: self.streams(now_ms),
            horizon: self.store.horizon().clone(),
            rank: self.rank(),
            clock: self.clock_stamp(to, now_ms),
        }
    }

    /// A node that holds everything a peer's digest says the peer has is caught up, whatever
    /// pages are still in flight; otherwise the last page of a round will say so.
    fn check_caught_up(&mut self, theirs: &BTreeMap<NodeId, u64>) {
        let ours = self.store.vector();
        if !self.caught_up && theirs.iter().all(|(node, seq)| ours.base(*node) >= *seq) {
            self.caught_up = true;
        }
    }

    /// How much this node's state counts when two states conflict: the writes it has seen,
    /// or 0 while it is settling after a drop. It belongs to the state, not to the node's
    /// view, so every pair of nodes orders two conflicting states the same way; ranking by
    /// the live members each node saw made both states win some pairs after a heal, and nodes
    /// dropped their states back and forth for good (chorus-sim, seed 1882).
    fn rank(&self) -> u64 {
        if self.is_settling() {
            return 0;
        }
        self.store.vector().bases().values().fold(0, |sum, seq| sum.saturating_add(*seq))
    }

    /// Opens an anti-entropy round with `to`.
    pub(crate) fn send_syn(&mut self, to: Addr, now_ms: u64) {
        let digest = self.digest(&to, now_ms);
        let body = Body::Syn { sender: self.members.own_record(), digest };
        self.send(to, Lane::Control, body);
    }

    /// Merges a peer's record and digest. Returns whether to exchange state with it, or `None`
    /// when this node took a new identity and the round is over: the peer restarted from older
    /// state than it reported before (it is told to renew), or this node's state was behind the
    /// peer's collections and it dropped it.
    ///
    /// Two states exchange writes only when each is safe against what the other collected (see
    /// `horizon.rs`). When only this one is behind, it drops its state; when each is behind
    /// the other, the one that has seen fewer writes does (then the lower id), so the side of
    /// a long partition that wrote more keeps what it wrote.
    fn merge_digest(
        &mut self,
        now_ms: u64,
        from: &Addr,
        record: &Record,
        digest: &Digest,
    ) -> Option<bool> {
        let mut changes = Vec::new();
        self.members.merge_record(now_ms, record, true, &mut changes);
        for beat in &digest.members {
            self.members.merge_heartbeat(now_ms, beat, &mut changes);
        }
        self.member_changes(changes);
        let peer = record.heartbeat.id;
        self.clock_heard(peer, from, &digest.clock, now_ms);
        if self.members.set_bases(&record.heartbeat, &digest.bases).is_err() {
            let reset = Body::Reset { id: peer, reason: ResetReason::Regressed };
            self.send(from.clone(), Lane::Control, reset);
            return Some(false);
        }
        self.waits.confirm_by_bases(peer, &digest.bases);
        self.check_handoff();
        let ours_safe = self.store.is_safe_against(&digest.horizon);
        let theirs_safe = digest.horizon.is_safe_against(&digest.bases, self.store.horizon());
        if ours_safe && theirs_safe {
            return Some(true);
        }
        self.stats.exchanges_refused += 1;
        let outranked = (self.rank(), self.config.id) < (digest.rank, peer);
        let settling = self.is_settling();
        if !ours_safe && (theirs_safe || outranked) && !self.leaving && !settling {
            self.renew(now_ms, ResetReason::Pruned, from.clone());
            return None;
        }
        Some(false)
    }

    fn merge_records(&mut self, now_ms: u64, records: &[Record]) {
        let mut changes = Vec::new();
        for record in records {
            self.members.merge_record(now_ms, record, false, &mut changes);
        }
        self.member_changes(changes);
    }

    /// Sends the pages of writes a peer (identity `receiver`) with the bases of its `digest`
    /// lacks, up to `SYNC_PAGES_MAX`; the writers it receives as streams of pushes are left to
    /// them when the round fits one page (`first_page`).
    fn send_delta(&mut self, to: Addr, receiver: NodeId, digest: &Digest) {
        let bases = &digest.bases;
        let mut cursor = bases.clone();
        for page in 0..SYNC_PAGES_MAX {
            let page_size = self.config.delta_page_size_target;
            let (mut delta, last, mut left_out) = match page {
                0 => self.first_page(bases, &digest.streams),
                _ => {
                    let (delta, last) = self.store.delta(&cursor, page_size);
                    (delta, last, false)
                }
            };
            if self.config.sabotage.page_claims_whole_range && !last {
                for group in &mut delta.groups {
                    group.to = self.store.vector().base(group.node);
                }
            }
            delta.advance(&mut cursor);
            if page == 0 && last {
                // The ranges skip writes replaced here; their replacements must travel with
                // them, including those held above this node's own bases (found by chorus-sim:
                // without them the receiver counted a write seen that it never got). Those go
                // even without ranges: above a write of a departed node that nobody received,
                // nothing else ever carries them (chorus-sim: lasting divergence). Digests do
                // not carry the receiver's dot cloud, so one that holds them already gets
                // them again each round, until their keys are written again.
                let size: usize =
                    delta.groups.iter().flat_map(|g| &g.updates).map(|u| u.size_bound()).sum();
                let room = page_size.saturating_sub(size);
                let mut unsettled = self.store.unsettled(bases, room);
                // Needed by no range when every range is whole, and on their way as pushes.
                if delta.groups.iter().all(Group::is_whole) {
                    let count = unsettled.len();
                    let streams: BTreeSet<NodeId> = digest.streams.iter().copied().collect();
                    unsettled.retain(|group| !streams.contains(&group.node));
                    left_out |= unsettled.len() < count;
                }
                delta.groups.extend(unsettled);
            }
            // A page that leaves writes to the pushes still goes, empty or not: its receiver
            // counts itself caught up by the last page of a round.
            if delta.groups.is_empty() && !left_out {
                break;
            }
            let horizon = self.store.page_horizon(&cursor);
            let bases = self.store.vector().bases().clone();
            let pull = !last && page + 1 == SYNC_PAGES_MAX;
            let body = Body::Delta { receiver, bases, horizon, delta, more: !last, pull };
            self.send(to.clone(), Lane::Bulk, body);
            if last {
                break;
            }
        }
    }

    /// The first page of a round for a peer with `bases`. When the peer receives some
    /// writers as `streams` of pushes (`Digest::streams`), and the other writers' writes fit
    /// one page whose every range carries each of its writes, those writers are left out:
    /// their writes the peer lacks are still on their way as pushes. Sent here as well, a
    /// stream of writes reached a replica twice (up to a third of 300k pipelined SETs on three
    /// nodes). A range that skips a write replaced here must travel with the replacement, which
    /// may be one left out, so a page with such a range leaves nothing out. Returns the page,
    /// whether it is the round's last, and whether it left writes out.
    fn first_page(&self, bases: &BTreeMap<NodeId, u64>, streams: &[NodeId]) -> (Delta, bool, bool) {
        let page_size = self.config.delta_page_size_target;
        let vector = self.store.vector();
        let lacks = |node: &NodeId| vector.base(*node) > bases.get(node).copied().unwrap_or(0);
        let behind: Vec<NodeId> = streams.iter().copied().filter(lacks).collect();
        if !behind.is_empty() {
            let mut query = bases.clone();
            query.extend(behind.iter().map(|node| (*node, vector.base(*node))));
            let (delta, last) = self.store.delta(&query, page_size);
            if last && delta.groups.iter().all(Group::is_whole) {
                return (delta, true, true);
            }
        }
        let (delta, last) = self.store.delta(bases, page_size);
        (delta, last, false)
    }

    /// The writers this node receives as streams of pushes, for its digests at `now_ms`.
    fn streams(&self, now_ms: u64) -> Vec<NodeId> {
        let vector = self.store.vector();
        let streaming = |(node, at_ms): (&NodeId, &u64)| {
            (streams_recently(*at_ms, now_ms) && !vector.holds_above(*node)).then_some(*node)
        };
        self.streams.iter().filter_map(streaming).collect()
    }

    /// Asks `sender`, whose last page said it has more, for the next pages at once. One peer
    /// at a time: pages from several peers at once would carry the same writes several times.
    /// Another peer takes over only once the current one has sent nothing for a gossip
    /// interval (it may have gone, or its batch was lost).
    fn pull_more(&mut self, now_ms: u64, sender: NodeId) {
        if let Some((peer, until_ms)) = self.pulling
            && peer != sender
            && now_ms < until_ms
        {
            return;
        }
        let Some(addr) = self.members.peer(sender).map(|member| member.addr.clone()) else {
            return;
        };
        self.pulling = Some((sender, now_ms.saturating_add(self.config.gossip_interval_ms)));
        self.stats.pulls += 1;
        self.send_syn(addr, now_ms);
    }

    /// Merges a delta page, holding back writes stamped too far ahead: a group's covered
    /// range stops below the first of them, so it is sent again once the clock allows it.
    /// A page is refused whole when either state is behind the other's collections (its
    /// digest decides what happens next). Returns whether the page was merged.
    fn merge_delta(
        &mut self,
        now_ms: u64,
        sender: NodeId,
        bases: &BTreeMap<NodeId, u64>,
        horizon: &Horizon,
        mut delta: Delta,
    ) -> bool {
        if !self.store.is_safe_against(horizon)
            || !horizon.is_safe_against(bases, self.store.horizon())
        {
            self.stats.exchanges_refused += 1;
            return false;
        }
        let mut held_back = false;
        for group in &mut delta.groups {
            let mut accepted = Vec::with_capacity(group.updates.len());
            for update in std::mem::take(&mut group.updates) {
                if self.admit(now_ms, sender, &update) {
                    accepted.push(update);
                } else {
                    held_back = true;
                    group.to = group.to.min(update.seq.saturating_sub(1));
                }
            }
            group.updates = accepted;
        }
        if held_back {
            // A held-back write may be the replacement of a write that another group's range
            // skips (found by chorus-sim). Until it is admitted, no range counts a write this
            // page does not carry: each stops at its first gap.
            for group in &mut delta.groups {
                let mut to = group.from;
                for update in &group.updates {
                    if to.checked_add(1) != Some(update.seq) {
                        break;
                    }
                    to = update.seq;
                }
                group.to = group.to.min(to);
            }
        }
        for (update, applied) in self.store.apply_delta(delta, horizon) {
            self.observe(&update, &applied, now_ms);
            // A fresh write that reached this node by anti-entropy before its eager push did
            // is forwarded down its tree all the same: the push, arriving second, is a
            // duplicate and forwards nothing, so this node's subtree would wait for
            // anti-entropy (chorus-sim's glomers benchmark saw 600 ms instead of 200 ms).
            // Older writes are anti-entropy's to spread.
            let fresh = update.stamp.hlc.wall_ms() + self.config.gossip_interval_ms >= now_ms;
            if applied != Applied::Seen && fresh {
                let key_hash = self.store.key_hash(&update.key);
                let queue = Queue { update: &update, ack: false, key_hash, replaced: &[] };
                self.forward(queue, Some(sender), now_ms);
            }
        }
        true
    }

    /// Merges eagerly pushed writes, forwards those new here down their origin's tree, and
    /// acknowledges those whose writer waits. `replaced` names the writes the push left out
    /// because one of its writes replaced them (validated on decode: in order of that write).
    fn merge_push(
        &mut self,
        now_ms: u64,
        sender: NodeId,
        updates: Vec<Update>,
        acks: &[Dot],
        replaced: &[Replaced],
    ) {
        let mut runs = Vec::new();
        let mut rest = replaced;
        for (start, group) in (0..).step_by(WARM_GROUP).zip(updates.chunks(WARM_GROUP)) {
            let hashes = self.store.warm(group);
            for (index, (update, key_hash)) in (start..).zip(group.iter().zip(hashes)) {
                let count = rest.iter().take_while(|span| span.by as usize == index).count();
                let (mine, others) = rest.split_at(count);
                rest = others;
                runs.clear();
                runs.extend(mine.iter().map(|span| (span.first, span.last)));
                let ack = acks.contains(&update.dot());
                self.merge_pushed(now_ms, sender, Queue { update, ack, key_hash, replaced: &runs });
            }
        }
    }

    /// [`Node::merge_push`] of one write, as it is forwarded if new here: whether its writer
    /// wants an `Ack`, its key's hash (`Store::warm`) and the runs of writes it replaced.
    fn merge_pushed(&mut self, now_ms: u64, sender: NodeId, pushed: Queue<'_>) {
        let Queue { update, ack: wants_ack, key_hash, replaced } = pushed;
        if !self.admit(now_ms, sender, update) {
            return;
        }
        let dot = update.dot();
        if self.config.sabotage.ack_without_applying && wants_ack {
            self.pushes.queue_ack(dot.node, dot, now_ms);
            return;
        }
        // The writes it replaced first, so that a stream of them stays contiguous here.
        for &(first, last) in replaced {
            self.store.see_replaced(dot.node, first, last);
        }
        let applied = self.store.apply_hashed(update, key_hash);
        self.observe(update, &applied, now_ms);
        if applied != Applied::Seen {
            if self.store.vector().base(dot.node) >= dot.seq {
                // Contiguous: the writer's writes reach this node as a stream of pushes.
                self.streams.insert(dot.node, now_ms);
            } else {
                self.stats.updates_ahead += 1;
            }
            self.forward(pushed, Some(sender), now_ms);
        }
        if wants_ack && dot.node != self.config.id {
            self.pushes.queue_ack(dot.node, dot, now_ms);
        }
    }

    /// The skew guard: whether a remote write's stamp is close enough to the local clock.
    fn admit(&mut self, now_ms: u64, sender: NodeId, update: &Update) -> bool {
        if self.config.sabotage.skip_skew_guard {
            // Sabotage: trust the stamp, and let the clock follow it so local writes still win.
            let _ = self.clock.observe(update.stamp.hlc, update.stamp.hlc.wall_ms());
            return true;
        }
        match self.clock.check(update.stamp.hlc, now_ms) {
            Ok(()) => true,
            Err(skew) => {
                self.stats.skew_refused += 1;
                self.stats.skew_ms_max = self.stats.skew_ms_max.max(skew.ahead_ms);
                *self.stats.skew_by_peer.entry(update.stamp.node).or_insert(0) += 1;
                self.emit(Event::Skew { peer: sender, ahead_ms: skew.ahead_ms });
                false
            }
        }
    }

    /// Observes a merged write's stamp and reports the change it made.
    fn observe(&mut self, update: &Update, applied: &Applied, now_ms: u64) {
        if *applied == Applied::Seen {
            self.stats.updates_duplicate += 1;
            return;
        }
        // Admitted writes are within the skew bound, so observing cannot fail.
        let _ = self.clock.observe(update.stamp.hlc, now_ms);
        self.changed(update, applied, now_ms);
    }
}

/// Whether a message says its sender is leaving (a leaving node is not told to reset).
fn announces_left(body: &Body) -> bool {
    match body {
        Body::Syn { sender, .. } | Body::SynAck { sender, .. } => sender.heartbeat.left,
        _ => false,
    }
}

/// Rounds after dropping its state during which a node counts as settling: it
/// yields to every established state and refuses, rather than drops again, on a second
/// conflict. Without it, a node that first copied a losing state flipped between two
/// conflicting states as fast as messages arrived (chorus-sim, `--long-partitions`).
const SETTLE_ROUNDS: u64 = 4;

/// The fence's consequence: a new identity, with or without the state.
impl Node {
    /// Takes a new identity and rejoins through every address it knew. The state goes too
    /// when `reason` says it is behind a peer's collections; otherwise it stays, and the
    /// horizon check of the next exchanges decides whether it may (a removed identity that
    /// missed no collected delete loses nothing).
    pub(crate) fn renew(&mut self, now_ms: u64, reason: ResetReason, via: Addr) {
        let old = self.config.id;
        let mut new = NodeId(self.rng.next_u64());
        while new == old || new.0 == 0 || self.members.is_removed(new) {
            new = NodeId(self.rng.next_u64());
        }
        if reason.dropped_state() {
            self.settle_rounds = SETTLE_ROUNDS;
            for outcome in self.waits.abandon() {
                self.emit(Event::WaitDone(outcome));
            }
            self.store = Store::keyed(self.config.hash_key());
            self.streams.clear();
            self.pushes.clear();
            self.joined = false;
            self.caught_up = false;
            self.expiry_cursor_ms = now_ms;
        }
        self.journal_renamed(old, reason.dropped_state());
        self.config.id = new;
        self.config.incarnation = 0;
        let last = self.clock.last();
        self.clock = Clock::new(new, self.config.clock_skew_ms_max);
        let _ = self.clock.observe(last, last.wall_ms());
        self.members.rename(new, now_ms);
        self.pushes.forget_trees();
        self.stats.resets += 1;
        self.emit(Event::Reset { old, new, reason });
        // Only through the peer that prompted it: after a drop that is the peer whose state
        // won, and messages to every known address at once would come back as a storm.
        self.send_syn(via, now_ms);
    }
}

/// Eager push: the node's side of [`crate::push::Pushes`].
impl Node {
    /// Queues a write for this node's children in its origin's tree, except `from` (the
    /// peer it came from) and the origin itself.
    pub(crate) fn forward(&mut self, queue: Queue<'_>, from: Option<NodeId>, now_ms: u64) {
        let origin = queue.update.stamp.node;
        let children = self.pushes.children(origin, self.config.id, &self.members);
        let to = children.iter().copied().filter(|&child| Some(child) != from && child != origin);
        self.stats.pushes_dropped += self.pushes.queue(to, queue, now_ms);
    }

    /// Sends every queued push and acknowledgement to peers still known; a message bound for
    /// several peers is built once and shared (so the driver encodes it once).
    pub(crate) fn flush(&mut self) {
        for (peers, body) in self.pushes.take() {
            let to: Vec<Addr> = peers
                .iter()
                .filter_map(|&peer| self.members.peer(peer).map(|m| m.addr.clone()))
                .collect();
            self.send_shared(to, Lane::Control, body);
        }
    }
}
