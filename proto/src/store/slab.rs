//! How the store holds an entry: `Packed`, one allocation with the write's stamp, sequence
//! number, expiry, key and value, in a `Slab` that names it by a `u32` id.
//!
//! A `Key` and a `Value` are shared `Arc`s (16 bytes of counts each, a fat pointer each), and the
//! `LWWReg` that `Entry` shows pads an `Option<Value>` and a `Stamp` to 32 bytes: held that way, a
//! 16-byte key and value cost over 100 bytes before any index. Packed, they cost a 22-byte header
//! (the writer's 8-byte id is a 4-byte index into the slab's table of writers), one allocation
//! and a 16-byte slot; the indexes hold 4-byte ids.

use std::collections::BTreeMap;

use crate::clock::{Hlc, NodeId, Stamp};
use crate::data::{Key, Value};
use crate::limits::KEY_SIZE_MAX;
use crate::version::Dot;

use super::{Entry, Replaced, Update};

/// Slots per slab page. Pages are allocated whole and never move, so the slab grows by one
/// page (64 KiB) at a time instead of doubling one vector (which keeps up to twice the slots).
pub(crate) const SLAB_PAGE_LEN: usize = 4096;

/// Header bytes: the stamp's reading (8), the sequence number (8), the writer's index in the
/// slab's table of writers (4), and the key's length with the flags (2); then the expiry (8) if
/// the flags say so, the key, the value. 22 bytes and a 32-byte key and value make a 54-byte
/// allocation, which glibc's malloc keeps in a 64-byte chunk.
const HEADER_LEN: usize = 22;
/// Offset of the writer's index.
const WRITER_AT: usize = 16;
/// Offset of the key's length and the flags.
const KEY_LEN_AT: usize = 20;
/// The key's length is the low 10 bits of its field; the flags are the high ones.
const KEY_LEN_MASK: u16 = 0x3ff;
/// Flag: a value follows the key (otherwise the entry is a tombstone).
const HAS_VALUE: u16 = 1 << 14;
/// Flag: an expiry follows the header.
const HAS_EXPIRY: u16 = 1 << 15;

const _: () = assert!(KEY_SIZE_MAX <= KEY_LEN_MASK as usize, "a key's length fits its field");

/// One held write, packed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Packed(Box<[u8]>);

fn word(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

impl Packed {
    /// Packs `update`, whose writer has index `writer`.
    fn new(update: &Update, writer: u32) -> Packed {
        let key = update.key.as_bytes();
        let value = update.value.as_ref().map_or(&[][..], Value::as_bytes);
        let expiry = update.expires_at_ms.map(u64::to_le_bytes);
        let expiry = expiry.as_ref().map_or(&[][..], |bytes| &bytes[..]);
        // Invariant: a key holds at most KEY_SIZE_MAX bytes, within the mask (asserted above).
        let mut field = u16::try_from(key.len()).unwrap_or(KEY_LEN_MASK) & KEY_LEN_MASK;
        if update.value.is_some() {
            field |= HAS_VALUE;
        }
        if update.expires_at_ms.is_some() {
            field |= HAS_EXPIRY;
        }
        let mut bytes = Vec::with_capacity(HEADER_LEN + expiry.len() + key.len() + value.len());
        bytes.extend_from_slice(&update.stamp.hlc.as_u64().to_le_bytes());
        bytes.extend_from_slice(&update.seq.to_le_bytes());
        bytes.extend_from_slice(&writer.to_le_bytes());
        bytes.extend_from_slice(&field.to_le_bytes());
        for part in [expiry, key, value] {
            bytes.extend_from_slice(part);
        }
        Packed(bytes.into_boxed_slice())
    }

    fn field(&self) -> u16 {
        u16::from_le_bytes([self.0[KEY_LEN_AT], self.0[KEY_LEN_AT + 1]])
    }

    fn key_at(&self) -> usize {
        HEADER_LEN + if self.field() & HAS_EXPIRY != 0 { 8 } else { 0 }
    }

    fn key_end(&self) -> usize {
        self.key_at() + usize::from(self.field() & KEY_LEN_MASK)
    }

    fn writer(&self) -> usize {
        let mut bytes = [0; 4];
        bytes.copy_from_slice(&self.0[WRITER_AT..WRITER_AT + 4]);
        // A u32 always fits in usize on the 32- and 64-bit targets chorus builds for.
        u32::from_le_bytes(bytes) as usize
    }
}

/// A held entry as the store reads it: its packed bytes and the table that names its writer.
#[derive(Clone, Copy)]
pub(crate) struct Held<'a> {
    packed: &'a Packed,
    writers: &'a [NodeId],
}

impl<'a> Held<'a> {
    fn node(self) -> NodeId {
        self.writers[self.packed.writer()]
    }

    fn seq(self) -> u64 {
        word(&self.packed.0, 8)
    }

