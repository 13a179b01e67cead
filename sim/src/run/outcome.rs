//! An [`Outcome`]'s verdict and its one-line report.

use super::Outcome;
use crate::pages::Pages;

impl Outcome {
    /// Whether every rule held.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// The one-line, `key=value` result.
    pub fn line(&self) -> String {
        let verdict = if self.passed() { "pass" } else { "fail" };
        let converged = self.converged_ms.map_or("none".to_string(), |ms| ms.to_string());
        let mut line = format!(
            "result={verdict} seed={} nodes={} events={} converged_ms={converged} trace={:016x} \
             profile={} virtual_ms={} writes={} lost={} stuck={} pruned={} refused={} paged={} \
             clock_refused={} page_size={}",
            self.seed,
            self.nodes,
            self.events,
            self.trace,
            self.options.profile.as_str(),
            self.virtual_ms,
            self.writes,
            self.lost,
            self.stuck,
            self.reached.pruned,
            self.reached.refused,
            self.reached.paged,
            self.reached.clock_refused,
            self.page_size,
        );
        if let Some(sabotage) = self.options.sabotage {
            line.push_str(&format!(" sabotage={}", sabotage.as_str()));
        }
        if let Some(failure) = &self.failure {
            line.push_str(&format!(" {failure}"));
        }
        line
    }

    /// The command that reproduces this run.
    pub fn reproduce(&self) -> String {
        let mut command = format!(
            "cargo run -p chorus-sim --release -- run --seed {} --profile {}",
            self.seed,
            self.options.profile.as_str()
        );
        if let Some(nodes) = self.options.nodes {
            command.push_str(&format!(" --nodes {nodes}"));
        }
        if let Some(sabotage) = self.options.sabotage {
            command.push_str(&format!(" --sabotage {}", sabotage.as_str()));
        }
        if self.options.long_partitions {
            command.push_str(" --long-partitions");
        }
        if self.options.pages != Pages::Drawn {
            command.push_str(&format!(" --pages {}", self.options.pages.as_str()));
        }
        if self.options.disks {
            command.push_str(" --disks");
        }
        command
    }
}
