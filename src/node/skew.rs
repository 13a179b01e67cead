//! Held-back writes, logged once a minute per peer with a count, never one line per update
//! (a peer with a bad clock would otherwise fill the log: 108 MB in 16 minutes was measured).

use std::collections::BTreeMap;

use chorus_proto::NodeId;

/// How often held-back writes of one peer are logged.
pub const SKEW_LOG_INTERVAL_MS: u64 = 60_000;

/// Per peer: when its held-back writes were last logged, and how many came since.
#[derive(Debug, Default)]
pub struct SkewLog {
    peers: BTreeMap<NodeId, Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    logged_ms: Option<u64>,
    count: u64,
    ahead_ms_max: u64,
}

impl SkewLog {
    /// Counts a write of `peer` held back for being `ahead_ms` ahead of this clock, and logs
    /// the count so far if the peer's last line is a minute old (or it has none).
    pub fn held_back(&mut self, peer: NodeId, ahead_ms: u64, now_ms: u64) {
        let pending = self.peers.entry(peer).or_default();
        pending.count += 1;
        pending.ahead_ms_max = pending.ahead_ms_max.max(ahead_ms);
        let due = pending
            .logged_ms
            .is_none_or(|logged| now_ms.saturating_sub(logged) >= SKEW_LOG_INTERVAL_MS);
        if due {
            tracing::warn!(
                %peer,
                held_back = pending.count,
                ahead_ms_max = pending.ahead_ms_max,
                "held back writes stamped too far ahead of this clock (logged at most once a minute per peer)"
            );
            *pending = Pending { logged_ms: Some(now_ms), count: 0, ahead_ms_max: 0 };
        }
    }

    /// Writes of `peer` held back since its last log line.
    #[cfg(test)]
    fn unlogged(&self, peer: NodeId) -> u64 {
        self.peers.get(&peer).map_or(0, |pending| pending.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skewed_peer_is_logged_once_a_minute_with_a_count() {
        let mut log = SkewLog::default();
        let peer = NodeId(7);
        log.held_back(peer, 900, 0);
        assert_eq!(log.unlogged(peer), 0, "the first one is logged at once");
        for at in 1..1_000 {
            log.held_back(peer, 900, at * 10);
        }
        assert_eq!(log.unlogged(peer), 999, "counted, not logged, within the minute");
        log.held_back(peer, 900, SKEW_LOG_INTERVAL_MS);
        assert_eq!(log.unlogged(peer), 0, "logged again with the count after a minute");
    }
}
