//! The store's expiry searches: the entries expiring in a window, and the first expiry after a
//! time, whose last answer `NextExpiry` keeps for as long as it stays right.
//!
//! The node asks for its timer after every call that takes the lock (`Node::poll_timeout`), and
//! for due expiries once the clock passes the millisecond it last looked at
//! (`Node::after_call`). Each answer was a search of the expiry index, reading an entry at
//! every step of a binary search. An answer for `after_ms` holds for every later time below
//! it; an entry joining the index changes it only if it expires after `after_ms` and before
//! the answer, one leaving only if it expires at the answer; so most writes keep it.

use std::cell::Cell;

use super::Store;
use super::orders::after_expiry_fence;
use super::slab::Held;
use crate::data::Key;

impl Store {
    /// The held entries that expire after `after_ms`, in expiry order (then sequence number,
    /// then writer).
    pub(super) fn expiring_from(&self, after_ms: u64) -> impl Iterator<Item = Held<'_>> + '_ {
        let start = self.expiries.seek(after_expiry_fence(after_ms), |id| {
            self.slab.get(id).expires_at_ms().is_some_and(|expiry| expiry <= after_ms)
        });
        self.expiries.iter_from(start).map(|id| self.slab.get(id))
    }

    /// Keys whose expiry falls in `(after_ms, up_to_ms]`, in expiry order (then sequence
    /// number, then writer).
    pub fn expiring(&self, after_ms: u64, up_to_ms: u64) -> Vec<Key> {
        if after_ms >= up_to_ms {
            return Vec::new();
        }
        (self.expiring_from(after_ms))
            .take_while(|held| held.expires_at_ms() <= Some(up_to_ms))
            .map(|held| Key::held(held.key()))
            .collect()
    }

    /// The first expiry strictly after `after_ms`, to schedule the next expiry event.
    pub fn next_expiry(&self, after_ms: u64) -> Option<u64> {
        if let Some(kept) = self.next_expiry.get(after_ms) {
            return kept;
        }
        let next_ms = self.expiring_from(after_ms).next().and_then(Held::expires_at_ms);
        self.next_expiry.set(after_ms, next_ms);
        next_ms
    }
}

/// The last answer, while it holds.
#[derive(Clone, Debug, Default)]
pub(super) struct NextExpiry(Cell<Option<Answer>>);

/// The first expiry strictly after `after_ms` was `next_ms` (`None`: no later expiry).
#[derive(Clone, Copy, Debug)]
struct Answer {
    after_ms: u64,
    next_ms: Option<u64>,
}

impl NextExpiry {
    /// The first expiry strictly after `after_ms`, if the kept answer covers that time: no
    /// expiry lies between its time and its answer, so any time in between has the same one.
    pub(super) fn get(&self, after_ms: u64) -> Option<Option<u64>> {
        let answer = self.0.get()?;
        let covered = answer.after_ms <= after_ms && answer.next_ms.is_none_or(|at| after_ms < at);
        covered.then_some(answer.next_ms)
    }

    /// Keeps `next_ms` as the answer for `after_ms`.
    pub(super) fn set(&self, after_ms: u64, next_ms: Option<u64>) {
        self.0.set(Some(Answer { after_ms, next_ms }));
    }

    /// An entry expiring at `expiry_ms` joined the expiry index: it is the answer if it comes
    /// first.
    pub(super) fn added(&self, expiry_ms: u64) {
        let Some(answer) = self.0.get() else { return };
        if expiry_ms > answer.after_ms && answer.next_ms.is_none_or(|at| expiry_ms < at) {
            self.set(answer.after_ms, Some(expiry_ms));
        }
    }

    /// An entry expiring at `expiry_ms` left the expiry index: if it was the answer, another
    /// entry may or may not expire then, so the answer is searched for again.
    pub(super) fn removed(&self, expiry_ms: u64) {
        if self.0.get().is_some_and(|answer| answer.next_ms == Some(expiry_ms)) {
            self.0.set(None);
        }
    }
}
