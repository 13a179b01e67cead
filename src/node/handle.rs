//! Starting a node and steering it: the endpoint, the driver's tasks, the accept loop that
//! routes connections to gossip or to the RPC front end, and [`NodeHandle`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chorus_proto::{Addr, Config, Name, Node, NodeId};
use rand::RngExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::clock::{Clock, WallClock};
use super::driver::Driver;
use super::front_ends::{FrontEnds, NodeFailure, task_failed};
use super::persist;
use super::ready::{NotReady, Readiness};
use super::timers::run_timers;
use crate::frontend::http::HttpOptions;
use crate::frontend::redis::RedisOptions;
use crate::frontend::rpc;
use crate::gossip::{self, Firewall, Transport, TransportStats};
use crate::store::{DataDirError, Fsync, Persist};
use crate::tls::{self, ALPN_GOSSIP, ALPN_RPC, ClusterKey, Ending, TlsIdentity};

/// The default listen address.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7420";

/// How long a graceful shutdown waits for a peer to take over this node's writes.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a shutdown lets queued messages (the departure announcement) go out.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_millis(300);

/// How often a node that has seeds but has not joined says why, at WARN.
pub const JOIN_WARN_INTERVAL: Duration = Duration::from_secs(5);

/// How long `stop` (and so a shutdown) waits for quinn to close the QUIC socket, which it
/// does once every connection finished closing: three probe timeouts after the close, during
/// which quinn answers a peer's late packets with the close again. Between nodes that
/// exchanged traffic that is a few round trips and the peer's ACK delay (25 ms) thrice; a
/// connection still in its handshake takes nine times `tls::INITIAL_RTT` (450 ms). Room is
/// left for a loaded machine, whose round trips vary more. The bound keeps a SIGTERM's whole
/// shutdown (`--drain`'s 1 s, the leave's 5 s at most, this) under the 10 s that platforms such
/// as Cloud Foundry give before they kill.
pub const QUIC_RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often `stop` looks whether the QUIC socket is closed.
const QUIC_RELEASE_POLL: Duration = Duration::from_millis(10);

/// How a node is started.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Address peers should use, when it differs from the bound one (`0.0.0.0`, NAT).
    pub advertise: Option<String>,
    /// Seed addresses (`host:port`), resolved again on every attempt.
    pub join: Vec<String>,
    /// Name for humans; defaults to the host name and port.
    pub name: Option<String>,
    /// Cluster keys, the first signing; empty means the development key (loopback only).
    pub keys: Vec<ClusterKey>,
    /// Adjusts protocol settings (intervals, limits) before the node starts.
    pub tune: Option<fn(&mut Config)>,
    /// Where the node reads wall time: the system clock, or tokio's for tests in virtual time.
    pub clock: Clock,
    /// Serve the Redis protocol too (off unless given). On a current-thread runtime (as
    /// `chorus node` runs by default) the Redis connections are tasks of it, served only while
    /// it runs: a Redis client that blocks that thread waits forever. On a multi-thread
    /// runtime they run on a thread of their own.
    pub redis: Option<RedisOptions>,
    /// Serve HTTP too: the API, watch, metrics, health and readiness (off unless given).
    pub http: Option<HttpOptions>,
    /// Keep the replica in this directory (`--data-dir`); in memory only when `None`.
    pub data_dir: Option<PathBuf>,
    /// When a write counts as done with a data directory (`--fsync`).
    pub fsync: Fsync,
}

