//! Gossip wire messages between nodes. Every message is one [`Envelope`], postcard-encoded.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::NodeId;
use crate::codec::{self, CodecError};
use crate::horizon::Horizon;
use crate::limits::{
    ADDR_SIZE_MAX, MEMBERS_MAX, MESSAGE_OVERHEAD_MAX, NAME_SIZE_MAX, REPLACED_SPANS_MAX,
};
use crate::store::{Delta, Update};
use crate::version::Dot;

/// A node's network address, opaque to `proto`: the driver decides what the bytes mean
/// (a socket address in text, a simulator index). At most `ADDR_SIZE_MAX` bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<u8>", into = "Vec<u8>")]
pub struct Addr(Vec<u8>);

impl Addr {
    /// Wraps address bytes, refusing more than `ADDR_SIZE_MAX`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Addr, String> {
        let bytes = bytes.into();
        if bytes.len() > ADDR_SIZE_MAX {
            return Err(format!(
                "address of {} bytes, the maximum is {ADDR_SIZE_MAX}",
                bytes.len()
            ));
        }
        Ok(Addr(bytes))
    }

    /// The address bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl TryFrom<Vec<u8>> for Addr {
    type Error = String;
    fn try_from(bytes: Vec<u8>) -> Result<Addr, String> {
        Addr::new(bytes)
    }
}

impl From<Addr> for Vec<u8> {
    fn from(addr: Addr) -> Vec<u8> {
        addr.0
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// A member's name for humans, at most `NAME_SIZE_MAX` bytes of UTF-8.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// Validates a name.
    pub fn new(name: impl Into<String>) -> Result<Name, String> {
        let name = name.into();
        if name.len() > NAME_SIZE_MAX {
            return Err(format!("name of {} bytes, the maximum is {NAME_SIZE_MAX}", name.len()));
        }
        Ok(Name(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(name: String) -> Result<Name, String> {
        Name::new(name)
    }
}

impl From<Name> for String {
    fn from(name: Name) -> String {
        name.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The light, per-round view of one member: enough to spread liveness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The member.
    pub id: NodeId,
    /// Its incarnation; a higher one replaces everything known of a lower one.
    pub incarnation: u64,
    /// Its heartbeat counter within the incarnation.
    pub heartbeat: u64,
    /// Whether it announced that it left.
    pub left: bool,
}

/// Everything needed to add a member: sent when the receiver does not know it yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Liveness part.
    pub heartbeat: Heartbeat,
    /// Name for humans.
    pub name: Name,
    /// Where to reach it.
    pub addr: Addr,
}

/// What a node knows, in brief: liveness of every member and the bases of its vector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// One heartbeat per known member (the sender included), at most `MEMBERS_MAX`.
    pub members: Vec<Heartbeat>,
    /// The sender's version vector bases.
    pub bases: BTreeMap<NodeId, u64>,
    /// Writers whose writes reach the sender as a stream of pushes: one advanced its base for
    /// the writer within `PUSH_STREAM_MS`, and it holds nothing of the writer out of order.
    /// The receiver leaves their newer writes to the pushes (`exchange.rs`).
    pub streams: Vec<NodeId>,
    /// What the sender's state lacks by collection and what it is safe against.
    pub horizon: Horizon,
    /// How much the sender's state counts when two states are each behind the other's
    /// collections (the lower one drops): the writes it has seen (the sum of its bases), or 0
    /// while it is settling after dropping its state.
    pub rank: u64,
    /// The sender's wall clock, and the receiver's last reading echoed back: the clock
    /// self-check's evidence.
    pub clock: ClockStamp,
}

/// A wall-clock reading in a digest, for the clock self-check (DESIGN 3). With the echo of
/// the receiver's own earlier reading, the receiver has NTP's four timestamps: it sent at
/// `t1` (its clock), the sender got that at `t2 = t3 - held_ms` and sent this at `t3` (the
/// sender's clock), and it arrives at `t4` (its clock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockStamp {
    /// The sender's wall clock when it built the message (`t3`).
    pub sent_ms: u64,
    /// The receiver's latest reading the sender heard, if recent.
    pub echo: Option<Echo>,
}

/// A peer's clock reading returned to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    /// The identity whose reading this is: only it can use the echo.
    pub to: NodeId,
    /// That node's reading (`t1`, its clock).
    pub sent_ms: u64,
    /// How long the sender held it before sending this (`t3 - t2`, the sender's clock).
    pub held_ms: u64,
}

/// Why a node took a new identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResetReason {
    /// Its identity was removed from the cluster (dead too long, or it left). It keeps its
    /// state; the horizon check decides whether that state may stay.
    Removed,
    /// Its version vector went backwards: it restarted from older state, and its sequence
    /// numbers may repeat. It keeps its state, as for `Removed`.
    Regressed,
    /// Its state was behind a peer's collections (it lacks deletes the peer already forgot):
    /// it dropped the state and syncs again from empty.
    Pruned,
}

