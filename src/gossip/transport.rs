//! Node-to-node transport: one quinn endpoint per node and, per peer, two lanes, each a
//! connection of its own with one long-lived unidirectional stream: control (digests, pushes,
//! acks) and bulk (catch-up pages), so a large sync never delays heartbeats.
//!
//! Sending never blocks the driver: each lane has a bounded queue, and a message that finds
//! it full (a slow or unreachable peer) is dropped and counted; anti-entropy repairs the loss.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chorus_proto::{Lane, Transmit};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Firewall, resolve};
use crate::frame;
use crate::tls::{SERVER_NAME, tls_alert};

/// Messages queued per peer and lane before new ones are dropped.
pub const LANE_QUEUE_MAX: usize = 1024;

/// Bytes queued per peer and lane before new messages are dropped (a single larger message
/// still goes when the lane is empty). Without it a lane held up to 1,024 messages of up to
/// 1 MiB: a stream of 1 MiB overwrites kept gigabytes queued for a slower peer. Anti-entropy
/// repairs what is dropped, as for a full lane.
pub const LANE_QUEUE_SIZE_MAX: usize = 8 * 1024 * 1024;

/// How long a connection attempt may take before the peer counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a lane drops messages after a failed connection before it tries again.
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);

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
    /// Packets quinn declared lost on the lanes' connections (and sent again): on a healthy
    /// network, a receive buffer too small for the load (`GOSSIP_RECEIVE_BUFFER`).
    pub packets_lost: AtomicU64,
    /// Why the last connection attempt to a peer failed, by peer address; an address leaves
    /// once a connection to it opens (a node that cannot join says why from this).
    failures: Mutex<BTreeMap<String, String>>,
}

impl TransportStats {
    /// Why the last connection attempt to `addr` failed, if it did and none opened since.
    pub fn failure(&self, addr: &str) -> Option<String> {
        self.lock_failures().get(addr).cloned()
    }

    fn set_failure(&self, addr: &str, why: Option<&str>) {
        let mut failures = self.lock_failures();
        match why {
            Some(why) => failures.insert(addr.to_string(), why.to_string()),
            None => failures.remove(addr),
        };
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map is still valid.
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Each peer lane's queue, by peer address and lane.
type Lanes = BTreeMap<(String, Lane), (mpsc::Sender<Queued>, Arc<AtomicUsize>)>;

/// What a transport holds until it is closed.
struct Open {
    endpoint: quinn::Endpoint,
    lanes: Lanes,
}

/// A message queued on a lane; its bytes count against the lane's budget until it is written
/// or dropped.
struct Queued {
    /// The whole frame, shared with the other lanes it was sent on.
    bytes: Bytes,
    lane_bytes: Arc<AtomicUsize>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.lane_bytes.fetch_sub(self.bytes.len(), Ordering::Relaxed);
    }
}

/// The sending half: a queue per peer and lane, each drained by its own task.
pub struct Transport {
    client_config: quinn::ClientConfig,
    /// The endpoint and each peer lane's queue, until `close`; the lock is held only to find
    /// or open a lane.
    open: Mutex<Option<Open>>,
    firewall: Arc<Firewall>,
    stats: Arc<TransportStats>,
    /// The node's runtime, where lane tasks run: a message may be sent from a task of the
    /// Redis front end's own thread (beside a multi-thread runtime), whose runtime must not
    /// own a peer's lane.
    runtime: tokio::runtime::Handle,
}

impl Transport {
    /// A transport dialling from `endpoint` with `client_config` (gossip ALPN); its lanes run
    /// on the runtime it is made on.
    pub fn new(
        endpoint: quinn::Endpoint,
        client_config: quinn::ClientConfig,
        firewall: Arc<Firewall>,
        stats: Arc<TransportStats>,
    ) -> Transport {
        let runtime = tokio::runtime::Handle::current();
        let open = Mutex::new(Some(Open { endpoint, lanes: Lanes::new() }));
        Transport { client_config, open, firewall, stats, runtime }
    }

