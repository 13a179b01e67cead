//! One simulated run: draw a plan from the seed, run the fault phase with a workload, heal,
//! and check that the cluster converges and collects within its budgets.
//!
//! **Phases.** The fault phase runs the plan's partitions, crashes, leaves, joins and link
//! faults while clients write and read. At the heal every partition ends, the links become
//! perfect (latency stays), crashed nodes due to restart restart, and clients stop. The
//! cluster then has [`HEAL_BUDGET_MS`] plus the skew hold-back (below) to converge:
//! membership agrees and every key matches the oracle. After that it has
//! [`COLLECT_BUDGET_MS`] plus the tombstones' clock lead to collect every tombstone and
//! expired entry, and the state is checked once more (nothing came back).
//!
//! **Clocks stay wrong after the heal**, as real machines' would: offsets and drift are
//! properties of the machine, not faults the network can stop. A write stamped by a clock
//! more than the skew bound ahead of a receiver's is held back until the receiver's clock
//! catches up, so the budget adds, per run, the latest moment any live node's clock reaches
//! `stamp - skew bound` for any write made: the hold-back is computed from the history and
//! the clock models, not guessed. The same applies to collection, which waits for a
//! tombstone's stamp to be `tombstone_grace_ms` in the past on the collecting node.

use std::collections::{BTreeMap, BTreeSet};

use chorus_proto::{Addr, Config, Name, NodeId, Sabotage as NodeSabotage};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::checker::{Checker, Failure};
use crate::clock::{ClockModel, START_MS};
use crate::cluster::{Cluster, DiskMode, Reached, SEED_ADDR, Status, Stepped};
use crate::faults::{LinkFaults, Plan, Profile};
use crate::network::Network;
use crate::pages::Pages;
use crate::workload::{Op, Workload};

mod heal;
mod outcome;

/// Time the cluster has to converge after the heal, before the skew hold-back is added.
pub const HEAL_BUDGET_MS: u64 = 30_000;

/// Time the cluster has to collect every tombstone once converged, before the tombstones'
/// clock lead is added: detecting a crashed node dead (10 to 28 s, see [`GHOSTS_AFTER_MS`]),
/// removing it (`dead_remove_ms`, 10 s here), the grace period (5 s) and collection passes
/// (every 8 rounds, about 4 s).
pub const COLLECT_BUDGET_MS: u64 = 60_000;

/// Departed identities must be seen dead or gone this long after the heal and after the last
/// departure. Heartbeats travel by gossip, so a node sees a member's heartbeat rise every one
/// to two gossip intervals, not every interval; with the detector's mean capped at
/// `PHI_GAP_INTERVALS_MAX` intervals (2 s), phi reaches 6 after at most 6 ln 10 x 2 s = 28 s
/// of silence (chorus-sim measured about 20 s on a 5-node cluster; ARCHITECTURE.md states
/// the same 10 to 28 s).
const GHOSTS_AFTER_MS: u64 = 35_000;

/// How long the initial cluster may take to form before the faults start.
const FORM_MS_MAX: u64 = 30_000;

/// How often convergence is checked, in virtual milliseconds.
const CHECK_EVERY_MS: u64 = 250;

/// How long a graceful leave may take before the node is removed anyway.
const LEAVE_TIMEOUT_MS: u64 = 10_000;

/// A rule broken on purpose, to prove that the checkers catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// The network appends a byte to a value inside well-formed messages.
    RewriteValues,
    /// Every node collects tombstones at once, without stability or grace.
    ForgetTombstones,
    /// One node stays cut off after the heal.
    NeverHeal,
    /// Nodes merge writes whatever their clock lead; one node's clock is 5 s ahead.
    SkipSkewGuard,
    /// A delta page cut short still claims each group's whole range (only bites when
    /// catch-ups take more than one page).
    PageClaimsWholeRange,
    /// Client reads return expired values (the driver ignores TTLs).
    ReadIgnoresTtl,
    /// Nodes acknowledge pushed writes whose writer waits without applying them.
    AckWithoutApplying,
    /// The network clears every departure announcement: a node that left looks crashed.
    HideDepartures,
    /// Nodes keep disks, and a restored node gets back only half of what its disk held.
    RestoreDropsRows,
    /// Pushes name the write before each of theirs as replaced, whatever its key.
    PushNamesUnreplaced,
}

