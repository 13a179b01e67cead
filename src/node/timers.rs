//! The node's timer task: anti-entropy rounds, wait deadlines and expiries, and eager pushes
//! flushed as soon as the calls that queued them are over.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::driver::Driver;
use super::lock::Purpose;

/// Least time between two flushes of eager pushes under a stream of writes. A write after a
/// quiet spell is flushed at once; while writes keep coming, those of this long share one
/// message per peer, which costs each of them less on every node (a share of one frame, of
/// fewer packets, of one merge under the receiver's lock) and delays their replication by at
/// most this long. Pushes a client waits on (`Node::pushes_awaited`) are not held back, and
/// the protocol's window (`PUSH_BATCH_MS`) still bounds the delay.
pub const PUSH_FLUSH_SPACING: Duration = Duration::from_millis(1);

/// Runs the node's timers until the driver fails.
///
/// Pushes are batched by readiness rather than by the protocol's window: a call that queues
/// a push wakes this task, which first yields until its worker has run every other task that
/// was ready (tokio runs a yielded task after them), then flushes, unless it flushed less than
/// `PUSH_FLUSH_SPACING` ago. A burst of writes thus shares one message per peer, and an
/// isolated write waits microseconds, not the window's milliseconds at every hop.
pub async fn run_timers(driver: Arc<Driver>) {
    let mut flushed = Instant::now().checked_sub(PUSH_FLUSH_SPACING).unwrap_or_else(Instant::now);
    while let Some(wake) = driver.arm(&mut flushed) {
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {
                if !driver.timeout() {
                    return;
                }
            }
            // A call queued pushes, or moved another deadline earlier.
            () = driver.rearm.notified() => tokio::task::yield_now().await,
        }
    }
}

impl Driver {
    /// Flushes queued pushes (`flushed`: when it last did), then says when the timer task
    /// should wake next; `None` once the driver failed.
    fn arm(&self, flushed: &mut Instant) -> Option<Instant> {
        let mut state = self.lock(Purpose::Flush)?;
        let now = self.clock.now_ms();
        let mut spaced = None;
        // A deadline within the batching window is a push flush (or, rarely, another timer
        // that close, for which flushing early is harmless).
        if state.node.poll_timeout() <= now.saturating_add(state.node.config().push_batch_ms) {
            let instant = Instant::now();
            let next = *flushed + PUSH_FLUSH_SPACING;
            if instant >= next || state.node.pushes_awaited() {
                state.node.flush_pushes(now);
                *flushed = instant;
            } else {
                spaced = Some(next);
            }
        }
        let wake_ms = state.node.poll_timeout();
        state.timer_ms = wake_ms;
        let interval_ms = state.node.config().gossip_interval_ms;
        self.settle(state);
        // Deadlines are wall-clock readings: if the clock steps back, the next one moves away.
        // Waking at least once a gossip interval keeps rounds and heartbeats going meanwhile.
        let latest = Instant::now() + Duration::from_millis(interval_ms);
        let wake = self.clock.instant_at(wake_ms).min(latest);
        Some(spaced.map_or(wake, |spaced| spaced.min(wake)))
    }

    /// Runs the timers due now; false once the driver failed.
    fn timeout(&self) -> bool {
        let Some(mut state) = self.lock(Purpose::Timer) else { return false };
        let now_ms = state.now_ms();
        state.node.handle_timeout(now_ms);
        self.settle(state);
        true
    }
}
