//! The trace hash: one 64-bit digest of everything a run did, so "same seed, same commit, same
//! trace" can be checked by comparing two numbers.
//!
//! Hand-written rather than `std::hash::DefaultHasher`, whose algorithm may change between
//! Rust releases: the hash must only change when the simulation does. It mixes eight bytes
//! per step (in the style of FxHash) and finishes with splitmix64's finaliser, so hashing the
//! bytes of every delivered message stays cheap next to decoding them.
//!
//! Also here: what the trace log (`--trace`) says about a message.

use chorus_proto::codec;
use chorus_proto::message::{Body, Envelope};
use chorus_proto::{ClockCheck, Event};

/// A running hash of a run's trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceHash(u64);

/// FxHash's multiplier: odd, with well-spread bits.
const MULTIPLIER: u64 = 0x517c_c1b7_2722_0a95;

impl Default for TraceHash {
    fn default() -> TraceHash {
        TraceHash::new()
    }
}

impl TraceHash {
    /// An empty trace (FNV-1a's offset basis as the starting state).
    pub fn new() -> TraceHash {
        TraceHash(0xcbf2_9ce4_8422_2325)
    }

    /// Mixes in one number.
    pub fn word(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(MULTIPLIER);
    }

    /// Mixes in a byte string, its length included so that concatenations differ.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.word(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            // `chunks_exact(8)` yields exactly eight bytes.
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.word(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(word));
        }
    }

    /// The digest so far.
    pub fn finish(&self) -> u64 {
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}

/// A short description of a message, for the log.
pub fn describe(bytes: &[u8]) -> String {
    match codec::decode::<Envelope>(bytes) {
        Err(error) => format!("torn ({error})"),
        Ok(envelope) => match envelope.body {
            Body::Syn { digest, .. } => format!("syn members={}", digest.members.len()),
            Body::SynAck { digest, records, .. } => {
                format!("synack members={} records={}", digest.members.len(), records.len())
            }
            Body::Members(records) => format!("members records={}", records.len()),
            Body::Delta { delta, .. } => {
                let groups: Vec<String> = delta
                    .groups
                    .iter()
                    .map(|g| format!("{}:{}..{}#{}", g.node, g.from, g.to, g.updates.len()))
                    .collect();
                format!("delta updates={} groups={}", delta.update_count(), groups.join(","))
            }
            Body::Push { updates, acks, replaced } => {
                let dots: Vec<String> =
                    updates.iter().map(|u| format!("{}:{}", u.stamp.node, u.seq)).collect();
                let runs: Vec<String> =
                    replaced.iter().map(|r| format!("{}:{}..{}", r.by, r.first, r.last)).collect();
                format!(
                    "push updates={} acks={} dots={} replaced={}",
                    updates.len(),
                    acks.len(),
                    dots.join(","),
                    runs.join(",")
                )
            }
            Body::Ack(dots) => format!("ack dots={}", dots.len()),
            Body::Reset { id, reason } => format!("reset id={id} reason={reason:?}"),
        },
    }
}

/// Mixes the parts of an event that matter into the trace, without formatting it.
pub fn hash_event(trace: &mut TraceHash, event: &Event) {
    match event {
        Event::Put { key, stamp, .. } => {
            trace.word(1);
            trace.bytes(key.as_bytes());
            trace.word(stamp.hlc.as_u64() ^ stamp.node.0);
        }
        Event::Delete { key, stamp } => {
            trace.word(2);
            trace.bytes(key.as_bytes());
            trace.word(stamp.hlc.as_u64() ^ stamp.node.0);
        }
        Event::Expire { key } => {
            trace.word(3);
            trace.bytes(key.as_bytes());
        }
        Event::Member(change) => {
            trace.word(4 ^ change.id.0);
            trace.word(change.state.map_or(9, |state| state as u64));
        }
        Event::WaitDone(outcome) => {
            trace.word(5 ^ outcome.id.0);
            trace.word(u64::from(outcome.complete) << 32 | outcome.confirmed.len() as u64);
        }
        Event::Joined => trace.word(6),
        Event::Clock(check) => trace.word(match check {
            ClockCheck::Unchecked => 10,
            ClockCheck::Within => 11,
            ClockCheck::Off { offset_ms } => 12 ^ (*offset_ms as u64) << 8,
        }),
        Event::Left => trace.word(7),
        Event::Reset { old, new, .. } => {
            trace.word(8 ^ old.0);
            trace.word(new.0);
        }
        Event::Skew { peer, ahead_ms } => {
            trace.word(9 ^ peer.0);
            trace.word(*ahead_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_length_and_content_change_the_hash() {
        let hash = |parts: &[&[u8]]| {
            let mut trace = TraceHash::new();
            for part in parts {
                trace.bytes(part);
            }
            trace.finish()
        };
        assert_eq!(hash(&[b"abc", b"def"]), hash(&[b"abc", b"def"]));
        assert_ne!(hash(&[b"abc", b"def"]), hash(&[b"def", b"abc"]));
        assert_ne!(hash(&[b"abcdef"]), hash(&[b"abc", b"def"]));
        assert_ne!(hash(&[b"abc\0"]), hash(&[b"abc"]));
        assert_ne!(hash(&[b"0123456789"]), hash(&[b"0123456788"]));
    }
}
