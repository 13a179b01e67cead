//! Node-to-node transport: one quinn endpoint per node, one connection per peer, and per peer
//! two lanes (long-lived unidirectional streams): control (digests, pushes, acks) and bulk
//! (catch-up pages), so a large sync never delays heartbeats.
//!
//! Sending never blocks the driver: each lane has a bounded queue, and a message that finds
//! it full (a slow or unreachable peer) is dropped and counted; anti-entropy repairs the loss.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_proto::{Lane, Transmit};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::frame;
use crate::tls::{SERVER_NAME, tls_alert};

/// Messages queued per peer and lane before new ones are dropped.
pub const LANE_QUEUE_MAX: usize = 1024;

/// How long a connection attempt may take before the peer counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a lane drops messages after a failed connection before it tries again.
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);

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

/// Counters of the transport itself (the protocol counts its own messages).
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Messages dropped because a lane's queue was full or its peer unreachable.
    pub dropped: AtomicU64,
    /// Connections that could not be established.
    pub connect_failures: AtomicU64,
    /// Bytes of gossip queued for peers.
    pub bytes_sent: AtomicU64,
    /// Bytes of gossip received.
    pub bytes_received: AtomicU64,
    /// Received gossip messages that failed to decode or validate.
    pub messages_invalid: AtomicU64,
}

/// A received gossip message.
#[derive(Debug)]
pub struct Inbound {
    /// The connection's remote address.
    pub from: SocketAddr,
    /// The encoded envelope.
    pub bytes: Vec<u8>,
}

/// The sending half: a queue per peer and lane, each drained by its own task.
pub struct Transport {
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    lanes: BTreeMap<(String, Lane), mpsc::Sender<Vec<u8>>>,
    firewall: Arc<Firewall>,
    stats: Arc<TransportStats>,
}

impl Transport {
    /// A transport dialling from `endpoint` with `client_config` (gossip ALPN).
    pub fn new(
        endpoint: quinn::Endpoint,
        client_config: quinn::ClientConfig,
        firewall: Arc<Firewall>,
        stats: Arc<TransportStats>,
    ) -> Transport {
        Transport { endpoint, client_config, lanes: BTreeMap::new(), firewall, stats }
    }

    /// Queues a message for its peer; drops and counts it if the lane is full.
    pub fn send(&mut self, transmit: Transmit) {
        let addr = String::from_utf8_lossy(transmit.to.as_bytes()).into_owned();
        let key = (addr, transmit.lane);
        if self.lanes.get(&key).is_none_or(mpsc::Sender::is_closed) {
            let (queue, receiver) = mpsc::channel(LANE_QUEUE_MAX);
            let lane = LaneTask {
                endpoint: self.endpoint.clone(),
                client_config: self.client_config.clone(),
                addr: key.0.clone(),
                firewall: self.firewall.clone(),
                stats: self.stats.clone(),
            };
            tokio::spawn(lane.run(receiver));
            self.lanes.insert(key.clone(), queue);
        }
        let Some(queue) = self.lanes.get(&key) else { return };
        // Still encoded under the driver's lock; the lane task could do it instead.
        let bytes = match transmit.encode() {
            Ok(bytes) => bytes,
            Err(why) => {
                tracing::error!(%why, "an outgoing gossip message did not encode (a bug)");
                return;
            }
        };
        self.stats.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if queue.try_send(bytes).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Drains one peer lane: connects on demand, keeps one stream open, writes frames in order.
struct LaneTask {
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    addr: String,
    firewall: Arc<Firewall>,
    stats: Arc<TransportStats>,
}

impl LaneTask {
    async fn run(self, mut queue: mpsc::Receiver<Vec<u8>>) {
        let mut stream: Option<(quinn::Connection, quinn::SendStream)> = None;
        let mut retry_at = Instant::now();
        // A refused cluster key is reported once per run of failures, not every retry.
        let mut refused_reported = false;
        while let Some(bytes) = queue.recv().await {
            if stream.as_ref().is_some_and(|(connection, _)| connection.close_reason().is_some()) {
                stream = None;
            }
            if stream.is_none() {
                if Instant::now() < retry_at {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                match self.open().await {
                    Ok(opened) => {
                        stream = Some(opened);
                        refused_reported = false;
                    }
                    Err(OpenError { why, refused }) => {
                        if refused && !refused_reported {
                            tracing::warn!(peer = %self.addr, %why, "the peer refused the TLS handshake: does it use the same cluster key?");
                            refused_reported = true;
                        }
                        tracing::debug!(peer = %self.addr, %why, "peer unreachable");
                        self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        retry_at = Instant::now() + RECONNECT_BACKOFF;
                        continue;
                    }
                }
            }
            let Some((connection, send)) = stream.as_mut() else { continue };
            if self.firewall.blocks(&connection.remote_address()) {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let Err(why) = frame::write_body(send, &bytes).await {
                tracing::debug!(peer = %self.addr, %why, "send failed");
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                stream = None;
            }
        }
    }

    async fn open(&self) -> Result<(quinn::Connection, quinn::SendStream), OpenError> {
        let target = resolve(&self.addr).await.map_err(OpenError::from)?;
        if self.firewall.blocks(&target) {
            return Err(OpenError::from("blocked".to_string()));
        }
        let connecting = self
            .endpoint
            .connect_with(self.client_config.clone(), target, SERVER_NAME)
            .map_err(|error| OpenError::from(error.to_string()))?;
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| OpenError::from("connection timed out".to_string()))?
            .map_err(|error| OpenError::from(&error))?;
        let send = connection.open_uni().await.map_err(|error| OpenError::from(&error))?;
        Ok((connection, send))
    }
}

/// Why a lane could not open its stream, and whether TLS refused it (a different cluster key).
struct OpenError {
    why: String,
    refused: bool,
}

impl From<String> for OpenError {
    fn from(why: String) -> OpenError {
        OpenError { why, refused: false }
    }
}

impl From<&quinn::ConnectionError> for OpenError {
    fn from(error: &quinn::ConnectionError) -> OpenError {
        OpenError { why: error.to_string(), refused: tls_alert(error).is_some() }
    }
}

/// Resolves `host:port` (DNS names are looked up each time, so a moved seed is found).
pub async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = addr.parse() {
        return Ok(addr);
    }
    let mut found =
        tokio::net::lookup_host(addr).await.map_err(|error| format!("{addr}: {error}"))?;
    found.next().ok_or_else(|| format!("{addr}: no address found"))
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
