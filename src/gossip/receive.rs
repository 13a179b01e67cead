//! The receiving half of gossip: frames read from a peer's unidirectional streams.

use std::sync::Arc;

use chorus_proto::Addr;

use super::Firewall;
use crate::frame;
use crate::tls::Ending;

/// A received gossip message.
#[derive(Debug)]
pub struct Inbound {
    /// The connection's remote address, as the node sees addresses (its text, made once per
    /// connection rather than per message).
    pub from: Addr,
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
    let remote = connection.remote_address();
    // A socket address in text is far shorter than ADDR_SIZE_MAX.
    let Ok(from) = Addr::new(remote.to_string()) else { return };
    while let Ok(mut recv) = connection.accept_uni().await {
        let deliver = deliver.clone();
        let firewall = firewall.clone();
        let from = from.clone();
        tokio::spawn(async move {
            loop {
                match frame::read_body(&mut recv).await {
                    Ok(bytes) if firewall.blocks(&remote) => drop(bytes),
                    Ok(bytes) => deliver(Inbound { from: from.clone(), bytes }),
                    Err(frame::FrameError::Closed) => return,
                    Err(why) => {
                        match why.ending() {
                            Ending::Routine => {
                                tracing::debug!(peer = %remote, %why, "gossip stream ended")
                            }
                            Ending::TimedOut => {
                                tracing::info!(peer = %remote, "gossip connection timed out")
                            }
                            Ending::Fault => {
                                tracing::warn!(peer = %remote, %why, "dropping gossip stream")
                            }
                        }
                        return;
                    }
                }
            }
        });
    }
}
