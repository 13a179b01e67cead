//! Seeded random input for the tests.

use std::time::{SystemTime, UNIX_EPOCH};

/// A small seeded generator (SplitMix64) for random test input: the seed comes from `SEED`
/// or the clock, and is printed so that a failure can be replayed.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `SEED`, or from the clock if unset; prints the seed.
    pub fn from_env(test: &str) -> Rng {
        let seed =
            std::env::var("SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or_else(|| {
                SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{test}: seed {seed} (set SEED={seed} to replay)");
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(len + 8);
        while bytes.len() < len {
            bytes.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        bytes.truncate(len);
        bytes
    }
}
