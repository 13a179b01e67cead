//! `chorus::Client`: the Rust client of a node's RPC, used by the CLI, the demo and tests.
//!
//! One QUIC connection per client (ALPN `chorus-rpc/1`, mutual TLS from the cluster key).
//! Each request in flight has a bidirectional stream of its own, so concurrent requests do not
//! queue behind one another; a stream whose exchange completed is kept for the next request,
//! because opening, accepting and closing a stream per request cost more than the request.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_proto::rpc::{Change, MemberInfo, Request, Response, RpcError, StatsReport, WaitReport};
use chorus_proto::{DataError, Key, Stamp, Value, WaitLevel};

use crate::frame::{self, FrameError};
use crate::gossip;
use crate::tls::{self, ALPN_RPC, ClusterKey, SERVER_NAME, TlsIdentity, tls_alert};

/// How long connecting to a node may take.
pub const CLIENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Handshakes `connect_many` runs at once.
pub const CONNECT_WAVE_MAX: usize = 64;

/// Extra time a request waits beyond a write's own wait timeout before giving up on the node.
pub const REQUEST_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);

/// Idle request streams a client keeps for reuse: its recent peak of concurrent requests, up
/// to this many. Each holds one of the node's stream credits (quinn allows 100 by default).
pub const IDLE_STREAMS_MAX: usize = 64;

/// How long [`Client::close`] waits for the close to reach the node: enough for the close
/// packet to go out, far less than a command takes.
pub const CLOSE_TIMEOUT: Duration = Duration::from_millis(50);

/// A request stream between two exchanges.
type Stream = (quinn::SendStream, quinn::RecvStream);

/// Why a client call failed. The messages say what to do next where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached.
    #[error("node unreachable: {0}")]
    Unreachable(String),
    /// The node refused this client's credentials (wrong cluster key).
    #[error("unauthorised: the node refused this cluster key ({0})")]
    Unauthorised(String),
    /// A key or value was invalid before anything was sent.
    #[error(transparent)]
    Invalid(DataError),
    /// The node answered with an error.
    #[error("{0}")]
    Rpc(RpcError),
    /// The node answered something unexpected.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Options of a write.
#[derive(Clone, Copy, Debug)]
pub struct WriteOptions {
    /// Time to live (puts only).
    pub ttl: Option<Duration>,
    /// How many nodes must hold the write before the call returns.
    pub wait: WaitLevel,
    /// How long to wait for them.
    pub timeout: Duration,
}

impl Default for WriteOptions {
    fn default() -> WriteOptions {
        WriteOptions { ttl: None, wait: WaitLevel::Local, timeout: Duration::from_secs(5) }
    }
}

/// The result of a write.
#[derive(Clone, Debug)]
pub struct WriteResult {
    /// The write's stamp.
    pub stamp: Stamp,
    /// Who confirmed it, when a wait level was asked for.
    pub wait: Option<WaitReport>,
}

/// A connection to one node.
pub struct Client {
    connection: quinn::Connection,
    idle: Mutex<Vec<Stream>>,
    _endpoint: quinn::Endpoint,
}

impl Client {
    /// Connects to the node at `addr` (`host:port`) with `keys` (empty: the development key),
    /// giving up after [`CLIENT_CONNECT_TIMEOUT`].
    pub async fn connect(addr: &str, keys: &[ClusterKey]) -> Result<Client, ClientError> {
        Client::connect_within(addr, keys, CLIENT_CONNECT_TIMEOUT).await
    }

    /// Connects like [`Client::connect`], giving up after `timeout` (`--connect-timeout`).
    pub async fn connect_within(
        addr: &str,
        keys: &[ClusterKey],
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let mut clients = Client::open(addr, keys, 1, timeout, None).await?;
        // Invariant: connect_many returns `count` clients or an error.
        clients.pop().ok_or_else(|| ClientError::Protocol("no connection".into()))
    }

    /// Opens `count` clients of the node at `addr`, each with a connection of its own, all
    /// from one local endpoint (one UDP socket, one TLS identity): what a load generator
    /// such as `chorus bench` needs, without a socket and a certificate per connection. Their
    /// connections live under the nodes' idle timeout (`tls::load_transport_config`).
    pub async fn connect_many(
        addr: &str,
        keys: &[ClusterKey],
        count: usize,
    ) -> Result<Vec<Client>, ClientError> {
        let transport = Some(tls::load_transport_config());
        Client::open(addr, keys, count, CLIENT_CONNECT_TIMEOUT, transport).await
    }

    /// Whether the client's connection is closed: every request would fail at once.
    pub fn is_closed(&self) -> bool {
        self.connection.close_reason().is_some()
    }