impl ResetReason {
    /// Whether the node dropped its state.
    pub fn dropped_state(self) -> bool {
        self == ResetReason::Pruned
    }
}

/// The body of a gossip message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Opens an anti-entropy round: the sender's record and digest.
    Syn {
        /// The sender, so a seed learns a joiner.
        sender: Record,
        /// What the sender knows.
        digest: Digest,
    },
    /// Answers a `Syn`: the responder's record and digest, and members the initiator lacks.
    /// Delta pages for the initiator follow as `Delta` messages.
    SynAck {
        /// The responder.
        sender: Record,
        /// What the responder knows.
        digest: Digest,
        /// Members the initiator's digest did not have.
        records: Vec<Record>,
    },
    /// Members the receiver's digest did not have (the initiator's half of a round).
    Members(Vec<Record>),
    /// One page of anti-entropy catch-up.
    Delta {
        /// The identity whose bases the page was computed against. Its ranges are relative to
        /// that state, so an identity that has since dropped its state refuses it.
        receiver: NodeId,
        /// The sender's version vector bases, so the receiver checks the page against its
        /// own collections even when the page overtakes the sender's digest.
        bases: BTreeMap<NodeId, u64>,
        /// The sender's horizon, as it applies to this page's content.
        horizon: Horizon,
        /// The writes.
        delta: Delta,
        /// Whether more pages follow, in this round or (past `SYNC_PAGES_MAX`) a later one. A
        /// page without it ends the catch-up the sender's digest promised.
        more: bool,
        /// This page ends a round the sender cut short at `SYNC_PAGES_MAX` pages: the
        /// receiver asks for the next pages at once (a new round with the sender) instead of
        /// waiting for gossip to bring one, so a catch-up runs at the pace the receiver
        /// merges pages rather than one batch per gossip interval.
        pull: bool,
    },
    /// Eagerly pushed writes, and which of them the writer wants acknowledged.
    Push {
        /// The writes.
        updates: Vec<Update>,
        /// Dots whose writer waits for acknowledgements.
        acks: Vec<Dot>,
        /// Writes the push leaves out because one of its own replaced them, in the order of
        /// the writes replacing them.
        replaced: Vec<Replaced>,
    },
    /// Acknowledges that the sender applied these writes.
    Ack(Vec<Dot>),
    /// Tells the receiver that its identity is fenced out: it must take a new one and rejoin.
    Reset {
        /// The identity fenced out; a reset aimed at an earlier identity is ignored.
        id: NodeId,
        /// Why.
        reason: ResetReason,
    },
}

impl Body {
    /// About how many bytes the body encodes to: a bound for pushes (the bulk of the
    /// messages), a small default for the others (the buffer grows as needed).
    fn size_hint(&self) -> usize {
        const SMALL: usize = 256;
        match self {
            Body::Push { updates, acks, replaced } => {
                updates.iter().map(Update::size_bound).sum::<usize>()
                    + acks.len() * DOT_SIZE_MAX
                    + replaced.len() * REPLACED_SIZE_MAX
                    + SMALL
            }
            _ => SMALL,
        }
    }
}

/// Most bytes a `Dot` encodes to: two varint `u64`s.
const DOT_SIZE_MAX: usize = 20;

/// Most bytes a [`Replaced`] encodes to: a varint `u32` and two varint `u64`s.
pub(crate) const REPLACED_SIZE_MAX: usize = 25;

// A write too large to share a push still fits one with every run it may carry and its dot.
const _: () =
    assert!(REPLACED_SPANS_MAX * REPLACED_SIZE_MAX + DOT_SIZE_MAX < MESSAGE_OVERHEAD_MAX / 2);

