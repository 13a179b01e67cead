//! The data directory's format (`chorus node --data-dir`): what a node keeps on disk, and the
//! journal of changes it hands its driver to write there. Pure types and their encodings; the
//! file itself (redb) is the driver's (`src/store/`).
//!
//! A data directory holds three kinds of record:
//!
//! - one [`DiskHeader`]: a magic string, the format version and the cluster marker (a
//!   fingerprint of the cluster key the driver computes), checked before anything else is read,
//!   so a file of another program, another format or another cluster is refused, never wiped;
//! - one [`DiskState`]: the replica's version vector bases and [`Horizon`], the identity that
//!   wrote the file and the ones before it, the clock's high-water mark, and the addresses of
//!   the peers it knew (so a restart rejoins them without `--join`);
//! - one row per held entry, tombstones and expired entries included: the key, and the rest of
//!   its [`Update`] encoded as a [`DiskEntry`].
//!
//! The rows and the state are always written together, from one [`Journal`] taken from the
//! [`Node`](crate::Node) in one step, so what is on disk is the replica as it was at some
//! moment: rows and bases agree, as the fence (`horizon.rs`) needs.
//!
//! A restored node never takes back the identity that wrote the file: that identity may have
//! issued (and pushed) writes after the last commit, and reusing its sequence numbers would
//! give two different writes one dot. It takes a new identity, keeps the state, and the
//! horizon check of its first exchanges decides whether the state may be shared: an old copy
//! of a data directory that lacks deletes the cluster has since collected is dropped, exactly
//! as the state of a node cut off for too long.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::{Hlc, NodeId, Stamp};
use crate::codec::{self, CodecError};
use crate::data::{Key, Value};
use crate::horizon::Horizon;
use crate::limits::{DISK_STATE_SIZE_MAX, IDENTITY_HISTORY_MAX, MEMBERS_MAX, MESSAGE_SIZE_MAX};
use crate::message::Addr;
use crate::store::Update;

/// The first bytes of every header: says the file is chorus's.
pub const DISK_MAGIC: [u8; 8] = *b"chorus\0d";

/// The version of this format. A file of another version is refused with a message naming
/// both, never read as this one.
pub const DISK_FORMAT_VERSION: u32 = 1;

/// Bytes of the cluster marker.
pub const CLUSTER_MARKER_SIZE: usize = 16;

/// What identifies a data directory: its format and the cluster it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskHeader {
    /// [`DISK_MAGIC`].
    pub magic: [u8; 8],
    /// [`DISK_FORMAT_VERSION`] of the program that created the file.
    pub format: u32,
    /// A fingerprint of the cluster key that the file's data belongs to (computed by the
    /// driver; opaque here).
    pub cluster: [u8; CLUSTER_MARKER_SIZE],
}

impl DiskHeader {
    /// The header of a new file for `cluster`.
    pub fn new(cluster: [u8; CLUSTER_MARKER_SIZE]) -> DiskHeader {
        DiskHeader { magic: DISK_MAGIC, format: DISK_FORMAT_VERSION, cluster }
    }

    /// Encodes the header.
    pub fn encode(&self) -> Vec<u8> {
        // Invariant: a fixed-size record always fits the limit.
        codec::encode(self).expect("a header encodes")
    }

    /// Decodes and checks a header: the magic and the format. The cluster marker is the
    /// caller's to compare (it may accept several keys while they rotate).
    pub fn decode(bytes: &[u8]) -> Result<DiskHeader, DiskError> {
        let header: DiskHeader = codec::decode(bytes).map_err(|_| DiskError::NotChorus)?;
        if header.magic != DISK_MAGIC {
            return Err(DiskError::NotChorus);
        }
        if header.format != DISK_FORMAT_VERSION {
            return Err(DiskError::Format { found: header.format, supported: DISK_FORMAT_VERSION });
        }
        Ok(header)
    }
}

