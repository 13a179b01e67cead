//! The receiving half of gossip: frames read from a peer's unidirectional streams.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Firewall;
use crate::frame;

/// A received gossip message.
#[derive(Debug)]
pub struct Inbound {
    /// The connection's remote address.
    pub from: SocketAddr,
    /// The encoded envelope.
    pub bytes: Vec<u8>,
}

/// Reads gossip frames from every unidirectional stream of an accepted connection and hands
/// each to `deliver`, which merges it before the stream's next frame is read.
pub async fn receive_gossip(
    connection: quinn::Connection,
    deliver: impl Fn(Inbound) + Clone + Send + 'static,
    firewall: Arc<Firewall>,
) {
    let from = connection.remote_address();
    while let Ok(mut recv) = connection.accept_uni().await {
        let deliver = deliver.clone();
        let firewall = firewall.clone();
        tokio::spawn(async move {
            loop {
                match frame::read_body(&mut recv).await {
                    Ok(bytes) if firewall.blocks(&from) => drop(bytes),
                    Ok(bytes) => deliver(Inbound { from, bytes }),
                    Err(frame::FrameError::Closed) => return,
                    Err(why) => {
                        tracing::warn!(peer = %from, %why, "dropping gossip stream");
                        return;
                    }
                }
            }
        });
    }
}
