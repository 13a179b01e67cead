//! How the store holds an entry: `Packed`, one allocation with the write's stamp, sequence
//! number, expiry, key and value, in a `Slab` that names it by a `u32` id.
//!
//! A `Key` and a `Value` are shared `Arc`s (16 bytes of counts each, a fat pointer each), and the
//! `LWWReg` that `Entry` shows pads an `Option<Value>` and a `Stamp` to 32 bytes: held that way, a
//! 16-byte key and value cost over 100 bytes before any index. Packed, they cost a 27-byte header,
//! one allocation and a 16-byte slot; the indexes hold 4-byte ids.

use crate::clock::{Hlc, NodeId, Stamp};
use crate::data::{Key, Value};
use crate::version::Dot;

use super::{Entry, Update};

/// Slots per slab page. Pages are allocated whole and never move, so the slab grows by one
/// page (64 KiB) at a time instead of doubling one vector (which keeps up to twice the slots).
pub(crate) const SLAB_PAGE_LEN: usize = 4096;

/// Header bytes: the stamp's reading (8) and node (8), the sequence number (8), the key's
/// length (2) and the flags (1); then the expiry (8) if the flags say so, the key, the value.
const HEADER_LEN: usize = 27;
/// Offset of the key's length.
const KEY_LEN_AT: usize = 24;
/// Offset of the flags.
const FLAGS_AT: usize = 26;
/// Flag: a value follows the key (otherwise the entry is a tombstone).
const HAS_VALUE: u8 = 1;
/// Flag: an expiry follows the header.
const HAS_EXPIRY: u8 = 2;

/// One held write, packed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Packed(Box<[u8]>);