/// Everything a node keeps besides its entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskState {
    /// The identity that wrote this state last.
    pub id: NodeId,
    /// Identities this data directory was written under before `id`, oldest first, at most
    /// `IDENTITY_HISTORY_MAX`: a restored node never takes one of them again.
    pub previous: Vec<NodeId>,
    /// The clock's last reading: a restored node's stamps are greater, even if the wall clock
    /// went back while it was down.
    pub clock: Hlc,
    /// The version vector's bases (its out-of-order dots are not kept: forgetting them is
    /// always safe).
    pub bases: BTreeMap<NodeId, u64>,
    /// What the state lacks by collection and what it is safe against.
    pub horizon: Horizon,
    /// Addresses of the peers the node knew, at most `MEMBERS_MAX`: a restart joins them.
    pub peers: Vec<Addr>,
}

impl DiskState {
    /// Encodes the state; fails only past `DISK_STATE_SIZE_MAX`.
    pub fn encode(&self) -> Result<Vec<u8>, DiskError> {
        codec::encode_with_limit(self, DISK_STATE_SIZE_MAX).map_err(DiskError::Codec)
    }

    /// Decodes a state, refusing one beyond the bounds this format promises.
    pub fn decode(bytes: &[u8]) -> Result<DiskState, DiskError> {
        if bytes.len() > DISK_STATE_SIZE_MAX {
            return Err(DiskError::Corrupt("the state record is larger than allowed".into()));
        }
        let state: DiskState = postcard_exact(bytes)?;
        if state.previous.len() > IDENTITY_HISTORY_MAX || state.peers.len() > MEMBERS_MAX {
            return Err(DiskError::Corrupt("the state record holds too many identities".into()));
        }
        Ok(state)
    }

    /// Every identity this data directory was written under, `id` included.
    pub fn identities(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.previous.iter().copied().chain(std::iter::once(self.id))
    }

    /// The state a node restored from this one writes under its new identity `id`: the old
    /// identity joins the history, the oldest leaving it when full.
    pub fn renamed(&self, id: NodeId) -> DiskState {
        let mut previous: Vec<NodeId> = self.identities().collect();
        let excess = previous.len().saturating_sub(IDENTITY_HISTORY_MAX);
        previous.drain(..excess);
        DiskState { id, previous, ..self.clone() }
    }
}

/// One entry's row, without its key (the row's key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskEntry {
    /// The write's stamp.
    pub stamp: Stamp,
    /// The writer's sequence number.
    pub seq: u64,
    /// The value, or `None` for a tombstone.
    pub value: Option<Value>,
    /// Absolute expiry, if any.
    pub expires_at_ms: Option<u64>,
}

impl DiskEntry {
    /// Encodes the row of `update`.
    pub fn encode(update: &Update) -> Vec<u8> {
        let entry = DiskEntry {
            stamp: update.stamp,
            seq: update.seq,
            value: update.value.clone(),
            expires_at_ms: update.expires_at_ms,
        };
        // Invariant: a key and value within their limits fit a message.
        codec::encode(&entry).expect("an entry fits a message")
    }

    /// Decodes the row stored under `key` back into its update.
    pub fn decode(key: &[u8], bytes: &[u8]) -> Result<Update, DiskError> {
        let key = Key::new(key).map_err(|why| DiskError::Corrupt(format!("a row's key: {why}")))?;
        if bytes.len() > MESSAGE_SIZE_MAX {
            return Err(DiskError::Corrupt("a row is larger than any entry".into()));
        }
        let DiskEntry { stamp, seq, value, expires_at_ms } = postcard_exact(bytes)?;
        if seq == 0 {
            return Err(DiskError::Corrupt("a row has sequence number 0".into()));
        }
        Ok(Update { key, stamp, seq, value, expires_at_ms })
    }
}

