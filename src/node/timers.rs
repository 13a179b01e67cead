//! The node's timer task: anti-entropy rounds, wait deadlines and expiries, and eager pushes
//! flushed as soon as the calls that queued them are over.

use std::sync::Arc;

use super::driver::Driver;
use super::lock::Purpose;

/// Runs the node's timers until the driver fails.
///
/// Pushes are batched by readiness rather than by the protocol's window: a call that queues
/// a push wakes this task, which first yields until its worker has run every other task that
/// was ready (tokio runs a yielded task after them), then flushes. A burst of writes thus
/// shares one message per peer, and an isolated write waits microseconds, not the window's
/// milliseconds at every hop.
pub async fn run_timers(driver: Arc<Driver>) {
    while let Some(wake) = driver.arm() {
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
    /// Flushes queued pushes, then says when the timer task should wake next; `None` once the
    /// driver failed.
    fn arm(&self) -> Option<tokio::time::Instant> {
        let mut state = self.lock(Purpose::Flush)?;
        let now = self.clock.now_ms();
        // A deadline within the batching window is a push flush (or, rarely, another timer
        // that close, for which flushing early is harmless).
        if state.node.poll_timeout() <= now.saturating_add(state.node.config().push_batch_ms) {
            state.node.flush_pushes(now);
        }
        let wake_ms = state.node.poll_timeout();
        state.timer_ms = wake_ms;
        let interval_ms = state.node.config().gossip_interval_ms;
        self.settle(state);
        // Deadlines are wall-clock readings: if the clock steps back, the next one moves away.
        // Waking at least once a gossip interval keeps rounds and heartbeats going meanwhile.
        let latest = tokio::time::Instant::now() + std::time::Duration::from_millis(interval_ms);
        Some(self.clock.instant_at(wake_ms).min(latest))
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
