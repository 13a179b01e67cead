//! The `chorus-sim` command line. Output is `key=value` on stdout so scripts can read it;
//! progress goes to stderr.
//!
//! ```text
//! chorus-sim run --seed N [--nodes N] [--profile lite|swarm] [--trace] [--sabotage NAME]
//! chorus-sim sweep --seeds K [--start S] [--profile lite|swarm] [--nodes N] [--jobs J]
//! chorus-sim bench glomers [--nemesis partition] [--seed N]
//! chorus-sim bench scale --nodes N [--seed N]
//! ```
//!
//! Exit codes: 0 when every run passed (and a benchmark met its targets), 1 when one failed
//! or missed a target, 2 for a usage error.
//!
//! Arguments are parsed by hand: a handful of flags does not justify a dependency, and it
//! keeps `chorus-sim` buildable from `proto` and `rand` alone.

// The wall clock is read here only to report seeds per second; no simulated decision
// depends on it (see `sim/clippy.toml`).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use chorus_sim::bench::{self, Nemesis};
use chorus_sim::{Options, Pages, Profile, Sabotage, run, sweep};

const USAGE: &str = "usage:
  chorus-sim run --seed N [--nodes N] [--profile lite|swarm] [--trace] [--sabotage NAME]
                 [--long-partitions] [--pages drawn|small|default] [--disks]
  chorus-sim sweep --seeds K [--start S] [--profile lite|swarm] [--nodes N] [--jobs J]
                   [--sabotage NAME] [--long-partitions] [--pages drawn|small|default]
                   [--disks]
  chorus-sim bench glomers [--nemesis partition] [--seed N]
  chorus-sim bench scale --nodes N [--seed N]
sabotage names: rewrite-values, forget-tombstones, never-heal, skip-skew-guard,
                page-claims-whole-range, read-ignores-ttl, ack-without-applying,
                hide-departures, restore-drops-rows, push-names-unreplaced";

/// Parsed `--flag value` pairs and bare `--flag`s.
struct Args {
    flags: BTreeMap<String, Option<String>>,
}

/// Flags that take no value.
const SWITCHES: &[&str] = &["trace", "long-partitions", "disks"];

impl Args {
    fn parse(words: &[String]) -> Result<Args, String> {
        let mut flags = BTreeMap::new();
        let mut words = words.iter();
        while let Some(word) = words.next() {
            let Some(name) = word.strip_prefix("--") else {
                return Err(format!("unexpected argument {word:?}"));
            };
            let value = if SWITCHES.contains(&name) {
                None
            } else {
                Some(words.next().ok_or(format!("--{name} needs a value"))?.clone())
            };
            flags.insert(name.to_string(), value);
        }
        Ok(Args { flags })
    }

    fn number(&self, name: &str) -> Result<Option<u64>, String> {
        match self.flags.get(name) {
            Some(Some(text)) => {
                text.parse().map(Some).map_err(|_| format!("--{name} needs a number, not {text:?}"))
            }
            _ => Ok(None),
        }
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.flags.get(name).and_then(|value| value.as_deref())
    }

    fn switch(&self, name: &str) -> bool {
        self.flags.contains_key(name)
    }

    /// Refuses flags the command does not know.
    fn only(&self, known: &[&str]) -> Result<(), String> {
        match self.flags.keys().find(|flag| !known.contains(&flag.as_str())) {
            Some(flag) => Err(format!("unknown flag --{flag}")),
            None => Ok(()),
        }
    }

    fn options(&self) -> Result<Options, String> {
        let profile = match self.text("profile") {
            Some(name) => Profile::parse(name).ok_or(format!("unknown profile {name:?}"))?,
            None => Profile::Swarm,
        };
        let nodes = self.number("nodes")?.map(|n| n as usize);
        if nodes.is_some_and(|n| !(1..=1_000).contains(&n)) {
            return Err("--nodes must be between 1 and 1000".into());
        }
        let sabotage = match self.text("sabotage") {
            Some(name) => Some(Sabotage::parse(name).ok_or(format!("unknown sabotage {name:?}"))?),
            None => None,
        };
        let long_partitions = self.switch("long-partitions");
        let pages = match self.text("pages") {
            Some(name) => Pages::parse(name).ok_or(format!("unknown page sizes {name:?}"))?,
            None => Pages::Drawn,
        };
        let log = self.switch("trace");
        let disks = self.switch("disks");
        Ok(Options { profile, nodes, log, sabotage, long_partitions, pages, disks })
    }
}