impl Sabotage {
    /// Every sabotage, for tests and help text.
    pub const ALL: [Sabotage; 10] = [
        Sabotage::RewriteValues,
        Sabotage::ForgetTombstones,
        Sabotage::NeverHeal,
        Sabotage::SkipSkewGuard,
        Sabotage::PageClaimsWholeRange,
        Sabotage::ReadIgnoresTtl,
        Sabotage::AckWithoutApplying,
        Sabotage::HideDepartures,
        Sabotage::RestoreDropsRows,
        Sabotage::PushNamesUnreplaced,
    ];

    /// The command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            Sabotage::RewriteValues => "rewrite-values",
            Sabotage::ForgetTombstones => "forget-tombstones",
            Sabotage::NeverHeal => "never-heal",
            Sabotage::SkipSkewGuard => "skip-skew-guard",
            Sabotage::PageClaimsWholeRange => "page-claims-whole-range",
            Sabotage::ReadIgnoresTtl => "read-ignores-ttl",
            Sabotage::AckWithoutApplying => "ack-without-applying",
            Sabotage::HideDepartures => "hide-departures",
            Sabotage::RestoreDropsRows => "restore-drops-rows",
            Sabotage::PushNamesUnreplaced => "push-names-unreplaced",
        }
    }

    /// Parses a command-line name.
    pub fn parse(name: &str) -> Option<Sabotage> {
        Sabotage::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// How to run a seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Which family of runs.
    pub profile: Profile,
    /// Overrides the drawn number of initial nodes.
    pub nodes: Option<usize>,
    /// Keep a line per step (`--trace`).
    pub log: bool,
    /// Break a rule on purpose.
    pub sabotage: Option<Sabotage>,
    /// Let partitions run long enough for both sides to remove each other (an open protocol
    /// issue: see `faults::PARTITION_MS_MAX`).
    pub long_partitions: bool,
    /// Which page sizes nodes use.
    pub pages: Pages,
    /// Nodes keep data directories, and crashes keep, truncate or roll back their disks
    /// (`cluster/disk.rs`); one crash in five stops every running node at once.
    pub disks: bool,
}

impl Options {
    /// Default options for a profile.
    pub fn new(profile: Profile) -> Options {
        Options {
            profile,
            nodes: None,
            log: false,
            sabotage: None,
            long_partitions: false,
            pages: Pages::Drawn,
            disks: false,
        }
    }
}

/// What a run did and whether it kept every rule.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The options it ran with.
    pub options: Options,
    /// Nodes at the start.
    pub nodes: usize,
    /// Machines ever used (joins add some).
    pub slots: usize,
    /// Steps run (deliveries, timers, script entries).
    pub events: u64,
    /// Writes accepted.
    pub writes: usize,
    /// Writes that may have been lost with the state of a crashed, left or reset node.
    pub lost: usize,
    /// Milliseconds from the heal to convergence.
    pub converged_ms: Option<u64>,
    /// Milliseconds from the heal until every tombstone was collected.
    pub collected_ms: Option<u64>,
    /// Tombstones and expired entries left because an earlier write of their departed writer
    /// is lost (see `Checker::above_a_lost_write`).
    pub stuck: usize,
    /// How often the run reached the fence and multi-page catch-ups.
    pub reached: Reached,
    /// The size delta pages aimed at.
    pub page_size: usize,
    /// Virtual milliseconds simulated.
    pub virtual_ms: u64,
    /// The trace hash.
    pub trace: u64,
    /// The first broken rule.
    pub failure: Option<Failure>,
    /// The step log, if asked for.
    pub log: Vec<String>,
}

/// The configuration of every simulated node: protocol defaults, with removal and grace
/// periods short enough that fencing and collection happen within a run. The grace period
/// (5 s) stays above the longest time a message can be in flight (2.5 s in `swarm`).
pub fn node_template() -> Config {
    let name = Name::new("sim").expect("a short name is valid");
    let addr = Addr::new("sim").expect("a short address is valid");
    let mut config = Config::new(NodeId(0), name, addr, 0);
    config.tombstone_grace_ms = 5_000;
    config.dead_remove_ms = 10_000;
    config.left_remove_ms = 5_000;
    config
}