impl NodeOptions {
    /// Options for a node on `listen` with `keys`, joining nobody.
    pub fn new(listen: SocketAddr, keys: Vec<ClusterKey>) -> NodeOptions {
        NodeOptions {
            listen,
            advertise: None,
            join: Vec::new(),
            name: None,
            keys,
            tune: None,
            clock: Clock::System,
            redis: None,
            http: None,
            data_dir: None,
            fsync: Fsync::Always,
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The development key on an address other than loopback.
    #[error(
        "refusing to listen on {0} with the built-in development key: pass --cluster-key \
         (make one with `chorus keygen`) or listen on 127.0.0.1"
    )]
    DevelopmentKeyExposed(SocketAddr),
    /// TLS configuration failed.
    #[error("TLS setup failed")]
    Tls(#[source] crate::tls::TlsError),
    /// Binding the UDP socket failed.
    #[error("cannot bind")]
    Bind(#[source] std::io::Error),
    /// A setting was invalid.
    #[error("{0}")]
    Invalid(String),
    /// A front end could not start.
    #[error("{0}")]
    FrontEnd(String),
    /// The data directory was refused (corrupt, foreign, unreadable); it is left as it is.
    #[error(transparent)]
    DataDir(DataDirError),
}

/// A running node.
pub struct NodeHandle {
    id: NodeId,
    name: String,
    addr: SocketAddr,
    driver: Arc<Driver>,
    ready: watch::Receiver<Readiness>,
    firewall: Arc<Firewall>,
    endpoint: quinn::Endpoint,
    /// The QUIC socket, held by quinn until the endpoint and its connections are gone.
    socket_held: Weak<dyn quinn::AsyncUdpSocket>,
    tasks: Tasks,
    front_ends: FrontEnds,
}

/// A node's own tasks.
struct Tasks {
    /// The driver's timer task, which `failed` watches.
    timers: JoinHandle<()>,
    /// The QUIC accept loop, which `failed` watches (`None` once `failed` reported its end).
    accept: Option<JoinHandle<()>>,
    /// The data directory's writer, which `failed` watches for a panic (`None` once `failed`
    /// saw it end).
    writer: Option<JoinHandle<()>>,
    /// The task that warns until the node joined.
    joining: JoinHandle<()>,
}

impl Tasks {
    fn abort(&self) {
        self.timers.abort();
        self.joining.abort();
        for task in [&self.accept, &self.writer].into_iter().flatten() {
            task.abort();
        }
    }

    /// Returns once every task, aborted before, has dropped its future, and with it what the
    /// future held (the driver, the endpoint).
    async fn ended(self) {
        let Tasks { timers, accept, writer, joining } = self;
        for task in [Some(timers), accept, writer, Some(joining)].into_iter().flatten() {
            // `failed` may have awaited it already: a finished handle must not be polled again.
            if !task.is_finished() {
                let _ = task.await;
            }
        }
    }
}

impl NodeHandle {
    /// Binds, starts the driver and, with seeds, starts joining. Returns once listening. The
    /// node's tasks run on the calling runtime: on a current-thread one, only while it runs
    /// (`chorus node` runs on one unless given `--threads`, [`crate::node_runtime`]).
    pub async fn start(options: NodeOptions) -> Result<NodeHandle, StartError> {
        let keys = cluster_keys(&options)?;
        let identity = TlsIdentity::new(&keys).map_err(StartError::Tls)?;
        let server_config =
            identity.server_config(&[ALPN_GOSSIP, ALPN_RPC]).map_err(StartError::Tls)?;
        let gossip_config = identity.client_config(ALPN_GOSSIP).map_err(StartError::Tls)?;
        let Bound { endpoint, addr, advertised, socket_held } =
            bind(&options, &keys[0], server_config)?;

        // The thread-local generator is not `Send`: draw from it without holding it, so this
        // future can be spawned on any runtime.
        let id = NodeId(rand::rng().random_range(1..u64::MAX));
        let name =
            options.name.clone().unwrap_or_else(|| format!("{}:{}", host_name(), addr.port()));
        let mut config = Config::new(
            id,
            Name::new(name.clone()).map_err(StartError::Invalid)?,
            Addr::new(advertised.clone()).map_err(StartError::Invalid)?,
            rand::rng().random(),
        );
        if let Some(tune) = options.tune {
            tune(&mut config);
        }
        let clock = WallClock::new(options.clock);
        let (node, persist, seeds) =
            protocol_node(&options, &keys, config, clock, addr, &advertised).await?;
        let id = node.id();

        let firewall = Arc::new(Firewall::default());
        let stats = Arc::new(TransportStats::default());
        let transport =
            Transport::new(endpoint.clone(), gossip_config, firewall.clone(), stats.clone());
        let initial = if seeds.is_empty() { Ok(()) } else { Err(NotReady::Joining) };
        let (ready_sender, ready) = watch::channel(initial);
        let driver = Driver::new(node, transport, ready_sender, stats.clone(), clock, persist);
        let tasks = Tasks {
            timers: tokio::spawn(run_timers(driver.clone())),
            accept: Some(tokio::spawn(accept(endpoint.clone(), driver.clone(), firewall.clone()))),
            writer: Some(tokio::spawn(persist::run_writer(driver.clone()))),
            joining: tokio::spawn(warn_until_joined(ready.clone(), seeds, stats)),
        };
        let (redis, http) = (options.redis.as_ref(), options.http.as_ref());
        let front_ends = match FrontEnds::start(redis, http, &driver, &ready).await {
            Ok(front_ends) => front_ends,
            Err(error) => {
                tasks.abort();
                return Err(StartError::FrontEnd(error));
            }
        };
        Ok(NodeHandle {
            id,
            name,
            addr,
            driver,
            ready,
            firewall,
            endpoint,
            socket_held,
            tasks,
            front_ends,
        })
    }

    /// The node's identity.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the Redis front end listens on, when it is served.
    pub fn redis_addr(&self) -> Option<SocketAddr> {
        self.front_ends.redis_addr
    }

    /// The address the HTTP front end listens on, when it is served.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.front_ends.http_addr
    }

    /// The node's operations (the driver's tests; later, front ends served beside the RPC).
    #[cfg(test)]
    pub(crate) fn driver(&self) -> &Arc<Driver> {
        &self.driver
    }

    /// Blocks traffic with other nodes, to cut a cluster in two (demo and tests).
    pub fn firewall(&self) -> &Firewall {
        &self.firewall
    }

    /// Completes once the node is ready (DESIGN 7.1): at once without seeds, else once it has
    /// exchanged state with a peer.
    pub async fn ready(&mut self) {
        let _ = self.ready.wait_for(Result::is_ok).await;
    }

    /// Whether the node is ready now, and why not: the predicate behind the `ready` line.
    pub fn readiness(&self) -> Readiness {
        self.ready.borrow().clone()
    }

    /// A receiver of the node's readiness, for front ends that report it (`/ready`).
    pub fn readiness_watch(&self) -> watch::Receiver<Readiness> {
        self.ready.clone()
    }

    /// Reports not ready (draining) while still serving every request: a load balancer
    /// stops sending before a leave begins to refuse writes.
    pub fn begin_drain(&self) {
        self.driver.begin_drain();
    }

    /// Leaves gracefully: no new writes, a peer takes over this node's writes, departure
    /// announced. Returns whether the handoff finished within `timeout`.
    pub async fn leave(&self, timeout: Duration) -> bool {
        let finished = self.driver.leave();
        matches!(tokio::time::timeout(timeout, finished).await, Ok(Ok(())))
    }

    /// Leaves gracefully, then stops as `stop` does, whose wait for the QUIC socket lets the
    /// close reach the peers: they then drop their connections to this process at once,
    /// instead of sending into them until a successor resets them or they time out.
    pub async fn shutdown(self) -> bool {
        let handed_off = self.leave(LEAVE_TIMEOUT).await;
        tokio::time::sleep(SHUTDOWN_FLUSH).await;
        // Whatever `--fsync` let wait goes to disk now.
        self.driver.commit().await;
        self.stop().await;
        handed_off
    }

    /// Completes if the node stops serving though nobody asked it to, which only a bug can
    /// cause: the driver's timer task ends (a panic in the node, which poisons the driver's
    /// lock, or in the task itself), the QUIC accept loop or a front end's ends, or the data
    /// directory's writer panics. The node then serves nothing, or nothing on that port, or
    /// leaves durable writes waiting, and its process should exit so a supervisor restarts it.
    /// Says why.
    pub async fn failed(&mut self) -> NodeFailure {
        let tasks = &mut self.tasks;
        let timers = async {
            // Polling a finished handle again would panic: a second call says it again.
            if !tasks.timers.is_finished() {
                let _ = (&mut tasks.timers).await;
            }
        };
        tokio::select! {
            () = timers => NodeFailure::Driver,
            why = task_failed(&mut tasks.accept, true) => NodeFailure::Accept(format!("it {why}")),
            why = task_failed(&mut tasks.writer, false) => NodeFailure::Writer(format!("it {why}")),
            failure = self.front_ends.failed() => failure,
        }
    }

    /// Stops at once, as a crash would (no departure, no handoff). Returns once the node's
    /// ports can be bound again (a node restarted in place): the Redis and HTTP listeners are
    /// closed, and so is the QUIC socket, which quinn keeps until every connection finished
    /// closing (three probe timeouts after the close, to answer the peer's late packets with
    /// it), `QUIC_RELEASE_TIMEOUT` at most.
    pub async fn stop(self) {
        let NodeHandle { driver, endpoint, socket_held, tasks, front_ends, .. } = self;
        // Everything is told to stop before the first await, should this future be dropped.
        tasks.abort();
        endpoint.close(0u32.into(), b"node stopping");
        tasks.ended().await;
        front_ends.stop().await;
        // Whoever still holds the driver (a caller's clone) no longer holds the endpoint; the
        // connections' tasks, which hold the socket through their connections, end on the
        // close.
        driver.transport.close();
        drop((driver, endpoint));
        let deadline = tokio::time::Instant::now() + QUIC_RELEASE_TIMEOUT;
        while socket_held.strong_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(QUIC_RELEASE_POLL).await;
        }
        if socket_held.strong_count() > 0 {
            tracing::debug!("the QUIC socket is still open: a connection is still closing");
        }
    }
}

