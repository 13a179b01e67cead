//! The run after its fault phase: the heal, convergence and collection within their budgets,
//! and the final checks.

use rand::RngExt;

use super::{
    CHECK_EVERY_MS, COLLECT_BUDGET_MS, GHOSTS_AFTER_MS, HEAL_BUDGET_MS, LEAVE_TIMEOUT_MS,
    NEVER_HEALS, Run, Sabotage, Script, node_template, seed_addr,
};
use crate::clock::ClockModel;
use crate::cluster::Status;
use crate::faults::{LinkFaults, Shape};

impl Run {
    /// Ends every fault: partitions, link faults, pending restarts happen now; clients stop.
    pub(super) fn heal(&mut self) {
        self.healed = true;
        self.cuts.clear();
        self.cluster.network.heal(None);
        let calm = LinkFaults::calm(self.plan.link.latency);
        self.cluster.network.set_link(calm);
        if self.options.sabotage == Some(Sabotage::NeverHeal) {
            // Isolate a running node (the first of a shuffled order is the one cut off).
            let mut up = self.up_slots();
            crate::faults::shuffle(&mut up, &mut self.cluster.rng);
            let cut = Shape::IsolateOne.links(&up, &mut self.cluster.rng);
            self.cluster.network.cut(NEVER_HEALS, cut);
        }
        for slot in std::mem::take(&mut self.restarts) {
            if self.cluster.slots()[slot].status == Status::Down {
                self.cluster.restart(slot, vec![seed_addr()]);
            }
        }
        self.cluster.log(|| "heal".to_string());
    }

    /// Once converged, on calm links, a random running node leaves gracefully (if three or
    /// more run, and no cut is left, which only the never-heal sabotage leaves): every other
    /// node must tell it apart from a crashed one, seeing it `Left`, never `Dead` (the
    /// checker's `left-seen-dead`).
    pub(super) fn calm_leave(&mut self) {
        let up = self.up_slots();
        if up.len() < 3 || self.cluster.network.is_partitioned() {
            return;
        }
        let slot = up[self.cluster.rng.random_range(0..up.len())];
        let Some(id) = self.cluster.node(slot).map(|node| node.id()) else { return };
        self.cluster.checker.departing(id);
        self.cluster.leave(slot);
        let at = self.cluster.now() + LEAVE_TIMEOUT_MS;
        self.cluster.schedule(at, Script::LeaveTimeout(slot));
    }

    /// The heal phase: runs until the cluster converges or the budget runs out.
    pub(super) fn converge(&mut self, heal_at: u64) -> Option<u64> {
        let budget = HEAL_BUDGET_MS + self.skew_hold_back(heal_at);
        loop {
            let verdict = self.cluster.checker.converged(&self.cluster.live());
            let elapsed = self.cluster.now() - heal_at;
            match verdict {
                Ok(()) => return Some(elapsed),
                Err(why) if elapsed >= budget => {
                    let detail = format!("not converged {elapsed} ms after the heal: {why}");
                    self.cluster.checker.fail("not-converged", detail);
                    return None;
                }
                Err(_) => {}
            }
            self.run_until(self.cluster.now() + CHECK_EVERY_MS);
            if self.cluster.checker.failure().is_some() {
                return None;
            }
        }
    }

    /// The latest moment, after `heal_at`, at which some live node's clock first admits some
    /// write: how long skewed writes may still be held back.
    fn skew_hold_back(&self, heal_at: u64) -> u64 {
        let skew = node_template().clock_skew_ms_max;
        let latest_wall = self.cluster.checker.writes().keys().map(|s| s.hlc.wall_ms()).max();
        let Some(wall) = latest_wall else { return 0 };
        self.clocks()
            .iter()
            .map(|clock| clock.true_time_of(wall.saturating_sub(skew), heal_at) - heal_at)
            .max()
            .unwrap_or(0)
    }

    /// The clocks of every running node.
    fn clocks(&self) -> Vec<ClockModel> {
        self.cluster.slots().iter().filter(|s| s.node.is_some()).map(|s| s.clock).collect()
    }

    /// The collection phase: runs until every tombstone and expired entry is collected.
    pub(super) fn collect(&mut self, heal_at: u64) -> Option<u64> {
        let started = self.cluster.now();
        let budget = COLLECT_BUDGET_MS + self.tombstone_lead(started);
        loop {
            let verdict = self.cluster.checker.collected(&self.cluster.live());
            let elapsed = self.cluster.now() - started;
            match verdict {
                Ok(stuck) => {
                    self.stuck = stuck;
                    return Some(self.cluster.now() - heal_at);
                }
                Err(why) if elapsed >= budget => {
                    let detail = format!("not collected {elapsed} ms after converging: {why}");
                    self.cluster.checker.fail("not-collected", detail);
                    return None;
                }
                Err(_) => {}
            }
            self.run_until(self.cluster.now() + 4 * CHECK_EVERY_MS);
            if self.cluster.checker.failure().is_some() {
                return None;
            }
        }
    }

    /// How long after `now` the last tombstone or expired entry becomes old enough to collect
    /// on every running node's clock.
    fn tombstone_lead(&self, now: u64) -> u64 {
        let grace = node_template().tombstone_grace_ms;
        let dead_since = self.cluster.checker.writes().iter().filter_map(|(stamp, write)| {
            match (&write.value, write.expires_at_ms) {
                (None, _) => Some(stamp.hlc.wall_ms()),
                (Some(_), Some(expiry)) => Some(expiry.max(stamp.hlc.wall_ms())),
                (Some(_), None) => None,
            }
        });
        let Some(latest) = dead_since.max() else { return 0 };
        self.clocks()
            .iter()
            .map(|clock| clock.true_time_of(latest + grace + 1, now) - now)
            .max()
            .unwrap_or(0)
    }

    /// After collection: the data still matches the oracle (nothing came back) and no
    /// departed identity is still seen alive.
    pub(super) fn final_checks(&mut self, heal_at: u64) {
        let last_gone = self.cluster.checker.last_gone_ms();
        let ghosts_at = heal_at.max(last_gone) + GHOSTS_AFTER_MS;
        if self.cluster.now() < ghosts_at {
            self.run_until(ghosts_at);
        }
        if self.cluster.checker.failure().is_some() {
            return;
        }
        let live = self.cluster.live();
        let verdict = self.cluster.checker.converged(&live);
        let ghosts = self.cluster.checker.no_ghosts(&live);
        drop(live);
        if let Err(why) = verdict {
            self.cluster.checker.fail("diverged-after-collection", why);
        } else if let Err(why) = ghosts {
            self.cluster.checker.fail("down-seen-alive", why);
        }
    }
}
