//! A small in-memory cluster for scenario tests: nodes exchange encoded bytes (every message
//! through the codec both ways) through a queue
//! ordered by delivery time, in virtual time, with partitions, crashes and clock offsets.
//! (The full simulator, with random faults and checkers, is the `chorus-sim` crate.)

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use chorus_proto::disk::{Batch, DiskState};
use chorus_proto::{
    Addr, ClockCheck, Config, Envelope, Event, Key, MemberState, Name, Node, NodeId, Update, Value,
    WaitLevel, Write, Written,
};

/// Virtual milliseconds the cluster starts at (a plausible wall clock).
pub const START_MS: u64 = 1_700_000_000_000;

pub struct Cluster {
    pub nodes: Vec<Option<Node>>,
    pub events: Vec<Vec<Event>>,
    pub offsets: Vec<i64>,
    pub now: u64,
    pub latency_ms: u64,
    /// Latencies of single links (from, to) that differ from `latency_ms`.
    pub link_latency_ms: BTreeMap<(usize, usize), u64>,
    queue: BTreeMap<(u64, u64), (usize, usize, Vec<u8>)>,
    sequence: u64,
    blocked: BTreeSet<(usize, usize)>,
    next_id: u64,
    tune: fn(&mut Config),
}

pub fn addr(index: usize) -> Addr {
    Addr::new(format!("n{index}")).unwrap()
}

pub fn key(text: &str) -> Key {
    Key::new(text).unwrap()
}

pub fn value(text: &str) -> Value {
    Value::new(text).unwrap()
}

/// Test timings: short grace periods so removal and collection happen within a test.
pub fn quick(config: &mut Config) {
    config.dead_remove_ms = 20_000;
    config.left_remove_ms = 20_000;
    config.tombstone_grace_ms = 5_000;
}

impl Cluster {
    /// `count` nodes, all joined through node 0, run until every node sees every other alive.
    pub fn new(count: usize) -> Cluster {
        Cluster::with(count, quick)
    }

    pub fn with(count: usize, tune: fn(&mut Config)) -> Cluster {
        let mut cluster = Cluster {
            nodes: Vec::new(),
            events: Vec::new(),
            offsets: Vec::new(),
            now: START_MS,
            latency_ms: 5,
            link_latency_ms: BTreeMap::new(),
            queue: BTreeMap::new(),
            sequence: 0,
            blocked: BTreeSet::new(),
            next_id: 1,
            tune,
        };
        for _ in 0..count {
            cluster.add();
        }
        // Formed: every node sees every other alive and has compared clocks (a node that
        // joined takes writes only then).
        let converged = cluster.run_until(30_000, |c| c.all_see_alive() && c.clocks_checked());
        assert!(converged, "cluster of {count} did not form");
        cluster
    }

    /// Adds a fresh node that joins through node 0; returns its index.
    pub fn add(&mut self) -> usize {
        self.add_via(0)
    }

    /// Adds a fresh node that joins through node `seed`; returns its index.
    pub fn add_via(&mut self, seed: usize) -> usize {
        let index = self.nodes.len();
        self.nodes.push(None);
        self.events.push(Vec::new());
        self.offsets.push(0);
        self.start_via(index, seed);
        index
    }

    /// Starts (or restarts) node `index` with a fresh identity and empty state.
    pub fn start(&mut self, index: usize) {
        self.start_via(index, 0);
    }

    /// The configuration of a new identity for node `index`.
    fn fresh_config(&mut self, index: usize) -> Config {
        let id = NodeId(self.next_id * 1_000_003);
        self.next_id += 1;
        let name = Name::new(format!("node{index}")).unwrap();
        let mut config = Config::new(id, name, addr(index), id.0);
        (self.tune)(&mut config);
        config
    }

    fn start_via(&mut self, index: usize, seed: usize) {
        let config = self.fresh_config(index);
        let now = self.local_now(index);
        let mut node = Node::new(config, now);
        if index != seed {
            node.join(now, vec![addr(seed)]);
        }
        self.nodes[index] = Some(node);
        self.drain(index);
    }

    /// Makes every running node keep a journal for a data directory.
    pub fn keep_journals(&mut self) {
        for slot in &mut self.nodes {
            *slot = slot.take().map(Node::keeping_journal);
        }
    }

    /// The changes node `index` made since the last call (its journal must be on).
    pub fn take_batch(&mut self, index: usize) -> Batch {
        let node = self.nodes[index].as_mut().expect("node is running");
        node.take_batch().expect("the node keeps a journal")
    }

    /// Restarts node `index` from what a data directory kept, under a new identity, joining
    /// the peers it knew.
    pub fn restore(&mut self, index: usize, state: DiskState, entries: Vec<Update>) {
        let config = self.fresh_config(index);
        let now = self.local_now(index);
        let peers = state.peers.clone();
        let mut node = Node::restore(config, now, state, entries);
        node.join(now, peers);
        self.nodes[index] = Some(node);
        self.drain(index);
    }

    pub fn node(&self, index: usize) -> &Node {
        self.nodes[index].as_ref().expect("node is running")
    }

    pub fn id(&self, index: usize) -> NodeId {
        self.node(index).id()
    }

    pub fn local_now(&self, index: usize) -> u64 {
        self.now.saturating_add_signed(self.offsets[index])
    }

    pub fn crash(&mut self, index: usize) {
        self.nodes[index] = None;
    }

    pub fn put(&mut self, index: usize, k: &str, v: &str) -> Written {
        self.write(index, k, Some(v), None, WaitLevel::Local, 0)
    }