/// Runs one seed.
pub fn run(seed: u64, options: &Options) -> Outcome {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut plan = Plan::draw(options.profile, options.nodes, options.long_partitions, &mut rng);
    plan.page_size_target = options.pages.size_target(seed, options.profile);
    Run::new(seed, plan, *options, rng).execute()
}

/// Script entries: the run's own decisions, queued with deliveries and timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Script {
    Op,
    PartitionStart(usize),
    PartitionEnd(usize),
    Flap(usize, bool),
    Crash(usize),
    Restart(usize),
    Leave,
    LeaveTimeout(usize),
    Join,
    Heal,
}

/// The episode number of the never-healing sabotage's cut.
const NEVER_HEALS: usize = usize::MAX;

struct Run {
    seed: u64,
    plan: Plan,
    options: Options,
    cluster: Cluster<Script>,
    workload: Workload,
    /// Cuts of active partitions, kept so a flapping one can come back.
    cuts: BTreeMap<usize, BTreeSet<(usize, usize)>>,
    /// Dead entries that can never be collected (see `Outcome::stuck`).
    stuck: usize,
    /// Crashed slots that will restart.
    restarts: BTreeSet<usize>,
    healed: bool,
}

impl Run {
    fn new(seed: u64, plan: Plan, options: Options, rng: Xoshiro256PlusPlus) -> Run {
        let mut template = node_template();
        template.delta_page_size_target = plan.page_size_target;
        // Links are perfect while the cluster forms; the plan's faults start after.
        let mut network = Network::new(LinkFaults::calm(plan.link.latency));
        match options.sabotage {
            Some(Sabotage::RewriteValues) => network.sabotage_rewrite(),
            Some(Sabotage::HideDepartures) => network.sabotage_departures(),
            Some(Sabotage::ForgetTombstones) => {
                template.sabotage = NodeSabotage { collect_unstable: true, ..template.sabotage };
            }
            Some(Sabotage::SkipSkewGuard) => {
                // The clock self-check would refuse the skewed node's writes first.
                let sabotage = NodeSabotage {
                    skip_skew_guard: true,
                    skip_clock_check: true,
                    ..template.sabotage
                };
                template.sabotage = sabotage;
            }
            Some(Sabotage::PageClaimsWholeRange) => {
                let sabotage = NodeSabotage { page_claims_whole_range: true, ..template.sabotage };
                template.sabotage = sabotage;
            }
            Some(Sabotage::AckWithoutApplying) => {
                let sabotage = NodeSabotage { ack_without_applying: true, ..template.sabotage };
                template.sabotage = sabotage;
            }
            Some(Sabotage::PushNamesUnreplaced) => {
                let sabotage = NodeSabotage { push_names_unreplaced: true, ..template.sabotage };
                template.sabotage = sabotage;
            }
            Some(Sabotage::NeverHeal | Sabotage::ReadIgnoresTtl | Sabotage::RestoreDropsRows)
            | None => {}
        }
        let checker = Checker::new(&template, START_MS, true);
        let mut cluster = Cluster::new(rng, network, checker, template);
        if options.log {
            cluster.keep_log();
        }
        let drops_rows = options.sabotage == Some(Sabotage::RestoreDropsRows);
        if options.disks || drops_rows {
            cluster.keep_disks(drops_rows);
        }
        cluster.read_ignores_ttl = options.sabotage == Some(Sabotage::ReadIgnoresTtl);
        let workload = Workload::new(plan.workload);
        Run {
            seed,
            plan,
            options,
            cluster,
            workload,
            cuts: BTreeMap::new(),
            stuck: 0,
            restarts: BTreeSet::new(),
            healed: false,
        }
    }

    fn execute(mut self) -> Outcome {
        self.start_nodes();
        let mut converged_ms = None;
        let mut collected_ms = None;
        let Some(fault_start) = self.form() else {
            return self.outcome(converged_ms, collected_ms);
        };
        self.cluster.network.set_link(self.plan.link);
        self.schedule_plan(fault_start);
        let heal_at = fault_start + self.plan.fault_ms;
        self.run_until(heal_at);
        if self.cluster.checker.failure().is_none() {
            converged_ms = self.converge(heal_at);
        }
        if converged_ms.is_some() {
            self.calm_leave();
            collected_ms = self.collect(heal_at);
        }
        if collected_ms.is_some() {
            self.final_checks(heal_at);
        }
        self.outcome(converged_ms, collected_ms)
    }

