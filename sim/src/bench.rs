//! Protocol benchmarks in virtual time: deterministic, so their figures are reproducible
//! measurements of the protocol, not of the machine that runs them.
//!
//! - [`glomers`]: the shape of Jepsen Maelstrom's broadcast workload (Gossip Glomers 3d/3e),
//!   scored with the semantics of its checker.
//! - [`scale`]: one write into a large converged cluster: how many rounds and hops until every
//!   node has it, and how many redundant copies travel.

use std::collections::{BTreeMap, BTreeSet};

use chorus_proto::limits::GOSSIP_INTERVAL_MS;
use chorus_proto::message::{Body, Envelope};
use chorus_proto::{Addr, Dot, Key, Value, Write, codec};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::checker::Checker;
use crate::clock::{ClockModel, START_MS};
use crate::cluster::{Cluster, SEED_ADDR, Stepped};
use crate::faults::{Latency, LinkFaults};
use crate::network::Network;
use crate::quantile::quantile;
use crate::run::node_template;

/// Faults during the glomers benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nemesis {
    /// A perfect network.
    None,
    /// Maelstrom's `--nemesis partition`: the cluster is cut in random halves for a while,
    /// twice, then healed before the final reads.
    Partition,
}

/// Nodes in Maelstrom's broadcast shape.
const GLOMERS_NODES: usize = 25;
/// One-way latency of every link.
const GLOMERS_LATENCY_MS: u64 = 100;
/// Client operations per second.
const GLOMERS_OPS_PER_S: u64 = 100;
/// Length of the workload.
const GLOMERS_WORKLOAD_MS: u64 = 20_000;
/// Quiet time after the heal, before the final reads.
const GLOMERS_QUIET_MS: u64 = 10_000;
/// Partitions of the nemesis: (start, end) in milliseconds into the workload.
const GLOMERS_PARTITIONS: [(u64, u64); 2] = [(5_000, 10_000), (15_000, 20_000)];
/// The glomers targets, with and without the partition nemesis: Gossip Glomers 3d asks for
/// fewer than 30 messages per operation, a median below 400 ms and a maximum below 600 ms,
/// 3e for fewer than 20 messages with 1 s and 2 s; chorus aims at the stricter of each.
pub const GLOMERS_MSGS_PER_OP_MAX: f64 = 20.0;
/// See [`GLOMERS_MSGS_PER_OP_MAX`].
pub const GLOMERS_MEDIAN_MS_MAX: u64 = 400;
/// See [`GLOMERS_MSGS_PER_OP_MAX`].
pub const GLOMERS_MAX_MS_MAX: u64 = 600;
/// How long the cluster may take to form before the workload starts.
const FORM_MS_MAX: u64 = 60_000;

/// What the glomers benchmark measured.
#[derive(Clone, Debug, PartialEq)]
pub struct GlomersReport {
    /// The nemesis it ran with.
    pub nemesis: Nemesis,
    /// Broadcasts acknowledged.
    pub broadcasts: usize,
    /// Reads, final reads included.
    pub reads: usize,
    /// Node-to-node messages sent (dropped ones included) over client operations.
    pub msgs_per_op: f64,
    /// Stable latency quantiles in milliseconds: p50, p95, p99, max.
    pub latency_ms: [u64; 4],
    /// Acknowledged values missing from some final read.
    pub lost: usize,
    /// Values listed twice in one read.
    pub duplicates: usize,
    /// Values read that were never broadcast.
    pub unexpected: usize,
    /// Milliseconds the cluster took to form (not counted in the figures).
    pub formed_ms: u64,
    /// A broken rule, if the checker saw one.
    pub failure: Option<String>,
}