/// Writes a push leaves out, `first..=last` of one writer, because a newer write of the same
/// key by the same writer replaced them before the push left: the write at index `by` of the
/// push's `updates`. The receiver counts them seen once it merged that write, as it would
/// have had they come and lost to it; their values never travel. A write that replaced others
/// carries at most `REPLACED_SPANS_MAX` of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    /// Index of the replacing write in the push's `updates`.
    pub by: u32,
    /// The first sequence number left out.
    pub first: u64,
    /// The last sequence number left out (at least `first`, below the replacing write's).
    pub last: u64,
}

/// One gossip message: who sent it and what it says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sending node.
    pub sender: NodeId,
    /// The message.
    pub body: Body,
}

impl Envelope {
    /// Encodes the message with the bounded codec: at most `MESSAGE_SIZE_MAX` bytes. A
    /// message a node built always fits (its pages are sized by bounds on their entries), so
    /// an error here is a bug in this crate.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }

    /// Encodes the message as a frame for a stream (a `u32` length, then what
    /// [`Envelope::encode`] gives), in a buffer sized for it up front.
    pub fn encode_frame(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode_frame_sized(self, self.body.size_hint())
    }

    /// Decodes a received message and checks the bounds the codec alone does not. Pure and
    /// safe on any input, so a driver runs it before it takes the lock around its node.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, MessageError> {
        let envelope: Envelope = codec::decode(bytes)?;
        envelope.body.validate()?;
        Ok(envelope)
    }
}

/// Why a received message was dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The bytes did not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The message decoded but breaks a bound.
    #[error(transparent)]
    Invalid(#[from] InvalidMessage),
}

/// Why a message that decoded was still refused: it breaks a bound the codec alone does not
/// check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMessage {
    /// More member entries than any node tracks.
    #[error("invalid message: {count} members in one message, the maximum is {}", 2 * MEMBERS_MAX)]
    TooManyMembers {
        /// How many the message listed.
        count: usize,
    },
    /// A horizon naming more writers than any node tracks.
    #[error("invalid message: a horizon names more than {} writers", 2 * MEMBERS_MAX)]
    HorizonTooLarge,
    /// A push whose left-out writes name no write of it, or lie outside what it can replace.
    #[error("invalid message: a push leaves out writes that no write of it replaces")]
    ReplacedOutsidePush,
    /// A delta group whose updates lie outside its range or belong to another writer.
    #[error("invalid message: a delta group of {writer} does not hold to its range")]
    GroupOutsideRange {
        /// The writer the group claims to cover.
        writer: NodeId,
    },
}

impl Body {
    /// Checks bounds that the codec alone does not: list lengths.
    pub fn validate(&self) -> Result<(), InvalidMessage> {
        let members = match self {
            Body::Syn { digest, .. } => digest.members.len() + digest.bases.len(),
            Body::SynAck { digest, records, .. } => {
                digest.members.len().max(digest.bases.len()).max(records.len())
            }
            Body::Members(records) => records.len(),
            Body::Delta { bases, .. } => bases.len(),
            _ => 0,
        };
        let streams = match self {
            Body::Syn { digest, .. } | Body::SynAck { digest, .. } => digest.streams.len(),
            _ => 0,
        };
        if members.max(streams) > 2 * MEMBERS_MAX {
            return Err(InvalidMessage::TooManyMembers { count: members.max(streams) });
        }
        let horizon = match self {
            Body::Syn { digest, .. } | Body::SynAck { digest, .. } => Some(&digest.horizon),
            Body::Delta { horizon, .. } => Some(horizon),
            _ => None,
        };
        if let Some(horizon) = horizon {
            let beyond = horizon.safe_beyond.as_ref().map_or(0, BTreeMap::len);
            if horizon.pruned.len().max(beyond) > 2 * MEMBERS_MAX {
                return Err(InvalidMessage::HorizonTooLarge);
            }
        }
        if let Body::Push { updates, replaced, .. } = self {
            validate_replaced(updates, replaced)?;
        }
        if let Body::Delta { delta, .. } = self {
            // A group's range lets the receiver count writes as seen without receiving them,
            // so a group whose updates lie outside it, or belong to another writer, is refused
            // whole: accepting it could skip writes for good.
            for group in &delta.groups {
                let outside = |u: &Update| {
                    u.stamp.node != group.node || u.seq <= group.from || u.seq > group.to
                };
                if group.from > group.to || group.updates.iter().any(outside) {
                    return Err(InvalidMessage::GroupOutsideRange { writer: group.node });
                }
            }
        }
        Ok(())
    }
}

