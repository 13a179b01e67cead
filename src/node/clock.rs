//! The clock seam: where the driver reads wall time.
//!
//! A real node reads the system clock, so that a corrected clock is followed at once. Tests
//! that want virtual time use [`Clock::Tokio`]: wall time advances with tokio's clock, so a
//! test with paused time (`tokio::time::pause`, `advance`) drives the node's timers, expiries
//! and wait deadlines deterministically and fast.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where a node reads wall-clock time.
#[derive(Clone, Copy, Debug, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// Wall time that advances with tokio's clock (paused or not), from the system time when
    /// the node started.
    Tokio,
    /// The system's wall clock plus an offset in milliseconds that may change while the node
    /// runs: a machine whose clock is wrong, then corrected, for tests of the clock self-check.
    Skewed(&'static AtomicI64),
}

/// A clock, fixed at the start of a node.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WallClock {
    kind: Clock,
    origin_ms: u64,
    origin: tokio::time::Instant,
}

impl WallClock {
    /// Starts reading `kind`.
    pub fn new(kind: Clock) -> WallClock {
        WallClock { kind, origin_ms: system_ms(), origin: tokio::time::Instant::now() }
    }

    /// Milliseconds since the Unix epoch: the only clock the protocol sees.
    pub fn now_ms(&self) -> u64 {
        match self.kind {
            Clock::System => system_ms(),
            Clock::Tokio => self.origin_ms + self.origin.elapsed().as_millis() as u64,
            Clock::Skewed(offset) => {
                system_ms().saturating_add_signed(offset.load(Ordering::Relaxed))
            }
        }
    }

    /// How far wall time has moved from monotonic time since the node started, at wall time
    /// `now_ms`: it changes only when the wall clock steps (NTP correcting it, a VM resumed).
    pub fn lead_ms(&self, now_ms: u64) -> i64 {
        let monotonic = self.origin_ms.saturating_add(self.origin.elapsed().as_millis() as u64);
        now_ms as i64 - monotonic as i64
    }

    /// The tokio instant at which this clock reads `at_ms` (now, if that is past), for
    /// sleeping until a deadline of the protocol.
    pub fn instant_at(&self, at_ms: u64) -> tokio::time::Instant {
        let wait_ms = at_ms.saturating_sub(self.now_ms());
        tokio::time::Instant::now() + std::time::Duration::from_millis(wait_ms)
    }
}

fn system_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}
