//! The watch history: the latest changes, numbered by cursor, bounded in count and in bytes;
//! watchers read it from their own cursor.
//!
//! Live changes reach watchers through the history itself, not through a channel of their
//! own: the driver records a change, then publishes its cursor on a `watch` channel; each
//! watcher ([`Live`]) wakes, and copies the changes after its cursor out of the history
//! (a value is shared, not copied). A channel carrying the changes would hold every value
//! it carried until its ring wrapped, beyond the history's byte budget (a `broadcast` of
//! `WATCH_HISTORY_MAX` 1 MiB changes holds 16 GiB); with cursors, the history alone holds
//! values, and a watcher that falls behind its oldest change is told so and must list
//! again, whether it fell behind by count or by bytes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use chorus_proto::rpc::{Change, ChangeKind, WATCH_HISTORY_MAX, WATCH_HISTORY_SIZE_MAX};
use chorus_proto::{Key, Stamp, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::outcome::OpError;

/// What a change costs the history beyond its key and value bytes (the `Change` itself, the
/// key's and value's allocations), so that a stream of empty values is bounded too.
const CHANGE_OVERHEAD: usize = std::mem::size_of::<Change>() + 64;

/// The latest changes, numbered by cursor, and the channel that announces each new one.
pub struct History {
    changes: Arc<Mutex<Changes>>,
    /// Wakes watchers when a change is recorded (only while there are any, so its value is
    /// not the latest cursor). Dropped with the driver, which ends watches.
    latest: watch::Sender<u64>,
    /// Whether changes are kept: from the first subscription on. Cursors reach clients only
    /// through subscriptions, so before the first one nobody can resume into the history,
    /// and a change only takes a cursor number. Keeping every change cost a write a share of
    /// its time in cache misses (the oldest of 16,384 changes evicted on each one).
    recording: bool,
    /// Changes not kept before the first subscription: they take their cursors then.
    unrecorded: u64,
}

/// The changes themselves, shared with every watcher (a short lock of their own, never held
/// across an await: the driver's lock is not taken to read them).
struct Changes {
    changes: VecDeque<Change>,
    /// Bytes the kept changes cost, counted as [`change_size`] says.
    size: usize,
    next_cursor: u64,
    count_max: usize,
    size_max: usize,
}

impl History {
    /// An empty history bounded by `WATCH_HISTORY_MAX` changes and `WATCH_HISTORY_SIZE_MAX`
    /// bytes; the first change gets cursor 1.
    pub fn new() -> History {
        History::with_limits(WATCH_HISTORY_MAX, WATCH_HISTORY_SIZE_MAX)
    }

    fn with_limits(count_max: usize, size_max: usize) -> History {
        let changes =
            Changes { changes: VecDeque::new(), size: 0, next_cursor: 1, count_max, size_max };
        History {
            changes: Arc::new(Mutex::new(changes)),
            latest: watch::Sender::new(0),
            recording: false,
            unrecorded: 0,
        }
    }

    /// Records a change (evicting the oldest beyond either bound) and wakes every watcher.
    pub fn record(
        &mut self,
        kind: ChangeKind,
        key: Key,
        value: Option<Value>,
        stamp: Option<Stamp>,
    ) {
        if !self.recording {
            self.unrecorded += 1;
            return;
        }
        let cursor = {
            let mut changes = lock(&self.changes);
            let change = Change { cursor: changes.next_cursor, kind, key, value, stamp };
            changes.push(change)
        };
        // Without watchers nobody needs waking (waking costs a share of every write). A
        // watcher subscribes under the driver's lock, as changes are recorded, so none can
        // miss a change recorded after it subscribed.
        if self.latest.receiver_count() > 0 {
            self.latest.send_replace(cursor);
        }
    }

    /// Subscribes to changes after a cursor (or from now).
    pub fn subscribe(&mut self, after: Option<u64>) -> Result<Live, OpError> {
        let mut changes = lock(&self.changes);
        if !self.recording {
            self.recording = true;
            changes.next_cursor += std::mem::take(&mut self.unrecorded);
        }
        let latest = changes.next_cursor - 1;
        let after = match after {
            None => latest,
            // A cursor above the latest was never issued here (it comes from before a
            // restart, or from another node): resuming after it would skip every change up
            // to it, silently.
            Some(after) if after > latest || after.saturating_add(1) < changes.oldest() => {
                return Err(OpError::CursorExpired);
            }
            Some(after) => after,
        };
        drop(changes);
        Ok(Live { changes: self.changes.clone(), latest: self.latest.subscribe(), after })
    }
}

impl Changes {
    /// Keeps `change`, evicting the oldest changes beyond the count or the byte budget (the
    /// newest is always kept: one change is at most one message); returns its cursor.
    fn push(&mut self, change: Change) -> u64 {
        let cursor = change.cursor;
        self.next_cursor += 1;
        self.size += change_size(&change);
        self.changes.push_back(change);
        while self.changes.len() > self.count_max
            || (self.size > self.size_max && self.changes.len() > 1)
        {
            // Invariant: the loop runs only while at least one change is kept.
            let evicted = self.changes.pop_front().expect("a change to evict");
            self.size -= change_size(&evicted);
        }
        cursor
    }

    /// The cursor of the oldest change kept (the next one's when none is).
    fn oldest(&self) -> u64 {
        self.changes.front().map_or(self.next_cursor, |change| change.cursor)
    }

    /// The change right after `after`, `Ok(None)` if there is none yet, or how many changes
    /// were evicted before the watcher read them.
    fn after(&self, after: u64) -> Result<Option<Change>, u64> {
        let oldest = self.oldest();
        if after.saturating_add(1) < oldest {
            return Err(oldest - after - 1);
        }
        // Cursors are consecutive, so the change after `after` sits at a known index.
        let index = usize::try_from(after + 1 - oldest).unwrap_or(usize::MAX);
        Ok(self.changes.get(index).cloned())
    }
}

/// What a change costs the history.
fn change_size(change: &Change) -> usize {
    let value = change.value.as_ref().map_or(0, |value| value.len());
    change.key.as_bytes().len() + value + CHANGE_OVERHEAD
}

fn lock(changes: &Mutex<Changes>) -> MutexGuard<'_, Changes> {
    // A poisoned lock only means a panic elsewhere while holding it; every step above leaves
    // the changes consistent before it could panic.
    changes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One watcher: its cursor in the history, and the channel that says a new change is there.
pub struct Live {
    changes: Arc<Mutex<Changes>>,
    latest: watch::Receiver<u64>,
    after: u64,
}

impl Live {
    /// The cursor of the last change this watcher read (or skipped): resuming after it misses
    /// nothing.
    pub fn cursor(&self) -> u64 {
        self.after
    }

    /// The next change after this watcher's cursor, waiting for one. `Lagged(missed)` when
    /// the history evicted changes this watcher had not read (it must list again, or, for
    /// at-most-once notifications, go on: the cursor then moves past what was missed, so the
    /// next call returns the oldest change still held); `Closed` once the node stopped and
    /// every recorded change was read.
    pub async fn recv(&mut self) -> Result<Change, RecvError> {
        let mut closed = false;
        loop {
            // Marked seen before the history is read: a change recorded after this read
            // wakes `changed` below.
            self.latest.borrow_and_update();
            if let Some(next) = self.try_recv() {
                return next;
            }
            if closed {
                return Err(RecvError::Closed);
            }
            if self.latest.changed().await.is_err() {
                closed = true;
            }
        }
    }

    /// As [`Live::recv`], without waiting: `None` when the history holds no change after this
    /// watcher's cursor yet, and never `Closed` (a subscriber drains what is there into one
    /// write, and its next `recv` says when the node stopped).
    pub fn try_recv(&mut self) -> Option<Result<Change, RecvError>> {
        match lock(&self.changes).after(self.after) {
            Ok(Some(change)) => {
                self.after = change.cursor;
                Some(Ok(change))
            }
            Ok(None) => None,
            Err(missed) => {
                self.after += missed;
                Some(Err(RecvError::Lagged(missed)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_proto::rpc::WATCH_HISTORY_SIZE_MAX;

    fn put(history: &mut History, name: &str, size: usize) {
        let key = Key::new(name).expect("a valid key");
        let value = Value::new(vec![7u8; size]).expect("a valid value");
        history.record(ChangeKind::Put, key, Some(value), None);
    }

    #[test]
    fn large_values_are_evicted_by_bytes_and_a_watcher_behind_them_must_list_again() {
        let mut history = History::new();
        let behind = history.subscribe(None).expect("subscribed");
        let mib = 1024 * 1024;
        for round in 0..200 {
            put(&mut history, &format!("k{}", round % 10), mib);
        }
        let changes = lock(&history.changes);
        assert!(changes.size <= WATCH_HISTORY_SIZE_MAX, "{} bytes kept", changes.size);
        let kept = changes.changes.len();
        assert!(kept < 200 && kept >= WATCH_HISTORY_SIZE_MAX / mib - 1, "{kept} kept");
        assert_eq!(changes.changes.back().map(|c| c.cursor), Some(200), "the newest is kept");
        drop(changes);
        assert_eq!(history.subscribe(Some(0)).err(), Some(OpError::CursorExpired));
        assert!(history.subscribe(Some(200 - kept as u64)).is_ok(), "the oldest kept resumes");
        let mut behind = behind;
        let lagged = futures_now(behind.recv());
        assert_eq!(lagged, Some(Err(RecvError::Lagged(200 - kept as u64))));
    }

    #[test]
    fn small_changes_are_bounded_by_count_and_read_in_order() {
        let mut history = History::with_limits(4, usize::MAX);
        let mut live = history.subscribe(None).expect("subscribed");
        for round in 0..3 {
            put(&mut history, &format!("k{round}"), 1);
        }
        for cursor in 1..=3 {
            assert_eq!(futures_now(live.recv()).map(|c| c.map(|c| c.cursor)), Some(Ok(cursor)));
        }
        assert_eq!(futures_now(live.recv()), None, "nothing new: it waits");
        for round in 3..10 {
            put(&mut history, &format!("k{round}"), 1);
        }
        assert_eq!(futures_now(live.recv()), Some(Err(RecvError::Lagged(3))));
        // A watcher that goes on after a lag reads the oldest change still held, once.
        let mut going_on =
            Live { after: live.after, latest: live.latest.clone(), changes: live.changes.clone() };
        assert_eq!(futures_now(going_on.recv()).map(|c| c.map(|c| c.cursor)), Some(Ok(7)));
        drop(history);
        let mut resumed = Live { after: 9, ..live };
        assert_eq!(futures_now(resumed.recv()).map(|c| c.map(|c| c.cursor)), Some(Ok(10)));
        assert_eq!(futures_now(resumed.recv()), Some(Err(RecvError::Closed)));
    }

    #[test]
    fn try_recv_drains_what_is_held_in_order_and_reports_a_lag() {
        let mut history = History::with_limits(4, usize::MAX);
        let mut live = history.subscribe(None).expect("subscribed");
        assert!(live.try_recv().is_none(), "nothing yet");
        for round in 0..3 {
            put(&mut history, &format!("k{round}"), 1);
        }
        let cursors: Vec<u64> =
            std::iter::from_fn(|| live.try_recv()).map(|c| c.expect("held").cursor).collect();
        assert_eq!(cursors, [1, 2, 3]);
        for round in 3..10 {
            put(&mut history, &format!("k{round}"), 1);
        }
        assert_eq!(live.try_recv(), Some(Err(RecvError::Lagged(3))));
        assert_eq!(live.try_recv().map(|c| c.map(|c| c.cursor)), Some(Ok(7)));
        drop(history);
        assert_eq!(live.try_recv().map(|c| c.map(|c| c.cursor)), Some(Ok(8)), "held after a stop");
    }

    #[test]
    fn one_change_above_the_byte_budget_is_still_kept() {
        let mut history = History::with_limits(4, 10);
        drop(history.subscribe(None));
        put(&mut history, "k", 100);
        put(&mut history, "k", 100);
        assert_eq!(lock(&history.changes).changes.len(), 1);
        assert!(history.subscribe(Some(1)).is_ok());
    }

    #[test]
    fn changes_before_the_first_subscription_take_cursors_but_are_not_kept() {
        let mut history = History::new();
        put(&mut history, "early", 1);
        put(&mut history, "early", 1);
        assert!(lock(&history.changes).changes.is_empty(), "nobody could read them");
        assert_eq!(history.subscribe(Some(1)).err(), Some(OpError::CursorExpired));
        let mut live = history.subscribe(None).expect("subscribed");
        assert_eq!(live.cursor(), 2, "the early changes took cursors");
        drop(live);
        put(&mut history, "late", 1);
        // A long poll subscribes anew each time: changes between polls are kept.
        live = history.subscribe(Some(2)).expect("resumed");
        assert_eq!(futures_now(live.recv()).map(|c| c.map(|c| c.cursor)), Some(Ok(3)));
    }

    /// Polls a future once: its output if it is ready at once, `None` if it would wait.
    fn futures_now<F: std::future::Future>(future: F) -> Option<F::Output> {
        let mut future = std::pin::pin!(future);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }
}
