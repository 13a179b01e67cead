//! Which delta page sizes a run's nodes use: the protocol's own, or small ones so that
//! catch-ups take many pages.

use chorus_proto::limits::DELTA_PAGE_SIZE_TARGET;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::faults::{Profile, enabled};

/// Share of `lite` seeds, per mille, whose nodes page deltas and pushes at a small size.
const SMALL_PAGES_PERMILLE: u32 = 500;

/// Which page sizes a run's nodes use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pages {
    /// Drawn per seed: small in [`SMALL_PAGES_PERMILLE`] of `lite` seeds, the protocol's own
    /// in every `swarm` seed (small pages make some swarm seeds fail on an open protocol
    /// issue, see ARCHITECTURE.md, known limits).
    Drawn,
    /// Small (200 B to 4 KiB) in every seed: `--pages small`.
    Small,
    /// The protocol's own (256 KiB) in every seed: `--pages default`.
    Default,
}

impl Pages {
    /// The command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            Pages::Drawn => "drawn",
            Pages::Small => "small",
            Pages::Default => "default",
        }
    }

    /// Parses a command-line name.
    pub fn parse(name: &str) -> Option<Pages> {
        [Pages::Drawn, Pages::Small, Pages::Default].into_iter().find(|p| p.as_str() == name)
    }

    /// The page size of a seed: the protocol's own (256 KiB, which the simulator's small
    /// values never fill) or 200 B to 4 KiB, so that a catch-up takes many pages. Drawn from
    /// its own generator, seeded by the run's seed, so seeds with the default page size run
    /// as they did before pages were drawn.
    pub fn size_target(self, seed: u64, profile: Profile) -> usize {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5041_4745_5349_5a45);
        let small = match (self, profile) {
            (Pages::Drawn, Profile::Lite) => enabled(&mut rng, SMALL_PAGES_PERMILLE),
            (Pages::Drawn, Profile::Swarm) | (Pages::Default, _) => false,
            (Pages::Small, _) => true,
        };
        if small { rng.random_range(200..=4_096) } else { DELTA_PAGE_SIZE_TARGET }
    }
}
