//! [`Network`]: what happens to a message between two nodes.
//!
//! Every message a node sends is its encoded bytes, so the codec runs on every simulated
//! message. On the way the network may lose it, deliver it twice, hold it back so later ones
//! overtake it, tear it, or drop it at a partition (checked when it is sent and again when it
//! arrives: a cut link kills what is in flight). With the rewrite sabotage it changes a value
//! inside a well-formed message, which the checker must catch.

use std::collections::{BTreeMap, BTreeSet};

use chorus_proto::codec;
use chorus_proto::message::{Body, Envelope, Heartbeat, Record};
use chorus_proto::{Update, Value};
use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;

use crate::faults::LinkFaults;

/// Counters of what the network did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Messages handed to the network (each send counts once, duplicates not included).
    pub sent: u64,
    /// Bytes handed to the network.
    pub bytes_sent: u64,
    /// Copies lost to random loss.
    pub lost: u64,
    /// Copies dropped at a partition, when sent or in flight.
    pub cut: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Copies held back by an extra delay.
    pub reordered: u64,
    /// Copies torn in flight.
    pub corrupted: u64,
    /// Messages whose value was rewritten (sabotage).
    pub rewritten: u64,
}

/// One copy of a message on its way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copy {
    /// Delay until delivery.
    pub delay_ms: u64,
    /// The bytes that arrive.
    pub bytes: Vec<u8>,
    /// Whether the network tore them (the receiver must refuse them).
    pub corrupted: bool,
}

/// The simulated network between all slots.
#[derive(Clone, Debug)]
pub struct Network {
    link: LinkFaults,
    /// Active cuts, by the partition episode that made them.
    cuts: BTreeMap<usize, BTreeSet<(usize, usize)>>,
    /// The union of `cuts`, the set consulted per message.
    blocked: BTreeSet<(usize, usize)>,
    /// Sabotage: change a value inside well-formed messages.
    rewrite_values: bool,
    /// Sabotage: nobody hears that a node left.
    strip_departures: bool,
    /// What happened so far.
    pub stats: NetworkStats,
}

impl Network {
    /// A network with these link faults and no partition.
    pub fn new(link: LinkFaults) -> Network {
        Network {
            link,
            cuts: BTreeMap::new(),
            blocked: BTreeSet::new(),
            rewrite_values: false,
            strip_departures: false,
            stats: NetworkStats::default(),
        }
    }

    /// The link faults in force.
    pub fn link(&self) -> &LinkFaults {
        &self.link
    }

    /// Replaces the link faults (the heal phase calms them).
    pub fn set_link(&mut self, link: LinkFaults) {
        self.link = link;
    }

    /// Turns on the sabotage that rewrites values in flight.
    pub fn sabotage_rewrite(&mut self) {
        self.rewrite_values = true;
    }

    /// Turns on the sabotage that clears departure announcements in flight.
    pub fn sabotage_departures(&mut self) {
        self.strip_departures = true;
    }

    /// Starts (or replaces) the cut of partition `episode`.
    pub fn cut(&mut self, episode: usize, links: BTreeSet<(usize, usize)>) {
        self.cuts.insert(episode, links);
        self.rebuild();
    }

    /// Ends the cut of partition `episode`.
    pub fn uncut(&mut self, episode: usize) {
        if self.cuts.remove(&episode).is_some() {
            self.rebuild();
        }
    }

    /// Ends every cut except those of `keep` (the never-healing sabotage keeps one).
    pub fn heal(&mut self, keep: Option<usize>) {
        self.cuts.retain(|episode, _| Some(*episode) == keep);
        self.rebuild();
    }

    /// Whether messages from `from` to `to` are dropped now.
    pub fn is_cut(&self, from: usize, to: usize) -> bool {
        self.blocked.contains(&(from, to))
    }

    /// Whether any cut is active.
    pub fn is_partitioned(&self) -> bool {
        !self.blocked.is_empty()
    }

    fn rebuild(&mut self) {
        self.blocked = self.cuts.values().flatten().copied().collect();
    }