/// The changes a node made since its driver last took them: rows to write (`Some`) or remove
/// (`None`), coalesced by key so a journal never holds more than one row per key of the
/// replica, and whether every earlier row must go first (the node dropped its state).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Journal {
    /// Every row on disk goes before `rows` are written.
    pub reset: bool,
    /// The latest change of each key: its entry as an update, or `None` once collected.
    pub rows: BTreeMap<Key, Option<Update>>,
}

impl Journal {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        !self.reset && self.rows.is_empty()
    }

    /// Notes that `update` is now `key`'s entry.
    pub(crate) fn upsert(&mut self, update: &Update) {
        self.rows.insert(update.key.clone(), Some(update.clone()));
    }

    /// Notes that `key`'s entry was collected.
    pub(crate) fn remove(&mut self, key: Key) {
        self.rows.insert(key, None);
    }

    /// Notes that the whole state was dropped.
    pub(crate) fn drop_all(&mut self) {
        self.reset = true;
        self.rows.clear();
    }
}

/// What a node that keeps a data directory records between batches: the journal, and the
/// identities the directory was written under before the current one.
#[derive(Clone, Debug, Default)]
pub(crate) struct DiskLog {
    pub(crate) journal: Journal,
    pub(crate) previous: Vec<NodeId>,
}

impl DiskLog {
    /// Notes that the node left identity `old` for another.
    pub(crate) fn renamed(&mut self, old: NodeId) {
        self.previous.push(old);
        let excess = self.previous.len().saturating_sub(IDENTITY_HISTORY_MAX);
        self.previous.drain(..excess);
    }
}

/// One batch for the disk: the changed rows and the state they belong with, taken in one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// The rows that changed.
    pub journal: Journal,
    /// The state at the same moment.
    pub state: DiskState,
}

/// A data directory held in memory: the rows as encoded on disk and the state record, with
/// batches applied as the driver writes them (a reset clears every row first). The simulator's
/// disks and the scenario tests use it; the real node writes the same batches to redb.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskImage {
    rows: BTreeMap<Key, Vec<u8>>,
    state: Option<DiskState>,
}

impl DiskImage {
    /// Applies one batch.
    pub fn apply(&mut self, batch: Batch) {
        if batch.journal.reset {
            self.rows.clear();
        }
        for (key, row) in batch.journal.rows {
            match row {
                Some(update) => self.rows.insert(key, DiskEntry::encode(&update)),
                None => self.rows.remove(&key),
            };
        }
        self.state = Some(batch.state);
    }

    /// The state and every entry, decoded, if a state was ever written.
    pub fn restorable(&self) -> Option<(DiskState, Vec<Update>)> {
        let state = self.state.clone()?;
        let decode = |(key, row): (&Key, &Vec<u8>)| DiskEntry::decode(key.as_bytes(), row);
        let entries = self.rows.iter().map(decode).collect::<Result<_, _>>().ok()?;
        Some((state, entries))
    }

    /// The state record, if one was written.
    pub fn state(&self) -> Option<&DiskState> {
        self.state.as_ref()
    }

    /// The encoded rows by key.
    pub fn rows(&self) -> &BTreeMap<Key, Vec<u8>> {
        &self.rows
    }
}

/// Why a data directory's record could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    /// The header is missing or not chorus's.
    #[error("this is not a chorus data file")]
    NotChorus,
    /// Another version of the format.
    #[error("the data file has format version {found}; this chorus reads version {supported} only")]
    Format {
        /// The file's version.
        found: u32,
        /// The one this program reads.
        supported: u32,
    },
    /// A record does not decode or breaks a bound.
    #[error("a record is corrupt: {0}")]
    Corrupt(String),
    /// A record did not encode (beyond its size bound).
    #[error("a record did not encode")]
    Codec(#[source] CodecError),
}