/// A push's left-out writes, like a delta group's range, let the receiver count writes seen
/// without receiving them, so they must name a write of the push, in order of the writes, lie
/// below it, ascend and stay apart for each write (a relay joins them, and would join what lies
/// between two runs given out of order), and number at most `REPLACED_SPANS_MAX` per write.
/// A run may name a write the push also carries (a relay that got it by anti-entropy sends it
/// beside the write that replaced it at the origin): counted seen first, it is dropped as a
/// duplicate, which loses nothing, since the write that replaced it is merged.
fn validate_replaced(updates: &[Update], replaced: &[Replaced]) -> Result<(), InvalidMessage> {
    let (mut previous, mut count): (Option<&Replaced>, usize) = (None, 0);
    for span in replaced {
        let Some(by) = updates.get(span.by as usize) else {
            return Err(InvalidMessage::ReplacedOutsidePush);
        };
        let same = previous.filter(|previous| previous.by == span.by);
        count = if same.is_some() { count + 1 } else { 1 };
        let in_order = match (previous, same) {
            (_, Some(same)) => span.first > same.last.saturating_add(1),
            (Some(previous), None) => previous.by < span.by,
            (None, None) => true,
        };
        if !in_order
            || count > REPLACED_SPANS_MAX
            || span.first == 0
            || span.first > span.last
            || span.last >= by.seq
        {
            return Err(InvalidMessage::ReplacedOutsidePush);
        }
        previous = Some(span);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Hlc, Stamp};
    use crate::data::{Key, Value};

    fn push(seqs: &[u64], replaced: &[(u32, u64, u64)]) -> Body {
        let updates = seqs
            .iter()
            .map(|&seq| Update {
                key: Key::new("k").unwrap(),
                stamp: Stamp { hlc: Hlc::new(1_000, 0), node: NodeId(1) },
                seq,
                value: Some(Value::new("v").unwrap()),
                expires_at_ms: None,
            })
            .collect();
        let replaced =
            replaced.iter().map(|&(by, first, last)| Replaced { by, first, last }).collect();
        Body::Push { updates, acks: Vec::new(), replaced }
    }

    /// Left-out writes let a receiver count writes seen unreceived, so only those a write of
    /// the push can have replaced pass: below it, in order of the writes, within the bound.
    #[test]
    fn a_push_names_only_writes_its_own_writes_replaced() {
        assert_eq!(push(&[5, 9], &[(0, 1, 4), (1, 6, 8)]).validate(), Ok(()));
        assert_eq!(push(&[9], &[(0, 1, 1), (0, 3, 8)]).validate(), Ok(()));
        let refused = Err(InvalidMessage::ReplacedOutsidePush);
        assert_eq!(push(&[5], &[(1, 1, 4)]).validate(), refused, "no write at index 1");
        assert_eq!(push(&[5], &[(0, 1, 5)]).validate(), refused, "not below its write");
        assert_eq!(push(&[5], &[(0, 0, 2)]).validate(), refused, "numbers start at 1");
        assert_eq!(push(&[5], &[(0, 3, 2)]).validate(), refused, "an empty run");
        assert_eq!(push(&[5, 9], &[(1, 6, 8), (0, 1, 4)]).validate(), refused, "out of order");
        assert_eq!(push(&[9], &[(0, 5, 5), (0, 2, 2)]).validate(), refused, "descending runs");
        assert_eq!(push(&[9], &[(0, 2, 4), (0, 5, 6)]).validate(), refused, "touching runs");
        assert_eq!(push(&[9], &[(0, 2, 4), (0, 6, 6)]).validate(), Ok(()));
        assert_eq!(push(&[3, 9], &[(1, 2, 4)]).validate(), Ok(()), "names a carried write");
        let many: Vec<_> =
            (0..=REPLACED_SPANS_MAX as u64).map(|i| (0, 2 * i + 1, 2 * i + 1)).collect();
        assert_eq!(push(&[100], &many).validate(), refused, "more runs than one write carries");
        assert_eq!(push(&[100], &many[1..]).validate(), Ok(()));
    }
}
