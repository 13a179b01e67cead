//! Listing live keys by prefix, in pages whose work is bounded by the entries they visit.
//!
//! Tombstones and expired entries sit in the key index beside live ones until collection, so a
//! prefix can hold any number of them between two live keys. A page visits at most
//! [`LIST_VISIT_MAX`] entries and says where it stopped, so that a caller holding a lock
//! releases it between pages and a page without live keys is not taken for the end.

use super::Store;
use crate::data::{Key, Value};
use crate::limits::LIST_VISIT_MAX;

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listed {
    /// Live keys with the prefix, and their values, in key order.
    pub entries: Vec<(Key, Value)>,
    /// Where the walk stopped before the end of the prefix: the last name it visited (live or
    /// not), after which the next page starts. `None` once it reached the end of the prefix.
    /// A page may hold no entry and still stop before the end, when it spent its budget on
    /// tombstones and expired entries.
    pub resume_after: Option<Key>,
}

impl Store {
    /// Up to `limit` live keys and values starting with `prefix`, in key order, after
    /// `start_after` when given (at least one), visiting at most [`LIST_VISIT_MAX`] entries.
    pub fn list_page(
        &self,
        prefix: &[u8],
        start_after: Option<&Key>,
        limit: usize,
        now_ms: u64,
    ) -> Listed {
        self.list_within(prefix, start_after, limit, now_ms, LIST_VISIT_MAX)
    }

    /// Up to `limit` live keys and values starting with `prefix`, in key order, after
    /// `start_after` when given: [`Store::list_page`] page after page, so its work grows with
    /// the tombstones and expired entries in the range. A caller that holds a lock around the
    /// store should page with `list_page` and let go between pages.
    pub fn list(
        &self,
        prefix: &[u8],
        start_after: Option<&Key>,
        limit: usize,
        now_ms: u64,
    ) -> Vec<(Key, Value)> {
        let mut found = Vec::new();
        let mut after = start_after.cloned();
        while found.len() < limit {
            let page = self.list_page(prefix, after.as_ref(), limit - found.len(), now_ms);
            found.extend(page.entries);
            match page.resume_after {
                Some(key) => after = Some(key),
                None => break,
            }
        }
        found
    }

    /// [`Store::list_page`] with a budget of `budget` entries visited (at least one).
    pub(crate) fn list_within(
        &self,
        prefix: &[u8],
        start_after: Option<&Key>,
        limit: usize,
        now_ms: u64,
        budget: usize,
    ) -> Listed {
        // Start at the prefix, or just after `start_after` when that lies beyond it.
        let start = match start_after {
            Some(key) if key.as_bytes() >= prefix => {
                self.by_key.seek(key.as_bytes(), |id| self.slab.get(id).key() <= key.as_bytes())
            }
            _ => self.seek_key(prefix),
        };
        let (limit, budget) = (limit.max(1), budget.max(1));
        let mut entries = Vec::new();
        let mut last: Option<&[u8]> = None;
        for (visited, packed) in
            self.by_key.iter_from(start).map(|id| self.slab.get(id)).enumerate()
        {
            if !packed.key().starts_with(prefix) {
                break;
            }
            if entries.len() >= limit || visited >= budget {
                // The next name is still in the prefix: the walk stopped before the end.
                return Listed { entries, resume_after: last.map(Key::held) };
            }
            last = Some(packed.key());
            if let Some(value) = packed.live_value(now_ms) {
                entries.push((Key::held(packed.key()), Value::held(value)));
            }
        }
        Listed { entries, resume_after: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Hlc, NodeId, Stamp};
    use crate::store::Update;

    /// A write of `key` (a delete when `value` is `None`), expiring at `expires_at_ms`.
    fn write(seq: u64, key: &str, value: Option<&str>, expires_at_ms: Option<u64>) -> Update {
        Update {
            key: Key::new(key).unwrap(),
            stamp: Stamp { hlc: Hlc::new(seq, 0), node: NodeId(1) },
            seq,
            value: value.map(|value| Value::new(value).unwrap()),
            expires_at_ms,
        }
    }

    #[test]
    fn a_page_stops_at_its_budget_and_a_page_without_live_keys_is_not_the_end() {
        let mut store = Store::new();
        let tombstones = 3 * LIST_VISIT_MAX as u64;
        for seq in 1..=tombstones {
            store.apply(write(seq, &format!("k/{seq:06}"), None, None));
        }
        store.apply(write(tombstones + 1, "k/zz", Some("v"), None));
        store.apply(write(tombstones + 2, "l", Some("v"), None));
        let first = store.list_page(b"k/", None, 10, 0);
        assert!(first.entries.is_empty());
        let stopped = format!("k/{LIST_VISIT_MAX:06}");
        assert_eq!(first.resume_after, Some(Key::new(stopped).unwrap()), "the budget was not kept");
        let (mut pages, mut after, mut found) = (1, first.resume_after, Vec::new());
        while let Some(key) = after {
            let page = store.list_page(b"k/", Some(&key), 10, 0);
            found.extend(page.entries.into_iter().map(|(key, _)| key));
            (pages, after) = (pages + 1, page.resume_after);
        }
        assert_eq!(found, vec![Key::new("k/zz").unwrap()]);
        assert_eq!(pages, 4);
        assert_eq!(store.list(b"k/", None, 10, 0).len(), 1);
    }

    #[test]
    fn pages_of_any_budget_list_what_one_walk_lists() {
        let mut store = Store::new();
        for seq in 1..=60u64 {
            let key = format!("p/{:02}", seq * 7 % 61);
            let value = (seq % 3 != 0).then_some("v");
            let expiry = (seq % 5 == 0).then_some(seq);
            store.apply(write(seq, &key, value, expiry));
        }
        let now_ms = 30;
        let whole = store.list_within(b"p/", None, usize::MAX, now_ms, usize::MAX);
        assert_eq!(whole.resume_after, None);
        for (budget, limit) in [(1, 1), (1, 5), (2, 3), (7, 2), (100, 4), (3, 100)] {
            let (mut listed, mut after) = (Vec::new(), None);
            loop {
                let page = store.list_within(b"p/", after.as_ref(), limit, now_ms, budget);
                assert!(page.entries.len() <= limit.min(budget));
                listed.extend(page.entries);
                match page.resume_after {
                    Some(key) => after = Some(key),
                    None => break,
                }
            }
            assert_eq!(listed, whole.entries, "budget {budget}, limit {limit}");
        }
    }
}
