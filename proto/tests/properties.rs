//! Property tests of the sans-IO core: the data model, the clock and replication (see
//! ARCHITECTURE.md).
//!
//! They prove, over random inputs, that:
//! - merging writes is commutative, associative and idempotent, and agrees with a
//!   last-writer-wins model; exchanging deltas leaves two replicas with equal maps;
//! - paged anti-entropy brings replicas to equal maps and equal version vectors whatever order
//!   and duplication the pages arrive in, after writes issued, pushed and lost realistically;
//! - the hybrid logical clock only moves forward, never repeats a stamp, refuses readings too
//!   far ahead and carries logical overflow into the milliseconds;
//! - the codec round-trips, never panics on arbitrary bytes and refuses what it must;
//! - keys and values respect their limits, on construction and on decoding;
//! - expiry, listing, pagination and collection do what a user would expect.
//!
//! Every property prints its seed and takes `SEED` from the environment; rerun a failure with
//! `SEED=<seed> cargo test -p chorus-proto --test properties <name>`. `PROPTEST_CASES` changes
//! the number of cases of every property.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use chorus_proto::codec::{self, FRAME_HEADER_SIZE};
use chorus_proto::limits::{
    CLOCK_SKEW_MS_MAX, DOT_CLOUD_SIZE_MAX, KEY_SIZE_MAX, MESSAGE_OVERHEAD_MAX, MESSAGE_SIZE_MAX,
    VALUE_SIZE_MAX, WALL_MS_MAX,
};
use chorus_proto::resp;
use chorus_proto::{
    Applied, Clock, CodecError, DataError, Delta, Group, Hlc, Key, NodeId, Stamp, Store, Update,
    Value,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

// ---------------------------------------------------------------------------------------------
// Harness: seeds, cases, a small deterministic RNG for shuffles.

/// The seed of this run: `SEED` when set, otherwise one drawn from the system clock.
#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "a test outside proto's sources may read the clock to pick a fresh seed"
)]
fn seed() -> u64 {
    if let Ok(text) = std::env::var("SEED") {
        return text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SEED must be an unsigned integer, got {text:?}"));
    }
    let since_epoch =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    // The low bits of the nanoseconds differ between tests started together.
    since_epoch.as_nanos() as u64
}

/// Runs `test` on `cases` inputs drawn from `strategy` with a printed, reproducible seed.
fn check<S>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let seed = seed();
    eprintln!("proptest seed: {seed} (rerun with SEED={seed})");
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(cases);
    let config = Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        // The printed seed reproduces a failure; no regression files in the source tree.
        failure_persistence: None,
        ..Config::default()
    };
    if let Err(error) = TestRunner::new(config).run(&strategy, test) {
        panic!("{error}\nrerun with SEED={seed}");
    }
}

/// Shuffles, duplicates and losses drawn from one generated `u64`, with the simulator's
/// generator (rand's `Xoshiro256PlusPlus`) rather than one of our own.
struct Rng(rand::rngs::Xoshiro256PlusPlus);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(rand::SeedableRng::seed_from_u64(seed))
    }

    /// A number in `0..n`; `n` must not be 0.
    fn below(&mut self, n: usize) -> usize {
        rand::RngExt::random_range(&mut self.0, 0..n)
    }

    /// True with probability `1 / n`.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

fn fail(error: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(error.to_string())
}

// ---------------------------------------------------------------------------------------------
// Writes and models.

/// Keys of the merge tests: few, so that writes conflict.
const KEYS: u8 = 4;
/// Writers of the merge tests.
const NODES: u64 = 4;

fn key(index: u8) -> Key {
    Key::new(format!("k/{index}")).expect("a short key is valid")
}

fn value(index: u8) -> Value {
    Value::new(format!("v{index}")).expect("a short value is valid")
}

/// Writes whose stamps are unique cluster-wide and whose dots are numbered per node from 1 in
/// stamp order, as a node's clock and counter would issue them; values include tombstones and
/// some writes expire.
fn writes(count: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Update>> {
    let write = (
        0..NODES,
        1..40u64,
        0..3u16,
        0..KEYS,
        option::weighted(0.7, 0..4u8),
        option::weighted(0.3, 0..60u64),
    );
    vec(write, count).prop_map(|raw| {
        let mut unique = BTreeMap::new();
        for (node, wall_ms, logical, key, value, expires_at_ms) in raw {
            let stamp = Stamp { hlc: Hlc::new(wall_ms, logical), node: NodeId(node) };
            unique.entry(stamp).or_insert((key, value, expires_at_ms));
        }
        let mut seqs = BTreeMap::new();
        let mut updates = Vec::new();
        for (stamp, (key_index, value_index, expires_at_ms)) in unique {
            let seq = seqs.entry(stamp.node).or_insert(0);
            *seq += 1;
            updates.push(Update {
                key: key(key_index),
                stamp,
                seq: *seq,
                value: value_index.map(value),
                expires_at_ms,
            });
        }
        updates
    })
}

/// What any replica that merged `updates` must hold: per key, the write with the greatest stamp.
fn model<'a>(updates: impl IntoIterator<Item = &'a Update>) -> Vec<Update> {
    let mut winners: BTreeMap<Key, Update> = BTreeMap::new();
    for update in updates {
        match winners.get(&update.key) {
            Some(held) if held.stamp >= update.stamp => {}
            _ => {
                winners.insert(update.key.clone(), update.clone());
            }
        }
    }
    winners.into_values().collect()
}

/// Every entry of a replica, in key order.
fn snapshot(store: &Store) -> Vec<Update> {
    store.updates().collect()
}

/// Applies one write and checks the outcome is coherent: a write that wins replaces only an
/// older one, so the stamp of a key never goes back.
fn apply(store: &mut Store, update: Update) -> Result<Applied, TestCaseError> {
    let held = store.entry(&update.key).map(|entry| entry.stamp());
    let stamp = update.stamp;
    let applied = store.apply(update);
    if let Applied::Won { previous } = &applied {
        prop_assert_eq!(previous.map(|replaced| replaced.stamp), held);
        prop_assert!(held.is_none_or(|held| held < stamp), "a write replaced a newer one");
    }
    Ok(applied)
}

fn store_of<'a>(updates: impl IntoIterator<Item = &'a Update>) -> Result<Store, TestCaseError> {
    let mut store = Store::new();
    for update in updates {
        apply(&mut store, update.clone())?;
    }
    Ok(store)
}

/// `into` after merging every entry `from` holds.
fn merged(into: &Store, from: &Store) -> Result<Store, TestCaseError> {
    let mut store = into.clone();
    for update in from.updates() {
        apply(&mut store, update)?;
    }
    Ok(store)
}

// ---------------------------------------------------------------------------------------------
// Merge.