    fn outcome(mut self, converged_ms: Option<u64>, collected_ms: Option<u64>) -> Outcome {
        Outcome {
            seed: self.seed,
            options: self.options,
            nodes: self.plan.nodes,
            slots: self.cluster.slots().len(),
            events: self.cluster.steps(),
            writes: self.cluster.checker.writes().len(),
            lost: self.cluster.checker.lost_count(),
            converged_ms,
            collected_ms,
            stuck: self.stuck,
            reached: self.cluster.reached,
            page_size: self.plan.page_size_target,
            virtual_ms: self.cluster.now() - START_MS,
            trace: self.cluster.trace(),
            failure: self.cluster.checker.failure().cloned(),
            log: self.cluster.take_log(),
        }
    }

    /// Starts the initial nodes, each joining through the seed name.
    fn start_nodes(&mut self) {
        for slot in 0..self.plan.nodes {
            let mut clock = self.plan.clocks.draw(&mut self.cluster.rng);
            if slot == 1 && self.options.sabotage == Some(Sabotage::SkipSkewGuard) {
                clock = ClockModel { offset_ms: 5_000, drift_ppm: 0 };
            }
            self.cluster.add_slot(clock);
            self.cluster.start(slot, vec![seed_addr()]);
        }
    }

    /// Runs, without faults or clients, until every node sees every other alive: faults
    /// start on a formed cluster, as on a deployment that was up before trouble came. (Nodes
    /// that joined into separate clusters under faults and merged later break tombstone
    /// stability, which counts only the members a node knows: an open protocol issue, see
    /// ARCHITECTURE.md, section `sim/`.) Returns when it formed, or `None` after recording
    /// `not-formed`.
    fn form(&mut self) -> Option<u64> {
        loop {
            let elapsed = self.cluster.now() - START_MS;
            match self.cluster.checker.converged(&self.cluster.live()) {
                Ok(()) => return Some(self.cluster.now()),
                Err(why) if elapsed >= FORM_MS_MAX => {
                    let detail = format!("the cluster did not form in {elapsed} ms: {why}");
                    self.cluster.checker.fail("not-formed", detail);
                    return None;
                }
                Err(_) => self.run_until(self.cluster.now() + CHECK_EVERY_MS),
            }
        }
    }

    /// Queues the plan's client operations and faults, relative to `start`.
    fn schedule_plan(&mut self, start: u64) {
        let at = |ms: u64| start + ms;
        self.cluster.schedule(at(0), Script::Op);
        for (index, episode) in self.plan.episodes.clone().into_iter().enumerate() {
            self.cluster.schedule(at(episode.start_ms), Script::PartitionStart(index));
            let end = episode.start_ms + episode.duration_ms;
            self.cluster.schedule(at(end), Script::PartitionEnd(index));
            if let Some(flap) = episode.flap_ms {
                let mut t = episode.start_ms + flap;
                let mut on = false;
                while t < end {
                    self.cluster.schedule(at(t), Script::Flap(index, on));
                    on = !on;
                    t += flap;
                }
            }
        }
        for (index, crash) in self.plan.crashes.clone().into_iter().enumerate() {
            self.cluster.schedule(at(crash.at_ms), Script::Crash(index));
        }
        for leave in self.plan.leaves.clone() {
            self.cluster.schedule(at(leave), Script::Leave);
        }
        for join in self.plan.joins.clone() {
            self.cluster.schedule(at(join), Script::Join);
        }
        self.cluster.schedule(at(self.plan.fault_ms), Script::Heal);
    }

    /// Steps until `until` or the first broken rule.
    fn run_until(&mut self, until: u64) {
        while let Some(stepped) = self.cluster.step(until) {
            if let Stepped::Script(script) = stepped {
                self.script(script);
            }
            if self.cluster.checker.failure().is_some() {
                return;
            }
        }
        self.cluster.advance_to(until);
    }

