//! The firewall the demo and tests use to cut links through the real transport.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Mutex;

/// Addresses whose traffic is dropped both ways: used to cut a cluster in two in the demo and
/// in tests, through the real transport.
#[derive(Debug, Default)]
pub struct Firewall {
    blocked: Mutex<BTreeSet<SocketAddr>>,
}

impl Firewall {
    /// Drops all traffic to and from `addr`.
    pub fn block(&self, addr: SocketAddr) {
        self.lock().insert(addr);
    }

    /// Lets all traffic through again.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Whether traffic with `addr` is dropped.
    pub fn blocks(&self, addr: &SocketAddr) -> bool {
        self.lock().contains(addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<SocketAddr>> {
        // A poisoned lock only means a panic elsewhere while holding it; the set is still valid.
        self.blocked.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