    /// `count` clients; `transport` replaces the clients' usual one.
    async fn open(
        addr: &str,
        keys: &[ClusterKey],
        count: usize,
        timeout: Duration,
        transport: Option<Arc<quinn::TransportConfig>>,
    ) -> Result<Vec<Client>, ClientError> {
        let target = gossip::resolve(addr).await.map_err(ClientError::Unreachable)?;
        let keys = if keys.is_empty() { vec![ClusterKey::development()] } else { keys.to_vec() };
        let identity = TlsIdentity::new(&keys).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut config =
            identity.client_config(ALPN_RPC).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if let Some(transport) = transport {
            config.transport_config(transport);
        }
        let bind: SocketAddr =
            if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let endpoint =
            client_endpoint(bind).map_err(|e| ClientError::Unreachable(e.to_string()))?;
        // Handshakes go in waves of `CONNECT_WAVE_MAX`, awaited in order, each for at most
        // `timeout` from when the one before it finished, not from its own start: 500
        // handshakes sharing one 5 s deadline timed out on 2 cores although the node served
        // every client, and so did some of a wave of 64 on 2 cores under a load of 12, while
        // the others went on finishing. A node that answers none fails the first after
        // `timeout`. No deadline bounds the whole: a node that keeps finishing handshakes is
        // alive, however loaded (a cap of `timeout` per wave failed 2 of 10 runs under that
        // load).
        let mut clients = Vec::with_capacity(count);
        while clients.len() < count {
            let wave = (count - clients.len()).min(CONNECT_WAVE_MAX);
            let mut connecting = Vec::with_capacity(wave);
            for _ in 0..wave {
                let attempt = endpoint
                    .connect_with(config.clone(), target, SERVER_NAME)
                    .map_err(|e| ClientError::Unreachable(e.to_string()))?;
                connecting.push(attempt);
            }
            // The handshakes of a wave run concurrently: the connection driver tasks make
            // progress on all of them while this awaits the first.
            for attempt in connecting {
                let connection = match tokio::time::timeout(timeout, attempt).await {
                    Err(_) => return Err(ClientError::Unreachable(format!("{addr}: no answer"))),
                    Ok(Err(error)) => return Err(connection_error(addr, &error)),
                    Ok(Ok(connection)) => connection,
                };
                let idle = Mutex::new(Vec::new());
                clients.push(Client { connection, idle, _endpoint: endpoint.clone() });
            }
        }
        Ok(clients)
    }