    /// Sends `bytes` from `from` to `to`: the copies that will arrive, with their delays.
    pub fn send(
        &mut self,
        rng: &mut Xoshiro256PlusPlus,
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    ) -> Vec<Copy> {
        self.stats.sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        if self.is_cut(from, to) {
            self.stats.cut += 1;
            return Vec::new();
        }
        let bytes = if self.rewrite_values { self.rewrite(bytes) } else { bytes };
        let bytes = if self.strip_departures { strip_departures(bytes) } else { bytes };
        let link = self.link;
        let mut copies = Vec::with_capacity(1);
        let duplicate = rng.random_range(0..1000) < link.duplicate_permille;
        for copy in 0..1 + usize::from(duplicate) {
            if copy > 0 {
                self.stats.duplicated += 1;
            }
            if rng.random_range(0..1000) < link.loss_permille {
                self.stats.lost += 1;
                continue;
            }
            let mut delay_ms = link.latency.sample(rng);
            if rng.random_range(0..1000) < link.reorder_permille {
                self.stats.reordered += 1;
                delay_ms += rng.random_range(0..=link.reorder_ms);
            }
            let mut bytes = bytes.clone();
            let corrupted = rng.random_range(0..1000) < link.corrupt_permille;
            if corrupted {
                // A strict prefix of a postcard message never decodes: the decoder follows
                // the same path and runs out of bytes.
                self.stats.corrupted += 1;
                bytes.truncate(rng.random_range(0..bytes.len()));
            }
            copies.push(Copy { delay_ms, bytes, corrupted });
        }
        copies
    }

    /// Sabotage: appends a byte to the first value a push or delta carries, and re-encodes.
    fn rewrite(&mut self, bytes: Vec<u8>) -> Vec<u8> {
        let Ok(mut envelope) = codec::decode::<Envelope>(&bytes) else { return bytes };
        let updates: Vec<&mut Update> = match &mut envelope.body {
            Body::Push { updates, .. } => updates.iter_mut().collect(),
            Body::Delta { delta, .. } => {
                delta.groups.iter_mut().flat_map(|g| g.updates.iter_mut()).collect()
            }
            _ => Vec::new(),
        };
        let Some(update) = updates.into_iter().find(|update| update.value.is_some()) else {
            return bytes;
        };
        let mut changed = update.value.as_ref().map(|v| v.as_bytes().to_vec()).unwrap_or_default();
        changed.push(b'!');
        let Ok(value) = Value::new(changed) else { return bytes };
        update.value = Some(value);
        match codec::encode(&envelope) {
            Ok(rewritten) => {
                self.stats.rewritten += 1;
                rewritten
            }
            Err(_) => bytes,
        }
    }
}

/// Clears every "left" flag in a message's member records and heartbeats: no node hears
/// that another left (the departure-announcement sabotage).
fn strip_departures(bytes: Vec<u8>) -> Vec<u8> {
    let Ok(mut envelope) = codec::decode::<Envelope>(&bytes) else { return bytes };
    let (records, beats): (Vec<&mut Record>, Vec<&mut Heartbeat>) = match &mut envelope.body {
        Body::Syn { sender, digest } => (vec![sender], digest.members.iter_mut().collect()),
        Body::SynAck { sender, digest, records } => {
            let mut all = vec![sender];
            all.extend(records.iter_mut());
            (all, digest.members.iter_mut().collect())
        }
        Body::Members(records) => (records.iter_mut().collect(), Vec::new()),
        _ => return bytes,
    };
    for beat in beats.into_iter().chain(records.into_iter().map(|r| &mut r.heartbeat)) {
        beat.left = false;
    }
    codec::encode(&envelope).unwrap_or(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::Latency;
    use rand::SeedableRng;

    #[test]
    fn a_cut_drops_one_direction_and_healing_restores_it() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut network = Network::new(LinkFaults::calm(Latency::Constant(5)));
        network.cut(0, BTreeSet::from([(1, 2)]));
        assert!(network.send(&mut rng, 1, 2, vec![1]).is_empty());
        assert_eq!(network.send(&mut rng, 2, 1, vec![1]).len(), 1);
        network.heal(None);
        let copies = network.send(&mut rng, 1, 2, vec![1]);
        assert_eq!(copies, vec![Copy { delay_ms: 5, bytes: vec![1], corrupted: false }]);
        assert_eq!(network.stats.cut, 1);
    }
}
