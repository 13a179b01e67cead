//! [`Config`]: how a node behaves, and [`Sabotage`], the rules the simulator breaks on purpose.

use crate::clock::NodeId;
use crate::limits::*;
use crate::membership::DetectorConfig;
use crate::message::{Addr, Name};

/// How a node behaves; [`Config::new`] fills in the defaults from `limits`.
#[derive(Clone, Debug)]
pub struct Config {
    /// Identity; chosen at random by the driver for a node without state.
    pub id: NodeId,
    /// Name for humans.
    pub name: Name,
    /// Address peers reach this node at.
    pub addr: Addr,
    /// Incarnation: 0 for a fresh identity, higher after a restart that kept state.
    pub incarnation: u64,
    /// Seed of the node's random choices (gossip targets, reset identities).
    pub seed: u64,
    /// Interval between anti-entropy rounds.
    pub gossip_interval_ms: u64,
    /// Eager-push batching window.
    pub push_batch_ms: u64,
    /// Children per node in eager-push trees.
    pub tree_fanout: usize,
    /// Largest accepted lead of a remote stamp over the local wall clock.
    pub clock_skew_ms_max: u64,
    /// Largest value this node accepts from clients.
    pub value_size_max: usize,
    /// How long a collectable tombstone is kept.
    pub tombstone_grace_ms: u64,
    /// Phi at which a member becomes suspect (`PHI_SUSPECT`).
    pub phi_suspect: f64,
    /// Phi at which a member becomes dead (`PHI_DEAD`).
    pub phi_dead: f64,
    /// How long a dead member stays listed before removal (`DEAD_REMOVE_MS`).
    pub dead_remove_ms: u64,
    /// How long a left member stays listed before removal (`LEFT_REMOVE_MS`).
    pub left_remove_ms: u64,
    /// Size a delta page or a push message aims at (a single larger write goes alone); at
    /// most `DELTA_PAGE_SIZE_TARGET`. Smaller values only make catch-ups take more pages,
    /// which the simulator uses to exercise them.
    pub delta_page_size_target: usize,
    /// Rules broken on purpose, for the simulator's proof that its checkers catch them.
    /// Always off in a real node.
    #[doc(hidden)]
    pub sabotage: Sabotage,
}

/// Switches that make a node break a protocol rule on purpose. They exist only so that
/// `chorus-sim` can prove its checkers report each broken rule (a checker that cannot fail is
/// a defect); every switch is off by default and nothing outside the simulator's sabotage
/// tests turns one on.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sabotage {
    /// Collect tombstones and expired entries at once, without waiting for causal stability
    /// or the grace period: a node that forgets deletes early.
    pub collect_unstable: bool,
    /// Merge remote writes whatever their stamp's lead over the local clock.
    pub skip_skew_guard: bool,
    /// A delta page cut short by the page size still claims each group's whole range, so the
    /// receiver counts writes of later pages seen (and the next page skips them).
    pub page_claims_whole_range: bool,
    /// Acknowledge a pushed write whose writer waits, without applying it.
    pub ack_without_applying: bool,
    /// Accept local writes whatever the clock self-check says.
    pub skip_clock_check: bool,
    /// A push names the write just before each write it carries as replaced by it, though
    /// that write was another key's, or sent itself.
    pub push_names_unreplaced: bool,
}

impl Config {
    /// The secret the store's hash table hashes keys under, drawn from the seed (mixed, so
    /// that it does not repeat the random choices the seed also drives).
    pub fn hash_key(&self) -> u64 {
        // SplitMix64's finaliser.
        let mut mixed = self.seed ^ 0x9e37_79b9_7f4a_7c15;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// A configuration with every tunable at its default.
    pub fn new(id: NodeId, name: Name, addr: Addr, seed: u64) -> Config {
        Config {
            id,
            name,
            addr,
            incarnation: 0,
            seed,
            gossip_interval_ms: GOSSIP_INTERVAL_MS,
            push_batch_ms: PUSH_BATCH_MS,
            tree_fanout: TREE_FANOUT,
            clock_skew_ms_max: CLOCK_SKEW_MS_MAX,
            value_size_max: VALUE_SIZE_MAX,
            tombstone_grace_ms: TOMBSTONE_GRACE_MS,
            phi_suspect: PHI_SUSPECT,
            phi_dead: PHI_DEAD,
            dead_remove_ms: DEAD_REMOVE_MS,
            left_remove_ms: LEFT_REMOVE_MS,
            delta_page_size_target: DELTA_PAGE_SIZE_TARGET,
            sabotage: Sabotage::default(),
        }
    }

    pub(crate) fn detector(&self) -> DetectorConfig {
        DetectorConfig {
            interval_ms: self.gossip_interval_ms,
            phi_suspect: self.phi_suspect,
            phi_dead: self.phi_dead,
            dead_remove_ms: self.dead_remove_ms,
            left_remove_ms: self.left_remove_ms,
        }
    }
}