fn main() -> ExitCode {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let result = match words.first().map(String::as_str) {
        Some("run") => Args::parse(&words[1..]).and_then(|args| command_run(&args)),
        Some("sweep") => Args::parse(&words[1..]).and_then(|args| command_sweep(&args)),
        Some("bench") => command_bench(&words[1..]),
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(true)
        }
        _ => Err("missing command".to_string()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(why) => {
            eprintln!("chorus-sim: {why}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn command_run(args: &Args) -> Result<bool, String> {
    let known = ["seed", "nodes", "profile", "trace", "sabotage", "long-partitions", "pages"];
    args.only(&[&known[..], &["disks"]].concat())?;
    let seed = args.number("seed")?.ok_or("run needs --seed")?;
    let options = args.options()?;
    let outcome = run(seed, &options);
    for line in &outcome.log {
        println!("{line}");
    }
    println!("{}", outcome.line());
    if !outcome.passed() {
        println!("reproduce: {}", outcome.reproduce());
    }
    Ok(outcome.passed())
}

fn command_sweep(args: &Args) -> Result<bool, String> {
    let known = ["seeds", "start", "profile", "nodes", "jobs", "sabotage", "long-partitions"];
    args.only(&[&known[..], &["pages", "disks"]].concat())?;
    let seeds = args.number("seeds")?.ok_or("sweep needs --seeds")?;
    let start = args.number("start")?.unwrap_or(0);
    let options = args.options()?;
    let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = args.number("jobs")?.map_or(parallelism, |n| n.max(1) as usize);
    let started = Instant::now();
    let last_print = Mutex::new(Instant::now());
    let progress = |done: u64, failed: u64| {
        let mut last = last_print.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed().as_millis() >= 500 || done == seeds {
            *last = Instant::now();
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let width = 30;
            let filled = (done * width / seeds.max(1)) as usize;
            let bar = format!("{}{}", "#".repeat(filled), ".".repeat(width as usize - filled));
            eprint!("\r[{bar}] {done}/{seeds} failed={failed} {rate:.1} seeds/s ");
            let _ = std::io::stderr().flush();
        }
    };
    let report = sweep(start, seeds, &options, jobs, &progress);
    eprintln!();
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    for outcome in &report.failed {
        println!("{}", outcome.line());
        println!("reproduce: {}", outcome.reproduce());
    }
    let speed = report.virtual_ms as f64 / 1_000.0 / elapsed / jobs as f64;
    println!(
        "sweep seeds={} failed={} seeds_per_s={:.1} profile={} start={start} jobs={jobs} \
         seconds={elapsed:.1} virtual_per_real_per_job={speed:.0} converged_ms_p50={} \
         converged_ms_p99={} converged_ms_max={} lost={} stuck={} fenced_seeds={} \
         pruned_seeds={} pruned={} refused={} paged_seeds={} paged={} clock_seeds={} \
         clock_refused={} restored={} restored_old={}",
        report.seeds,
        report.failed.len(),
        report.seeds as f64 / elapsed,
        options.profile.as_str(),
        report.converged_quantile(0.5),
        report.converged_quantile(0.99),
        report.converged_quantile(1.0),
        report.lost,
        report.stuck,
        report.fenced_seeds,
        report.pruned_seeds,
        report.reached.pruned,
        report.reached.refused,
        report.paged_seeds,
        report.reached.paged,
        report.clock_seeds,
        report.reached.clock_refused,
        report.reached.restored,
        report.reached.restored_old,
    );
    Ok(report.failed.is_empty())
}

fn command_bench(words: &[String]) -> Result<bool, String> {
    let Some((which, rest)) = words.split_first() else {
        return Err("bench needs glomers or scale".into());
    };
    let args = Args::parse(rest)?;
    match which.as_str() {
        "glomers" => {
            args.only(&["nemesis", "seed"])?;
            let nemesis = match args.text("nemesis") {
                None => Nemesis::None,
                Some("partition") => Nemesis::Partition,
                Some(other) => return Err(format!("unknown nemesis {other:?}")),
            };
            let seed = args.number("seed")?.unwrap_or(1);
            let report = bench::glomers(seed, nemesis);
            println!("{}", report.line());
            for miss in report.misses() {
                println!("missed: {miss}");
            }
            Ok(report.targets_met())
        }
        "scale" => {
            args.only(&["nodes", "seed"])?;
            let nodes = args.number("nodes")?.ok_or("bench scale needs --nodes")? as usize;
            if !(2..=4_000).contains(&nodes) {
                return Err("--nodes must be between 2 and 4000".into());
            }
            let seed = args.number("seed")?.unwrap_or(1);
            let report = bench::scale(seed, nodes);
            println!("{}", report.line());
            Ok(report.passed())
        }
        other => Err(format!("unknown bench {other:?}")),
    }
}
