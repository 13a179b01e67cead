//! Membership: who is in the cluster, where they are, and whether they are alive.
//!
//! Each node publishes a heartbeat counter that rides every anti-entropy digest. A
//! phi-accrual failure detector (Hayashibara et al., as in Cassandra and chitchat) turns the
//! gaps between heartbeat increases into a suspicion level: `Suspect` above one threshold,
//! `Dead` above another. `Left` is announced by the member itself. Dead and left members are
//! removed after a grace period, and a bounded record of removed identities fences them out.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::clock::NodeId;
use crate::limits::{MEMBERS_MAX, PHI_GAP_INTERVALS_MAX, PHI_WINDOW_SIZE, REMOVED_MAX};
use crate::message::{Addr, Heartbeat, Name, Record};

/// Revived identities noted between two drains; the rest wait for a later heartbeat.
const REVIVED_MAX: usize = 64;

/// What this node believes about a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MemberState {
    /// Heartbeats arrive as expected.
    Alive,
    /// Heartbeats are late: it may be down or cut off.
    Suspect,
    /// Heartbeats stopped long ago: considered down.
    Dead,
    /// It announced that it left.
    Left,
}

impl MemberState {
    /// Lower-case name, as shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Dead => "dead",
            MemberState::Left => "left",
        }
    }
}

/// A member as users see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Identity.
    pub id: NodeId,
    /// Name for humans.
    pub name: Name,
    /// Advertised address.
    pub addr: Addr,
    /// Incarnation.
    pub incarnation: u64,
    /// Latest heartbeat seen.
    pub heartbeat: u64,
    /// What this node believes.
    pub state: MemberState,
}

/// A change in what this node believes about a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberChange {
    /// The member.
    pub id: NodeId,
    /// Its name.
    pub name: Name,
    /// Its new state; `None` when it was removed from the table.
    pub state: Option<MemberState>,
}

/// Thresholds of the failure detector and the grace periods of removal.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DetectorConfig {
    /// Expected gap between heartbeats before any were observed, and the floor of the mean.
    pub(crate) interval_ms: u64,
    /// Phi at which a member becomes `Suspect`.
    pub(crate) phi_suspect: f64,
    /// Phi at which a member becomes `Dead`.
    pub(crate) phi_dead: f64,
    /// How long a member stays `Dead` before it is removed.
    pub(crate) dead_remove_ms: u64,
    /// How long a member stays `Left` (visible to users) before it is removed.
    pub(crate) left_remove_ms: u64,
}

/// Heartbeat arrival history of one member.
#[derive(Clone, Debug)]
struct Detector {
    last_ms: u64,
    intervals: VecDeque<u64>,
}

impl Detector {
    fn new(now_ms: u64) -> Detector {
        Detector { last_ms: now_ms, intervals: VecDeque::with_capacity(PHI_WINDOW_SIZE) }
    }

    /// Samples the gap since the last increase, unless it is longer than `gap_ms_max` (an
    /// outage, not the member's rhythm).
    fn record(&mut self, now_ms: u64, gap_ms_max: u64) {
        let gap = now_ms.saturating_sub(self.last_ms);
        if gap > 0 && gap <= gap_ms_max {
            if self.intervals.len() == PHI_WINDOW_SIZE {
                self.intervals.pop_front();
            }
            self.intervals.push_back(gap);
        }
        self.last_ms = self.last_ms.max(now_ms);
    }

    /// Suspicion that the member is down: -log10 of the probability that a heartbeat would
    /// still be this late, with exponentially distributed gaps of the observed mean.
    fn phi(&self, now_ms: u64, interval_floor_ms: u64) -> f64 {
        let count = self.intervals.len() as u64;
        let mean =
            self.intervals.iter().sum::<u64>().checked_div(count).unwrap_or(interval_floor_ms);
        let mean = mean.max(interval_floor_ms) as f64;
        let late = now_ms.saturating_sub(self.last_ms) as f64;
        late / (mean * std::f64::consts::LN_10)
    }
}

#[derive(Clone, Debug)]
struct Peer {
    member: Member,
    /// Whether this node has evidence of its own that the member is alive: a message from it,
    /// or its heartbeat rising after it was first learned. A member known only from another
    /// node's records may be long dead; it stays `Suspect` and is not waited for until then.
    confirmed: bool,
    left_announced: bool,
    /// Another identity spoke for this member's address (its own record, from itself), or
    /// this node holds the address now: the process behind this identity is gone, replaced by
    /// a restart on the same address. It stays `Dead` until a message from it proves
    /// otherwise; heartbeats other nodes relay do not revive it.
    superseded: bool,
    since_ms: u64,
    detector: Detector,
    /// The peer's version vector bases as it last reported them, with the incarnation and
    /// heartbeat they came with (so a reordered older report cannot replace a newer one).
    bases: Option<(u64, u64, BTreeMap<NodeId, u64>)>,
}

