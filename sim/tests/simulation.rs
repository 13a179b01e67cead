//! The simulator under `cargo test`: a fixed list of seeds must pass, a seed must replay the
//! same trace, each sabotage must be reported, and the benchmarks must keep their figures.
//!
//! Every test prints the seeds it runs and the command that reproduces a failure. Set `SEED`
//! to run one seed (in the profile of each seed test) instead of the list.

use chorus_sim::bench::{self, Nemesis};
use chorus_sim::{Options, Outcome, Pages, Profile, Sabotage, run};

/// Lite seeds run on every `cargo test`: a spread of cluster sizes and faults.
const LITE_SEEDS: std::ops::Range<u64> = 0..100;

/// Swarm seeds that once failed, each with what it found. Each was checked to fail with its
/// fix undone, against the fault generator of its time: when the generator changes, a seed
/// names another run and stays as a plain regression seed.
const SWARM_SEEDS: &[(u64, &str)] = &[
    (0, "proto: a delta range skipped a write whose replacement it did not carry"),
    (1, "proto: same"),
    (13, "proto: same; first seen as lasting divergence once the replacement's holder died"),
    (6, "proto: a write held back by the skew guard let another group's range skip a write"),
    (8, "proto: same"),
    (12, "proto: same"),
    (7, "proto: phi sampled a partition-long heartbeat gap; a crashed node stayed alive"),
    (729, "proto: same, a departed identity still seen suspect long after the heal"),
    (1388, "proto: same, tombstones held back by a member wrongly alive"),
    (5, "checker: read-your-writes after a newer delete was collected"),
    (136, "checker: a covered dot is not a held write (which writes may be lost)"),
    (45, "checker: a member that never held a collected delete but covers it"),
];

fn seeds_from_env() -> Option<Vec<u64>> {
    let seed = std::env::var("SEED").ok()?;
    Some(vec![seed.parse().expect("SEED must be a number")])
}