impl GlomersReport {
    /// Whether nothing was lost, duplicated or invented, and every rule held.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.unexpected == 0 && self.failure.is_none()
    }

    /// Whether every target is met: nothing lost and every rule held, and the figures below
    /// [`GLOMERS_MSGS_PER_OP_MAX`], [`GLOMERS_MEDIAN_MS_MAX`] and [`GLOMERS_MAX_MS_MAX`].
    pub fn targets_met(&self) -> bool {
        self.misses().is_empty()
    }

    /// Each missed target, as `figure=value target=bound`.
    pub fn misses(&self) -> Vec<String> {
        let mut misses = Vec::new();
        if !self.passed() {
            misses.push(format!("lost={} target=0 (and no rule broken)", self.lost));
        }
        if self.msgs_per_op >= GLOMERS_MSGS_PER_OP_MAX {
            let bound = GLOMERS_MSGS_PER_OP_MAX;
            misses.push(format!("msgs_per_op={:.2} target<{bound}", self.msgs_per_op));
        }
        if self.latency_ms[0] >= GLOMERS_MEDIAN_MS_MAX {
            let bound = GLOMERS_MEDIAN_MS_MAX;
            misses.push(format!("latency_ms_p50={} target<{bound}", self.latency_ms[0]));
        }
        if self.latency_ms[3] >= GLOMERS_MAX_MS_MAX {
            let bound = GLOMERS_MAX_MS_MAX;
            misses.push(format!("latency_ms_max={} target<{bound}", self.latency_ms[3]));
        }
        misses
    }

    /// The `key=value` result line.
    pub fn line(&self) -> String {
        let [p50, p95, p99, max] = self.latency_ms;
        let nemesis = match self.nemesis {
            Nemesis::None => "none",
            Nemesis::Partition => "partition",
        };
        let mut line = format!(
            "msgs_per_op={:.2} latency_ms_p50={p50} latency_ms_p95={p95} latency_ms_p99={p99} \
             latency_ms_max={max} lost={} duplicates={} unexpected={} broadcasts={} reads={} \
             nemesis={nemesis} formed_ms={} targets={}",
            self.msgs_per_op,
            self.lost,
            self.duplicates,
            self.unexpected,
            self.broadcasts,
            self.reads,
            self.formed_ms,
            if self.targets_met() { "met" } else { "missed" },
        );
        if let Some(failure) = &self.failure {
            line.push_str(&format!(" {failure}"));
        }
        line
    }
}

/// Script entries of the benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Script {
    Op,
    Cut(bool),
}

/// A cluster of `nodes` nodes with perfect links of `latency`, joined through the seed name
/// and run until every node sees every other alive. Returns it and how long that took.
fn formed(
    seed: u64,
    nodes: usize,
    latency: Latency,
    deep: bool,
) -> Result<(Cluster<Script>, u64), String> {
    let rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let template = node_template();
    let checker = Checker::new(&template, START_MS, deep);
    let network = Network::new(LinkFaults::calm(latency));
    let mut cluster = Cluster::new(rng, network, checker, template);
    let seeds = vec![Addr::new(SEED_ADDR).expect("a short address is valid")];
    for slot in 0..nodes {
        cluster.add_slot(ClockModel::exact());
        cluster.start(slot, seeds.clone());
    }
    let check_every_ms = 250 + nodes as u64;
    loop {
        let now = cluster.now();
        if cluster.checker.converged(&cluster.live()).is_ok() {
            return Ok((cluster, now - START_MS));
        }
        if now - START_MS > FORM_MS_MAX {
            let why = cluster.checker.converged(&cluster.live()).err().unwrap_or_default();
            return Err(format!("the cluster did not form in {FORM_MS_MAX} ms: {why}"));
        }
        let until = now + check_every_ms;
        while cluster.step(until).is_some() {}
        cluster.advance_to(until);
    }
}