/// A member reported a version vector lower than it reported before, from a later
/// incarnation: it restarted from older state and may lack collected tombstones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Regressed;

/// What is remembered of a removed identity.
#[derive(Clone, Debug)]
struct Removed {
    at_ms: u64,
    /// Where it was, and its latest (incarnation, heartbeat) known here: if peers report a
    /// later one, it is alive somewhere and is told to take a new identity.
    addr: Option<Addr>,
    beat: (u64, u64),
}

/// The member table of one node.
#[derive(Clone, Debug)]
pub(crate) struct Members {
    me: Member,
    leaving: bool,
    peers: BTreeMap<NodeId, Peer>,
    removed: BTreeMap<NodeId, Removed>,
    /// Removed identities seen alive since the node last asked, with their addresses.
    revived: Vec<(NodeId, Addr)>,
    config: DetectorConfig,
}

impl Members {
    /// A table that knows only this node.
    pub(crate) fn new(
        id: NodeId,
        name: Name,
        addr: Addr,
        incarnation: u64,
        config: DetectorConfig,
    ) -> Members {
        let me = Member { id, name, addr, incarnation, heartbeat: 0, state: MemberState::Alive };
        Members {
            me,
            leaving: false,
            peers: BTreeMap::new(),
            removed: BTreeMap::new(),
            revived: Vec::new(),
            config,
        }
    }

    /// Every known member, this node first.
    pub(crate) fn list(&self) -> Vec<Member> {
        std::iter::once(self.me.clone())
            .chain(self.peers.values().map(|p| p.member.clone()))
            .collect()
    }

    /// A member other than this node.
    pub(crate) fn peer(&self, id: NodeId) -> Option<&Member> {
        self.peers.get(&id).map(|peer| &peer.member)
    }

    /// Members in `states`, this node excluded.
    pub(crate) fn peers_in(&self, states: &[MemberState]) -> impl Iterator<Item = &Member> {
        self.peers.values().map(|p| &p.member).filter(move |m| states.contains(&m.state))
    }

    /// Whether `id` was removed and is fenced out.
    pub(crate) fn is_removed(&self, id: NodeId) -> bool {
        self.removed.contains_key(&id)
    }

    /// Starts this node's own departure: digests announce it from now on.
    pub(crate) fn leave(&mut self) {
        self.leaving = true;
        self.me.state = MemberState::Left;
    }

    /// Advances this node's heartbeat, once per round.
    pub(crate) fn beat(&mut self) {
        self.me.heartbeat += 1;
    }

    /// This node's record, as sent in every `Syn` and `SynAck`.
    pub(crate) fn own_record(&self) -> Record {
        record_of(&self.me, self.leaving)
    }

    /// The heartbeat list of a digest.
    pub(crate) fn heartbeats(&self) -> Vec<Heartbeat> {
        let me = heartbeat_of(&self.me, self.leaving);
        let peers = self.peers.values().map(|p| heartbeat_of(&p.member, p.left_announced));
        std::iter::once(me).chain(peers).collect()
    }

    /// Records of members that a digest with `theirs` lacks (unknown or older incarnation).
    pub(crate) fn missing_records(&self, theirs: &[Heartbeat]) -> Vec<Record> {
        let known: BTreeMap<NodeId, u64> = theirs.iter().map(|h| (h.id, h.incarnation)).collect();
        let lacks = |m: &Member| known.get(&m.id).is_none_or(|inc| *inc < m.incarnation);
        self.peers
            .values()
            .filter(|p| lacks(&p.member))
            .map(|p| record_of(&p.member, p.left_announced))
            .chain(lacks(&self.me).then(|| self.own_record()))
            .collect()
    }

