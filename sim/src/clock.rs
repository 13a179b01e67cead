//! Per-node wall clocks: a fixed offset from true (virtual) time and a drift rate.
//!
//! A node only ever sees its own clock: every `now_ms` handed to `proto` is the node's local
//! reading, and every timer it asks for is converted back to true time. Local readings never
//! go backwards (drift is far above -100 %), so `proto`'s monotonic assumptions hold.

/// True time at which every run starts: a plausible wall clock (November 2023), so stamps are
/// encoded at their real width.
pub const START_MS: u64 = 1_700_000_000_000;

/// Parts per million: drift is expressed in them.
const PPM: i128 = 1_000_000;

/// One node's clock: `local = true + offset + (true - START_MS) * drift_ppm / 1e6`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockModel {
    /// Fixed offset from true time, in milliseconds.
    pub offset_ms: i64,
    /// Drift in parts per million: +1000 gains one millisecond per second.
    pub drift_ppm: i64,
}

impl ClockModel {
    /// A clock that tells true time.
    pub fn exact() -> ClockModel {
        ClockModel::default()
    }

    /// The local reading at true time `now_ms` (`now_ms >= START_MS`).
    pub fn local(&self, now_ms: u64) -> u64 {
        let elapsed = i128::from(now_ms) - i128::from(START_MS);
        let drift = (elapsed * i128::from(self.drift_ppm)).div_euclid(PPM);
        let local = i128::from(now_ms) + i128::from(self.offset_ms) + drift;
        // Offsets are seconds and drifts percent: far from either end of u64.
        local.clamp(0, i128::from(u64::MAX)) as u64
    }

    /// The first true time at or after `now_ms` at which the local reading is at least
    /// `local_ms`: when to fire a timer the node set for `local_ms`.
    pub fn true_time_of(&self, local_ms: u64, now_ms: u64) -> u64 {
        if self.local(now_ms) >= local_ms {
            return now_ms;
        }
        if local_ms == u64::MAX {
            return u64::MAX;
        }
        // Invert the affine map, then step to the exact first millisecond (the integer
        // division above makes the map a staircase).
        let target = i128::from(local_ms) - i128::from(self.offset_ms) - i128::from(START_MS);
        let estimate = target * PPM / (PPM + i128::from(self.drift_ppm));
        let mut at = (i128::from(START_MS) + estimate).clamp(i128::from(now_ms), i128::MAX) as u64;
        while self.local(at) < local_ms {
            at += 1;
        }
        while at > now_ms && self.local(at - 1) >= local_ms {
            at -= 1;
        }
        at
    }

    /// How far ahead of `other` this clock reads at true time `now_ms` (negative if behind).
    pub fn lead_over(&self, other: &ClockModel, now_ms: u64) -> i64 {
        self.local(now_ms) as i64 - other.local(now_ms) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_at_the_first_true_millisecond_that_reaches_them() {
        for clock in [
            ClockModel::exact(),
            ClockModel { offset_ms: 2_500, drift_ppm: 0 },
            ClockModel { offset_ms: -3_000, drift_ppm: 20_000 },
            ClockModel { offset_ms: 700, drift_ppm: -20_000 },
        ] {
            let now = START_MS + 12_345;
            for ahead in [0u64, 1, 2, 17, 500, 60_000] {
                let target = clock.local(now) + ahead;
                let at = clock.true_time_of(target, now);
                assert!(clock.local(at) >= target, "{clock:?} {ahead}");
                assert!(at == now || clock.local(at - 1) < target, "{clock:?} {ahead}");
            }
            assert_eq!(clock.true_time_of(clock.local(now) - 5, now), now);
        }
    }

    #[test]
    fn local_readings_never_go_backwards() {
        let clock = ClockModel { offset_ms: -1_000, drift_ppm: -50_000 };
        let mut last = 0;
        for now in START_MS..START_MS + 5_000 {
            let local = clock.local(now);
            assert!(local >= last);
            last = local;
        }
    }
}