    fn script(&mut self, script: Script) {
        self.cluster.log(|| format!("script {script:?}"));
        match script {
            Script::Op if !self.healed => self.op(),
            Script::PartitionStart(index) if !self.healed => {
                let episode = self.plan.episodes[index];
                let slots: Vec<usize> = if episode.running_only {
                    self.up_slots()
                } else {
                    (0..self.cluster.slots().len()).collect()
                };
                let shape = episode.shape;
                let cut = shape.links(&slots, &mut self.cluster.rng);
                self.cluster.log(|| format!("partition {} {cut:?}", shape.as_str()));
                self.cuts.insert(index, cut.clone());
                self.cluster.network.cut(index, cut);
            }
            Script::PartitionEnd(index) => {
                self.cuts.remove(&index);
                self.cluster.network.uncut(index);
            }
            Script::Flap(index, on) if !self.healed => match self.cuts.get(&index) {
                Some(cut) if on => self.cluster.network.cut(index, cut.clone()),
                Some(_) => self.cluster.network.uncut(index),
                None => {}
            },
            Script::Crash(index) if !self.healed => self.crash(index),
            Script::Restart(slot) => self.restart(slot),
            Script::Leave if !self.healed => self.leave(),
            Script::LeaveTimeout(slot) => self.leave_timeout(slot),
            Script::Join if !self.healed => {
                let clock = self.plan.clocks.draw(&mut self.cluster.rng);
                let slot = self.cluster.add_slot(clock);
                self.cluster.start(slot, vec![seed_addr()]);
            }
            Script::Heal => self.heal(),
            _ => {}
        }
    }

    /// Restarts a crashed node, unless the heal already did.
    fn restart(&mut self, slot: usize) {
        if self.restarts.remove(&slot) && self.cluster.slots()[slot].status == Status::Down {
            self.cluster.restart(slot, vec![seed_addr()]);
        }
    }

    /// Starts a graceful leave at a random running node, keeping at least two others.
    fn leave(&mut self) {
        let up = self.up_slots();
        if up.len() >= 3 {
            let slot = up[self.cluster.rng.random_range(0..up.len())];
            self.cluster.leave(slot);
            let at = self.cluster.now() + LEAVE_TIMEOUT_MS;
            self.cluster.schedule(at, Script::LeaveTimeout(slot));
        }
    }

    /// Removes a node whose leave did not finish in time.
    fn leave_timeout(&mut self, slot: usize) {
        if self.cluster.slots()[slot].status == Status::Leaving {
            self.cluster.remove(slot);
        }
    }

    fn up_slots(&self) -> Vec<usize> {
        let slots = self.cluster.slots();
        (0..slots.len()).filter(|&s| slots[s].status == Status::Up).collect()
    }

    fn op(&mut self) {
        let up = self.up_slots();
        if !up.is_empty() {
            let slot = up[self.cluster.rng.random_range(0..up.len())];
            let op = self.workload.next(&mut self.cluster.rng, up.len());
            // A refused write (a node whose clock is off from its peers refuses them) is
            // recorded by nothing, so the oracle only holds accepted writes.
            let _ = match op {
                Op::Write(write) => {
                    let burst = self.workload.burst(&mut self.cluster.rng, &write);
                    let first = self.cluster.write(slot, write).map(drop);
                    for write in burst {
                        let _ = self.cluster.write(slot, write);
                    }
                    first
                }
                Op::Read { key } => {
                    self.cluster.read(slot, &key);
                    Ok(())
                }
            };
        }
        let next = self.cluster.now() + self.workload.gap_ms(&mut self.cluster.rng);
        self.cluster.schedule(next, Script::Op);
    }

    fn crash(&mut self, index: usize) {
        let up = self.up_slots();
        if up.len() < 2 {
            return;
        }
        let down_ms = self.plan.crashes[index].down_ms;
        let disks = self.cluster.has_disks();
        let every = disks && down_ms.is_some() && self.cluster.rng.random_range(0..5u32) == 0;
        let slots = if every { up } else { vec![up[self.cluster.rng.random_range(0..up.len())]] };
        for slot in slots {
            if disks {
                let mode = DiskMode::draw(&mut self.cluster.rng);
                self.cluster.crash_disk(slot, mode);
            }
            self.cluster.crash(slot);
            if let Some(down_ms) = down_ms {
                self.restarts.insert(slot);
                self.cluster.schedule(self.cluster.now() + down_ms, Script::Restart(slot));
            }
        }
    }
}

fn seed_addr() -> Addr {
    Addr::new(SEED_ADDR).expect("a short address is valid")
}