    /// Merges a full record: adds an unknown member, or updates a known one.
    /// `direct` says the record came from the member itself (its own `Syn` or `SynAck`).
    pub(crate) fn merge_record(
        &mut self,
        now_ms: u64,
        record: &Record,
        direct: bool,
        changes: &mut Vec<MemberChange>,
    ) {
        let id = record.heartbeat.id;
        if id == self.me.id {
            self.refute(&record.heartbeat);
            return;
        }
        if self.removed.contains_key(&id) {
            self.note_revived(&record.heartbeat);
            return;
        }
        if !self.peers.contains_key(&id) {
            if self.peers.len() >= MEMBERS_MAX {
                return;
            }
            let member = Member {
                id,
                name: record.name.clone(),
                addr: record.addr.clone(),
                incarnation: record.heartbeat.incarnation,
                heartbeat: record.heartbeat.heartbeat,
                state: if direct { MemberState::Alive } else { MemberState::Suspect },
            };
            let state = member.state;
            let peer = Peer {
                member,
                confirmed: direct,
                left_announced: false,
                // This node's own address: the record is of a predecessor of this process.
                superseded: record.addr == self.me.addr,
                since_ms: now_ms,
                detector: Detector::new(now_ms),
                bases: None,
            };
            self.peers.insert(id, peer);
            changes.push(MemberChange { id, name: record.name.clone(), state: Some(state) });
        } else if let Some(peer) = self.peers.get_mut(&id)
            && record.heartbeat.incarnation > peer.member.incarnation
        {
            peer.member.addr = record.addr.clone();
            peer.member.name = record.name.clone();
        }
        if direct {
            self.supersede(now_ms, id, &record.addr, changes);
        }
        if direct && let Some(peer) = self.peers.get_mut(&id) {
            peer.confirmed = true;
            // Its own record is proof of life: a member only heard of becomes alive now,
            // rather than at the next tick, so it is in push trees at once.
            if peer.member.state == MemberState::Suspect && !peer.left_announced {
                peer.member.state = MemberState::Alive;
                peer.since_ms = now_ms;
                changes.push(MemberChange {
                    id,
                    name: peer.member.name.clone(),
                    state: Some(MemberState::Alive),
                });
            }
        }
        self.merge_heartbeat(now_ms, &record.heartbeat, changes);
    }

    /// Marks every other live member at `addr` dead at once: `id`'s own record says it is
    /// there now, and one address is one UDP socket, so the process behind any other
    /// identity at that address has stopped (a node restarted on its own address). Without
    /// this, peers waited for the failure detector (seconds) before they stopped waiting
    /// for the old identity in `--wait all` and listing it alive.
    fn supersede(&mut self, now_ms: u64, id: NodeId, addr: &Addr, changes: &mut Vec<MemberChange>) {
        for (other, peer) in &mut self.peers {
            let live = matches!(peer.member.state, MemberState::Alive | MemberState::Suspect);
            if *other != id && peer.member.addr == *addr && live {
                peer.superseded = true;
                peer.member.state = MemberState::Dead;
                peer.since_ms = now_ms;
                changes.push(MemberChange {
                    id: *other,
                    name: peer.member.name.clone(),
                    state: Some(MemberState::Dead),
                });
            }
        }
    }

    /// Merges a heartbeat of a known member; unknown members wait for their record.
    pub(crate) fn merge_heartbeat(
        &mut self,
        now_ms: u64,
        beat: &Heartbeat,
        changes: &mut Vec<MemberChange>,
    ) {
        if beat.id == self.me.id {
            self.refute(beat);
            return;
        }
        let Some(peer) = self.peers.get_mut(&beat.id) else {
            self.note_revived(beat);
            return;
        };
        let ours = (peer.member.incarnation, peer.member.heartbeat, peer.left_announced);
        if (beat.incarnation, beat.heartbeat, beat.left) <= ours {
            return;
        }
        peer.member.incarnation = beat.incarnation;
        peer.member.heartbeat = beat.heartbeat;
        peer.confirmed = true;
        peer.detector.record(now_ms, self.config.interval_ms * PHI_GAP_INTERVALS_MAX);
        peer.left_announced |= beat.left;
        let state = match (peer.left_announced, peer.superseded) {
            (true, _) => MemberState::Left,
            (false, true) => MemberState::Dead,
            (false, false) => MemberState::Alive,
        };
        if state != peer.member.state && peer.member.state != MemberState::Left {
            peer.member.state = state;
            peer.since_ms = now_ms;
            changes.push(MemberChange {
                id: beat.id,
                name: peer.member.name.clone(),
                state: Some(state),
            });
        }
    }

    /// Notes the bases a peer reported about itself in a message sent at `beat`. Refuses a
    /// later incarnation whose bases are lower than an earlier one's.
    pub(crate) fn set_bases(
        &mut self,
        beat: &Heartbeat,
        bases: &BTreeMap<NodeId, u64>,
    ) -> Result<(), Regressed> {
        let Some(peer) = self.peers.get_mut(&beat.id) else { return Ok(()) };
        if let Some((incarnation, heartbeat, known)) = &peer.bases {
            if (beat.incarnation, beat.heartbeat) < (*incarnation, *heartbeat) {
                return Ok(());
            }
            let lower =
                known.iter().any(|(node, seq)| bases.get(node).copied().unwrap_or(0) < *seq);
            if beat.incarnation > *incarnation && lower {
                return Err(Regressed);
            }
        }
        peer.bases = Some((beat.incarnation, beat.heartbeat, bases.clone()));
        Ok(())
    }