/// Maelstrom's broadcast workload on chorus: 25 nodes, 100 ms links, 100 operations a second
/// for 20 s, half broadcasts and half reads, each at a random node; then (after healing) 10 s
/// of quiet and a final read at every node.
///
/// A broadcast of `v` is a put of the new key `b/<v>` at one node, acknowledged at once; a
/// read lists the keys that node holds. As in Maelstrom's checker (Jepsen's `set-full`), a
/// value's stable latency runs from its acknowledgement to the last read, started after it,
/// that did not include it (zero if none missed it); a value is lost when a final read lacks
/// it. Messages are counted from the start of the workload, dropped ones included, and
/// divided by every client operation, final reads included. The cluster forms before the
/// workload starts (Maelstrom hands every node the full membership in `init`).
pub fn glomers(seed: u64, nemesis: Nemesis) -> GlomersReport {
    let mut report = GlomersReport {
        nemesis,
        broadcasts: 0,
        reads: 0,
        msgs_per_op: 0.0,
        latency_ms: [0; 4],
        lost: 0,
        duplicates: 0,
        unexpected: 0,
        formed_ms: 0,
        failure: None,
    };
    let latency = Latency::Constant(GLOMERS_LATENCY_MS);
    let (mut cluster, formed_ms) = match formed(seed, GLOMERS_NODES, latency, false) {
        Ok(formed) => formed,
        Err(why) => {
            report.failure = Some(why);
            return report;
        }
    };
    report.formed_ms = formed_ms;
    let sent_before = cluster.network.stats.sent;
    let mut state = Broadcasts::default();
    let end = broadcast_workload(&mut cluster, &mut state, nemesis);
    cluster.network.heal(None);
    let quiet = end + GLOMERS_QUIET_MS;
    while cluster.step(quiet).is_some() {}
    cluster.advance_to(quiet);
    let finals: Vec<BTreeSet<u64>> =
        (0..GLOMERS_NODES).map(|slot| state.read(&mut cluster, slot)).collect();
    report.broadcasts = state.acked.len();
    report.reads = state.reads;
    report.duplicates = state.duplicates;
    report.unexpected = state.unexpected;
    report.lost =
        state.acked.keys().filter(|v| finals.iter().any(|read| !read.contains(v))).count();
    let ops = state.acked.len() + state.reads;
    let sent = cluster.network.stats.sent - sent_before;
    report.msgs_per_op = sent as f64 / ops.max(1) as f64;
    let mut latencies: Vec<u64> = state
        .acked
        .iter()
        .map(|(value, acked)| state.last_miss.get(value).map_or(0, |miss| miss - acked))
        .collect();
    latencies.sort_unstable();
    report.latency_ms = [
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.95),
        quantile(&latencies, 0.99),
        quantile(&latencies, 1.0),
    ];
    report.failure = cluster.checker.failure().map(|f| f.to_string());
    report
}

/// Runs the workload (and the nemesis' cuts) on a formed cluster; returns when it ended.
fn broadcast_workload(
    cluster: &mut Cluster<Script>,
    state: &mut Broadcasts,
    nemesis: Nemesis,
) -> u64 {
    let start = cluster.now();
    cluster.schedule(start, Script::Op);
    if nemesis == Nemesis::Partition {
        for (from, to) in GLOMERS_PARTITIONS {
            cluster.schedule(start + from, Script::Cut(true));
            cluster.schedule(start + to, Script::Cut(false));
        }
    }
    let end = start + GLOMERS_WORKLOAD_MS;
    while let Some(stepped) = cluster.step(end) {
        match stepped {
            Stepped::Script(Script::Op) => {
                state.op(cluster);
                let gap = cluster.rng.random_range(1..=2 * 1_000 / GLOMERS_OPS_PER_S - 1);
                cluster.schedule(cluster.now() + gap, Script::Op);
            }
            Stepped::Script(Script::Cut(true)) => {
                let slots: Vec<usize> = (0..GLOMERS_NODES).collect();
                // Maelstrom cuts the cluster into random halves.
                let cut = halves(&slots, &mut cluster.rng);
                cluster.network.cut(0, cut);
            }
            Stepped::Script(Script::Cut(false)) => cluster.network.heal(None),
            _ => {}
        }
    }
    end
}

/// Jepsen's random halves: a shuffled split into two sides that cannot talk.
fn halves(slots: &[usize], rng: &mut Xoshiro256PlusPlus) -> BTreeSet<(usize, usize)> {
    let mut order = slots.to_vec();
    crate::faults::shuffle(&mut order, rng);
    let (left, right) = order.split_at(order.len() / 2);
    let mut cut = BTreeSet::new();
    for &a in left {
        for &b in right {
            cut.insert((a, b));
            cut.insert((b, a));
        }
    }
    cut
}

