//! Fault profiles: what can go wrong in a run, drawn from the seed.
//!
//! Swarm testing (Groce et al.): instead of every run enabling every fault at a fixed rate,
//! each seed first decides which fault families it enables and at what rates, then draws the
//! schedule. Runs with few kinds of fault dig deeper into each, and the sweep covers the
//! combinations. `lite` keeps faults mild and small clusters for `cargo test`; `swarm` is the
//! full range for sweeps.

use std::collections::BTreeSet;

use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;

use crate::clock::ClockModel;

/// Which family of runs to draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// 3 to 5 nodes, mild faults, short: for `cargo test`.
    Lite,
    /// 3 to 12 nodes, every fault family at swarm-drawn rates: for sweeps.
    Swarm,
}

impl Profile {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Lite => "lite",
            Profile::Swarm => "swarm",
        }
    }

    /// Parses a command-line name.
    pub fn parse(name: &str) -> Option<Profile> {
        match name {
            "lite" => Some(Profile::Lite),
            "swarm" => Some(Profile::Swarm),
            _ => None,
        }
    }
}

/// How long a message takes on a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Latency {
    /// Always this many milliseconds.
    Constant(u64),
    /// Uniform in `low..=high`.
    Uniform {
        /// Fastest.
        low: u64,
        /// Slowest.
        high: u64,
    },
    /// Uniform in `low..=high`, but a `tail_permille` share takes up to `tail_ms` (a
    /// congested link, a retransmission).
    LongTail {
        /// Fastest.
        low: u64,
        /// Slowest of the common case.
        high: u64,
        /// Share of messages in the tail, per mille.
        tail_permille: u32,
        /// Slowest of the tail.
        tail_ms: u64,
    },
}

impl Latency {
    /// One message's delay.
    pub fn sample(&self, rng: &mut Xoshiro256PlusPlus) -> u64 {
        match *self {
            Latency::Constant(ms) => ms,
            Latency::Uniform { low, high } => rng.random_range(low..=high),
            Latency::LongTail { low, high, tail_permille, tail_ms } => {
                if rng.random_range(0..1000) < tail_permille {
                    rng.random_range(high..=tail_ms.max(high))
                } else {
                    rng.random_range(low..=high)
                }
            }
        }
    }

    /// The longest delay this distribution can produce.
    pub fn max_ms(&self) -> u64 {
        match *self {
            Latency::Constant(ms) => ms,
            Latency::Uniform { high, .. } => high,
            Latency::LongTail { high, tail_ms, .. } => high.max(tail_ms),
        }
    }
}

/// What the network does to each message, apart from partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkFaults {
    /// Delay of each copy.
    pub latency: Latency,
    /// Messages lost, per mille.
    pub loss_permille: u32,
    /// Messages delivered twice, per mille.
    pub duplicate_permille: u32,
    /// Messages held back by an extra delay (so later ones overtake them), per mille.
    pub reorder_permille: u32,
    /// The largest extra delay of a held-back message.
    pub reorder_ms: u64,
    /// Messages torn (truncated) in flight, per mille. A real transport detects corruption
    /// (QUIC authenticates every packet), so a torn frame is the corruption `proto` can see;
    /// it must refuse it with an error, never a panic or a changed state.
    pub corrupt_permille: u32,
}

impl LinkFaults {
    /// A perfect link with this latency.
    pub fn calm(latency: Latency) -> LinkFaults {
        LinkFaults {
            latency,
            loss_permille: 0,
            duplicate_permille: 0,
            reorder_permille: 0,
            reorder_ms: 0,
            corrupt_permille: 0,
        }
    }

    /// The longest a message can stay in flight.
    pub fn delay_max_ms(&self) -> u64 {
        self.latency.max_ms() + self.reorder_ms
    }
}

/// The shape of a partition. Every shape is realised over the nodes that exist when it
/// starts, in an order drawn from the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One node cut off from all others.
    IsolateOne,
    /// A minority cut off from the majority.
    Halves,
    /// Jepsen's majorities ring: nodes on a ring each see the neighbours that make up a
    /// majority, so every node sees a majority but no two see the same one. Not transitive:
    /// A sees B and B sees C while A does not see C.
    MajoritiesRing,
    /// Two halves that cannot see each other and one bridge node that sees both.
    Bridge,
    /// Messages from one side to the other are lost; the other direction works.
    OneWay,
}

