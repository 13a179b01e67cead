//! The node's TCP front ends as the node runs them: Redis as a task of the node's runtime when that
//! runtime is one thread (`chorus node` by default), else on a thread of its own; HTTP as a task.
//! [`FrontEnds::failed`] reports either one ending when nobody asked it to (a panic, an accept loop
//! that returned); [`FrontEnds::stop`] ends both and returns once their listeners are closed, so
//! their ports can be bound again at once (a node restarted in place on the same `--redis` and
//! `--http` addresses).

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::driver::Driver;
use super::ready::Readiness;
use crate::frontend::http::{self, HttpOptions};
use crate::frontend::redis::{self, RedisOptions, Server};

/// How long stopping waits for a front end to close its listener and drop its connections.
/// The Redis front end only has to finish the step it is in (one batch, or one page of a long
/// command, each one short hold of the lock); past this, the stop is logged and goes on.
pub const FRONT_END_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a node that was not asked to stop no longer serves as it should
/// ([`super::NodeHandle::failed`]).
#[derive(Clone, Debug, thiserror::Error)]
pub enum NodeFailure {
    /// The driver's timer task ended: a panic in the node (which poisons its lock) or in it.
    #[error("the node's driver stopped (a panic in the node or its timer task)")]
    Driver,
    /// The Redis front end's accept loop ended (its task's, or its thread's).
    #[error("the Redis front end stopped: {0}")]
    Redis(String),
    /// The HTTP front end's task ended.
    #[error("the HTTP front end stopped: {0}")]
    Http(String),
    /// The QUIC accept loop ended (a panic, or quinn closing the endpoint on a fatal socket
    /// error): no peer, CLI or client can connect any more.
    #[error("the node's QUIC accept loop stopped (no peer or client can connect): {0}")]
    Accept(String),
    /// The data directory's writer task panicked: writes waiting to be durable would wait
    /// forever. (It also ends when the directory fails, a panic in the blocking write
    /// included, which is no failure of the node: readiness reports it, and the node goes on
    /// serving from memory.)
    #[error("the data directory's writer stopped: {0}")]
    Writer(String),
}

/// How the Redis thread's serving ended.
enum Ended {
    /// Stopped, as asked.
    Stopped,
    /// The accept loop returned.
    Returned,
    /// The accept loop panicked (a connection's panic ends that connection only).
    Panicked(String),
}

/// Where the Redis front end runs.
enum Redis {
    /// A task of the node's runtime, which is one thread (`chorus node` by default): the
    /// connections, the sends their writes settle and the node's other tasks then take turns
    /// on it, with no wake-up of another thread between them. `None` once it ended and was
    /// reported.
    Task(Option<JoinHandle<()>>),
    /// A thread of its own, beside a runtime of several workers (`chorus node --threads N`, a
    /// node embedded in a multi-threaded program).
    Thread(RedisThread),
}

/// The Redis front end's thread.
struct RedisThread {
    /// Asks the thread to stop.
    stop: oneshot::Sender<()>,
    /// Says how its serving ended, once its runtime (listener and connections) is dropped;
    /// `None` once received.
    ended: Option<oneshot::Receiver<Ended>>,
    thread: std::thread::JoinHandle<()>,
}

/// The front ends a node serves.
#[derive(Default)]
pub struct FrontEnds {
    redis: Option<Redis>,
    http: Option<JoinHandle<()>>,
    /// Where the Redis front end listens, when served.
    pub redis_addr: Option<SocketAddr>,
    /// Where the HTTP front end listens, when served.
    pub http_addr: Option<SocketAddr>,
}