/// The broadcast workload's history, scored as it goes.
#[derive(Default)]
struct Broadcasts {
    /// Acknowledged values and when.
    acked: BTreeMap<u64, u64>,
    /// The last read, started after a value's acknowledgement, that missed it.
    last_miss: BTreeMap<u64, u64>,
    reads: usize,
    duplicates: usize,
    unexpected: usize,
}

impl Broadcasts {
    fn op(&mut self, cluster: &mut Cluster<Script>) {
        let slot = cluster.rng.random_range(0..GLOMERS_NODES);
        if cluster.rng.random_bool(0.5) {
            let value = self.acked.len() as u64;
            let key = Key::new(format!("b/{value:08}")).expect("a short key is valid");
            let bytes = Value::new(value.to_le_bytes()).expect("eight bytes are a valid value");
            if cluster.write(slot, Write::put(key, bytes)).is_ok() {
                self.acked.insert(value, cluster.now());
            }
        } else {
            self.read(cluster, slot);
        }
    }

    /// Reads every value `slot` holds and scores the read.
    fn read(&mut self, cluster: &mut Cluster<Script>, slot: usize) -> BTreeSet<u64> {
        self.reads += 1;
        let now = cluster.now();
        let local = cluster.local_now(slot);
        let Some(node) = cluster.node(slot) else { return BTreeSet::new() };
        let listed = node.store().list(b"b/", None, usize::MAX, local);
        let mut seen = BTreeSet::new();
        for (_, value) in listed {
            let Ok(bytes) = <[u8; 8]>::try_from(value.as_bytes()) else {
                self.unexpected += 1;
                continue;
            };
            let value = u64::from_le_bytes(bytes);
            if !self.acked.contains_key(&value) {
                self.unexpected += 1;
            }
            if !seen.insert(value) {
                self.duplicates += 1;
            }
        }
        for (&value, &acked) in &self.acked {
            if acked <= now && !seen.contains(&value) {
                self.last_miss.insert(value, now);
            }
        }
        seen
    }
}

/// What the scale benchmark measured.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleReport {
    /// Nodes.
    pub nodes: usize,
    /// Gossip rounds (intervals of `GOSSIP_INTERVAL_MS`) until every node had the write.
    pub rounds: u64,
    /// Milliseconds until every node had the write.
    pub reach_ms: u64,
    /// Relative message redundancy: messages that carried the write, over `nodes - 1`,
    /// minus one (0 when every node got exactly one copy).
    pub rmr: f64,
    /// Last delivery hop: the most hops any node's first copy travelled.
    pub ldh: u32,
    /// Bytes sent per node from the write until the last node had it (all traffic).
    pub bytes_per_node: u64,
    /// Bytes of the messages that carried the write, per node.
    pub write_bytes_per_node: u64,
    /// Milliseconds the cluster took to form (every node sees every other alive).
    pub formed_ms: u64,
    /// Whether some node never got the write, or a rule broke.
    pub failure: Option<String>,
}

impl ScaleReport {
    /// Whether the write reached every node and every rule held.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// The `key=value` result line, with the targets: at most log3(n) + 3 rounds, and a
    /// relative message redundancy below 1.
    pub fn line(&self) -> String {
        let bound = (self.nodes as f64).ln() / 3f64.ln() + 3.0;
        let met = self.passed() && (self.rounds as f64) <= bound && self.rmr < 1.0;
        let mut line = format!(
            "rounds={} reach_ms={} rmr={:.3} ldh={} bytes_per_node={} nodes={} \
             write_bytes_per_node={} formed_ms={} rounds_bound={bound:.2} targets={}",
            self.rounds,
            self.reach_ms,
            self.rmr,
            self.ldh,
            self.bytes_per_node,
            self.nodes,
            self.write_bytes_per_node,
            self.formed_ms,
            if met { "met" } else { "missed" },
        );
        if let Some(failure) = &self.failure {
            line.push_str(&format!(" failure=\"{failure}\""));
        }
        line
    }
}