    pub fn write(
        &mut self,
        index: usize,
        k: &str,
        v: Option<&str>,
        ttl_ms: Option<u64>,
        wait: WaitLevel,
        timeout_ms: u64,
    ) -> Written {
        let now = self.local_now(index);
        let node = self.nodes[index].as_mut().expect("node is running");
        let write = Write { key: key(k), value: v.map(value), ttl_ms, wait, timeout_ms };
        let written = node.write(now, write).expect("write accepted");
        self.drain(index);
        written
    }

    pub fn get(&self, index: usize, k: &str) -> Option<String> {
        let now = self.local_now(index);
        self.node(index).get(&key(k), now).map(|v| String::from_utf8_lossy(v.as_bytes()).into())
    }

    pub fn leave(&mut self, index: usize) {
        let now = self.local_now(index);
        self.nodes[index].as_mut().expect("node is running").leave(now);
        self.drain(index);
    }

    /// Cuts every link between the two sides, both ways.
    pub fn partition(&mut self, side: &[usize]) {
        for a in 0..self.nodes.len() {
            for b in 0..self.nodes.len() {
                if side.contains(&a) != side.contains(&b) {
                    self.blocked.insert((a, b));
                }
            }
        }
    }

    /// Cuts the link between `a` and `b` both ways (until `heal`).
    pub fn cut(&mut self, a: usize, b: usize) {
        self.blocked.insert((a, b));
        self.blocked.insert((b, a));
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    pub fn drain(&mut self, index: usize) {
        let Some(node) = self.nodes[index].as_mut() else { return };
        while let Some(transmit) = node.poll_transmit() {
            let to: usize = String::from_utf8_lossy(transmit.to.as_bytes())[1..].parse().unwrap();
            self.sequence += 1;
            let latency = self.link_latency_ms.get(&(index, to)).copied();
            let at = self.now + latency.unwrap_or(self.latency_ms);
            let bytes = transmit.encode().expect("a message the node built encodes");
            self.queue.insert((at, self.sequence), (index, to, bytes));
        }
        while let Some(event) = node.poll_event() {
            self.events[index].push(event);
        }
    }

    /// Advances to the next delivery or timer, whichever comes first, if before `until`.
    fn step(&mut self, until: u64) -> bool {
        let next_message = self.queue.keys().next().map(|(at, _)| *at);
        let next_timer = (0..self.nodes.len())
            .filter_map(|i| {
                let node = self.nodes[i].as_ref()?;
                let local = node.poll_timeout();
                Some((local.saturating_add_signed(-self.offsets[i]), i))
            })
            .min();
        let timer_at = next_timer.map(|(at, _)| at);
        let at = [next_message, timer_at].into_iter().flatten().min();
        let Some(at) = at.filter(|at| *at <= until) else { return false };
        self.now = self.now.max(at);
        if next_message == Some(at) {
            let (_, (from, to, bytes)) = self.queue.pop_first().unwrap();
            if !self.blocked.contains(&(from, to)) {
                let now = self.local_now(to);
                if let Some(node) = self.nodes[to].as_mut() {
                    let envelope = Envelope::decode(&bytes).expect("a sent message decodes");
                    node.handle_message(now, addr(from), envelope).expect("valid message");
                    self.drain(to);
                }
            }
        } else if let Some((_, index)) = next_timer {
            let now = self.local_now(index);
            self.nodes[index].as_mut().unwrap().handle_timeout(now);
            self.drain(index);
        }
        true
    }

    pub fn run_for(&mut self, ms: u64) {
        let until = self.now + ms;
        while self.step(until) {}
        self.now = until;
    }

    /// Runs until `done` holds (checked every 10 ms of virtual time) or `budget_ms` passes.
    pub fn run_until(&mut self, budget_ms: u64, done: impl Fn(&Cluster) -> bool) -> bool {
        let deadline = self.now + budget_ms;
        while self.now < deadline {
            if done(self) {
                return true;
            }
            self.run_for(10);
        }
        done(self)
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].is_some()).collect()
    }

    /// Every running node sees every other running node alive.
    /// Whether every running node's clock self-check has a verdict.
    pub fn clocks_checked(&self) -> bool {
        self.running().iter().all(|&i| self.node(i).clock_check() != ClockCheck::Unchecked)
    }

    pub fn all_see_alive(&self) -> bool {
        let running = self.running();
        running.iter().all(|&i| {
            running
                .iter()
                .filter(|&&j| j != i)
                .all(|&j| self.state(i, j) == Some(MemberState::Alive))
        })
    }

    /// What node `observer` believes about node `subject`'s current identity.
    pub fn state(&self, observer: usize, subject: usize) -> Option<MemberState> {
        let id = self.nodes[subject].as_ref().map(|n| n.id())?;
        self.state_of(observer, id)
    }

    pub fn state_of(&self, observer: usize, id: NodeId) -> Option<MemberState> {
        self.node(observer).members().into_iter().find(|m| m.id == id).map(|m| m.state)
    }

    /// Every running node holds the same entries (tombstones included).
    pub fn converged(&self) -> bool {
        let running = self.running();
        let first: Vec<_> = self.node(running[0]).store().updates().collect();
        running.iter().all(|&i| self.node(i).store().updates().collect::<Vec<_>>() == first)
    }

    /// The same live value of `k` on every running node.
    pub fn everywhere(&self, k: &str, expected: Option<&str>) -> bool {
        self.running().iter().all(|&i| self.get(i, k).as_deref() == expected)
    }
}