impl Shape {
    const ALL: [Shape; 5] =
        [Shape::IsolateOne, Shape::Halves, Shape::MajoritiesRing, Shape::Bridge, Shape::OneWay];

    /// The directed links `(from, to)` this shape cuts among `nodes`.
    pub fn links(self, nodes: &[usize], rng: &mut Xoshiro256PlusPlus) -> BTreeSet<(usize, usize)> {
        let mut order = nodes.to_vec();
        shuffle(&mut order, rng);
        let n = order.len();
        let mut cut = BTreeSet::new();
        if n < 2 {
            return cut;
        }
        let mut sever = |a: &[usize], b: &[usize], both: bool| {
            for &x in a {
                for &y in b {
                    cut.insert((x, y));
                    if both {
                        cut.insert((y, x));
                    }
                }
            }
        };
        match self {
            Shape::IsolateOne => sever(&order[..1], &order[1..], true),
            Shape::Halves => {
                let k = rng.random_range(1..=((n - 1) / 2).max(1));
                sever(&order[..k], &order[k..], true);
            }
            Shape::OneWay => {
                let k = rng.random_range(1..=(n / 2).max(1));
                sever(&order[..k], &order[k..], false);
            }
            Shape::Bridge => {
                let rest = &order[1..];
                let half = rest.len() / 2;
                sever(&rest[..half], &rest[half..], true);
            }
            Shape::MajoritiesRing => {
                // Each node sees itself and `reach` neighbours on each side: a majority.
                let majority = n / 2 + 1;
                let reach = (majority - 1).div_ceil(2);
                for i in 0..n {
                    for j in 0..n {
                        let distance = i.abs_diff(j).min(n - i.abs_diff(j));
                        if distance > reach {
                            cut.insert((order[i], order[j]));
                        }
                    }
                }
            }
        }
        cut
    }

    /// A lower-case name for traces and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Shape::IsolateOne => "isolate-one",
            Shape::Halves => "halves",
            Shape::MajoritiesRing => "majorities-ring",
            Shape::Bridge => "bridge",
            Shape::OneWay => "one-way",
        }
    }
}

/// One partition during the fault phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Episode {
    /// When it starts, in milliseconds after the run starts.
    pub start_ms: u64,
    /// How long it lasts (it always ends at the heal, whatever this says).
    pub duration_ms: u64,
    /// Its shape.
    pub shape: Shape,
    /// If set, the cut flaps: on and off every this many milliseconds.
    pub flap_ms: Option<u64>,
    /// Whether the cut separates only the nodes running when it starts (crashed machines are
    /// left out of the draw), so that it always splits live nodes.
    pub running_only: bool,
}

/// One crash during the fault phase; which node is drawn when it happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash {
    /// When, in milliseconds after the run starts.
    pub at_ms: u64,
    /// How long the node stays down before it restarts without state; `None`: it stays
    /// down for good.
    pub down_ms: Option<u64>,
}

/// How clocks are drawn for each node (initial, restarted machines keep theirs, joiners draw).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockSpec {
    /// Offset of an ordinary clock, at most this many milliseconds either way.
    pub offset_ms_max: i64,
    /// Share of nodes whose clock is far off, per mille.
    pub wild_permille: u32,
    /// Offset of a far-off clock, at most this many milliseconds either way (beyond the
    /// 500 ms skew bound when above it).
    pub wild_offset_ms_max: i64,
    /// Drift of any clock, at most this many parts per million either way.
    pub drift_ppm_max: i64,
}

impl ClockSpec {
    /// Draws one node's clock.
    pub fn draw(&self, rng: &mut Xoshiro256PlusPlus) -> ClockModel {
        let wild = rng.random_range(0..1000) < self.wild_permille;
        let bound = if wild { self.wild_offset_ms_max } else { self.offset_ms_max };
        let offset_ms = rng.random_range(-bound..=bound);
        let drift_ppm = rng.random_range(-self.drift_ppm_max..=self.drift_ppm_max);
        ClockModel { offset_ms, drift_ppm }
    }
}

/// What clients do during the fault phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadSpec {
    /// Distinct keys: few, so that writes conflict.
    pub keys: usize,
    /// Client operations per second, across the cluster.
    pub ops_per_s: u64,
    /// Relative weights of plain puts, TTL puts, deletes and reads.
    pub weights: [u32; 4],
    /// Writes that wait for other nodes (`All` or a count), per mille.
    pub wait_permille: u32,
    /// Puts with a large value (to exercise paging), per mille.
    pub large_permille: u32,
    /// Size of a large value.
    pub large_size: usize,
    /// Longest TTL of a TTL put.
    pub ttl_ms_max: u64,
    /// Writes followed at once by more writes of the same key on the same node (a hot key:
    /// pushes then carry the last and name the ones it replaced), per mille.
    pub burst_permille: u32,
}