/// A node's QUIC endpoint, bound.
struct Bound {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    advertised: String,
    /// Gone once quinn dropped the socket: `stop` waits for that.
    socket_held: Weak<dyn quinn::AsyncUdpSocket>,
}

/// Binds the QUIC endpoint on `options.listen`.
fn bind(
    options: &NodeOptions,
    key: &ClusterKey,
    server_config: quinn::ServerConfig,
) -> Result<Bound, StartError> {
    // Bound first, so the port is known (port 0) before the endpoint's keys are derived.
    let socket = gossip::bind_socket(options.listen).map_err(StartError::Bind)?;
    let addr = socket.local_addr().map_err(StartError::Bind)?;
    let advertised = options.advertise.clone().unwrap_or_else(|| addr.to_string());
    // The same reset keys as any earlier process on this address: see `endpoint_config`.
    let endpoint_config = tls::endpoint_config(key, &advertised).map_err(StartError::Tls)?;
    let runtime = Arc::new(quinn::TokioRuntime);
    let socket = quinn::Runtime::wrap_udp_socket(&*runtime, socket).map_err(StartError::Bind)?;
    let socket_held = Arc::downgrade(&socket);
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        endpoint_config,
        Some(server_config),
        socket,
        runtime,
    )
    .map_err(StartError::Bind)?;
    Ok(Bound { endpoint, addr, advertised, socket_held })
}