impl FrontEnds {
    /// Starts the front ends asked for; if one fails, stops those started and says why.
    pub async fn start(
        redis: Option<&RedisOptions>,
        http: Option<&HttpOptions>,
        driver: &Arc<Driver>,
        ready: &watch::Receiver<Readiness>,
    ) -> Result<FrontEnds, String> {
        let mut front_ends = FrontEnds::default();
        let started = match front_ends.serve_redis(redis, driver).await {
            Ok(addr) => {
                front_ends.redis_addr = addr;
                front_ends.serve_http(http, driver, ready).await
            }
            Err(error) => Err(error),
        };
        match started {
            Ok(addr) => {
                front_ends.http_addr = addr;
                Ok(front_ends)
            }
            Err(error) => {
                front_ends.stop().await;
                Err(error)
            }
        }
    }

    /// Starts the Redis front end when asked for; its address.
    async fn serve_redis(
        &mut self,
        options: Option<&RedisOptions>,
        driver: &Arc<Driver>,
    ) -> Result<Option<SocketAddr>, String> {
        let Some(options) = options else { return Ok(None) };
        let (listener, server) = redis::bind(options, driver.clone()).await?;
        let addr = server.addr();
        let flavor = tokio::runtime::Handle::current().runtime_flavor();
        if flavor == tokio::runtime::RuntimeFlavor::CurrentThread {
            self.redis = Some(Redis::Task(Some(tokio::spawn(redis::serve(listener, server)))));
            return Ok(Some(addr));
        }
        // Beside several runtime workers, the Redis connections run on a thread of their own,
        // like Redis's one event loop: they do not contend with each other for the node's lock
        // from two runtime threads.
        let failed = |error: std::io::Error| format!("Redis front end: {error}");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        // A runtime must not be dropped in an async context, as it would be here if what
        // follows failed: it is then leaked, and the node fails to start.
        let runtime = std::mem::ManuallyDrop::new(runtime.map_err(failed)?);
        let listener = {
            // Moved to the thread's runtime before the thread starts, so a failure stops the
            // node.
            let _entered = runtime.enter();
            listener.into_std().and_then(TcpListener::from_std).map_err(failed)?
        };
        let (stop, stopped) = oneshot::channel();
        let (ended_sender, ended) = oneshot::channel();
        let thread = std::thread::Builder::new().name("chorus-redis".into()).spawn(move || {
            let runtime = std::mem::ManuallyDrop::into_inner(runtime);
            let ended = run_redis(&runtime, listener, server, stopped);
            // Dropped on its own thread, never in an async context: the listener and every
            // connection close before the node hears that the thread ended.
            drop(runtime);
            let _ = ended_sender.send(ended);
        });
        let thread = thread.map_err(failed)?;
        self.redis = Some(Redis::Thread(RedisThread { stop, ended: Some(ended), thread }));
        Ok(Some(addr))
    }

    /// Starts the HTTP front end when asked for; its address.
    async fn serve_http(
        &mut self,
        options: Option<&HttpOptions>,
        driver: &Arc<Driver>,
        ready: &watch::Receiver<Readiness>,
    ) -> Result<Option<SocketAddr>, String> {
        let Some(options) = options else { return Ok(None) };
        let (listener, server) = http::bind(options, driver.clone(), ready.clone()).await?;
        let addr = listener.local_addr().map_err(|error| error.to_string())?;
        self.http = Some(tokio::spawn(http::serve(listener, server)));
        Ok(Some(addr))
    }

    /// Completes when a front end ends though it was not asked to stop: why.
    pub async fn failed(&mut self) -> NodeFailure {
        tokio::select! {
            failure = redis_failed(&mut self.redis) => failure,
            failure = http_failed(&mut self.http) => failure,
        }
    }

    /// Stops every front end; returns once their listeners are closed (each waited for at
    /// most [`FRONT_END_STOP_TIMEOUT`]).
    pub async fn stop(self) {
        if let Some(task) = self.http {
            stop_task(task, "HTTP").await;
        }
        match self.redis {
            None => {}
            Some(Redis::Task(None)) => {}
            Some(Redis::Task(Some(task))) => stop_task(task, "Redis").await,
            Some(Redis::Thread(redis)) => stop_thread(redis).await,
        }
    }
}

