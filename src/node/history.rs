//! The watch history: the latest changes, so a watcher can resume from a cursor, and the
//! broadcast channel that carries live changes to every watcher.

use std::collections::VecDeque;

use chorus_proto::rpc::{Change, ChangeKind, WATCH_HISTORY_MAX};
use chorus_proto::{Key, Stamp, Value};
use tokio::sync::broadcast;

use super::outcome::OpError;

/// What a watcher receives: missed changes, then live ones, and the cursor of the latest
/// change at the moment of subscribing.
pub type Subscription = (Vec<Change>, broadcast::Receiver<Change>, u64);

/// The latest changes, numbered by cursor.
pub struct History {
    changes: VecDeque<Change>,
    next_cursor: u64,
    live: broadcast::Sender<Change>,
}

impl History {
    /// An empty history; the first change gets cursor 1.
    pub fn new() -> History {
        let (live, _) = broadcast::channel(WATCH_HISTORY_MAX);
        History { changes: VecDeque::new(), next_cursor: 1, live }
    }

    /// Records a change and sends it to every watcher.
    pub fn record(
        &mut self,
        kind: ChangeKind,
        key: Key,
        value: Option<Value>,
        stamp: Option<Stamp>,
    ) {
        let change = Change { cursor: self.next_cursor, kind, key, value, stamp };
        self.next_cursor += 1;
        if self.changes.len() >= WATCH_HISTORY_MAX {
            self.changes.pop_front();
        }
        self.changes.push_back(change.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.live.send(change);
    }

    /// Subscribes to changes after a cursor (or from now).
    pub fn subscribe(&self, after: Option<u64>) -> Result<Subscription, OpError> {
        let receiver = self.live.subscribe();
        let latest = self.next_cursor - 1;
        let Some(after) = after else { return Ok((Vec::new(), receiver, latest)) };
        let oldest = self.changes.front().map_or(self.next_cursor, |change| change.cursor);
        // A cursor above the latest was never issued here (it comes from before a restart, or
        // from another node): resuming after it would skip every change up to it, silently.
        if after > latest || after.saturating_add(1) < oldest {
            return Err(OpError::CursorExpired);
        }
        let missed = self.changes.iter().filter(|change| change.cursor > after).cloned().collect();
        Ok((missed, receiver, latest))
    }
}