/// Everything a seed decides before the run starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The profile drawn from.
    pub profile: Profile,
    /// Nodes at the start.
    pub nodes: usize,
    /// Length of the fault phase; the heal phase follows.
    pub fault_ms: u64,
    /// The network during the fault phase.
    pub link: LinkFaults,
    /// Partitions.
    pub episodes: Vec<Episode>,
    /// Crashes.
    pub crashes: Vec<Crash>,
    /// Graceful leaves, in milliseconds after the start.
    pub leaves: Vec<u64>,
    /// New nodes joining, in milliseconds after the start.
    pub joins: Vec<u64>,
    /// Clocks.
    pub clocks: ClockSpec,
    /// Clients.
    pub workload: WorkloadSpec,
    /// The size delta pages and pushes aim at (see `Pages::size_target`).
    pub page_size_target: usize,
}

/// Longest partition by default. A node cut off for long is declared dead (after 10 to 28 s
/// of silence, see `run::GHOSTS_AFTER_MS`) and removed (`dead_remove_ms`, 10 s in the
/// simulator) by the other side, while it removes them in turn; when such sides meet again,
/// the horizon check decides which state survives (`--long-partitions` exercises that, and `.ci/run`
/// sweeps it). Partitions of at most 12 s, one at a time with 2 s between them, keep every
/// live node's identity.
pub const PARTITION_MS_MAX: u64 = 12_000;

/// Quiet time between two partitions, so that a node is never cut off continuously for
/// longer than [`PARTITION_MS_MAX`].
const PARTITION_GAP_MS: u64 = 2_000;

/// Orders partitions by start and delays each until the previous one ended and
/// [`PARTITION_GAP_MS`] passed, so that they never overlap.
fn one_at_a_time(mut episodes: Vec<Episode>) -> Vec<Episode> {
    episodes.sort_by_key(|episode| episode.start_ms);
    let mut free_at = 0;
    for episode in &mut episodes {
        episode.start_ms = episode.start_ms.max(free_at);
        free_at = episode.start_ms + episode.duration_ms + PARTITION_GAP_MS;
    }
    episodes
}

/// Whether a swarm seed enables a fault family: a coin flip per family.
pub(crate) fn enabled(rng: &mut Xoshiro256PlusPlus, permille: u32) -> bool {
    rng.random_range(0..1000) < permille
}

