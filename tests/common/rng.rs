//! Seeded random input for the tests.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng as _, RngExt, SeedableRng};

/// A seeded generator for random test input (rand's `Xoshiro256PlusPlus`, the generator the
/// simulator uses): the seed comes from `SEED` or the clock, and is printed so that a failure
/// can be replayed.
pub struct Rng(Xoshiro256PlusPlus);

impl Rng {
    /// A generator seeded from `SEED`, or from the clock if unset; prints the seed.
    pub fn from_env(test: &str) -> Rng {
        let seed =
            std::env::var("SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or_else(|| {
                SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{test}: seed {seed} (set SEED={seed} to replay)");
        Rng(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    /// A generator from `seed` (several generators derived from one printed seed).
    pub fn seeded(seed: u64) -> Rng {
        Rng(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0.random_range(0..bound)
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        self.0.fill_bytes(&mut bytes);
        bytes
    }
}