/// The protocol node: restored from the data directory when it holds a state, else new;
/// joining the seeds that are not this node (the data directory's known peers among them).
async fn protocol_node(
    options: &NodeOptions,
    keys: &[ClusterKey],
    config: Config,
    clock: WallClock,
    addr: SocketAddr,
    advertised: &str,
) -> Result<(Node, Option<Persist>, Vec<String>), StartError> {
    let now_ms = clock.now_ms();
    let (mut node, persist, known) = match &options.data_dir {
        Some(dir) => {
            let markers = keys.iter().map(ClusterKey::data_marker).collect();
            let (node, persist, known) =
                persist::open(dir.clone(), options.fsync, markers, config, now_ms)
                    .await
                    .map_err(StartError::DataDir)?;
            (node, Some(persist), known)
        }
        None => (Node::new(config, now_ms), None, Vec::new()),
    };
    let mut join = options.join.clone();
    for peer in known {
        // Kept even if its name does not resolve yet (every pod of a cluster restarting at
        // once): `seeds_of_others` keeps such a seed and it is resolved again on every
        // attempt. Dropped, a node could start with no seed and trust its clock alone.
        if !join.contains(&peer) {
            join.push(peer);
        }
    }
    let seeds = seeds_of_others(&join, addr, advertised).await?;
    if !seeds.is_empty() {
        let addrs = seeds.iter().map(|seed| Addr::new(seed.clone()));
        let addrs = addrs.collect::<Result<Vec<_>, _>>().map_err(StartError::Invalid)?;
        // Read again: opening a large data directory takes seconds, and the first round's
        // clock stamp must be fresh for the clock self-check.
        node.join(clock.now_ms(), addrs);
    }
    Ok((node, persist, seeds))
}