impl Plan {
    /// Draws a plan; `nodes` overrides the drawn cluster size, and `long_partitions` lets
    /// partitions last long enough, and follow each other closely enough, for the cut-off
    /// sides to remove each other (see `faults::PARTITION_MS_MAX`).
    pub fn draw(
        profile: Profile,
        nodes: Option<usize>,
        long_partitions: bool,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Plan {
        match profile {
            Profile::Lite => Plan::lite(nodes, rng),
            Profile::Swarm => Plan::swarm(nodes, long_partitions, rng),
        }
    }

    fn lite(nodes: Option<usize>, rng: &mut Xoshiro256PlusPlus) -> Plan {
        let nodes = nodes.unwrap_or_else(|| rng.random_range(3..=5));
        let fault_ms = rng.random_range(5_000..=12_000);
        let link = LinkFaults {
            latency: Latency::Uniform { low: 1, high: rng.random_range(2..=30) },
            loss_permille: rng.random_range(0..=50),
            duplicate_permille: rng.random_range(0..=30),
            reorder_permille: rng.random_range(0..=50),
            reorder_ms: 50,
            corrupt_permille: rng.random_range(0..=5),
        };
        let episodes = (0..rng.random_range(0..=2))
            .map(|_| Episode {
                start_ms: rng.random_range(0..fault_ms),
                duration_ms: rng.random_range(500..=5_000),
                shape: [Shape::IsolateOne, Shape::Halves, Shape::OneWay][rng.random_range(0..3)],
                flap_ms: None,
                running_only: false,
            })
            .collect();
        let episodes = one_at_a_time(episodes);
        let crashes = (0..rng.random_range(0..=1))
            .map(|_| Crash {
                at_ms: rng.random_range(0..fault_ms),
                down_ms: Some(rng.random_range(500..=5_000)),
            })
            .collect();
        let leaves: Vec<u64> =
            (0..u32::from(enabled(rng, 200))).map(|_| rng.random_range(0..fault_ms)).collect();
        let joins: Vec<u64> =
            (0..u32::from(enabled(rng, 300))).map(|_| rng.random_range(0..fault_ms)).collect();
        let clocks = ClockSpec {
            offset_ms_max: 100,
            wild_permille: 150,
            wild_offset_ms_max: 1_500,
            drift_ppm_max: 200,
        };
        let workload = WorkloadSpec {
            keys: rng.random_range(4..=16),
            ops_per_s: rng.random_range(10..=40),
            weights: [45, 10, 15, 30],
            wait_permille: 50,
            large_permille: 0,
            large_size: 0,
            ttl_ms_max: 5_000,
            burst_permille: 50,
        };
        Plan {
            profile: Profile::Lite,
            nodes,
            fault_ms,
            link,
            episodes,
            crashes,
            leaves,
            joins,
            clocks,
            workload,
            page_size_target: chorus_proto::limits::DELTA_PAGE_SIZE_TARGET,
        }
    }

    fn swarm(nodes: Option<usize>, long_partitions: bool, rng: &mut Xoshiro256PlusPlus) -> Plan {
        let nodes = nodes.unwrap_or_else(|| rng.random_range(3..=12));
        let fault_ms = rng.random_range(10_000..=60_000);
        let link = swarm_link(rng);
        let flapping = enabled(rng, 300);
        let duration_ms_max = if long_partitions { 40_000 } else { PARTITION_MS_MAX };
        let episodes = (0..if enabled(rng, 600) { rng.random_range(1..=6) } else { 0 })
            .map(|_| Episode {
                start_ms: rng.random_range(0..fault_ms),
                duration_ms: rng.random_range(500..=duration_ms_max),
                shape: Shape::ALL[rng.random_range(0..Shape::ALL.len())],
                flap_ms: (flapping && enabled(rng, 500)).then(|| rng.random_range(200..=3_000)),
                running_only: false,
            })
            .collect();
        let episodes = if long_partitions { episodes } else { one_at_a_time(episodes) };
        let crashes = (0..if enabled(rng, 500) { rng.random_range(1..=3) } else { 0 })
            .map(|_| Crash {
                at_ms: rng.random_range(0..fault_ms),
                down_ms: enabled(rng, 700).then(|| rng.random_range(500..=20_000)),
            })
            .collect();
        let leaves = (0..if enabled(rng, 300) { rng.random_range(1..=2) } else { 0 })
            .map(|_| rng.random_range(0..fault_ms))
            .collect();
        let mut joins: Vec<u64> = (0..if enabled(rng, 400) { rng.random_range(1..=3) } else { 0 })
            .map(|_| rng.random_range(0..fault_ms))
            .collect();
        let (clocks, mut workload) = swarm_clients(rng);
        let mut episodes: Vec<Episode> = episodes;
        let mut fault_ms = fault_ms;
        if long_partitions {
            let cut = long_cut(rng);
            let end = cut.start_ms + cut.duration_ms;
            fault_ms = fault_ms.max(end + rng.random_range(0..=5_000));
            // A node that joined during the cut would belong to neither side and bridge them.
            for join in joins.iter_mut().filter(|join| (cut.start_ms..end).contains(*join)) {
                *join = end;
            }
            episodes.push(cut);
            workload.weights[2] = workload.weights[2].max(LONG_CUT_DELETE_WEIGHT_MIN);
        }
        Plan {
            profile: Profile::Swarm,
            nodes,
            fault_ms,
            link,
            episodes,
            crashes,
            leaves,
            joins,
            clocks,
            workload,
            page_size_target: chorus_proto::limits::DELTA_PAGE_SIZE_TARGET,
        }
    }
}

/// The least weight of deletes in `--long-partitions` seeds (of plain puts' 20 to 60), so
/// that each side of the long cut deletes, collects, and has a horizon the other lacks.
const LONG_CUT_DELETE_WEIGHT_MIN: u32 = 20;

/// The cut every `--long-partitions` seed gets, besides its drawn ones: early in the fault
/// phase, symmetric, and long enough (32 to 48 s) for both sides to declare each other dead
/// (10 to 28 s) and remove each other (`dead_remove_ms`, 10 s), so that each collects
/// deletes the other never saw and the fence decides when they meet again.
fn long_cut(rng: &mut Xoshiro256PlusPlus) -> Episode {
    Episode {
        start_ms: rng.random_range(0..=5_000),
        duration_ms: rng.random_range(32_000..=48_000),
        shape: Shape::Halves,
        flap_ms: None,
        running_only: true,
    }
}

/// A swarm seed's link faults.
fn swarm_link(rng: &mut Xoshiro256PlusPlus) -> LinkFaults {
    let latency = match rng.random_range(0..3) {
        0 => Latency::Constant(rng.random_range(1..=50)),
        1 => Latency::Uniform { low: rng.random_range(1..=10), high: rng.random_range(10..=200) },
        _ => Latency::LongTail {
            low: rng.random_range(1..=5),
            high: rng.random_range(5..=50),
            tail_permille: rng.random_range(10..=100),
            tail_ms: rng.random_range(200..=2_000),
        },
    };
    LinkFaults {
        latency,
        loss_permille: rate(rng, 500, 300),
        duplicate_permille: rate(rng, 400, 200),
        reorder_permille: rate(rng, 400, 300),
        reorder_ms: rng.random_range(10..=500),
        corrupt_permille: rate(rng, 200, 20),
    }
}

/// A swarm seed's clocks and clients.
fn swarm_clients(rng: &mut Xoshiro256PlusPlus) -> (ClockSpec, WorkloadSpec) {
    let skewed = enabled(rng, 500);
    let clocks = ClockSpec {
        offset_ms_max: 200,
        wild_permille: if skewed { rng.random_range(100..=400) } else { 0 },
        wild_offset_ms_max: 3_000,
        drift_ppm_max: if enabled(rng, 300) { 10_000 } else { 200 },
    };
    let ttl = enabled(rng, 500);
    let workload = WorkloadSpec {
        keys: rng.random_range(2..=64),
        ops_per_s: rng.random_range(5..=150),
        weights: [
            rng.random_range(20..=60),
            if ttl { rng.random_range(5..=20) } else { 0 },
            rng.random_range(5..=30),
            rng.random_range(10..=40),
        ],
        wait_permille: rate(rng, 500, 200),
        large_permille: rate(rng, 200, 5),
        large_size: rng.random_range(10_000..=64_000),
        ttl_ms_max: 10_000,
        burst_permille: rate(rng, 500, 300),
    };
    (clocks, workload)
}

/// A rate drawn up to `max` per mille, when a coin flip with odds `on` per mille enables it.
fn rate(rng: &mut Xoshiro256PlusPlus, on: u32, max: u32) -> u32 {
    if enabled(rng, on) { rng.random_range(0..=max) } else { 0 }
}

/// Fisher-Yates, drawing from the run's generator.
pub fn shuffle<T>(items: &mut [T], rng: &mut Xoshiro256PlusPlus) {
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn sees(cut: &BTreeSet<(usize, usize)>, a: usize, b: usize) -> bool {
        !cut.contains(&(a, b))
    }

    #[test]
    fn majorities_ring_gives_everyone_a_majority_but_is_not_transitive() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        for n in 5..=9 {
            let nodes: Vec<usize> = (0..n).collect();
            let cut = Shape::MajoritiesRing.links(&nodes, &mut rng);
            for a in 0..n {
                let seen = (0..n).filter(|&b| sees(&cut, a, b)).count();
                assert!(seen > n / 2, "n={n} node {a} sees {seen}");
            }
            let intransitive = (0..n).any(|a| {
                (0..n).any(|b| {
                    (0..n).any(|c| sees(&cut, a, b) && sees(&cut, b, c) && !sees(&cut, a, c))
                })
            });
            assert!(intransitive, "n={n}");
        }
    }

    #[test]
    fn one_way_cuts_only_one_direction_and_bridge_keeps_its_bridge() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let nodes: Vec<usize> = (0..6).collect();
        let cut = Shape::OneWay.links(&nodes, &mut rng);
        assert!(!cut.is_empty());
        assert!(cut.iter().all(|&(a, b)| !cut.contains(&(b, a))));
        let cut = Shape::Bridge.links(&nodes, &mut rng);
        let bridge = (0..6).find(|&x| (0..6).all(|y| sees(&cut, x, y) && sees(&cut, y, x)));
        assert!(bridge.is_some() && !cut.is_empty());
    }
}