fn word(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

impl Packed {
    /// Packs `update`.
    pub(crate) fn new(update: &Update) -> Packed {
        let key = update.key.as_bytes();
        let value = update.value.as_ref().map_or(&[][..], Value::as_bytes);
        let expiry = update.expires_at_ms.map(u64::to_le_bytes);
        let flags =
            u8::from(update.value.is_some()) * HAS_VALUE + u8::from(expiry.is_some()) * HAS_EXPIRY;
        let expiry = expiry.as_ref().map_or(&[][..], |bytes| &bytes[..]);
        let mut bytes = Vec::with_capacity(HEADER_LEN + expiry.len() + key.len() + value.len());
        bytes.extend_from_slice(&update.stamp.hlc.as_u64().to_le_bytes());
        bytes.extend_from_slice(&update.stamp.node.0.to_le_bytes());
        bytes.extend_from_slice(&update.seq.to_le_bytes());
        // Invariant: a key holds at most KEY_SIZE_MAX (512) bytes, well within a u16.
        let key_len = u16::try_from(key.len()).unwrap_or(u16::MAX);
        bytes.extend_from_slice(&key_len.to_le_bytes());
        bytes.push(flags);
        for part in [expiry, key, value] {
            bytes.extend_from_slice(part);
        }
        Packed(bytes.into_boxed_slice())
    }

    fn flags(&self) -> u8 {
        self.0[FLAGS_AT]
    }

    fn key_at(&self) -> usize {
        HEADER_LEN + if self.flags() & HAS_EXPIRY != 0 { 8 } else { 0 }
    }

    fn key_end(&self) -> usize {
        let len = u16::from_le_bytes([self.0[KEY_LEN_AT], self.0[KEY_LEN_AT + 1]]);
        self.key_at() + usize::from(len)
    }

    /// The write's stamp.
    pub(crate) fn stamp(&self) -> Stamp {
        Stamp { hlc: Hlc::from_u64(word(&self.0, 0)), node: NodeId(word(&self.0, 8)) }
    }

    /// The write's dot.
    pub(crate) fn dot(&self) -> Dot {
        Dot { node: NodeId(word(&self.0, 8)), seq: word(&self.0, 16) }
    }

    /// The key's bytes.
    pub(crate) fn key(&self) -> &[u8] {
        &self.0[self.key_at()..self.key_end()]
    }

    /// The value's bytes, or `None` for a tombstone.
    pub(crate) fn value(&self) -> Option<&[u8]> {
        (self.flags() & HAS_VALUE != 0).then(|| &self.0[self.key_end()..])
    }

    /// Whether the entry is a tombstone.
    pub(crate) fn is_tombstone(&self) -> bool {
        self.flags() & HAS_VALUE == 0
    }

    /// The absolute expiry, if the write had one.
    pub(crate) fn expires_at_ms(&self) -> Option<u64> {
        (self.flags() & HAS_EXPIRY != 0).then(|| word(&self.0, HEADER_LEN))
    }

    /// The value if the entry is neither a tombstone nor expired at `now_ms`.
    pub(crate) fn live_value(&self, now_ms: u64) -> Option<&[u8]> {
        match self.expires_at_ms() {
            Some(expiry) if expiry <= now_ms => None,
            _ => self.value(),
        }
    }

    /// The write as it travels.
    pub(crate) fn update(&self) -> Update {
        let stamp = self.stamp();
        Update {
            key: Key::held(self.key()),
            stamp,
            seq: word(&self.0, 16),
            value: self.value().map(Value::held),
            expires_at_ms: self.expires_at_ms(),
        }
    }

    /// The entry as the store's readers see it.
    pub(crate) fn entry(&self) -> Entry {
        let register = crdts::LWWReg { val: self.value().map(Value::held), marker: self.stamp() };
        Entry { register, seq: word(&self.0, 16), expires_at_ms: self.expires_at_ms() }
    }
}

/// Packed entries named by `u32` ids; a freed id is reused.
#[derive(Clone, Debug, Default)]
pub(crate) struct Slab {
    pages: Vec<Vec<Option<Packed>>>,
    free: Vec<u32>,
}

/// Splits an id into its page and its slot in the page.
fn place(id: u32) -> (usize, usize) {
    // A u32 always fits in usize on the 32- and 64-bit targets chorus builds for.
    let id = id as usize;
    (id / SLAB_PAGE_LEN, id % SLAB_PAGE_LEN)
}

impl Slab {
    /// Stores `packed` and returns its id.
    pub(crate) fn insert(&mut self, packed: Packed) -> u32 {
        if let Some(id) = self.free.pop() {
            let (page, slot) = place(id);
            self.pages[page][slot] = Some(packed);
            return id;
        }
        if self.pages.last().is_none_or(|page| page.len() == SLAB_PAGE_LEN) {
            self.pages.push(Vec::with_capacity(SLAB_PAGE_LEN));
        }
        let page = self.pages.len() - 1;
        let slot = self.pages[page].len();
        self.pages[page].push(Some(packed));
        // Invariant: 2^32 entries of at least 28 bytes each would need 120 GB of memory first.
        u32::try_from(page * SLAB_PAGE_LEN + slot).expect("fewer than 2^32 entries")
    }

    /// The entry named `id`, which must be held.
    pub(crate) fn get(&self, id: u32) -> &Packed {
        let (page, slot) = place(id);
        // Invariant: the indexes hold only ids of held entries.
        self.pages[page][slot].as_ref().expect("an indexed id names a held entry")
    }

    /// Replaces the entry named `id` and returns the one it held.
    pub(crate) fn replace(&mut self, id: u32, packed: Packed) -> Packed {
        let (page, slot) = place(id);
        // Invariant: the indexes hold only ids of held entries.
        self.pages[page][slot].replace(packed).expect("an indexed id names a held entry")
    }

    /// Frees `id` and returns its entry.
    pub(crate) fn remove(&mut self, id: u32) -> Packed {
        let (page, slot) = place(id);
        self.free.push(id);
        // Invariant: the indexes hold only ids of held entries.
        self.pages[page][slot].take().expect("an indexed id names a held entry")
    }
}
