//! The node's operations: the one protocol-neutral set that every front end (the QUIC RPC,
//! later Redis and HTTP) translates its requests onto. None of them reaches into the driver's
//! state; each operation takes the lock once, for one short step, with its purpose named.

use chorus_proto::rpc::{LIST_LIMIT_MAX, MemberInfo};
use chorus_proto::{Key, Stamp, Value, WaitId, WaitLevel, Write};
use tokio::sync::oneshot;

use super::driver::Driver;
use super::history::Live;
use super::lock::Purpose;
use super::outcome::{KeyPage, OpError, Written, member_infos};

impl Driver {
    /// The live value of `key` and its stamp, if any.
    pub fn get(&self, key: &Key) -> Result<Option<(Value, Stamp)>, OpError> {
        let state = self.lock(Purpose::Read).ok_or(OpError::ShuttingDown)?;
        let now = self.clock.now_ms();
        let entry = state.node.store().entry(key);
        Ok(entry.and_then(|entry| Some((entry.live_value(now)?.clone(), entry.stamp()))))
    }

    /// Writes, and with a wait level beyond local, returns once enough nodes hold the write or
    /// its timeout passed. Dropping the future before then (its client went away) cancels
    /// the wait and frees its slot; the write itself stands.
    pub async fn write(&self, write: Write) -> Result<Written, OpError> {
        let pending = {
            let mut state = self.lock(Purpose::Write).ok_or(OpError::ShuttingDown)?;
            if write.wait == WaitLevel::All && !*state.joined.borrow() {
                // Before it has joined, "every live member" is this node alone: confirming
                // `--wait all` by itself would tell the caller something false.
                return Err(OpError::Invalid(
                    "this node has not joined its cluster yet, so --wait all would be confirmed \
                     by itself alone: retry once it has printed its ready line"
                        .into(),
                ));
            }
            let now = self.clock.now_ms();
            let written = state.node.write(now, write);
            let pending = match written {
                Ok(written) => match written.wait {
                    Some(wait) => {
                        let (reply, answer) = oneshot::channel();
                        state.waits.insert(wait, reply);
                        Ok((wait, answer))
                    }
                    None => Err(Ok(Written { stamp: written.stamp, wait: None })),
                },
                Err(error) => Err(Err(OpError::from(error))),
            };
            self.settle(state);
            pending
        };
        match pending {
            Ok((id, answer)) => {
                let mut guard = WaitGuard { driver: self, id: Some(id) };
                let answer = answer.await;
                guard.id = None;
                // The node is gone if the wait's sender was dropped without an answer.
                answer.map_err(|_| OpError::ShuttingDown)
            }
            Err(done) => done,
        }
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

    /// Up to `limit` live keys under `prefix`, after `start_after` when given.
    pub fn list(
        &self,
        prefix: &[u8],
        start_after: Option<&Key>,
        limit: u32,
    ) -> Result<KeyPage, OpError> {
        let limit = limit.min(LIST_LIMIT_MAX) as usize;
        let state = self.lock(Purpose::Read).ok_or(OpError::ShuttingDown)?;
        let mut found =
            state.node.store().list(prefix, start_after, limit + 1, self.clock.now_ms());
        drop(state);
        let more = found.len() > limit;
        found.truncate(limit);
        Ok((found.into_iter().map(|(key, _)| key).collect(), more))
    }

    /// The members as this node sees them, itself included.
    pub fn members(&self) -> Result<Vec<MemberInfo>, OpError> {
        let state = self.lock(Purpose::Read).ok_or(OpError::ShuttingDown)?;
        Ok(member_infos(&state.node))
    }

    /// Subscribes to changes after a cursor (or from now): the watcher reads them from the
    /// history, the changes it missed first.
    pub fn subscribe(&self, after: Option<u64>) -> Result<Live, OpError> {
        let state = self.lock(Purpose::Control).ok_or(OpError::ShuttingDown)?;
        state.history.subscribe(after)
    }

    /// Starts a graceful leave; the receiver completes once the handoff is done.
    pub fn leave(&self) -> oneshot::Receiver<()> {
        let (done, finished) = oneshot::channel();
        if let Some(mut state) = self.lock(Purpose::Control) {
            state.leaving.push(done);
            state.node.leave(self.clock.now_ms());
            self.settle(state);
        }
        finished
    }
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