/// Runs `seeds` and panics listing every failure with its reproduce command.
fn all_pass(seeds: &[u64], options: &Options) {
    let mut failures = Vec::new();
    for &seed in seeds {
        let outcome = run(seed, options);
        eprintln!("{}", outcome.line());
        if !outcome.passed() {
            failures.push(format!("{}\n  reproduce: {}", outcome.line(), outcome.reproduce()));
        }
    }
    assert!(failures.is_empty(), "{} seeds failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn fixed_lite_seeds_pass() {
    let seeds = seeds_from_env().unwrap_or_else(|| LITE_SEEDS.collect());
    all_pass(&seeds, &Options::new(Profile::Lite));
}

#[test]
fn swarm_seeds_that_once_failed_pass() {
    let seeds =
        seeds_from_env().unwrap_or_else(|| SWARM_SEEDS.iter().map(|(seed, _)| *seed).collect());
    all_pass(&seeds, &Options::new(Profile::Swarm));
}

/// Swarm seeds with partitions longer than the removal period that once failed.
const LONG_PARTITION_SEEDS: &[(u64, &str)] = &[
    (
        137,
        "proto: a reset node synced stale state from a peer cut off with it (Reset now carries the fencer's removed set)",
    ),
    (88, "proto: same, membership stuck apart after the heal"),
    (1645, "proto: a node that joined the other side laundered stale state past the id fence"),
    (706, "proto: a node that had just dropped its state flipped between two states (storm)"),
    (466, "proto: two nodes that removed each other never spoke again (membership apart)"),
    (680, "sim: a dropped store held the writes of identities renamed earlier"),
    (761, "sim: a multi-page catch-up covers a replacement that is still on its way"),
    (1781, "proto: a page computed before the receiver dropped its state was applied after"),
    (1882, "proto: ranked by each node's view, two states took each other's nodes for good"),
    (3877, "proto: same, a member left suspect after the heal"),
];

#[test]
fn long_partition_seeds_that_once_failed_pass() {
    let seeds = seeds_from_env()
        .unwrap_or_else(|| LONG_PARTITION_SEEDS.iter().map(|(seed, _)| *seed).collect());
    all_pass(&seeds, &Options { long_partitions: true, ..Options::new(Profile::Swarm) });
}

#[test]
fn a_seed_replays_the_same_trace_and_other_seeds_differ() {
    for (seed, profile) in [(3, Profile::Lite), (11, Profile::Swarm)] {
        let options = Options::new(profile);
        let first = run(seed, &options);
        let second = run(seed, &options);
        eprintln!("{}", first.line());
        assert_eq!(first.trace, second.trace, "seed {seed} did not replay");
        assert_eq!(first.line(), second.line(), "seed {seed} did not replay");
        let other = run(seed + 1, &options);
        assert_ne!(first.trace, other.trace, "seeds {seed} and {} ran the same", seed + 1);
    }
}

#[test]
fn the_trace_log_matches_the_run_it_describes() {
    let quiet = run(5, &Options::new(Profile::Lite));
    let logged = run(5, &Options { log: true, ..Options::new(Profile::Lite) });
    assert_eq!(quiet.trace, logged.trace, "keeping a log changed the run");
    assert!(logged.log.iter().any(|line| line.contains("<- n")), "no deliveries in the log");
    assert!(quiet.log.is_empty());
}

/// Each sabotage breaks one rule; the checker must report a run as failed, on every seed, and
/// name a rule that the sabotage breaks.
fn sabotage_is_caught(sabotage: Sabotage, rules: &[&str]) {
    for seed in 1..=6 {
        let options = Options { sabotage: Some(sabotage), ..Options::new(Profile::Lite) };
        let outcome: Outcome = run(seed, &options);
        eprintln!("{}", outcome.line());
        let failure = outcome.failure.as_ref().unwrap_or_else(|| {
            panic!("{} went unnoticed: {}", sabotage.as_str(), outcome.reproduce())
        });
        assert!(
            rules.contains(&failure.rule),
            "{} was reported as {}, expected one of {rules:?}: {}",
            sabotage.as_str(),
            failure.rule,
            outcome.reproduce()
        );
    }
}

#[test]
fn a_network_that_rewrites_values_is_caught() {
    sabotage_is_caught(Sabotage::RewriteValues, &["unwritten-value"]);
}

#[test]
fn a_node_that_forgets_deletes_early_is_caught() {
    sabotage_is_caught(
        Sabotage::ForgetTombstones,
        &["collected-early", "collected-unstable", "vector-overclaims", "not-converged"],
    );
}

#[test]
fn a_partition_that_never_heals_is_caught() {
    sabotage_is_caught(
        Sabotage::NeverHeal,
        &["not-converged", "not-collected", "diverged-after-collection", "down-seen-alive"],
    );
}

#[test]
fn a_node_that_skips_the_skew_guard_is_caught() {
    sabotage_is_caught(Sabotage::SkipSkewGuard, &["skew-bound"]);
}

/// Runs `sabotage` on lite `seeds`: each must be reported as one of `rules`.
fn sabotage_is_caught_on(sabotage: Sabotage, seeds: &[u64], rules: &[&str], options: Options) {
    for &seed in seeds {
        let outcome = run(seed, &Options { sabotage: Some(sabotage), ..options });
        eprintln!("{}", outcome.line());
        let failure = outcome.failure.as_ref().unwrap_or_else(|| {
            panic!("{} went unnoticed: {}", sabotage.as_str(), outcome.reproduce())
        });
        assert!(rules.contains(&failure.rule), "{}: {}", failure, outcome.reproduce());
    }
}

/// Lite seeds whose drawn page size is small and where the paging sabotage bites.
const PAGED_SEEDS: &[u64] = &[13, 25, 34, 36, 39];

#[test]
fn a_page_that_claims_its_whole_range_is_caught_once_pages_are_small() {
    let rules = ["vector-overclaims", "not-converged"];
    let lite = Options::new(Profile::Lite);
    sabotage_is_caught_on(Sabotage::PageClaimsWholeRange, PAGED_SEEDS, &rules, lite);
    // With the protocol's own 256 KiB pages, as every seed had before, no catch-up takes a
    // second page and the same seeds pass: the small pages are what catch it.
    for &seed in PAGED_SEEDS {
        let options = Options {
            sabotage: Some(Sabotage::PageClaimsWholeRange),
            pages: Pages::Default,
            ..lite
        };
        let outcome = run(seed, &options);
        assert!(outcome.passed(), "with default pages: {}", outcome.line());
    }
}

/// The old check compared a read with the store's own `live_value`, so it passed this on
/// every lite seed 0..100 and swarm seed 0..200; the oracle catches it.
#[test]
fn a_read_that_ignores_ttls_is_caught() {
    let lite = Options::new(Profile::Lite);
    sabotage_is_caught_on(Sabotage::ReadIgnoresTtl, &[2, 4, 5], &["read-value"], lite);
}

/// Before waits were checked against what the confirming nodes held, this passed every lite
/// seed 0..100 and swarm seed 0..100.
#[test]
fn a_node_that_acknowledges_writes_it_never_applied_is_caught() {
    let lite = Options::new(Profile::Lite);
    sabotage_is_caught_on(Sabotage::AckWithoutApplying, &[1, 2, 3], &["wait-confirmed"], lite);
}

/// Without the `left-seen-dead` rule, every lite seed 0..100 passed this.
#[test]
fn a_departure_nobody_hears_of_is_caught() {
    let lite = Options::new(Profile::Lite);
    sabotage_is_caught_on(Sabotage::HideDepartures, &[0, 1, 2], &["left-seen-dead"], lite);
}

/// A push that names as replaced a write its writes did not replace (here the one before
/// each, of any key) makes its receiver count a write seen that it never got.
#[test]
fn a_push_naming_writes_it_did_not_replace_is_caught() {
    let lite = Options::new(Profile::Lite);
    let rules = ["vector-overclaims", "not-converged"];
    sabotage_is_caught_on(Sabotage::PushNamesUnreplaced, &[0, 1, 2], &rules, lite);
}

/// Nodes keep disks (`--disks`): crashes keep them whole, lose the unsynced batches, roll
/// them back to an old snapshot or lose them, and every rule holds; the seeds restore nodes
/// from disks, old snapshots among them.
#[test]
fn nodes_restored_from_their_disks_keep_every_rule() {
    let mut restored = 0;
    let mut restored_old = 0;
    for (profile, seeds) in [(Profile::Lite, 0..40), (Profile::Swarm, 0..8)] {
        for seed in seeds {
            let outcome = run(seed, &Options { disks: true, ..Options::new(profile) });
            assert!(outcome.passed(), "{}\n{}", outcome.line(), outcome.reproduce());
            restored += outcome.reached.restored;
            restored_old += outcome.reached.restored_old;
        }
    }
    assert!(restored >= 10 && restored_old >= 2, "too few restores: {restored}, {restored_old}");
}

/// A restore that loses rows its disk held is caught (without the disk checks and the
/// restored writes counted as held, it would look like any crash).
#[test]
fn a_restore_that_loses_rows_is_caught() {
    let lite = Options::new(Profile::Lite);
    let rules = ["vector-overclaims", "disk-journal"];
    sabotage_is_caught_on(Sabotage::RestoreDropsRows, &[7, 9, 13], &rules, lite);
}

#[test]
fn the_broadcast_benchmark_meets_its_targets_without_faults() {
    let report = bench::glomers(1, Nemesis::None);
    eprintln!("{}", report.line());
    assert!(report.targets_met(), "{}", report.line());
}

#[test]
fn the_broadcast_benchmark_loses_nothing_under_partitions() {
    let report = bench::glomers(1, Nemesis::Partition);
    eprintln!("{}", report.line());
    assert!(report.passed(), "{}", report.line());
    assert!(report.msgs_per_op < 20.0, "{}", report.line());
}

/// The command's exit code follows the targets: 1 with each missed figure and its target
/// printed, 0 when all are met. Under the partition nemesis the latency targets are missed
/// today (p50 415 ms, max about 6 s against 400 and 600), and the command used to exit 0.
#[test]
fn a_missed_benchmark_target_fails_the_command() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chorus-sim"))
        .args(["bench", "glomers", "--nemesis", "partition"])
        .output()
        .expect("chorus-sim runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}");
    let report = bench::glomers(1, Nemesis::Partition);
    let expected = if report.targets_met() { 0 } else { 1 };
    assert_eq!(output.status.code(), Some(expected), "{stdout}");
    for miss in report.misses() {
        assert!(stdout.contains(&format!("missed: {miss}")), "{miss} not printed: {stdout}");
    }
}

#[test]
fn one_write_reaches_a_hundred_nodes_in_one_round_with_little_redundancy() {
    let report = bench::scale(1, 100);
    eprintln!("{}", report.line());
    assert!(report.passed(), "{}", report.line());
    assert_eq!(report.rounds, 1, "{}", report.line());
    assert!(report.rmr < 1.0, "{}", report.line());
}
