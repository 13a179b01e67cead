//! The node's operations: the one protocol-neutral set that every front end (the QUIC RPC,
//! later Redis and HTTP) translates its requests onto. None of them reaches into the driver's
//! state; each operation takes the lock once, for one short step, with its purpose named.

use chorus_proto::rpc::{LIST_LIMIT_MAX, MemberInfo};
use chorus_proto::{Key, Listed, Stamp, Value, WaitId, WaitLevel, Write};
use tokio::sync::oneshot;

use super::driver::Driver;
use super::history::Live;
use super::lock::Purpose;
use super::outcome::{KeyPage, OpError, Written, member_infos};

impl Driver {
    /// The live value of `key` and its stamp, if any.
    pub fn get(&self, key: &Key) -> Result<Option<(Value, Stamp)>, OpError> {
        let found = self.session(Purpose::Read, |session| session.lookup(key))?;
        Ok(found.map(|found| (found.value, found.stamp)))
    }

    /// Writes, and returns once the write is durable on this node (with `--data-dir` under
    /// `--fsync always`) and, with a wait level beyond local, once enough nodes hold it or
    /// its timeout passed. Dropping the future before then (its client went away) cancels
    /// the wait and frees its slot; the write itself stands.
    pub async fn write(&self, write: Write) -> Result<Written, OpError> {
        let (id, answer, ticket) = match self.start_write(write)? {
            Started::Done(written, ticket) => {
                self.durable(ticket).await?;
                return Ok(written);
            }
            Started::Waiting(id, answer, ticket) => (id, answer, ticket),
        };
        let mut guard = WaitGuard { driver: self, id: Some(id) };
        self.durable(ticket).await?;
        let answer = answer.await;
        guard.id = None;
        // The node is gone if the wait's sender was dropped without an answer.
        answer.map_err(|_| OpError::ShuttingDown)
    }

    /// Applies a write in one hold of the lock; a wait beyond local is registered to be
    /// answered when it ends.
    fn start_write(&self, write: Write) -> Result<Started, OpError> {
        let mut state = self.lock(Purpose::Write).ok_or(OpError::ShuttingDown)?;
        if write.wait == WaitLevel::All && !state.ready_inputs.joined {
            // Before it has joined, "every live member" is this node alone: confirming
            // `--wait all` by itself would tell the caller something false.
            return Err(OpError::Invalid(
                "this node has not joined its cluster yet, so --wait all would be confirmed \
                 by itself alone: retry once it has printed its ready line"
                    .into(),
            ));
        }
        let now_ms = state.now_ms();
        let written = state.node.write(now_ms, write);
        let ticket = state.durability_ticket(self.persist.as_ref());
        let started = written.map_err(OpError::from).map(|written| match written.wait {
            Some(id) => {
                let (reply, answer) = oneshot::channel();
                state.waits.insert(id, reply);
                Started::Waiting(id, answer, ticket)
            }
            None => Started::Done(Written { stamp: written.stamp, wait: None }, ticket),
        });
        self.settle(state);
        started
    }

    /// Ends the wait `id` whose client went away, unless it already ended.
    fn cancel_wait(&self, id: WaitId) {
        let Some(mut state) = self.lock(Purpose::Write) else { return };
        let cancelled = state.waits.remove(&id).is_some() && state.node.cancel_wait(id);
        self.settle(state);
        if cancelled {
            self.count("", "waits_cancelled");
        }
    }

    /// Up to `limit` live keys under `prefix`, after `start_after` when given, and whether more
    /// follow. The store is read page by page, each page in its own hold of the lock, until
    /// `limit` keys are found or the prefix ends: tombstones between the keys cost more holds,
    /// never a longer one.
    pub fn list(
        &self,
        prefix: &[u8],
        start_after: Option<&Key>,
        limit: u32,
    ) -> Result<KeyPage, OpError> {
        let limit = limit.min(LIST_LIMIT_MAX) as usize;
        let mut found = Vec::new();
        let mut after = start_after.cloned();
        loop {
            let page = self.list_page(prefix, after.as_ref(), limit + 1 - found.len())?;
            found.extend(page.entries.into_iter().map(|(key, _)| key));
            match page.resume_after {
                Some(key) if found.len() <= limit => after = Some(key),
                _ => break,
            }
        }
        let more = found.len() > limit;
        found.truncate(limit);
        Ok((found, more))
    }

    /// One page of live entries under `prefix`, after `start_after` when given: at most
    /// `limit` of them, in one hold of the lock that visits at most `LIST_VISIT_MAX` entries.
    /// The page says where it stopped, and may be empty without being the end.
    pub fn list_page(
        &self,
        prefix: &[u8],
        start_after: Option<&Key>,
        limit: usize,
    ) -> Result<Listed, OpError> {
        let mut state = self.lock(Purpose::Read).ok_or(OpError::ShuttingDown)?;
        let now_ms = state.now_ms();
        let listed = state.node.store().list_page(prefix, start_after, limit, now_ms);
        // A clock step found by `now_ms` may have left messages to send.
        if state.has_outbox() {
            self.settle(state);
        }
        Ok(listed)
    }

    /// The members as this node sees them, itself included.
    pub fn members(&self) -> Result<Vec<MemberInfo>, OpError> {
        let state = self.lock(Purpose::Read).ok_or(OpError::ShuttingDown)?;
        Ok(member_infos(&state.node))
    }

    /// Subscribes to changes after a cursor (or from now): the watcher reads them from the
    /// history, the changes it missed first.
    pub fn subscribe(&self, after: Option<u64>) -> Result<Live, OpError> {
        let mut state = self.lock(Purpose::Control).ok_or(OpError::ShuttingDown)?;
        state.history.subscribe(after)
    }

    /// Reports not ready (draining) while still serving, so that load balancers stop
    /// sending before a leave refuses writes.
    pub fn begin_drain(&self) {
        if let Some(mut state) = self.lock(Purpose::Control) {
            state.ready_inputs.draining = true;
            self.settle(state);
        }
    }

    /// Starts a graceful leave; the receiver completes once the handoff is done.
    pub fn leave(&self) -> oneshot::Receiver<()> {
        let (done, finished) = oneshot::channel();
        if let Some(mut state) = self.lock(Purpose::Control) {
            state.leaving.push(done);
            state.ready_inputs.draining = true;
            state.node.leave(self.clock.now_ms());
            self.settle(state);
        }
        finished
    }
}

/// A write just applied: done, or waiting for other nodes; either way with the data
/// directory's batch it waits for, if it waits for one.
enum Started {
    Done(Written, Option<u64>),
    Waiting(WaitId, oneshot::Receiver<Written>, Option<u64>),
}

/// Cancels a write's wait if the future awaiting it is dropped first.
struct WaitGuard<'a> {
    driver: &'a Driver,
    /// The wait, until its answer arrived.
    id: Option<WaitId>,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.driver.cancel_wait(id);
        }
    }
}