#[test]
fn merge_is_commutative_associative_and_idempotent() {
    check(1024, (writes(0..40), any::<u64>()), |(updates, shuffle)| {
        let mut rng = Rng::new(shuffle);
        let expected = model(&updates);

        // One replica applies the writes in stamp order, another shuffled and duplicated.
        let once = store_of(&updates)?;
        prop_assert_eq!(snapshot(&once), expected.clone());
        let mut delivered = updates.clone();
        for _ in 0..updates.len() / 2 {
            delivered.push(updates[rng.below(updates.len())].clone());
        }
        rng.shuffle(&mut delivered);
        prop_assert_eq!(snapshot(&store_of(&delivered)?), expected.clone());

        // Idempotent: every write again is recognised as seen and changes nothing.
        let mut again = once.clone();
        for update in &updates {
            prop_assert_eq!(apply(&mut again, update.clone())?, Applied::Seen);
        }
        prop_assert_eq!(snapshot(&again), expected.clone());
        prop_assert_eq!(snapshot(&merged(&once, &once)?), expected.clone());

        // Three replicas that each saw a part, merged in either grouping and either order.
        let mut parts = [Vec::new(), Vec::new(), Vec::new()];
        for update in &delivered {
            parts[rng.below(3)].push(update.clone());
        }
        let [a, b, c] = [store_of(&parts[0])?, store_of(&parts[1])?, store_of(&parts[2])?];
        let ab = merged(&a, &b)?;
        prop_assert_eq!(snapshot(&ab), snapshot(&merged(&b, &a)?));
        let ab_c = merged(&ab, &c)?;
        let a_bc = merged(&a, &merged(&b, &c)?)?;
        prop_assert_eq!(snapshot(&ab_c), snapshot(&a_bc));
        prop_assert_eq!(snapshot(&ab_c), expected);
        Ok(())
    });
}