    /// Sends one request and reads its response, waiting at most `timeout`.
    pub async fn request(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        // A stream goes back to the pool only after a complete exchange; one abandoned halfway
        // (an error, or the timeout dropping this future) is dropped, which resets it, so a
        // late answer can never be read as the answer to another request.
        let exchange = async {
            let (mut send, mut recv) = match self.take_idle() {
                Some(stream) => stream,
                None => self.connection.open_bi().await.map_err(|e| self.failed(e.to_string()))?,
            };
            frame::write(&mut send, request).await.map_err(|e| self.frame_failed(e))?;
            let response =
                frame::read::<Response>(&mut recv).await.map_err(|e| self.frame_failed(e))?;
            // The node ends a stream after a request it could not read (answered with
            // `InvalidRequest`, as are a few others): such a stream is not reused.
            if !matches!(response, Response::Error(RpcError::InvalidRequest(_))) {
                self.keep_idle((send, recv));
            }
            Ok(response)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(Response::Error(error))) => Err(ClientError::Rpc(error)),
            Ok(result) => result,
            Err(_) => Err(ClientError::Rpc(RpcError::Timeout)),
        }
    }

    /// The live value of `key` and its stamp, or `None` if absent.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<(Value, Stamp)>, ClientError> {
        let key = Key::new(key).map_err(ClientError::Invalid)?;
        match self.request(&Request::Get { key }, REQUEST_TIMEOUT_MARGIN).await {
            Ok(Response::Value { value, stamp }) => Ok(Some((value, stamp))),
            Err(ClientError::Rpc(RpcError::NotFound)) => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    /// Writes `value` under `key`.
    pub async fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: WriteOptions,
    ) -> Result<WriteResult, ClientError> {
        let key = Key::new(key).map_err(ClientError::Invalid)?;
        let value = Value::new(value).map_err(ClientError::Invalid)?;
        let ttl_ms = options.ttl.map(|ttl| ttl.as_millis().try_into().unwrap_or(u64::MAX));
        let timeout_ms = duration_ms(options.timeout);
        let request = Request::Put { key, value, ttl_ms, wait: options.wait, timeout_ms };
        self.write(&request, options.timeout).await
    }

    /// Deletes `key`.
    pub async fn delete(
        &self,
        key: impl AsRef<[u8]>,
        options: WriteOptions,
    ) -> Result<WriteResult, ClientError> {
        let key = Key::new(key).map_err(ClientError::Invalid)?;
        let request =
            Request::Delete { key, wait: options.wait, timeout_ms: duration_ms(options.timeout) };
        self.write(&request, options.timeout).await
    }

    async fn write(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> Result<WriteResult, ClientError> {
        match self.request(request, timeout + REQUEST_TIMEOUT_MARGIN).await {
            Ok(Response::Written { stamp, wait }) => Ok(WriteResult { stamp, wait }),
            other => Err(unexpected(other)),
        }
    }

    /// Up to `limit` live keys starting with `prefix`, after `start_after`; and whether more
    /// follow.
    pub async fn list(
        &self,
        prefix: impl AsRef<[u8]>,
        start_after: Option<&[u8]>,
        limit: u32,
    ) -> Result<(Vec<Key>, bool), ClientError> {
        let start_after = start_after.map(Key::new).transpose().map_err(ClientError::Invalid)?;
        let request = Request::List { prefix: prefix.as_ref().to_vec(), start_after, limit };
        match self.request(&request, REQUEST_TIMEOUT_MARGIN).await {
            Ok(Response::Keys { keys, more }) => Ok((keys, more)),
            other => Err(unexpected(other)),
        }
    }

    /// The members as the node sees them.
    pub async fn members(&self) -> Result<Vec<MemberInfo>, ClientError> {
        match self.request(&Request::Members, REQUEST_TIMEOUT_MARGIN).await {
            Ok(Response::Members(members)) => Ok(members),
            other => Err(unexpected(other)),
        }
    }

    /// The node's counters.
    pub async fn stats(&self) -> Result<StatsReport, ClientError> {
        match self.request(&Request::Stats, REQUEST_TIMEOUT_MARGIN).await {
            Ok(Response::Stats(stats)) => Ok(*stats),
            other => Err(unexpected(other)),
        }
    }

    /// Watches changes to keys starting with `prefix`, after `cursor` if given (resuming a
    /// previous watch) or from now.
    pub async fn watch(
        &self,
        prefix: impl AsRef<[u8]>,
        after: Option<u64>,
    ) -> Result<Watch, ClientError> {
        let (mut send, mut recv) =
            self.connection.open_bi().await.map_err(|e| self.failed(e.to_string()))?;
        let request = Request::Watch { prefix: prefix.as_ref().to_vec(), after };
        frame::write(&mut send, &request).await.map_err(|e| self.frame_failed(e))?;
        let _ = send.finish();
        match frame::read::<Response>(&mut recv).await.map_err(|e| self.frame_failed(e))? {
            Response::Watching => Ok(Watch { recv }),
            Response::Error(error) => Err(ClientError::Rpc(error)),
            other => Err(ClientError::Protocol(format!("unexpected answer {other:?}"))),
        }
    }

    /// Closes the connection and gives the close a moment to reach the node. A process that
    /// exits without it leaves the node holding the connection (its streams, buffers and
    /// tasks) until the idle timeout, 30 s later: thousands of one-shot CLI commands then
    /// add up. Dropping a `Client` closes it too, but only a runtime that goes on running
    /// sends the close.
    pub async fn close(self) {
        self.connection.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self._endpoint.wait_idle()).await;
    }

    fn take_idle(&self) -> Option<Stream> {
        self.lock_idle().pop()
    }

    fn keep_idle(&self, (mut send, recv): Stream) {
        let mut idle = self.lock_idle();
        if idle.len() < IDLE_STREAMS_MAX {
            idle.push((send, recv));
        } else {
            drop(idle);
            // Finishing tells the node this stream is done; reading to its end is not needed.
            let _ = send.finish();
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Stream>> {
        // A poisoned lock only means a panic elsewhere while holding it; the pool is still
        // a valid list of streams.
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Turns a stream failure into the reason the connection closed, if it did: a refused
    /// certificate shows up on the first stream, not at connect.
    fn failed(&self, why: String) -> ClientError {
        match self.connection.close_reason() {
            Some(error) => connection_error("node", &error),
            None => ClientError::Unreachable(why),
        }
    }

    fn frame_failed(&self, error: FrameError) -> ClientError {
        match error {
            FrameError::Codec(error) => ClientError::Protocol(error.to_string()),
            other => self.failed(other.to_string()),
        }
    }
}

/// A stream of changes.
pub struct Watch {
    recv: quinn::RecvStream,
}

impl Watch {
    /// The next change; `None` when the node closed the watch.
    pub async fn next(&mut self) -> Option<Result<Change, ClientError>> {
        match frame::read::<Response>(&mut self.recv).await {
            Ok(Response::Change(change)) => Some(Ok(change)),
            Ok(Response::Error(error)) => Some(Err(ClientError::Rpc(error))),
            Ok(other) => Some(Err(ClientError::Protocol(format!("unexpected answer {other:?}")))),
            Err(FrameError::Closed) => None,
            Err(error) => Some(Err(ClientError::Unreachable(error.to_string()))),
        }
    }
}

/// A client endpoint on `bind`. Its socket asks for the nodes' receive buffer, silently
/// (every CLI command opens one): `chorus bench` runs hundreds of connections through it, and
/// handshake packets dropped by a full buffer wait out loss timers.
fn client_endpoint(bind: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let (socket, _granted) = gossip::bind_buffered(bind)?;
    let runtime = Arc::new(quinn::TokioRuntime);
    quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
}

fn connection_error(addr: &str, error: &quinn::ConnectionError) -> ClientError {
    match tls_alert(error) {
        Some(alert) => ClientError::Unauthorised(format!("{addr}: TLS alert {alert}")),
        None if matches!(error, quinn::ConnectionError::TimedOut) => {
            ClientError::Unreachable(format!("{addr}: no answer"))
        }
        None => ClientError::Unreachable(format!("{addr}: {error}")),
    }
}

fn unexpected(result: Result<Response, ClientError>) -> ClientError {
    match result {
        Err(error) => error,
        Ok(other) => ClientError::Protocol(format!("unexpected answer {other:?}")),
    }
}

fn duration_ms(duration: Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeHandle, NodeOptions};

    async fn node() -> NodeHandle {
        let options = NodeOptions::new(([127, 0, 0, 1], 0).into(), Vec::new());
        NodeHandle::start(options).await.expect("a node on loopback")
    }

    fn text(found: Option<(Value, Stamp)>) -> Option<String> {
        found.map(|(value, _)| String::from_utf8_lossy(value.as_bytes()).into_owned())
    }

    #[tokio::test]
    async fn streams_are_reused_and_every_answer_matches_its_request() {
        let node = node().await;
        let client = Client::connect(&node.addr().to_string(), &[]).await.expect("connect");
        // One at a time: each read sees the write before it (read-your-writes).
        for round in 0..200 {
            let value = format!("v{round}");
            client.put("k", &value, WriteOptions::default()).await.expect("put");
            assert_eq!(text(client.get("k").await.expect("get")), Some(value));
        }
        assert_eq!(client.lock_idle().len(), 1, "one stream served every sequential request");

        // More at once than the pool keeps and than the node's stream credit (100).
        let requests = (0..150).map(|index| {
            let client = &client;
            async move {
                let key = format!("key/{index}");
                client.put(&key, &key, WriteOptions::default()).await.expect("put");
                (text(client.get(&key).await.expect("get")), key)
            }
        });
        for (found, key) in futures_join(requests).await {
            assert_eq!(found, Some(key));
        }
        let idle = client.lock_idle().len();
        assert!((2..=IDLE_STREAMS_MAX).contains(&idle), "{idle} idle streams");
        node.stop().await;
    }

    #[tokio::test]
    async fn an_abandoned_request_does_not_answer_the_next_one() {
        let node = node().await;
        let client = Client::connect(&node.addr().to_string(), &[]).await.expect("connect");
        client.put("k", "old", WriteOptions::default()).await.expect("put");
        // A request abandoned after it went out (a caller's timeout drops the future there).
        let get = Request::Get { key: Key::new("k").expect("a key") };
        let mut abandoned = Box::pin(client.request(&get, REQUEST_TIMEOUT_MARGIN));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(abandoned.as_mut().poll(&mut context).is_pending(), "no answer without waiting");
        drop(abandoned);
        client.put("k", "new", WriteOptions::default()).await.expect("put");
        assert_eq!(text(client.get("k").await.expect("get")), Some("new".into()));
        node.stop().await;
    }

    /// Runs the futures concurrently on this task and returns their outputs in order.
    async fn futures_join<F: std::future::Future>(
        futures: impl Iterator<Item = F>,
    ) -> Vec<F::Output> {
        let mut pending: Vec<_> = futures.map(Box::pin).collect();
        let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
        std::future::poll_fn(|context| {
            let mut done = true;
            for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
                if output.is_none() {
                    match future.as_mut().poll(context) {
                        std::task::Poll::Ready(value) => *output = Some(value),
                        std::task::Poll::Pending => done = false,
                    }
                }
            }
            if done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
        })
        .await;
        outputs.into_iter().flatten().collect()
    }
}
