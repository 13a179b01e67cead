//! A session: several reads and local writes in one hold of the node's lock, so that nothing
//! else on this node runs between them. The Redis front end runs each command as a session,
//! and a `MULTI`/`EXEC` block as one: applied at once on this node (other nodes receive the
//! writes one by one, as always under last-writer-wins).

use chorus_proto::{Key, Listed, Stamp, Value, Write};

use super::driver::{Driver, State};
use super::lock::Purpose;
use super::outcome::OpError;

/// A key's live value, with its stamp and expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The value.
    pub value: Value,
    /// The write that set it.
    pub stamp: Stamp,
    /// When it expires (wall-clock milliseconds), if it does.
    pub expires_at_ms: Option<u64>,
}

/// Reads and local writes under one hold of the lock.
pub struct Session<'a> {
    state: &'a mut State,
    now_ms: u64,
    /// Whether a write ran: a session of reads changes nothing in the node, so it has no
    /// outputs to drain and no new deadline (skipping that is a share of every GET).
    wrote: bool,
}

impl Driver {
    /// Runs `work` in one hold of the lock, taken for `purpose`, then sends what it wrote.
    pub fn session<R>(
        &self,
        purpose: Purpose,
        work: impl FnOnce(&mut Session<'_>) -> R,
    ) -> Result<R, OpError> {
        let mut state = self.lock(purpose).ok_or(OpError::ShuttingDown)?;
        let now_ms = state.now_ms();
        let mut session = Session { state: &mut state, now_ms, wrote: false };
        let result = work(&mut session);
        // Reads alone change nothing in the node; a clock step found by `now_ms` above may
        // have left messages to send.
        if session.wrote || state.has_outbox() {
            self.settle(state);
        }
        Ok(result)
    }
}

impl Session<'_> {
    /// The wall-clock time of this session, in milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The live value of `key`, if any.
    pub fn lookup(&self, key: &Key) -> Option<Found> {
        let entry = self.state.node.store().entry(key)?;
        let value = entry.live_value(self.now_ms)?.clone();
        Some(Found { value, stamp: entry.stamp(), expires_at_ms: entry.expires_at_ms })
    }

    /// One page of live keys under `prefix` (at most `limit`), visiting at most
    /// `LIST_VISIT_MAX` entries, and where it stopped.
    pub fn list_page(&self, prefix: &[u8], start_after: Option<&Key>, limit: usize) -> Listed {
        self.state.node.store().list_page(prefix, start_after, limit, self.now_ms)
    }

    /// Whether any key at or after `bound` is held: when not, no key starts with it.
    pub fn holds_from(&self, bound: &[u8]) -> bool {
        self.state.node.store().holds_from(bound)
    }

    /// Up to `limit` live keys under `prefix`, after `start_after` when given, with values.
    pub fn list(
        &self,
        prefix: &[u8],
        start_after: Option<&Key>,
        limit: usize,
    ) -> Vec<(Key, Value)> {
        self.state.node.store().list(prefix, start_after, limit, self.now_ms)
    }

    /// Writes `value` under `key` on this node (no wait), expiring after `ttl_ms` if given.
    pub fn put(&mut self, key: Key, value: Value, ttl_ms: Option<u64>) -> Result<Stamp, OpError> {
        let write = Write { ttl_ms, ..Write::put(key, value) };
        self.wrote = true;
        let written = self.state.node.write(self.now_ms, write);
        // The drain contract holds after every command, also between a session's writes.
        self.state.drain();
        Ok(written?.stamp)
    }

    /// Deletes `key` on this node (no wait), if it holds a live value; whether it did.
    pub fn delete(&mut self, key: Key) -> Result<bool, OpError> {
        if self.lookup(&key).is_none() {
            return Ok(false);
        }
        self.wrote = true;
        let written = self.state.node.write(self.now_ms, Write::delete(key));
        self.state.drain();
        written?;
        Ok(true)
    }
}
