//! Node-to-node gossip over quinn: the sending lanes ([`Transport`]), the receiving streams
//! ([`receive_gossip`]), and the [`Firewall`] that cuts links on purpose (demo and tests).

mod firewall;
mod receive;
mod transport;

use std::net::SocketAddr;

pub use firewall::Firewall;
pub use receive::{Inbound, receive_gossip};
pub use transport::{Transport, TransportStats};

/// Resolves `host:port` (DNS names are looked up each time, so a moved seed is found).
pub async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = addr.parse() {
        return Ok(addr);
    }
    let mut found =
        tokio::net::lookup_host(addr).await.map_err(|error| format!("{addr}: {error}"))?;
    found.next().ok_or_else(|| format!("{addr}: no address found"))
}
