//! What clients do: puts, TTL puts, deletes and reads over a small key space, so that writes
//! to one key conflict across nodes, and now and then a write that waits for other nodes.

use chorus_proto::{Key, Value, WaitLevel, Write};
use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;

use crate::faults::WorkloadSpec;

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Put (maybe with a TTL) or delete, maybe waiting for confirmations: the command a
    /// node takes, as a client would send it.
    Write(Write),
    /// Read a key.
    Read {
        /// The key.
        key: Key,
    },
}

/// The generator of client operations.
#[derive(Clone, Debug)]
pub struct Workload {
    spec: WorkloadSpec,
    /// Operations generated, so every value is distinct.
    count: u64,
}

impl Workload {
    /// A generator following `spec`.
    pub fn new(spec: WorkloadSpec) -> Workload {
        Workload { spec, count: 0 }
    }

    /// Time until the next operation: uniform around the mean rate, so arrivals are
    /// irregular but the rate holds.
    pub fn gap_ms(&self, rng: &mut Xoshiro256PlusPlus) -> u64 {
        let mean = (1_000 / self.spec.ops_per_s.max(1)).max(1);
        rng.random_range(1..=2 * mean)
    }

    /// The next operation, for a cluster of about `nodes` nodes.
    pub fn next(&mut self, rng: &mut Xoshiro256PlusPlus, nodes: usize) -> Op {
        self.count += 1;
        let key = Key::new(format!("k{}", rng.random_range(0..self.spec.keys)))
            .expect("a short key is valid");
        let [put, ttl, delete, read] = self.spec.weights;
        let roll = rng.random_range(0..(put + ttl + delete + read).max(1));
        let waited = rng.random_range(0..1000) < self.spec.wait_permille;
        let (wait, timeout_ms) = if waited {
            let level = if rng.random_bool(0.5) {
                WaitLevel::All
            } else {
                WaitLevel::Count(rng.random_range(1..=nodes.max(1) as u32))
            };
            (level, rng.random_range(200..=3_000))
        } else {
            (WaitLevel::Local, 0)
        };
        if roll < put + ttl {
            let ttl_ms = (roll >= put).then(|| rng.random_range(1..=self.spec.ttl_ms_max));
            let value = self.value(rng);
            Op::Write(Write { key, value: Some(value), ttl_ms, wait, timeout_ms })
        } else if roll < put + ttl + delete {
            Op::Write(Write::delete(key).with_wait(wait, timeout_ms))
        } else {
            Op::Read { key }
        }
    }

    /// The writes that follow `write` at once on the same node, if it starts a burst: 1 to 7
    /// more puts or deletes of its key, none waited, so that the node's pushes replace all
    /// but the last.
    pub fn burst(&mut self, rng: &mut Xoshiro256PlusPlus, write: &Write) -> Vec<Write> {
        if rng.random_range(0..1000) >= self.spec.burst_permille {
            return Vec::new();
        }
        (0..rng.random_range(1..=7))
            .map(|_| {
                self.count += 1;
                if rng.random_range(0..5) == 0 {
                    Write::delete(write.key.clone())
                } else {
                    let ttl_ms = write.ttl_ms.map(|_| rng.random_range(1..=self.spec.ttl_ms_max));
                    let value = Some(self.value(rng));
                    Write {
                        key: write.key.clone(),
                        value,
                        ttl_ms,
                        wait: WaitLevel::Local,
                        timeout_ms: 0,
                    }
                }
            })
            .collect()
    }

    /// A value naming the operation that wrote it, padded to a drawn size.
    fn value(&self, rng: &mut Xoshiro256PlusPlus) -> Value {
        let large = rng.random_range(0..1000) < self.spec.large_permille;
        let size = if large { self.spec.large_size } else { rng.random_range(0..=48) };
        let mut bytes = format!("v{}:", self.count).into_bytes();
        bytes.resize(bytes.len().max(size), b'.');
        Value::new(bytes).expect("values stay far below the limit")
    }
}