    /// The bases a peer last reported.
    pub(crate) fn bases(&self, id: NodeId) -> Option<&BTreeMap<NodeId, u64>> {
        self.peers.get(&id)?.bases.as_ref().map(|(_, _, bases)| bases)
    }

    /// The writes every member not known to have left has seen: the meet of `own` and every
    /// such member's last reported bases. `None` while some member has reported none yet.
    pub(crate) fn stable(&self, own: &BTreeMap<NodeId, u64>) -> Option<BTreeMap<NodeId, u64>> {
        let mut stable = own.clone();
        for peer in self.peers.values().filter(|p| p.member.state != MemberState::Left) {
            let (_, _, bases) = peer.bases.as_ref()?;
            stable.retain(|node, seq| {
                *seq = (*seq).min(bases.get(node).copied().unwrap_or(0));
                *seq > 0
            });
        }
        Some(stable)
    }

    /// Re-evaluates every member's liveness at `now_ms` and removes the long dead and left.
    pub(crate) fn tick(&mut self, now_ms: u64, changes: &mut Vec<MemberChange>) {
        let config = self.config;
        let mut doomed = Vec::new();
        for (id, peer) in &mut self.peers {
            let current = peer.member.state;
            let phi = peer.detector.phi(now_ms, config.interval_ms);
            let next = match current {
                MemberState::Left => MemberState::Left,
                _ if phi >= config.phi_dead || peer.superseded => MemberState::Dead,
                MemberState::Dead if phi >= config.phi_suspect => MemberState::Dead,
                _ if phi >= config.phi_suspect || !peer.confirmed => MemberState::Suspect,
                _ => MemberState::Alive,
            };
            if next != current {
                peer.member.state = next;
                peer.since_ms = now_ms;
                changes.push(MemberChange {
                    id: *id,
                    name: peer.member.name.clone(),
                    state: Some(next),
                });
            }
            let age = now_ms.saturating_sub(peer.since_ms);
            let expired = match next {
                MemberState::Dead => age >= config.dead_remove_ms,
                MemberState::Left => age >= config.left_remove_ms,
                _ => false,
            };
            if expired {
                doomed.push(*id);
            }
        }
        for id in doomed {
            self.remove(id, now_ms, changes);
        }
    }

    /// Takes identity `id` in place of the current one, keeping every peer. The old identity
    /// goes into the removed record, so its records, still gossiped by peers that have not
    /// removed it yet, never come back as a peer here.
    pub(crate) fn rename(&mut self, id: NodeId, now_ms: u64) {
        let old = self.me.id;
        self.me = Member { id, incarnation: 0, heartbeat: 0, ..self.me.clone() };
        let mut changes = Vec::new();
        self.remove(old, now_ms, &mut changes);
    }

    /// Notes direct contact with a peer: proof of life, though not a heartbeat sample.
    pub(crate) fn heard_from(&mut self, id: NodeId, now_ms: u64) {
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.detector.last_ms = peer.detector.last_ms.max(now_ms);
            peer.confirmed = true;
            peer.superseded = false;
        }
    }

    /// Members a `--wait all` waits for: not known dead or left, and confirmed alive by this
    /// node's own evidence at least once.
    pub(crate) fn waited_for(&self) -> impl Iterator<Item = NodeId> + '_ {
        let live = [MemberState::Alive, MemberState::Suspect];
        self.peers
            .values()
            .filter(move |p| p.confirmed && live.contains(&p.member.state))
            .map(|p| p.member.id)
    }

    fn remove(&mut self, id: NodeId, now_ms: u64, changes: &mut Vec<MemberChange>) {
        let mut removed = Removed { at_ms: now_ms, addr: None, beat: (0, 0) };
        if let Some(peer) = self.peers.remove(&id) {
            removed.addr = Some(peer.member.addr.clone());
            removed.beat = (peer.member.incarnation, peer.member.heartbeat);
            changes.push(MemberChange { id, name: peer.member.name, state: None });
        }
        if self.removed.len() >= REMOVED_MAX {
            let oldest = self.removed.iter().min_by_key(|(_, r)| r.at_ms).map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.removed.remove(&oldest);
            }
        }
        self.removed.insert(id, removed);
    }

    /// A peer reported a heartbeat of a removed identity: if it is later than any known here,
    /// that identity is alive somewhere, cut off from this node but not from everyone, and it
    /// is told to take a new one (without this, two nodes that had removed each other and
    /// never spoke directly again disagreed on membership for good; found by chorus-sim).
    fn note_revived(&mut self, beat: &Heartbeat) {
        let Some(removed) = self.removed.get_mut(&beat.id) else { return };
        if (beat.incarnation, beat.heartbeat) > removed.beat && !beat.left {
            removed.beat = (beat.incarnation, beat.heartbeat);
            if let Some(addr) = &removed.addr
                && self.revived.len() < REVIVED_MAX
            {
                self.revived.push((beat.id, addr.clone()));
            }
        }
    }

    /// Removed identities seen alive since the last call, with where to tell them.
    pub(crate) fn take_revived(&mut self) -> Vec<(NodeId, Addr)> {
        std::mem::take(&mut self.revived)
    }

    /// Someone believes something newer about this node than it does (an old incarnation
    /// said it left, or a restart reused the id): outbid it with a higher incarnation.
    fn refute(&mut self, beat: &Heartbeat) {
        let stale = beat.incarnation > self.me.incarnation
            || (beat.incarnation == self.me.incarnation && beat.left && !self.leaving);
        if stale {
            self.me.incarnation = beat.incarnation + 1;
        }
    }
}