/// Decodes a record that must span all of `bytes`, whatever its size (bounded by the caller).
fn postcard_exact<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DiskError> {
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|why| DiskError::Corrupt(why.to_string()))?;
    if !rest.is_empty() {
        return Err(DiskError::Corrupt(format!("{} bytes after a record", rest.len())));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(key: &str, value: Option<&str>) -> Update {
        Update {
            key: Key::new(key).unwrap(),
            stamp: Stamp { hlc: Hlc::new(1_700_000_000_000, 3), node: NodeId(7) },
            seq: 42,
            value: value.map(|v| Value::new(v).unwrap()),
            expires_at_ms: Some(1_700_000_060_000),
        }
    }

    #[test]
    fn entries_round_trip_values_and_tombstones() {
        for written in [update("session/1", Some("v")), update("gone", None)] {
            let bytes = DiskEntry::encode(&written);
            assert_eq!(DiskEntry::decode(written.key.as_bytes(), &bytes), Ok(written));
        }
    }

    #[test]
    fn state_round_trips_with_its_horizon_and_history() {
        let mut horizon = Horizon::default();
        horizon.collected(crate::version::Dot { node: NodeId(2), seq: 9 }, update("k", None).stamp);
        let state = DiskState {
            id: NodeId(5),
            previous: vec![NodeId(3), NodeId(4)],
            clock: Hlc::new(99, 1),
            bases: BTreeMap::from([(NodeId(2), 10), (NodeId(5), 4)]),
            horizon,
            peers: vec![Addr::new("127.0.0.1:7420").unwrap()],
        };
        let bytes = state.encode().unwrap();
        assert_eq!(DiskState::decode(&bytes).unwrap(), state);
        let renamed = state.renamed(NodeId(6));
        assert_eq!(renamed.identities().collect::<Vec<_>>(), [3, 4, 5, 6].map(NodeId));
    }

    #[test]
    fn the_history_of_identities_stays_bounded() {
        let mut state = DiskState::default();
        for id in 1..=(IDENTITY_HISTORY_MAX as u64 + 10) {
            state = state.renamed(NodeId(id));
        }
        assert_eq!(state.previous.len(), IDENTITY_HISTORY_MAX);
        assert!(DiskState::decode(&state.encode().unwrap()).is_ok());
    }

    #[test]
    fn foreign_old_and_garbled_records_are_refused_never_misread() {
        let header = DiskHeader::new([1; CLUSTER_MARKER_SIZE]);
        assert_eq!(DiskHeader::decode(&header.encode()), Ok(header.clone()));
        let foreign = DiskHeader { magic: *b"redis\0\0\0", ..header.clone() };
        assert_eq!(DiskHeader::decode(&foreign.encode()), Err(DiskError::NotChorus));
        let newer = DiskHeader { format: DISK_FORMAT_VERSION + 1, ..header };
        assert!(matches!(DiskHeader::decode(&newer.encode()), Err(DiskError::Format { .. })));
        assert_eq!(DiskHeader::decode(b"garbage"), Err(DiskError::NotChorus));
        let row = DiskEntry::encode(&update("k", Some("v")));
        assert!(DiskEntry::decode(b"k", &row[..row.len() - 1]).is_err());
        assert!(DiskEntry::decode(b"", &row).is_err());
        let state = DiskState::default().encode().unwrap();
        assert!(DiskState::decode(&[state.as_slice(), &[0]].concat()).is_err());
    }

    #[test]
    fn decoding_random_bytes_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = DiskEntry::decode(b"k", &bytes);
            let _ = DiskState::decode(&bytes);
            let _ = DiskHeader::decode(&bytes);
        }
    }

    #[test]
    fn a_journal_keeps_the_latest_change_of_each_key_and_a_reset_clears_it() {
        let mut journal = Journal::default();
        assert!(journal.is_empty());
        journal.upsert(&update("a", Some("1")));
        journal.upsert(&update("a", Some("2")));
        journal.remove(Key::new("b").unwrap());
        assert_eq!(journal.rows.len(), 2);
        assert_eq!(journal.rows[&Key::new("a").unwrap()], Some(update("a", Some("2"))));
        journal.drop_all();
        assert!(journal.rows.is_empty() && journal.reset && !journal.is_empty());
    }
}