    /// Lets go of the endpoint and ends every lane (each after the message it is writing; what
    /// it had queued is dropped), and drops what is sent after. The node's QUIC socket closes
    /// only once nothing holds the endpoint, and a stopped node's driver may outlive it in the
    /// hands of a caller.
    pub fn close(&self) {
        drop(self.lock_open().take());
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, Option<Open>> {
        // A poisoned lock only means a panic elsewhere while holding it; what it guards is
        // still valid.
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Encodes each message once, however many peers it goes to (transmits that share a
    /// message come one after another), and queues it for each of its peers. Called after the
    /// driver let go of its lock, so encoding (a delta page is 256 KiB) holds nothing but
    /// this task.
    pub fn send_all(&self, transmits: Vec<Transmit>) {
        let mut last: Option<(Transmit, Bytes)> = None;
        for transmit in transmits {
            let bytes = match last.take() {
                Some((previous, bytes)) if previous.shares_message(&transmit) => bytes,
                _ => match transmit.encode_frame() {
                    Ok(bytes) => Bytes::from(bytes),
                    Err(why) => {
                        tracing::error!(%why, "an outgoing gossip message did not encode (a bug)");
                        continue;
                    }
                },
            };
            self.queue(&transmit, bytes.clone());
            last = Some((transmit, bytes));
        }
    }

    /// Queues an encoded frame for `transmit`'s peer and lane; drops and counts it if the
    /// lane is full.
    fn queue(&self, transmit: &Transmit, bytes: Bytes) {
        let addr = String::from_utf8_lossy(transmit.to.as_bytes()).into_owned();
        let key = (addr, transmit.lane);
        let mut open = self.lock_open();
        let Some(Open { endpoint, lanes }) = open.as_mut() else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if lanes.get(&key).is_none_or(|(queue, _)| queue.is_closed()) {
            let (queue, receiver) = mpsc::channel(LANE_QUEUE_MAX);
            let lane = LaneTask {
                endpoint: endpoint.clone(),
                client_config: self.client_config.clone(),
                addr: key.0.clone(),
                firewall: self.firewall.clone(),
                stats: self.stats.clone(),
            };
            self.runtime.spawn(lane.run(receiver));
            lanes.insert(key.clone(), (queue, Arc::new(AtomicUsize::new(0))));
        }
        let Some((queue, lane_bytes)) = lanes.get(&key) else { return };
        let queued = lane_bytes.load(Ordering::Relaxed);
        if queued > 0 && queued + bytes.len() > LANE_QUEUE_SIZE_MAX {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.stats.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        lane_bytes.fetch_add(bytes.len(), Ordering::Relaxed);
        // A message the queue refuses is dropped here, its bytes released with it.
        if queue.try_send(Queued { bytes, lane_bytes: lane_bytes.clone() }).is_err() {
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
    async fn run(self, mut queue: mpsc::Receiver<Queued>) {
        let mut stream: Option<(quinn::Connection, quinn::SendStream)> = None;
        // Packets of the current connection already counted as lost.
        let mut lost_counted = 0;
        let mut retry_at = Instant::now();
        // A refused cluster key is reported once per run of failures, not every retry.
        let mut refused_reported = false;
        while let Some(message) = queue.recv().await {
            // The transport was closed (the node stops): the rest is not sent.
            if queue.is_closed() {
                break;
            }
            if let Some((connection, _)) =
                stream.as_ref().filter(|(c, _)| c.close_reason().is_some())
            {
                self.count_lost(connection, &mut lost_counted);
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
                        lost_counted = 0;
                        refused_reported = false;
                        self.stats.set_failure(&self.addr, None);
                    }
                    Err(OpenError { why, refused }) => {
                        self.stats.set_failure(&self.addr, Some(&why));
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
            let written = frame::write_frame(send, message.bytes.clone()).await;
            self.count_lost(connection, &mut lost_counted);
            if let Err(why) = written {
                tracing::debug!(peer = %self.addr, %why, "send failed");
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                stream = None;
            }
        }
    }

    /// Adds the packets `connection` lost since the last count (`counted`) to the stats.
    fn count_lost(&self, connection: &quinn::Connection, counted: &mut u64) {
        let lost = connection.stats().path.lost_packets;
        self.stats.packets_lost.fetch_add(lost.saturating_sub(*counted), Ordering::Relaxed);
        *counted = (*counted).max(lost);
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