/// Latency of the scale benchmark's links: a data centre.
const SCALE_LATENCY: Latency = Latency::Uniform { low: 1, high: 10 };
/// How long the write may take to reach everyone.
const SCALE_REACH_MS_MAX: u64 = 60_000;

/// One write into a converged cluster of `nodes` nodes. The cluster forms by gossip: every
/// node joins through the seed name (a random running node) and the run waits until every
/// node sees every other alive; that time is reported, not measured.
pub fn scale(seed: u64, nodes: usize) -> ScaleReport {
    let mut report = ScaleReport {
        nodes,
        rounds: 0,
        reach_ms: 0,
        rmr: 0.0,
        ldh: 0,
        bytes_per_node: 0,
        write_bytes_per_node: 0,
        formed_ms: 0,
        failure: None,
    };
    let (mut cluster, formed_ms) = match formed(seed, nodes, SCALE_LATENCY, false) {
        Ok(formed) => formed,
        Err(why) => {
            report.failure = Some(why);
            return report;
        }
    };
    report.formed_ms = formed_ms;
    let key = Key::new("scale/probe").expect("a short key is valid");
    let value = Value::new("x").expect("a short value is valid");
    let bytes_before = cluster.network.stats.bytes_sent;
    cluster.tap(true);
    let written_at = cluster.now();
    let written = match cluster.write(0, Write::put(key, value)) {
        Ok(written) => written,
        Err(error) => {
            report.failure = Some(format!("the write was refused: {error}"));
            return report;
        }
    };
    let seq = cluster.node(0).map_or(0, |node| node.store().vector().base(node.id()));
    let dot = Dot { node: written.stamp.node, seq };
    let mut hops: BTreeMap<usize, u32> = BTreeMap::from([(0, 0)]);
    let (mut carriers, mut carrier_bytes) = (0u64, 0u64);
    let deadline = written_at + SCALE_REACH_MS_MAX;
    while hops.len() < nodes {
        let Some(stepped) = cluster.step(deadline) else { break };
        for tapped in cluster.take_tapped() {
            if carries(&tapped.bytes, dot) {
                carriers += 1;
                carrier_bytes += tapped.bytes.len() as u64;
            }
        }
        if let Stepped::Delivered { from, to } = stepped {
            let has = cluster.node(to).is_some_and(|node| node.store().vector().contains(dot));
            if has && !hops.contains_key(&to) {
                let hop = hops.get(&from).copied().unwrap_or(0) + 1;
                hops.insert(to, hop);
            }
        }
    }
    let reach_ms = cluster.now() - written_at;
    if hops.len() < nodes {
        report.failure =
            Some(format!("{} of {nodes} nodes had the write after {reach_ms} ms", hops.len()));
    }
    report.reach_ms = reach_ms;
    report.rounds = reach_ms.div_ceil(GOSSIP_INTERVAL_MS).max(1);
    report.ldh = hops.values().copied().max().unwrap_or(0);
    report.rmr = carriers as f64 / (nodes.max(2) - 1) as f64 - 1.0;
    report.bytes_per_node = (cluster.network.stats.bytes_sent - bytes_before) / nodes as u64;
    report.write_bytes_per_node = carrier_bytes / nodes as u64;
    if let Some(failure) = cluster.checker.failure() {
        report.failure = Some(failure.to_string());
    }
    report
}

/// Whether an encoded message carries the write `dot`.
fn carries(bytes: &[u8], dot: Dot) -> bool {
    let Ok(envelope) = codec::decode::<Envelope>(bytes) else { return false };
    match envelope.body {
        Body::Push { updates, .. } => updates.iter().any(|u| u.dot() == dot),
        Body::Delta { delta, .. } => {
            delta.groups.iter().flat_map(|g| &g.updates).any(|u| u.dot() == dot)
        }
        _ => false,
    }
}