/// Aborts a front end's task and waits until it is dropped, its listener with it.
async fn stop_task(task: JoinHandle<()>, name: &str) {
    task.abort();
    // An aborted task's future, and the listener in it, is dropped before its handle
    // completes.
    if tokio::time::timeout(FRONT_END_STOP_TIMEOUT, task).await.is_err() {
        tracing::warn!("the {name} front end did not stop in time; going on");
    }
}

/// Asks the Redis thread to stop and joins it once its runtime is dropped.
async fn stop_thread(redis: RedisThread) {
    let _ = redis.stop.send(());
    let ended = match redis.ended {
        Some(ended) => tokio::time::timeout(FRONT_END_STOP_TIMEOUT, ended).await.is_ok(),
        None => true,
    };
    if ended {
        // The thread has dropped its runtime and sent its last word: what is left of it is its
        // exit, so this join does not hold the caller's worker.
        let _ = redis.thread.join();
    } else {
        tracing::warn!("the Redis front end's thread did not stop in time; going on");
    }
}

/// Serves Redis on the thread's `runtime` until asked to stop, the accept loop returns, or it
/// panics. A dropped stop signal (a `NodeHandle` dropped without `stop`) is not a stop: the
/// thread then serves on, as the node's tasks do.
fn run_redis(
    runtime: &tokio::runtime::Runtime,
    listener: TcpListener,
    server: Arc<Server>,
    stopped: oneshot::Receiver<()>,
) -> Ended {
    let served = std::panic::catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(async move {
            tokio::select! {
                () = redis::serve(listener, server) => Ended::Returned,
                Ok(()) = stopped => Ended::Stopped,
            }
        })
    }));
    served.unwrap_or_else(|panic| Ended::Panicked(panic_message(panic.as_ref())))
}

/// Completes when the Redis front end ends by itself; never without one.
async fn redis_failed(redis: &mut Option<Redis>) -> NodeFailure {
    match redis {
        None => std::future::pending().await,
        Some(Redis::Task(task)) => {
            NodeFailure::Redis(format!("its accept loop {}", task_failed(task, true).await))
        }
        Some(Redis::Thread(thread)) => thread_failed(thread).await,
    }
}

/// Completes when the Redis thread ends by itself; never once reported.
async fn thread_failed(redis: &mut RedisThread) -> NodeFailure {
    let Some(ended) = redis.ended.as_mut() else { return std::future::pending().await };
    let why = match ended.await {
        Ok(Ended::Returned) => "its accept loop returned".to_string(),
        Ok(Ended::Panicked(message)) => format!("its accept loop panicked: {message}"),
        Ok(Ended::Stopped) => "it was stopped".to_string(),
        Err(_) => "its thread ended without a word".to_string(),
    };
    redis.ended = None;
    NodeFailure::Redis(why)
}

/// Completes when the HTTP task ends by itself; never without one.
async fn http_failed(http: &mut Option<JoinHandle<()>>) -> NodeFailure {
    NodeFailure::Http(format!("its accept loop {}", task_failed(http, true).await))
}

/// Completes when `task` ends by a panic (or is cancelled, which only an abort or the runtime's
/// shutdown does), or by returning when `returning_fails`; says how ("returned", "panicked:
/// ..."). Never completes without a task, or once it reported (the handle is taken then:
/// polling a finished one again would panic).
pub(super) async fn task_failed(
    task: &mut Option<JoinHandle<()>>,
    returning_fails: bool,
) -> String {
    let Some(handle) = task.as_mut() else { return std::future::pending().await };
    let ended = handle.await;
    *task = None;
    match ended {
        Ok(()) if !returning_fails => std::future::pending().await,
        Ok(()) => "returned".to_string(),
        Err(error) if error.is_panic() => {
            format!("panicked: {}", panic_message(error.into_panic().as_ref()))
        }
        Err(error) => format!("ended: {error}"),
    }
}

/// A panic's message, when it has one.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}