/// The keys a node signs and trusts with: the ones given, or the development key, which may
/// only listen on loopback.
fn cluster_keys(options: &NodeOptions) -> Result<Vec<ClusterKey>, StartError> {
    if !options.keys.is_empty() {
        return Ok(options.keys.clone());
    }
    if !options.listen.ip().is_loopback() {
        return Err(StartError::DevelopmentKeyExposed(options.listen));
    }
    tracing::warn!("no cluster key given: using the built-in development key, loopback only");
    Ok(vec![ClusterKey::development()])
}

/// Accepts connections and routes them by ALPN: gossip to the driver, RPC to the server.
async fn accept(endpoint: quinn::Endpoint, driver: Arc<Driver>, firewall: Arc<Firewall>) {
    while let Some(incoming) = endpoint.accept().await {
        if crate::frontend::test_fault("quic-accept-panic") {
            panic!("test fault: quic-accept-panic");
        }
        if firewall.blocks(&incoming.remote_address()) {
            incoming.refuse();
            continue;
        }
        let (driver, firewall) = (driver.clone(), firewall.clone());
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(why) => {
                    match tls::ending(&why) {
                        Ending::Routine => {
                            tracing::debug!(%remote, %why, "a connection ended in its handshake")
                        }
                        Ending::TimedOut => {
                            tracing::info!(%remote, "a connection timed out in its handshake")
                        }
                        Ending::Fault => {
                            tracing::warn!(%remote, %why, "refused a connection (a wrong cluster key fails here)")
                        }
                    }
                    return;
                }
            };
            let alpn = connection
                .handshake_data()
                .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                .and_then(|data| data.protocol);
            match alpn.as_deref() {
                Some(ALPN_GOSSIP) => {
                    let deliver = move |inbound| driver.message(inbound);
                    gossip::receive_gossip(connection, deliver, firewall).await
                }
                Some(ALPN_RPC) => rpc::serve(connection, driver).await,
                _ => connection.close(1u32.into(), b"unknown protocol"),
            }
        });
    }
}

/// The seeds that are not this node: `--join` may list the node's own address (so that every
/// node can be given the same list), which is skipped. A seed is this node if it is the
/// advertised address, or resolves to the bound address, to the advertised one, or (listening
/// on every interface) to a local address with the bound port.
///
/// A seed that is not `host:port` fails the start (a typo). A host name that does not resolve
/// yet is kept with a WARN: on a platform that starts instances together (a StatefulSet, a Cloud
/// Foundry app), a peer's name exists only once that peer runs, and the transport resolves it
/// again on every attempt.
async fn seeds_of_others(
    join: &[String],
    bound: SocketAddr,
    advertised: &str,
) -> Result<Vec<String>, StartError> {
    let advertised_resolved = gossip::resolve(advertised).await.ok();
    let mut seeds = Vec::new();
    for seed in join {
        let own = seed == advertised
            || match gossip::resolve(seed).await {
                Ok(resolved) => is_own(resolved, bound, advertised_resolved),
                Err(why) if is_host_and_port(seed) => {
                    tracing::warn!(%seed, %why, "seed does not resolve yet: kept, resolved again on every attempt");
                    false
                }
                Err(why) => return Err(StartError::Invalid(why)),
            };
        if own {
            tracing::info!(%seed, "skipping this node's own address in --join");
        } else if !seeds.contains(seed) {
            seeds.push(seed.clone());
        }
    }
    Ok(seeds)
}