#[test]
fn exchanging_deltas_leaves_equal_maps_and_vectors() {
    check(1024, (writes(0..40), any::<u64>()), |(updates, shuffle)| {
        let mut rng = Rng::new(shuffle);
        // Each replica saw a prefix of each writer's sequence (what its version vector can
        // say), in any order.
        let mut counts = BTreeMap::new();
        for update in &updates {
            *counts.entry(update.stamp.node).or_insert(0) += 1;
        }
        let mut prefix = || -> BTreeMap<NodeId, u64> {
            counts.iter().map(|(node, count)| (*node, rng.below(count + 1) as u64)).collect()
        };
        let (seen_a, seen_b) = (prefix(), prefix());
        let mut part_a: Vec<&Update> =
            updates.iter().filter(|update| update.seq <= seen_a[&update.stamp.node]).collect();
        let mut part_b: Vec<&Update> =
            updates.iter().filter(|update| update.seq <= seen_b[&update.stamp.node]).collect();
        rng.shuffle(&mut part_a);
        rng.shuffle(&mut part_b);
        let mut a = store_of(part_a.iter().copied())?;
        let mut b = store_of(part_b.iter().copied())?;

        // A push-pull exchange: each side computes what the other lacks, then both apply.
        let (for_b, complete_b) = a.delta(b.vector().bases(), usize::MAX);
        let (for_a, complete_a) = b.delta(a.vector().bases(), usize::MAX);
        prop_assert!(complete_a && complete_b, "an unbounded delta comes in one page");
        a.apply_delta(for_a, &Default::default());
        b.apply_delta(for_b, &Default::default());

        prop_assert_eq!(snapshot(&a), snapshot(&b));
        prop_assert_eq!(snapshot(&a), model(part_a.iter().copied().chain(part_b.iter().copied())));
        prop_assert_eq!(a.vector().bases(), b.vector().bases());
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Anti-entropy.

/// Bare replicas (a `Store` and a `Clock` each, no `Node`) that write with their own clocks,
/// push eagerly to some peers, and lose, duplicate and reorder those pushes, then exchange
/// delta pages cut at any size and delivered in any order.
///
/// This is not the harness's `Cluster`, which runs whole `Node`s through the codec: here the
/// test plays the protocol itself, so it can page at arbitrary targets, shuffle and
/// duplicate pages, and check the store's algebra without membership, the fence or the
/// skew guard deciding what gets exchanged.
struct Replicas {
    clocks: Vec<Clock>,
    stores: Vec<Store>,
    /// Each node's wall clock offset, within the skew bound.
    offsets: Vec<u64>,
    seqs: Vec<u64>,
    now_ms: u64,
    in_flight: Vec<(usize, Update)>,
    written: Vec<Update>,
    rng: Rng,
}

/// One step of a workload: who writes what, how much time passes, who gets an eager push,
/// and how many pushes in flight are delivered.
type Step = (usize, u8, Option<u8>, Option<u64>, u64, u8, usize);

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = (
        0..4usize,
        0..KEYS,
        option::weighted(0.8, 0..4u8),
        option::weighted(0.2, 1..50u64),
        0..3u64,
        any::<u8>(),
        0..4usize,
    );
    vec(step, 0..60)
}

impl Replicas {
    fn new(size: usize, seed: u64) -> Replicas {
        let mut rng = Rng::new(seed);
        let offsets = (0..size).map(|_| rng.below(300) as u64).collect();
        Replicas {
            clocks: (0..size)
                .map(|i| Clock::new(NodeId(100 + i as u64), CLOCK_SKEW_MS_MAX))
                .collect(),
            stores: vec![Store::new(); size],
            offsets,
            seqs: vec![0; size],
            now_ms: 1_000,
            in_flight: Vec::new(),
            written: Vec::new(),
            rng,
        }
    }

    fn local_ms(&self, node: usize) -> u64 {
        self.now_ms + self.offsets[node]
    }

    fn step(&mut self, step: Step) -> Result<(), TestCaseError> {
        let (writer, key_index, value_index, ttl_ms, elapsed_ms, pushes, deliveries) = step;
        let writer = writer % self.stores.len();
        self.now_ms += elapsed_ms;
        let now_ms = self.local_ms(writer);
        let stamp = self.clocks[writer].tick(now_ms);
        self.seqs[writer] += 1;
        let update = Update {
            key: key(key_index),
            stamp,
            seq: self.seqs[writer],
            value: value_index.map(value),
            expires_at_ms: ttl_ms.map(|ttl| now_ms + ttl),
        };
        // The writer's clock observed everything it applied, so its own write always wins.
        let applied = apply(&mut self.stores[writer], update.clone())?;
        prop_assert!(matches!(applied, Applied::Won { .. }), "own write lost: {:?}", applied);
        for peer in 0..self.stores.len() {
            if peer != writer && pushes & (1 << peer) != 0 {
                self.in_flight.push((peer, update.clone()));
            }
        }
        self.written.push(update);
        for _ in 0..deliveries {
            self.deliver_one()?;
        }
        Ok(())
    }

    /// Delivers a random push in flight; it may also be lost, or delivered and kept for a
    /// duplicate later.
    fn deliver_one(&mut self) -> Result<(), TestCaseError> {
        if self.in_flight.is_empty() {
            return Ok(());
        }
        let index = self.rng.below(self.in_flight.len());
        let (peer, update) = if self.rng.one_in(8) {
            self.in_flight[index].clone()
        } else {
            self.in_flight.swap_remove(index)
        };
        if self.rng.one_in(8) {
            return Ok(());
        }
        self.receive(peer, update)
    }

    fn receive(&mut self, peer: usize, update: Update) -> Result<(), TestCaseError> {
        let now_ms = self.local_ms(peer);
        self.clocks[peer].observe(update.stamp.hlc, now_ms).map_err(fail)?;
        apply(&mut self.stores[peer], update)?;
        Ok(())
    }

    /// The pages of a delta from `from` to `to`, through the codec as on the wire.
    fn pages(
        &self,
        from: usize,
        to: usize,
        size_target: usize,
    ) -> Result<Vec<Delta>, TestCaseError> {
        let mut bases = self.stores[to].vector().bases().clone();
        let mut pages = Vec::new();
        loop {
            let (page, complete) = self.stores[from].delta(&bases, size_target);
            let size: usize =
                page.groups.iter().flat_map(|g| &g.updates).map(Update::size_bound).sum();
            prop_assert!(
                page.update_count() <= 1 || size <= size_target,
                "a page of {} updates is over its target: {} > {}",
                page.update_count(),
                size,
                size_target
            );
            page.advance(&mut bases);
            let bytes = codec::encode(&page).map_err(fail)?;
            prop_assert!(bytes.len() <= size + MESSAGE_OVERHEAD_MAX, "page headers overflow");
            pages.push(codec::decode(&bytes).map_err(fail)?);
            if complete {
                return Ok(pages);
            }
            prop_assert!(pages.len() <= self.written.len() + 1, "paging does not progress");
        }
    }

    fn deliver_pages(&mut self, to: usize, pages: Vec<Delta>) -> Result<(), TestCaseError> {
        for page in pages {
            let now_ms = self.local_ms(to);
            for update in page.groups.iter().flat_map(|group| &group.updates) {
                self.clocks[to].observe(update.stamp.hlc, now_ms).map_err(fail)?;
            }
            self.stores[to].apply_delta(page, &Default::default());
        }
        Ok(())
    }

    /// One anti-entropy exchange from `from` to `to`, its pages reordered and duplicated when
    /// `shuffled`.
    fn exchange(
        &mut self,
        from: usize,
        to: usize,
        size_target: usize,
        shuffled: bool,
    ) -> Result<(), TestCaseError> {
        let mut pages = self.pages(from, to, size_target)?;
        if shuffled {
            for _ in 0..self.rng.below(pages.len() + 1) {
                pages.push(pages[self.rng.below(pages.len())].clone());
            }
            self.rng.shuffle(&mut pages);
        }
        self.deliver_pages(to, pages)
    }

    /// An exchange in both directions between every pair.
    fn round(&mut self, size_target: usize, shuffled: bool) -> Result<(), TestCaseError> {
        for from in 0..self.stores.len() {
            for to in 0..self.stores.len() {
                if from != to {
                    self.exchange(from, to, size_target, shuffled)?;
                }
            }
        }
        Ok(())
    }

    /// Every replica holds the model of everything written and has seen every write.
    fn check_converged(&self) -> Result<(), TestCaseError> {
        let expected = model(&self.written);
        let expected_bases: BTreeMap<NodeId, u64> = (0..self.stores.len())
            .filter(|&i| self.seqs[i] > 0)
            .map(|i| (NodeId(100 + i as u64), self.seqs[i]))
            .collect();
        for store in &self.stores {
            prop_assert_eq!(snapshot(store), expected.clone());
            prop_assert_eq!(store.vector().bases(), &expected_bases);
        }
        Ok(())
    }
}

fn run_workload(size: usize, steps: Vec<Step>, seed: u64) -> Result<Replicas, TestCaseError> {
    let mut cluster = Replicas::new(size, seed);
    for step in steps {
        cluster.step(step)?;
    }
    while !cluster.in_flight.is_empty() {
        cluster.deliver_one()?;
    }
    Ok(cluster)
}

#[test]
fn anti_entropy_between_two_nodes_converges_whatever_the_page_order() {
    check(1024, (steps(), any::<u64>(), 70..400usize), |(steps, seed, size_target)| {
        let mut cluster = run_workload(2, steps, seed)?;
        // Pages reordered and duplicated: every write arrives, so the maps agree at once.
        cluster.exchange(0, 1, size_target, true)?;
        cluster.exchange(1, 0, size_target, true)?;
        prop_assert_eq!(snapshot(&cluster.stores[0]), snapshot(&cluster.stores[1]));
        // A page that arrived before its predecessor could not advance the vector; one more
        // round in order settles the vectors too.
        cluster.round(size_target, false)?;
        cluster.check_converged()
    });
}

#[test]
fn anti_entropy_converges_a_cluster_after_lost_and_reordered_pushes() {
    check(
        1024,
        (2..=4usize, steps(), any::<u64>(), 70..400usize),
        |(size, steps, seed, target)| {
            let mut cluster = run_workload(size, steps, seed)?;
            cluster.round(target, true)?;
            cluster.round(target, true)?;
            cluster.round(target, false)?;
            cluster.check_converged()
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Clock.

/// A clock input: a local tick, or a remote reading observed, at some (possibly earlier) time.
#[derive(Clone, Debug)]
enum ClockInput {
    Tick {
        now_ms: u64,
    },
    /// With `near_bound`, the remote reading is `near_bound - 2` ms past the skew bound
    /// instead of `wall_ms`, to test the edge.
    Observe {
        wall_ms: u64,
        logical: u16,
        now_ms: u64,
        near_bound: Option<u8>,
    },
}

fn clock_inputs() -> impl Strategy<Value = Vec<ClockInput>> {
    // Times bunch around one moment so that ties, skew and going backwards all happen.
    let now = prop_oneof![990..1_010u64, 0..2_000u64, 0..WALL_MS_MAX];
    let input = prop_oneof![
        3 => now.clone().prop_map(|now_ms| ClockInput::Tick { now_ms }),
        1 => (now.clone(), any::<u16>(), now, option::of(0..5u8)).prop_map(
            |(wall_ms, logical, now_ms, near_bound)| {
                ClockInput::Observe { wall_ms, logical, now_ms, near_bound }
            }
        ),
    ];
    vec(input, 0..200)
}

#[test]
fn clock_stamps_strictly_increase_and_skew_is_refused() {
    check(1024, (clock_inputs(), 0..1_000u64), |(inputs, skew_ms_max)| {
        let mut clock = Clock::new(NodeId(7), skew_ms_max);
        let mut last_stamp: Option<Stamp> = None;
        let mut highest_observed = Hlc::default();
        for input in inputs {
            match input {
                ClockInput::Tick { now_ms } => {
                    let stamp = clock.tick(now_ms);
                    prop_assert_eq!(stamp.node, NodeId(7));
                    prop_assert!(last_stamp.is_none_or(|last| stamp > last), "stamp went back");
                    prop_assert!(stamp.hlc > highest_observed, "stamp not above what was seen");
                    prop_assert!(stamp.hlc.wall_ms() >= now_ms.min(WALL_MS_MAX));
                    prop_assert_eq!(clock.last(), stamp.hlc);
                    last_stamp = Some(stamp);
                }
                ClockInput::Observe { wall_ms, logical, now_ms, near_bound } => {
                    let wall_ms = match near_bound {
                        Some(past) => (now_ms + skew_ms_max + u64::from(past)).saturating_sub(2),
                        None => wall_ms,
                    };
                    let remote = Hlc::new(wall_ms, logical);
                    let before = clock.last();
                    let too_far = remote.wall_ms() > now_ms + skew_ms_max;
                    match clock.observe(remote, now_ms) {
                        Err(error) => {
                            prop_assert!(too_far, "refused a reading within the bound");
                            prop_assert_eq!(error.ahead_ms, remote.wall_ms() - now_ms);
                            prop_assert_eq!(clock.last(), before, "a refused reading moved it");
                        }
                        Ok(()) => {
                            prop_assert!(!too_far, "accepted a reading beyond the bound");
                            prop_assert_eq!(clock.last(), before.max(remote));
                            highest_observed = highest_observed.max(remote);
                        }
                    }
                }
            }
        }
        Ok(())
    });
}

#[test]
fn clocks_of_different_nodes_never_issue_equal_stamps() {
    check(256, (clock_inputs(), clock_inputs()), |(first, second)| {
        let mut clocks = [Clock::new(NodeId(1), 500), Clock::new(NodeId(2), 500)];
        let mut issued = BTreeSet::new();
        let mut count = 0;
        // The two clocks take turns and observe each other's stamps, so readings tie often.
        for (index, input) in first.into_iter().zip(second).enumerate() {
            let (this, other) = (index % 2, 1 - index % 2);
            let now_ms = match input.0 {
                ClockInput::Tick { now_ms } | ClockInput::Observe { now_ms, .. } => now_ms,
            };
            let stamp = clocks[this].tick(now_ms);
            let _ = clocks[other].observe(stamp.hlc, now_ms);
            issued.insert(stamp);
            count += 1;
            if let ClockInput::Tick { now_ms } = input.1 {
                issued.insert(clocks[other].tick(now_ms));
                count += 1;
            }
        }
        prop_assert_eq!(issued.len(), count, "two stamps were equal");
        Ok(())
    });
}

#[test]
fn clock_logical_overflow_carries_into_the_milliseconds() {
    check(4, 1..WALL_MS_MAX - 2, |wall_ms| {
        let mut clock = Clock::new(NodeId(3), CLOCK_SKEW_MS_MAX);
        let first = clock.tick(wall_ms);
        prop_assert_eq!(first.hlc, Hlc::new(wall_ms, 0));
        for logical in 1..=u16::MAX {
            prop_assert_eq!(clock.tick(wall_ms).hlc, Hlc::new(wall_ms, logical));
        }
        prop_assert_eq!(clock.tick(wall_ms).hlc, Hlc::new(wall_ms + 1, 0));
        // The wall clock catching up continues from the carried reading.
        prop_assert_eq!(clock.tick(wall_ms + 1).hlc, Hlc::new(wall_ms + 1, 1));
        prop_assert_eq!(clock.tick(wall_ms + 2).hlc, Hlc::new(wall_ms + 2, 0));
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Codec.

/// Sequence numbers and ranges biased to the edges peers could send.
fn edge_u64() -> impl Strategy<Value = u64> {
    prop_oneof![0..10u64, Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()]
}

fn any_update() -> impl Strategy<Value = Update> {
    (
        vec(any::<u8>(), 1..=40),
        0..=WALL_MS_MAX,
        any::<u16>(),
        prop_oneof![0..4u64, any::<u64>()],
        edge_u64(),
        option::of(vec(any::<u8>(), 0..40)),
        option::of(edge_u64()),
    )
        .prop_map(|(key, wall_ms, logical, node, seq, value, expires_at_ms)| Update {
            key: Key::new(key).expect("1 to 40 bytes is a valid key"),
            stamp: Stamp { hlc: Hlc::new(wall_ms, logical), node: NodeId(node) },
            seq,
            value: value.map(|bytes| Value::new(bytes).expect("40 bytes is a valid value")),
            expires_at_ms,
        })
}

fn any_delta() -> impl Strategy<Value = Delta> {
    let group =
        (prop_oneof![0..4u64, any::<u64>()], edge_u64(), edge_u64(), vec(any_update(), 0..4))
            .prop_map(|(node, from, to, updates)| Group { node: NodeId(node), from, to, updates });
    vec(group, 0..4).prop_map(|groups| Delta { groups })
}

#[test]
fn codec_round_trips_updates_and_deltas() {
    check(512, (any_update(), any_delta()), |(update, delta)| {
        let bytes = codec::encode(&update).map_err(fail)?;
        prop_assert!(bytes.len() <= update.size_bound(), "pages are sized by this bound");
        prop_assert_eq!(codec::decode::<Update>(&bytes).map_err(fail)?, update.clone());
        let bytes = codec::encode(&delta).map_err(fail)?;
        prop_assert_eq!(codec::decode::<Delta>(&bytes).map_err(fail)?, delta.clone());

        // A frame announces its body, and the body decodes to the message.
        let frame = codec::encode_frame(&delta).map_err(fail)?;
        let header: [u8; FRAME_HEADER_SIZE] = frame[..FRAME_HEADER_SIZE].try_into().unwrap();
        let length = codec::frame_length(header).map_err(fail)?;
        prop_assert_eq!(length, frame.len() - FRAME_HEADER_SIZE);
        prop_assert_eq!(&frame[FRAME_HEADER_SIZE..], &bytes[..]);
        prop_assert_eq!(codec::decode::<Delta>(&frame[FRAME_HEADER_SIZE..]).map_err(fail)?, delta);
        Ok(())
    });
}

#[test]
fn codec_refuses_trailing_bytes() {
    check(256, (any_update(), vec(any::<u8>(), 1..16)), |(update, extra)| {
        let mut bytes = codec::encode(&update).map_err(fail)?;
        bytes.extend_from_slice(&extra);
        prop_assert_eq!(
            codec::decode::<Update>(&bytes),
            Err(CodecError::TrailingBytes(extra.len()))
        );
        Ok(())
    });
}

#[test]
fn codec_frame_headers_above_the_maximum_are_refused() {
    check(256, any::<u32>(), |announced| {
        let result = codec::frame_length(announced.to_be_bytes());
        if announced as usize > MESSAGE_SIZE_MAX {
            prop_assert!(matches!(result, Err(CodecError::TooLarge { .. })), "{:?}", result);
        } else {
            prop_assert_eq!(result, Ok(announced as usize));
        }
        Ok(())
    });
    let above = u32::try_from(MESSAGE_SIZE_MAX + 1).unwrap().to_be_bytes();
    assert!(matches!(codec::frame_length(above), Err(CodecError::TooLarge { .. })));
    let at = u32::try_from(MESSAGE_SIZE_MAX).unwrap().to_be_bytes();
    assert_eq!(codec::frame_length(at), Ok(MESSAGE_SIZE_MAX));
    assert!(matches!(
        codec::decode::<Update>(&vec![0; MESSAGE_SIZE_MAX + 1]),
        Err(CodecError::TooLarge { .. })
    ));
}

/// Any write can travel: the largest key and value with every number at its widest stays
/// within its size bound and within one message, alone in a delta page.
#[test]
fn the_largest_update_fits_its_size_bound_and_one_message() {
    let update = Update {
        key: Key::new([0xff; KEY_SIZE_MAX]).unwrap(),
        stamp: Stamp { hlc: Hlc::new(u64::MAX, u16::MAX), node: NodeId(u64::MAX) },
        seq: u64::MAX,
        value: Some(Value::new(vec![0xff; VALUE_SIZE_MAX]).unwrap()),
        expires_at_ms: Some(u64::MAX),
    };
    let bytes = codec::encode(&update).unwrap();
    assert!(bytes.len() <= update.size_bound(), "{} > {}", bytes.len(), update.size_bound());
    let group =
        Group { node: NodeId(u64::MAX), from: u64::MAX - 1, to: u64::MAX, updates: vec![update] };
    let page = Delta { groups: vec![group] };
    let frame = codec::encode_frame(&page).unwrap();
    assert_eq!(codec::decode::<Delta>(&frame[FRAME_HEADER_SIZE..]).unwrap(), page);
}

/// Decodes `bytes` as every message type; any result is fine, a panic is not.
fn decode_all(bytes: &[u8]) {
    let _ = codec::decode::<Update>(bytes);
    let _ = codec::decode::<Delta>(bytes);
    let _ = codec::decode::<Key>(bytes);
    let _ = codec::decode::<Value>(bytes);
    let _ = codec::decode::<Stamp>(bytes);
}

#[test]
fn decoding_arbitrary_bytes_never_panics() {
    check(4096, vec(any::<u8>(), 0..256), |bytes| {
        decode_all(&bytes);
        Ok(())
    });
}

#[test]
fn decoding_corrupted_messages_never_panics() {
    let corruption = vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..6);
    check(2048, (any_delta(), corruption), |(delta, corruption)| {
        let mut bytes = codec::encode(&delta).map_err(fail)?;
        for (position, byte, kind) in corruption {
            if bytes.is_empty() {
                break;
            }
            let position = position.index(bytes.len());
            match kind {
                0 => bytes[position] = byte,
                1 => bytes.truncate(position),
                _ => bytes.insert(position, byte),
            }
        }
        decode_all(&bytes);
        Ok(())
    });
}

/// Deltas shaped as a peer would send them (each group carries its own node's writes), with
/// ranges and sequence numbers at the edges.
fn peer_delta() -> impl Strategy<Value = Delta> {
    let group = (0..3u64, prop_oneof![Just(0), edge_u64()], edge_u64(), vec(any_update(), 0..4))
        .prop_map(|(node, from, to, mut updates)| {
            for update in &mut updates {
                update.stamp.node = NodeId(node);
            }
            Group { node: NodeId(node), from, to, updates }
        });
    vec(group, 0..4).prop_map(|groups| Delta { groups })
}

/// Peer input only ever yields `Err`, never a panic (STYLE): a store survives any delta a peer
/// could send, however inconsistent its ranges and sequence numbers, and later writes.
#[test]
fn applying_any_delta_a_peer_could_send_never_panics() {
    check(
        512,
        (peer_delta(), peer_delta(), vec(any_update(), 0..8)),
        |(first, second, updates)| {
            let mut store = Store::new();
            store.apply_delta(first, &Default::default());
            store.apply_delta(second, &Default::default());
            for update in updates {
                store.apply(update);
            }
            let _ = store.delta(&BTreeMap::new(), 1024);
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Data limits.

#[test]
fn keys_are_one_to_key_size_max_bytes() {
    assert_eq!(Key::new(b""), Err(DataError::KeyEmpty));
    assert!(Key::new([b'k'; 1]).is_ok());
    assert!(Key::new([b'k'; KEY_SIZE_MAX]).is_ok());
    let error = Key::new([b'k'; KEY_SIZE_MAX + 1]).unwrap_err();
    assert_eq!(error, DataError::KeyTooLarge { size: KEY_SIZE_MAX + 1 });
    assert!(error.to_string().contains("too large"), "unclear: {error}");
    assert!(error.to_string().contains("513"), "does not say the size: {error}");
    assert!(DataError::KeyEmpty.to_string().contains("empty"));

    check(256, 0..2 * KEY_SIZE_MAX, |size| {
        let result = Key::new(vec![b'k'; size]);
        prop_assert_eq!(result.is_ok(), (1..=KEY_SIZE_MAX).contains(&size));
        if let Ok(key) = result {
            prop_assert_eq!(key.as_bytes().len(), size);
        }
        Ok(())
    });
}

#[test]
fn values_respect_the_maximum_and_a_lower_limit() {
    assert!(Value::new(vec![0; VALUE_SIZE_MAX]).is_ok());
    assert!(Value::new(b"").is_ok());
    let error = Value::new(vec![0; VALUE_SIZE_MAX + 1]).unwrap_err();
    assert_eq!(
        error,
        DataError::ValueTooLarge { size: VALUE_SIZE_MAX + 1, size_max: VALUE_SIZE_MAX }
    );
    assert!(error.to_string().contains("too large"), "unclear: {error}");

    check(256, (0..200usize, 0..200usize), |(size, size_max)| {
        let result = Value::with_limit(vec![1; size], size_max);
        if size <= size_max {
            prop_assert_eq!(result.map(|value| value.len()), Ok(size));
        } else {
            prop_assert_eq!(result, Err(DataError::ValueTooLarge { size, size_max }));
        }
        Ok(())
    });
    // A node cannot raise the limit above the protocol's.
    assert!(Value::with_limit(vec![0; VALUE_SIZE_MAX + 1], usize::MAX).is_err());
}

/// The wire form of an update, with keys and values as unchecked byte vectors.
#[derive(serde::Serialize)]
struct RawUpdate {
    key: Vec<u8>,
    stamp: Stamp,
    seq: u64,
    value: Option<Vec<u8>>,
    expires_at_ms: Option<u64>,
}

#[test]
fn decoding_refuses_keys_and_values_beyond_their_limits() {
    let stamp = Stamp { hlc: Hlc::new(1_000, 2), node: NodeId(9) };
    let raw = |key: Vec<u8>, value: Vec<u8>| RawUpdate {
        key,
        stamp,
        seq: 1,
        value: Some(value),
        expires_at_ms: None,
    };
    let valid = Update {
        key: Key::new([b'k'; KEY_SIZE_MAX]).unwrap(),
        stamp,
        seq: 1,
        value: Some(Value::new(b"v").unwrap()),
        expires_at_ms: None,
    };
    // A byte vector encodes exactly like a key (length, then bytes), so the crafted messages
    // below are what a peer could send.
    let crafted = postcard::to_stdvec(&raw(vec![b'k'; KEY_SIZE_MAX], b"v".to_vec())).unwrap();
    assert_eq!(crafted, codec::encode(&valid).unwrap());
    assert_eq!(codec::decode::<Update>(&crafted).unwrap(), valid);

    let too_long = postcard::to_stdvec(&vec![b'k'; KEY_SIZE_MAX + 1]).unwrap();
    assert!(matches!(codec::decode::<Key>(&too_long), Err(CodecError::Malformed(_))));
    let empty = postcard::to_stdvec(&Vec::<u8>::new()).unwrap();
    assert!(matches!(codec::decode::<Key>(&empty), Err(CodecError::Malformed(_))));
    let update = postcard::to_stdvec(&raw(vec![b'k'; KEY_SIZE_MAX + 1], b"v".to_vec())).unwrap();
    assert!(matches!(codec::decode::<Update>(&update), Err(CodecError::Malformed(_))));
    let update = postcard::to_stdvec(&raw(b"k".to_vec(), vec![0; VALUE_SIZE_MAX + 1])).unwrap();
    assert!(update.len() <= MESSAGE_SIZE_MAX, "refused by the value check, not by size");
    assert!(matches!(codec::decode::<Update>(&update), Err(CodecError::Malformed(_))));
}

// ---------------------------------------------------------------------------------------------
// Expiry, listing, collection.

/// Keys over a tiny alphabet, so that prefixes and ranges overlap.
fn small_key() -> impl Strategy<Value = Key> {
    vec(prop::sample::select(b"ab/".to_vec()), 1..=3).prop_map(|bytes| Key::new(bytes).unwrap())
}

/// A replica written by one node, later writes winning: `(key, value, expiry)` per write.
fn local_store(
    writes: &[(Key, Option<u8>, Option<u64>)],
) -> Result<(Store, BTreeMap<Key, Update>), TestCaseError> {
    let mut store = Store::new();
    let mut latest = BTreeMap::new();
    for (index, (key, value_index, expires_at_ms)) in writes.iter().enumerate() {
        let seq = index as u64 + 1;
        let update = Update {
            key: key.clone(),
            stamp: Stamp { hlc: Hlc::new(seq, 0), node: NodeId(1) },
            seq,
            value: value_index.map(value),
            expires_at_ms: *expires_at_ms,
        };
        apply(&mut store, update.clone())?;
        latest.insert(key.clone(), update);
    }
    Ok((store, latest))
}

fn live(update: &Update, now_ms: u64) -> Option<&Value> {
    match update.expires_at_ms {
        Some(expiry) if expiry <= now_ms => None,
        _ => update.value.as_ref(),
    }
}

#[test]
fn expired_entries_read_as_absent_from_their_expiry_on() {
    let write = (small_key(), option::weighted(0.8, 0..4u8), option::weighted(0.6, 1..60u64));
    check(256, (vec(write, 0..30), 0..70u64), |(writes, now_ms)| {
        let (store, latest) = local_store(&writes)?;
        for (key, update) in &latest {
            prop_assert_eq!(store.get(key, now_ms), live(update, now_ms).cloned());
            if let (Some(expiry), Some(value)) = (update.expires_at_ms, &update.value) {
                let before = store.get(key, expiry - 1);
                prop_assert_eq!(before.as_ref(), Some(value), "gone before expiry");
                prop_assert_eq!(store.get(key, expiry), None, "present at expiry");
                prop_assert_eq!(store.get(key, expiry + 1), None, "present after expiry");
            }
        }
        let expired: Vec<&Update> =
            latest.values().filter(|u| u.expires_at_ms.is_some_and(|e| e <= now_ms)).collect();
        prop_assert_eq!(store.expired_count(now_ms), expired.len());
        let next = latest.values().filter_map(|u| u.expires_at_ms).filter(|&e| e > now_ms).min();
        prop_assert_eq!(store.next_expiry(now_ms), next);
        Ok(())
    });
}

/// `Store::next_expiry` keeps its last answer between calls (`store/expiry.rs`): asked at any
/// time, between writes, overwrites, deletions and collections, it still gives the first expiry
/// after that time among the entries held.
#[test]
fn the_next_expiry_stays_right_between_writes_and_collections() {
    // A few expiries at the top of the range, where fences tie (a peer can send any expiry).
    let expiry = prop_oneof![9 => 1..40u64, 1 => u64::MAX - 1..=u64::MAX];
    let write = (small_key(), option::weighted(0.8, 0..4u8), option::weighted(0.7, expiry));
    let at_ms = prop_oneof![9 => 0..45u64, 1 => u64::MAX - 2..=u64::MAX];
    let step = prop_oneof![
        3 => write.prop_map(Ok),
        2 => (at_ms, any::<bool>()).prop_map(Err),
    ];
    check(256, vec(step, 0..60), |steps| {
        let mut store = Store::new();
        for (index, step) in steps.into_iter().enumerate() {
            let seq = index as u64 + 1;
            match step {
                Ok((key, value_index, expires_at_ms)) => {
                    let stamp = Stamp { hlc: Hlc::new(seq, 0), node: NodeId(1) };
                    let value = value_index.map(value);
                    apply(&mut store, Update { key, stamp, seq, value, expires_at_ms })?;
                }
                // Collection drops expired entries and tombstones, which leave the index.
                Err((now_ms, true)) => {
                    store.collect(&BTreeMap::from([(NodeId(1), seq)]), now_ms, 0);
                }
                Err((at_ms, false)) => {
                    let held = store.updates().filter_map(|update| update.expires_at_ms);
                    let next = held.filter(|&expiry| expiry > at_ms).min();
                    prop_assert_eq!(store.next_expiry(at_ms), next, "asked at {}", at_ms);
                }
            }
        }
        Ok(())
    });
}

/// The expiry index orders one expiry's entries by sequence number, then writer
/// (`store/orders.rs`), and a search past an expiry passes all of them, however many chunks
/// they fill.
#[test]
fn expiring_orders_one_expiry_by_sequence_number_then_writer() {
    let mut store = Store::new();
    let expiring = |key: &str, node: u64, seq: u64, expires_at_ms: u64| Update {
        key: Key::new(key).unwrap(),
        stamp: Stamp { hlc: Hlc::new(seq, 0), node: NodeId(node) },
        seq,
        value: Some(value(0)),
        expires_at_ms: Some(expires_at_ms),
    };
    for seq in 1..=3000 {
        store.apply(expiring(&format!("f{seq:04}"), 1, seq, 1_000_000));
    }
    store.apply(expiring("later", 1, 3001, 2_000_000));
    let keys = |names: &[&str]| names.iter().map(|name| Key::new(*name).unwrap()).collect();
    let expected: Vec<Key> = keys(&["later"]);
    assert_eq!(store.expiring(1_000_000, u64::MAX), expected);
    for (key, node, seq) in [("a", 3, 4), ("b", 2, 5), ("c", 2, 4)] {
        store.apply(expiring(key, node, seq, 3_000_000));
    }
    let expected: Vec<Key> = keys(&["c", "a", "b"]);
    assert_eq!(store.expiring(2_000_000, u64::MAX), expected);
}

#[test]
fn expiring_lists_keys_in_expiry_order() {
    let write = (small_key(), option::of(0..4u8), option::weighted(0.6, 1..60u64));
    check(256, (vec(write, 0..30), 0..70u64, 0..70u64), |(writes, after_ms, up_to_ms)| {
        let (store, latest) = local_store(&writes)?;
        // A driver's wall clock can step back, so the window may be reversed (then empty).
        let mut expected: Vec<(u64, u64, Key)> = latest
            .values()
            .filter_map(|u| u.expires_at_ms.map(|e| (e, u.seq, u.key.clone())))
            .filter(|(expiry, _, _)| after_ms < *expiry && *expiry <= up_to_ms)
            .collect();
        expected.sort();
        let expected: Vec<Key> = expected.into_iter().map(|(_, _, key)| key).collect();
        prop_assert_eq!(store.expiring(after_ms, up_to_ms), expected);
        Ok(())
    });
}

/// A driver's wall clock can step back, so the window asked for can be empty or reversed.
#[test]
fn expiring_in_a_reversed_window_is_empty() {
    let writes = [(Key::new("a").unwrap(), Some(0), Some(5))];
    let (store, _) = local_store(&writes).unwrap();
    assert_eq!(store.expiring(5, 5), Vec::<Key>::new());
    assert_eq!(store.expiring(10, 0), Vec::<Key>::new());
}

#[test]
fn listing_returns_live_keys_with_the_prefix_in_order_and_paginates() {
    let write = (small_key(), option::weighted(0.8, 0..4u8), option::weighted(0.3, 1..60u64));
    let prefix = vec(prop::sample::select(b"ab/".to_vec()), 0..=2);
    let query = (prefix, option::of(small_key()), 1..5usize, 0..70u64);
    check(512, (vec(write, 0..40), query), |(writes, (prefix, start_after, limit, now_ms))| {
        let (store, latest) = local_store(&writes)?;
        let matching: Vec<(Key, Value)> = latest
            .iter()
            .filter(|(key, _)| key.as_bytes().starts_with(&prefix))
            .filter_map(|(key, update)| live(update, now_ms).map(|v| (key.clone(), v.clone())))
            .collect();

        // One page after an arbitrary key.
        let expected: Vec<(Key, Value)> = matching
            .iter()
            .filter(|(key, _)| start_after.as_ref().is_none_or(|after| key > after))
            .take(limit)
            .cloned()
            .collect();
        prop_assert_eq!(store.list(&prefix, start_after.as_ref(), limit, now_ms), expected);

        // Every page, each starting after the last key of the one before.
        let mut listed = Vec::new();
        let mut cursor: Option<Key> = None;
        loop {
            let page = store.list(&prefix, cursor.as_ref(), limit, now_ms);
            prop_assert!(page.len() <= limit);
            let full = page.len() == limit;
            cursor = page.last().map(|(key, _)| key.clone());
            listed.extend(page);
            if !full {
                break;
            }
            prop_assert!(listed.len() <= matching.len(), "pagination repeats keys");
        }
        prop_assert_eq!(listed, matching);
        Ok(())
    });
}

/// A cursor that sorts before the prefix (a client listing `b` after `a1`) still finds the
/// keys with the prefix.
#[test]
fn listing_after_a_key_before_the_prefix_finds_the_prefix() {
    let writes =
        [(Key::new("a1").unwrap(), Some(0), None), (Key::new("b1").unwrap(), Some(1), None)];
    let (store, _) = local_store(&writes).unwrap();
    let listed = store.list(b"b", Some(&Key::new("a").unwrap()), 10, 0);
    assert_eq!(listed, vec![(Key::new("b1").unwrap(), value(1))]);
}

#[test]
fn collection_drops_only_stable_old_tombstones_and_expired_entries() {
    let stable = vec(any::<prop::sample::Index>(), NODES as usize);
    check(
        1024,
        (writes(0..40), stable, any::<prop::sample::Index>(), 0..3u64, 0..30u64),
        |(updates, stable, pick, nudge, grace_ms)| {
            let mut store = store_of(&updates)?;
            // A horizon next to a write's wall time, so the boundary is tested.
            let walls: Vec<u64> = updates.iter().map(|u| u.stamp.hlc.wall_ms()).collect();
            let wall = if walls.is_empty() { 0 } else { walls[pick.index(walls.len())] };
            let now_ms = (wall + grace_ms + nudge).saturating_sub(1);
            // What every member has seen is at most what this replica has seen; a node of
            // which some member has seen nothing may appear with 0.
            let stable: BTreeMap<NodeId, u64> = (0..NODES)
                .zip(stable)
                .map(|(node, index)| {
                    let base = store.vector().base(NodeId(node));
                    (NodeId(node), index.index(base as usize + 1) as u64)
                })
                .collect();
            let before = snapshot(&store);
            let dropped_count = store.collect(&stable, now_ms, grace_ms);
            let after = snapshot(&store);

            let horizon = now_ms.saturating_sub(grace_ms);
            let doomed = |update: &Update| {
                let covered = update.seq <= stable.get(&update.stamp.node).copied().unwrap_or(0);
                let dead_since_long = (update.value.is_none()
                    && update.stamp.hlc.wall_ms() < horizon)
                    || update.expires_at_ms.is_some_and(|expiry| expiry < horizon);
                covered && dead_since_long
            };
            let (expected_dropped, expected_kept): (Vec<Update>, Vec<Update>) =
                before.into_iter().partition(|update| doomed(update));
            prop_assert_eq!(&after, &expected_kept);
            prop_assert_eq!(dropped_count, expected_dropped.len());
            for update in expected_dropped {
                prop_assert!(live(&update, now_ms).is_none(), "collected a live entry");
                // Deleted data never comes back: the replica still knows it saw the write.
                prop_assert_eq!(store.apply(update), Applied::Seen);
            }
            Ok(())
        },
    );
}

/// A stable vector is built from members' digests; a member that has seen nothing of a node
/// may say so with 0, which must mean "nothing is stable", not a panic.
#[test]
fn collection_accepts_a_stable_vector_that_names_nothing() {
    let tombstone = Update {
        key: key(0),
        stamp: Stamp { hlc: Hlc::new(1, 0), node: NodeId(1) },
        seq: 1,
        value: None,
        expires_at_ms: None,
    };
    let mut store = Store::new();
    store.apply(tombstone);
    let stable = BTreeMap::from([(NodeId(1), 0)]);
    assert_eq!(store.collect(&stable, 1_000_000, 10), 0);
    assert_eq!(store.entry_count(), 1);
}

/// The smallest stamp is a stamp like any other: a write that carries it keeps its value.
#[test]
fn a_write_with_the_smallest_stamp_keeps_its_value() {
    let update = Update {
        key: key(0),
        stamp: Stamp::default(),
        seq: 1,
        value: Some(value(0)),
        expires_at_ms: None,
    };
    let mut store = Store::new();
    store.apply(update.clone());
    assert_eq!(snapshot(&store), vec![update]);
}

/// Peer input never panics: a group whose range ends at `u64::MAX`, with a write above the
/// receiver's base in it.
#[test]
fn a_delta_group_ending_at_the_largest_sequence_number_does_not_panic() {
    let update = Update {
        key: key(0),
        stamp: Stamp { hlc: Hlc::new(1, 0), node: NodeId(1) },
        seq: 5,
        value: Some(value(0)),
        expires_at_ms: None,
    };
    let group = Group { node: NodeId(1), from: 0, to: u64::MAX, updates: vec![update] };
    let mut store = Store::new();
    store.apply_delta(Delta { groups: vec![group] }, &Default::default());
    store.apply(Update {
        key: key(1),
        stamp: Stamp { hlc: Hlc::new(2, 0), node: NodeId(1) },
        seq: 6,
        value: None,
        expires_at_ms: None,
    });
}

/// A write delivered again after the vector forgot its dot (the cloud of out-of-order dots is
/// bounded) is still recognised by its stamp: it changes nothing and raises no event.
#[test]
fn a_write_delivered_again_after_its_dot_was_forgotten_changes_nothing() {
    let write = |seq: u64| Update {
        key: Key::new(format!("k/{seq}")).unwrap(),
        stamp: Stamp { hlc: Hlc::new(seq, 0), node: NodeId(1) },
        seq,
        value: Some(value(0)),
        expires_at_ms: None,
    };
    let mut store = Store::new();
    // Write 1 is missing, so every later dot waits in the cloud until it overflows.
    let last = DOT_CLOUD_SIZE_MAX as u64 + 10;
    for seq in 2..=last {
        store.apply(write(seq));
    }
    assert!(!store.vector().contains(write(last).dot()), "the cloud is not bounded as assumed");
    let before = snapshot(&store);
    assert!(!matches!(store.apply(write(last)), Applied::Won { .. }));
    assert_eq!(snapshot(&store), before);
}

// ---------------------------------------------------------------------------------------------
// RESP: the Redis front end's request decoder, fed what a hostile or broken client may send.

/// Any bytes decode to a request, a wait for more, or an error: never a panic, never a
/// request that claims more bytes than it was given or arguments outside them.
#[test]
fn resp_decoding_random_bytes_never_panics() {
    let bytes = prop_oneof![
        vec(any::<u8>(), 0..256),
        // Mostly well-formed headers with random lengths and bodies.
        vec(
            prop_oneof![
                Just(b"*".to_vec()),
                Just(b"$".to_vec()),
                Just(b"\r\n".to_vec()),
                (0u32..100_000).prop_map(|n| n.to_string().into_bytes()),
                vec(any::<u8>(), 0..8)
            ],
            0..32
        )
        .prop_map(|parts| parts.concat()),
    ];
    check(2_000, bytes, |bytes| {
        if let Ok(Some((request, used))) = resp::decode(&bytes) {
            prop_assert!(used <= bytes.len());
            if let resp::Request::Bulk(ranges) = request {
                prop_assert!(ranges.iter().all(|range| range.end <= used));
            }
        }
        Ok(())
    });
}

/// Bytes fed to a `Decoder` in random pieces (as reads deliver them) decode exactly as each
/// growing prefix decodes at once: keeping progress between reads changes no outcome.
#[test]
fn resp_decoding_in_pieces_agrees_with_decoding_at_once() {
    let part = prop_oneof![
        Just(b"*".to_vec()),
        Just(b"$".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        (0u32..12).prop_map(|n| n.to_string().into_bytes()),
        vec(any::<u8>(), 0..8)
    ];
    let bytes = vec(part, 0..48).prop_map(|parts| parts.concat());
    check(2_000, (bytes, vec(1..16usize, 1..64)), |(bytes, pieces)| {
        let mut decoder = resp::Decoder::default();
        let (mut start, mut end) = (0, 0);
        for piece in pieces.iter().cycle().take(bytes.len() + 1) {
            end = (end + piece).min(bytes.len());
            let decoded = decoder.decode(&bytes[start..end]);
            prop_assert_eq!(&decoded, &resp::decode(&bytes[start..end]));
            match decoded {
                Ok(None) if end == bytes.len() => break,
                Ok(None) => {}
                Ok(Some((_, used))) => start += used,
                Err(_) => break,
            }
        }
        Ok(())
    });
}

/// A request encoded as a client does decodes to its arguments, and every prefix of it
/// waits for more bytes.
#[test]
fn resp_requests_decode_whole_and_wait_when_cut() {
    check(500, vec(vec(any::<u8>(), 0..64), 1..8), |args| {
        let mut encoded = format!("*{}\r\n", args.len()).into_bytes();
        for arg in &args {
            encoded.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            encoded.extend_from_slice(arg);
            encoded.extend_from_slice(b"\r\n");
        }
        let decoded = resp::decode(&encoded);
        let Ok(Some((resp::Request::Bulk(ranges), used))) = decoded else {
            return Err(TestCaseError::fail(format!("{decoded:?}")));
        };
        prop_assert_eq!(used, encoded.len());
        let found: Vec<Vec<u8>> = ranges.into_iter().map(|range| encoded[range].to_vec()).collect();
        prop_assert_eq!(found, args);
        for cut in 0..encoded.len() {
            prop_assert_eq!(resp::decode(&encoded[..cut]), Ok(None));
        }
        Ok(())
    });
}