fn heartbeat_of(member: &Member, left: bool) -> Heartbeat {
    Heartbeat { id: member.id, incarnation: member.incarnation, heartbeat: member.heartbeat, left }
}

fn record_of(member: &Member, left: bool) -> Record {
    Record {
        heartbeat: heartbeat_of(member, left),
        name: member.name.clone(),
        addr: member.addr.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: DetectorConfig = DetectorConfig {
        interval_ms: 500,
        phi_suspect: 3.0,
        phi_dead: 6.0,
        dead_remove_ms: 300_000,
        left_remove_ms: 60_000,
    };

    fn record(id: u64, addr: &str, heartbeat: u64) -> Record {
        let heartbeat = Heartbeat { id: NodeId(id), incarnation: 0, heartbeat, left: false };
        Record { heartbeat, name: Name::new("n").unwrap(), addr: Addr::new(addr).unwrap() }
    }

    fn state(members: &Members, id: u64) -> Option<MemberState> {
        members.peer(NodeId(id)).map(|member| member.state)
    }

    #[test]
    fn a_new_identity_at_an_address_supersedes_the_old_one_until_it_speaks() {
        let (me, a, old, new) = (1, 2, 3, 4);
        let mut members = Members::new(
            NodeId(me),
            Name::new("me").unwrap(),
            Addr::new("m:1").unwrap(),
            0,
            CONFIG,
        );
        let mut changes = Vec::new();
        members.merge_record(0, &record(a, "a:1", 1), true, &mut changes);
        members.merge_record(0, &record(old, "c:1", 1), true, &mut changes);
        // Relayed by another node: no proof that `new` runs, so `old` stays.
        members.merge_record(10, &record(new, "c:1", 1), false, &mut changes);
        assert_eq!(state(&members, old), Some(MemberState::Alive));
        // From `new` itself: `old`'s process is gone.
        members.merge_record(20, &record(new, "c:1", 2), true, &mut changes);
        assert_eq!(state(&members, old), Some(MemberState::Dead));
        assert_eq!(state(&members, a), Some(MemberState::Alive), "other addresses untouched");
        assert!(!members.waited_for().any(|id| id == NodeId(old)), "--wait all skips it");
        // Heartbeats of `old` relayed by others and a tick do not revive it.
        let beat = Heartbeat { id: NodeId(old), incarnation: 0, heartbeat: 9, left: false };
        members.merge_heartbeat(30, &beat, &mut changes);
        members.tick(40, &mut changes);
        assert_eq!(state(&members, old), Some(MemberState::Dead));
        // A message from `old` itself does.
        members.heard_from(NodeId(old), 50);
        let beat = Heartbeat { heartbeat: 10, ..beat };
        members.merge_heartbeat(50, &beat, &mut changes);
        assert_eq!(state(&members, old), Some(MemberState::Alive));
    }

    #[test]
    fn a_record_at_this_nodes_own_address_is_its_predecessor() {
        let mut members =
            Members::new(NodeId(1), Name::new("me").unwrap(), Addr::new("m:1").unwrap(), 0, CONFIG);
        let mut changes = Vec::new();
        members.merge_record(0, &record(2, "m:1", 5), false, &mut changes);
        members.tick(10, &mut changes);
        assert_eq!(state(&members, 2), Some(MemberState::Dead));
    }
}