/// Whether a seed's resolved address is this node's.
fn is_own(resolved: SocketAddr, bound: SocketAddr, advertised: Option<SocketAddr>) -> bool {
    resolved == bound
        || Some(resolved) == advertised
        || (bound.ip().is_unspecified() && resolved.port() == bound.port() && is_local(resolved))
}

/// Whether `seed` has the shape `host:port` (a name that may resolve later, not a typo).
fn is_host_and_port(seed: &str) -> bool {
    seed.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// Whether `addr`'s IP belongs to this host: binding a socket to it succeeds only then.
fn is_local(addr: SocketAddr) -> bool {
    addr.ip().is_loopback()
        || addr.ip().is_unspecified()
        || std::net::UdpSocket::bind(SocketAddr::new(addr.ip(), 0)).is_ok()
}

/// Logs at WARN, every [`JOIN_WARN_INTERVAL`] until the node has joined, why it has not: each
/// seed's last connection failure, or that it is reachable but has not answered.
async fn warn_until_joined(
    mut ready: watch::Receiver<Readiness>,
    seeds: Vec<String>,
    stats: Arc<TransportStats>,
) {
    let started = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = ready.wait_for(|ready| *ready != Err(NotReady::Joining)) => return,
            () = tokio::time::sleep(JOIN_WARN_INTERVAL) => {}
        }
        let why: Vec<String> = seeds
            .iter()
            .map(|seed| match stats.failure(seed) {
                Some(failure) => format!("{seed}: {failure}"),
                None => format!("{seed}: connected, no answer yet"),
            })
            .collect();
        let waited = started.elapsed().as_secs();
        tracing::warn!(
            waited_s = waited,
            seeds = %why.join("; "),
            "not ready: no seed has answered; is another node of the cluster running?"
        );
    }
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "chorus".to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A QUIC accept loop that ends leaves the node unreachable for peers and clients while
    /// everything else looks well: `failed` says so, and the process exits.
    #[tokio::test]
    async fn a_node_whose_quic_accept_loop_ends_has_failed() {
        let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut node = NodeHandle::start(NodeOptions::new(listen, Vec::new())).await.unwrap();
        // Without a data directory the writer returns at once: no failure.
        let quiet = tokio::time::timeout(Duration::from_millis(500), node.failed()).await;
        assert!(quiet.is_err(), "{quiet:?}");
        // Closing the endpoint ends the loop as a panic in it would, without ending the rest.
        node.endpoint.close(0u32.into(), b"test");
        let failure = tokio::time::timeout(Duration::from_secs(10), node.failed()).await;
        assert!(matches!(failure, Ok(NodeFailure::Accept(_))), "{failure:?}");
        node.stop().await;
    }

    /// A node whose `failed` reported its timer task's end (awaiting that task's handle to
    /// completion) still stops: `stop` does not poll the finished handle again.
    #[tokio::test]
    async fn a_node_stops_after_failed_reported_its_driver() {
        let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut node = NodeHandle::start(NodeOptions::new(listen, Vec::new())).await.unwrap();
        node.tasks.timers.abort();
        let failure = tokio::time::timeout(Duration::from_secs(10), node.failed()).await;
        assert!(matches!(failure, Ok(NodeFailure::Driver)), "{failure:?}");
        node.stop().await;
    }

    /// The writer's panic is a failure; its return (a failed directory, or none) is not.
    #[tokio::test(start_paused = true)]
    async fn a_task_fails_by_panicking_and_by_returning_only_when_that_fails() {
        let mut panicked = Some(tokio::spawn(async { panic!("a bug") }));
        assert!(task_failed(&mut panicked, false).await.contains("a bug"));
        assert!(panicked.is_none(), "reported once");
        let mut returned = Some(tokio::spawn(async {}));
        let waited = Duration::from_millis(200);
        assert!(tokio::time::timeout(waited, task_failed(&mut returned, false)).await.is_err());
        assert!(returned.is_none(), "it ended and was judged no failure");
        let mut returned = Some(tokio::spawn(async {}));
        assert_eq!(task_failed(&mut returned, true).await, "returned");
        // Reported: a second call waits.
        assert!(tokio::time::timeout(waited, task_failed(&mut returned, true)).await.is_err());
    }
}