    /// The write's stamp.
    pub(crate) fn stamp(self) -> Stamp {
        Stamp { hlc: Hlc::from_u64(word(&self.packed.0, 0)), node: self.node() }
    }

    /// The write's dot.
    pub(crate) fn dot(self) -> Dot {
        Dot { node: self.node(), seq: self.seq() }
    }

    /// The key's bytes.
    pub(crate) fn key(self) -> &'a [u8] {
        &self.packed.0[self.packed.key_at()..self.packed.key_end()]
    }

    /// The value's bytes, or `None` for a tombstone.
    pub(crate) fn value(self) -> Option<&'a [u8]> {
        let end = self.packed.key_end();
        (self.packed.field() & HAS_VALUE != 0).then(|| &self.packed.0[end..])
    }

    /// Whether the entry is a tombstone.
    pub(crate) fn is_tombstone(self) -> bool {
        self.packed.field() & HAS_VALUE == 0
    }

    /// The absolute expiry, if the write had one.
    pub(crate) fn expires_at_ms(self) -> Option<u64> {
        (self.packed.field() & HAS_EXPIRY != 0).then(|| word(&self.packed.0, HEADER_LEN))
    }

    /// The value if the entry is neither a tombstone nor expired at `now_ms`.
    pub(crate) fn live_value(self, now_ms: u64) -> Option<&'a [u8]> {
        match self.expires_at_ms() {
            Some(expiry) if expiry <= now_ms => None,
            _ => self.value(),
        }
    }

    /// The write as it travels.
    pub(crate) fn update(self) -> Update {
        Update {
            key: Key::held(self.key()),
            stamp: self.stamp(),
            seq: self.seq(),
            value: self.value().map(Value::held),
            expires_at_ms: self.expires_at_ms(),
        }
    }

    /// The entry as the store's readers see it.
    pub(crate) fn entry(self) -> Entry {
        let register = crdts::LWWReg { val: self.value().map(Value::held), marker: self.stamp() };
        Entry { register, seq: self.seq(), expires_at_ms: self.expires_at_ms() }
    }
}

/// Packed entries named by `u32` ids (a freed id is reused), and the writers they name.
#[derive(Clone, Debug, Default)]
pub(crate) struct Slab {
    pages: Vec<Vec<Option<Packed>>>,
    free: Vec<u32>,
    /// Every writer of a held or once held entry, by index: one per identity, like the
    /// version vector's bases.
    writers: Vec<NodeId>,
    /// The index of each writer in `writers`.
    writer_index: BTreeMap<NodeId, u32>,
}

/// Splits an id into its page and its slot in the page.
fn place(id: u32) -> (usize, usize) {
    // A u32 always fits in usize on the 32- and 64-bit targets chorus builds for.
    let id = id as usize;
    (id / SLAB_PAGE_LEN, id % SLAB_PAGE_LEN)
}

impl Slab {
    /// `update` packed, its writer added to the table if new.
    fn pack(&mut self, update: &Update) -> Packed {
        let node = update.stamp.node;
        let writer = match self.writer_index.get(&node) {
            Some(&writer) => writer,
            None => {
                // Invariant: fewer than 2^32 identities, each costing far more than 4 bytes.
                let writer = u32::try_from(self.writers.len()).expect("fewer than 2^32 writers");
                self.writers.push(node);
                self.writer_index.insert(node, writer);
                writer
            }
        };
        Packed::new(update, writer)
    }

    /// Stores `update` and returns its id.
    pub(crate) fn insert(&mut self, update: &Update) -> u32 {
        let packed = self.pack(update);
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
    pub(crate) fn get(&self, id: u32) -> Held<'_> {
        let (page, slot) = place(id);
        // Invariant: the indexes hold only ids of held entries.
        let packed = self.pages[page][slot].as_ref().expect("an indexed id names a held entry");
        Held { packed, writers: &self.writers }
    }

    /// Replaces the entry named `id` by `update` and returns what it held.
    pub(crate) fn replace(&mut self, id: u32, update: &Update) -> Replaced {
        let packed = self.pack(update);
        let (page, slot) = place(id);
        // Invariant: the indexes hold only ids of held entries.
        let old = self.pages[page][slot].replace(packed).expect("an indexed id names a held entry");
        let old = Held { packed: &old, writers: &self.writers };
        Replaced {
            stamp: old.stamp(),
            tombstone: old.is_tombstone(),
            expires_at_ms: old.expires_at_ms(),
        }
    }

    /// Frees `id` and returns its entry.
    pub(crate) fn remove(&mut self, id: u32) -> Entry {
        let (page, slot) = place(id);
        self.free.push(id);
        // Invariant: the indexes hold only ids of held entries.
        let old = self.pages[page][slot].take().expect("an indexed id names a held entry");
        Held { packed: &old, writers: &self.writers }.entry()
    }
}
