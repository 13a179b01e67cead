//! Sweeps: many seeds, each an independent run, spread over threads.
//!
//! Threads only decide which seed runs where; each run is single-threaded and deterministic,
//! so a sweep's verdicts do not depend on the number of threads. A panic inside a run (a
//! `proto` assertion, say) is caught and reported as that seed's failure.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::checker::Failure;
use crate::cluster::Reached;
use crate::quantile::quantile;
use crate::run::{Options, Outcome, run};

/// What a sweep found.
#[derive(Clone, Debug, Default)]
pub struct SweepReport {
    /// Seeds run.
    pub seeds: u64,
    /// Outcomes of the seeds that failed, by seed.
    pub failed: Vec<Outcome>,
    /// Steps run across all seeds.
    pub events: u64,
    /// Virtual milliseconds simulated across all seeds.
    pub virtual_ms: u64,
    /// Milliseconds from the heal to convergence, of every seed that converged, sorted.
    pub converged_ms: Vec<u64>,
    /// Dead entries left above a lost write (see `Outcome::stuck`), across all seeds.
    pub stuck: usize,
    /// Writes that may have been lost with a node's state, across all seeds.
    pub lost: usize,
    /// Seeds in which the horizon fence acted: a node dropped its state or an exchange was
    /// refused.
    pub fenced_seeds: u64,
    /// Seeds in which some node dropped its state (`Reset` with reason `Pruned`).
    pub pruned_seeds: u64,
    /// Seeds with a catch-up of more than one delta page.
    pub paged_seeds: u64,
    /// Seeds in which some node refused a client write for its clock.
    pub clock_seeds: u64,
    /// The rarer paths reached, summed over every seed.
    pub reached: Reached,
}

impl SweepReport {
    /// The convergence time at quantile `q` (nearest rank), 0 when none converged.
    pub fn converged_quantile(&self, q: f64) -> u64 {
        quantile(&self.converged_ms, q)
    }
}

impl SweepReport {
    fn add_reached(&mut self, reached: Reached) {
        let fenced = reached.pruned > 0 || reached.refused > 0;
        self.fenced_seeds += u64::from(fenced);
        self.pruned_seeds += u64::from(reached.pruned > 0);
        self.paged_seeds += u64::from(reached.paged > 0);
        self.reached.pruned += reached.pruned;
        self.reached.refused += reached.refused;
        self.reached.paged += reached.paged;
        self.clock_seeds += u64::from(reached.clock_refused > 0);
        self.reached.clock_refused += reached.clock_refused;
        self.reached.restored += reached.restored;
        self.reached.restored_old += reached.restored_old;
    }
}

/// Runs seeds `start..start + count` on `jobs` threads, calling `progress(done, failed)`
/// after each seed.
pub fn sweep(
    start: u64,
    count: u64,
    options: &Options,
    jobs: usize,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> SweepReport {
    let next = AtomicU64::new(start);
    let end = start.saturating_add(count);
    let report = Mutex::new(SweepReport::default());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let outcome = run_caught(seed, options);
                    // A poisoned lock means another worker panicked outside a run, which
                    // `run_caught` prevents; recover the data either way.
                    let mut report = report.lock().unwrap_or_else(|e| e.into_inner());
                    report.seeds += 1;
                    report.events += outcome.events;
                    report.virtual_ms += outcome.virtual_ms;
                    report.stuck += outcome.stuck;
                    report.lost += outcome.lost;
                    report.converged_ms.extend(outcome.converged_ms);
                    report.add_reached(outcome.reached);
                    if !outcome.passed() {
                        report.failed.push(outcome);
                    }
                    let (done, failed) = (report.seeds, report.failed.len() as u64);
                    drop(report);
                    progress(done, failed);
                }
            });
        }
    });
    let mut report = report.into_inner().unwrap_or_else(|e| e.into_inner());
    report.failed.sort_by_key(|outcome| outcome.seed);
    report.converged_ms.sort_unstable();
    report
}

/// Runs one seed, turning a panic into a failed outcome.
pub fn run_caught(seed: u64, options: &Options) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| run(seed, options))) {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            Outcome {
                seed,
                options: *options,
                nodes: options.nodes.unwrap_or(0),
                slots: 0,
                events: 0,
                writes: 0,
                lost: 0,
                converged_ms: None,
                collected_ms: None,
                stuck: 0,
                reached: Reached::default(),
                page_size: 0,
                virtual_ms: 0,
                trace: 0,
                failure: Some(Failure { rule: "panic", at_ms: 0, detail: message }),
                log: Vec::new(),
            }
        }
    }
}
