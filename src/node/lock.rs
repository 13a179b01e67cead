//! The node's one lock, taken with a purpose and timed (in the manner of quinn's `mutex.rs`).
//!
//! Every call into the protocol node takes the lock for one short, synchronous step. Each site
//! names why it takes the lock, and the time it was held is kept per purpose in atomics beside
//! the lock (so stats and metrics read them without taking it): a count, the total and the
//! longest hold.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// Why a task takes the node's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A client read (get, list, members, stats).
    Read,
    /// A client write (put, delete).
    Write,
    /// Merging a received gossip message.
    Gossip,
    /// The node's timers: anti-entropy rounds, wait deadlines, expiry.
    Timer,
    /// Flushing queued eager pushes.
    Flush,
    /// A watcher subscribing, or a graceful leave.
    Control,
    /// Taking a batch of changes for the data directory.
    Persist,
}

impl Purpose {
    /// Every purpose, in the order stats report them.
    pub const ALL: [Purpose; 7] = [
        Purpose::Read,
        Purpose::Write,
        Purpose::Gossip,
        Purpose::Timer,
        Purpose::Flush,
        Purpose::Control,
        Purpose::Persist,
    ];

    /// The purpose's name in stats and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Read => "read",
            Purpose::Write => "write",
            Purpose::Gossip => "gossip",
            Purpose::Timer => "timer",
            Purpose::Flush => "flush",
            Purpose::Control => "control",
            Purpose::Persist => "persist",
        }
    }
}

/// Hold times of one purpose.
#[derive(Debug, Default)]
struct Holds {
    count: AtomicU64,
    total_ns: AtomicU64,
    max_ns: AtomicU64,
}

/// What one purpose's holds added up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HoldFigures {
    /// Times the lock was taken.
    pub count: u64,
    /// Nanoseconds it was held, in total.
    pub total_ns: u64,
    /// The longest hold, in nanoseconds.
    pub max_ns: u64,
}

/// A mutex whose holds are timed by purpose.
#[derive(Debug)]
pub struct TimedMutex<T> {
    inner: Mutex<T>,
    holds: [Holds; Purpose::ALL.len()],
}

/// The lock, held for one purpose; the hold is recorded when it is dropped.
pub struct Guard<'a, T> {
    guard: MutexGuard<'a, T>,
    holds: &'a Holds,
    taken: Instant,
}

impl<T> TimedMutex<T> {
    /// A timed mutex around `value`.
    pub fn new(value: T) -> TimedMutex<T> {
        TimedMutex { inner: Mutex::new(value), holds: Default::default() }
    }

    /// Takes the lock for `purpose`; `None` if a panic while holding it poisoned it.
    pub fn lock(&self, purpose: Purpose) -> Option<Guard<'_, T>> {
        let guard = self.inner.lock().ok()?;
        Some(Guard { guard, holds: &self.holds[purpose as usize], taken: Instant::now() })
    }

    /// The hold figures of every purpose, in [`Purpose::ALL`] order.
    pub fn figures(&self) -> [(Purpose, HoldFigures); Purpose::ALL.len()] {
        Purpose::ALL.map(|purpose| {
            let holds = &self.holds[purpose as usize];
            let figures = HoldFigures {
                count: holds.count.load(Ordering::Relaxed),
                total_ns: holds.total_ns.load(Ordering::Relaxed),
                max_ns: holds.max_ns.load(Ordering::Relaxed),
            };
            (purpose, figures)
        })
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        // The hold ends when the guard's fields drop, just after this: close enough.
        let held_ns = u64::try_from(self.taken.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.holds.count.fetch_add(1, Ordering::Relaxed);
        self.holds.total_ns.fetch_add(held_ns, Ordering::Relaxed);
        self.holds.max_ns.fetch_max(held_ns, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_are_counted_by_purpose() {
        let mutex = TimedMutex::new(0u32);
        for _ in 0..3 {
            *mutex.lock(Purpose::Write).expect("not poisoned") += 1;
        }
        drop(mutex.lock(Purpose::Read));
        let figures = mutex.figures();
        assert_eq!(figures[Purpose::Write as usize].1.count, 3);
        assert_eq!(figures[Purpose::Read as usize].1.count, 1);
        assert_eq!(figures[Purpose::Gossip as usize].1.count, 0);
        let write = figures[Purpose::Write as usize].1;
        assert!(write.max_ns <= write.total_ns);
    }
}
