//! The Redis front end (`chorus node --redis ADDR`): RESP2 and RESP3 on TCP, translated onto
//! the node's operations, so that every language's Redis client, and the frameworks that
//! keep caches and sessions through one, use a chorus node by changing a host and a port.
//!
//! - `connection`: one task per client: reads requests, runs them, writes replies; MULTI,
//!   pub/sub mode, authentication, the output bound.
//! - `server`: connection and server commands (PING, HELLO, AUTH, SELECT, INFO, CLIENT...).
//! - `strings`, `hashes`, `keys`: data commands, each run in one session of the node.
//! - `whole`: commands on a whole key (DEL, the expiry commands, RENAME, HGETALL...) when the
//!   key is a large hash, outside MULTI: a page of its fields per hold of the lock.
//! - `scan`: KEYS, SCAN, DBSIZE, FLUSHDB, FLUSHALL over a database, page by page.
//!
//! The commands that work over many holds of the lock (`scan`, `whole`) yield the thread that
//! serves Redis after each page, so the node's other Redis clients (and, in a `chorus node` of one
//! thread, the default, its gossip and timers) are served while they run.
//! - `pubsub`: keyspace notifications fed by the node's watch stream.
//!
//! The protocol's codec and limits live in `chorus_proto::resp`; databases and hash fields
//! map onto entry names in `chorus_proto::keyspace`.

mod batch;
mod command;
mod connection;
mod glob;
mod hashes;
mod keys;
mod output;
mod pubsub;
mod scan;
mod server;
mod strings;
mod whole;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::node::{Driver, Purpose};
use command::DataFn;

/// Client connections one node serves at once; more wait to be accepted.
pub const REDIS_CONNECTIONS_MAX: usize = 1024;

/// Long commands (the database walks, whole-key commands on a large hash) running at once on
/// one node. They yield between pages so other clients are served, but each may gather a
/// large reply (up to `REDIS_OUTPUT_MAX`, or a million keys for `KEYS`): one at a time keeps
/// that memory to one reply's worth, as when they did not yield (found in review: 1,024
/// connections each running `KEYS *` could exhaust memory). The others wait their turn.
pub const REDIS_LONG_COMMANDS_MAX: usize = 1;

/// How a node serves Redis.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// Address to listen on (TCP); port 0 picks a free port.
    pub listen: SocketAddr,
    /// The password clients must give (`AUTH`, `HELLO ... AUTH`); required to listen on an
    /// address other than loopback.
    pub password: Option<String>,
}

/// What every connection of one node's Redis front end shares.
pub struct Server {
    driver: Arc<Driver>,
    password: Option<String>,
    addr: SocketAddr,
    cursors: Mutex<scan::Cursors>,
    notify: Mutex<pubsub::NotifyFlags>,
    next_client_id: AtomicU64,
    connected: AtomicU64,
    /// Turns of the long commands (`REDIS_LONG_COMMANDS_MAX`).
    long: Semaphore,
}

impl Server {
    /// The address clients reach this front end at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A long command's turn (`REDIS_LONG_COMMANDS_MAX`), held until dropped.
    async fn long_turn(&self) -> tokio::sync::SemaphorePermit<'_> {
        // Invariant: the semaphore is never closed.
        self.long.acquire().await.expect("never closed")
    }
}

/// Binds the Redis listener; refuses an address other than loopback without a password.
pub async fn bind(
    options: &RedisOptions,
    driver: Arc<Driver>,
) -> Result<(TcpListener, Arc<Server>), String> {
    if !options.listen.ip().is_loopback() && options.password.is_none() {
        return Err(format!(
            "refusing to serve Redis on {} without a password: pass --redis-password (or \
             CHORUS_REDIS_PASSWORD), or listen on 127.0.0.1",
            options.listen
        ));
    }
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|error| format!("cannot bind Redis to {}: {error}", options.listen))?;
    let addr = listener.local_addr().map_err(|error| error.to_string())?;
    let server = Server {
        driver,
        password: options.password.clone(),
        addr,
        cursors: Mutex::default(),
        notify: Mutex::default(),
        next_client_id: AtomicU64::new(1),
        connected: AtomicU64::new(0),
        long: Semaphore::new(REDIS_LONG_COMMANDS_MAX),
    };
    Ok((listener, Arc::new(server)))
}

/// Accepts clients until it is stopped (its task aborted, or its thread's runtime dropped), at
/// most [`REDIS_CONNECTIONS_MAX`] at once. A connection that panics ends alone, logged; the
/// loop itself returns only on a test fault.
pub async fn serve(listener: TcpListener, server: Arc<Server>) {
    let permits = Arc::new(Semaphore::new(REDIS_CONNECTIONS_MAX));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Reap finished connections so the set stays as small as the live ones.
        while let Some(ended) = connections.try_join_next() {
            if let Err(error) = ended
                && error.is_panic()
            {
                tracing::error!(%error, "a Redis connection panicked: it is closed, the others go on");
            }
        }
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let (stream, peer) = super::accept(&listener, "redis").await;
        if super::test_fault("redis-accept-panic") {
            panic!("test fault: the Redis accept loop panics");
        }
        if super::test_fault("redis-accept-return") {
            return;
        }
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        connections.spawn(async move {
            let _open = server.driver.metrics().connection("redis");
            server.connected.fetch_add(1, Ordering::Relaxed);
            connection::Connection::new(server.clone()).run(stream).await;
            server.connected.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(%peer, "redis client gone");
            drop(permit);
        });
    }
}

/// The data commands: name (upper case), what runs it, and why it takes the lock.
static DATA_COMMANDS: &[(&str, DataFn, Purpose)] = &[
    ("GET", strings::get, Purpose::Read),
    ("MGET", strings::mget, Purpose::Read),
    ("STRLEN", strings::strlen, Purpose::Read),
    ("SET", strings::set, Purpose::Write),
    ("SETEX", strings::setex, Purpose::Write),
    ("PSETEX", strings::psetex, Purpose::Write),
    ("SETNX", strings::setnx, Purpose::Write),
    ("MSET", strings::mset, Purpose::Write),
    ("DEL", keys::del, Purpose::Write),
    ("UNLINK", keys::del, Purpose::Write),
    ("EXISTS", keys::exists, Purpose::Read),
    ("EXPIRE", keys::expire, Purpose::Write),
    ("PEXPIRE", keys::pexpire, Purpose::Write),
    ("EXPIREAT", keys::expireat, Purpose::Write),
    ("PEXPIREAT", keys::pexpireat, Purpose::Write),
    ("PERSIST", keys::persist, Purpose::Write),
    ("TTL", keys::ttl, Purpose::Read),
    ("PTTL", keys::pttl, Purpose::Read),
    ("TYPE", keys::kind, Purpose::Read),
    ("RENAME", keys::rename, Purpose::Write),
    ("DEBUG", keys::debug, Purpose::Read),
    ("HSET", hashes::hset, Purpose::Write),
    ("HMSET", hashes::hmset, Purpose::Write),
    ("HSETNX", hashes::hsetnx, Purpose::Write),
    ("HGET", hashes::hget, Purpose::Read),
    ("HMGET", hashes::hmget, Purpose::Read),
    ("HGETALL", hashes::hgetall, Purpose::Read),
    ("HKEYS", hashes::hkeys, Purpose::Read),
    ("HVALS", hashes::hvals, Purpose::Read),
    ("HLEN", hashes::hlen, Purpose::Read),
    ("HEXISTS", hashes::hexists, Purpose::Read),
    ("HDEL", hashes::hdel, Purpose::Write),
];

/// The data command named `name` (upper case): its name as a static label (metrics), what
/// runs it in one session (a pipeline's batch, a `MULTI` block), and why it takes the lock.
fn data_command(name: &str) -> Option<(&'static str, DataFn, Purpose)> {
    DATA_COMMANDS.iter().find(|(known, _, _)| *known == name).copied()
}

/// Why chorus refuses a command it knows, if it does: those that need one point of order (a
/// primary, a lock, a blocking queue) that a masterless, last-writer-wins store does not have.
fn refusal(name: &str) -> Option<&'static str> {
    match name {
        "INCR" | "INCRBY" | "DECR" | "DECRBY" | "INCRBYFLOAT" | "HINCRBY" | "HINCRBYFLOAT"
        | "APPEND" | "GETSET" => Some(
            "needs a read-modify-write at one point of order; chorus is masterless and \
             last-writer-wins, so concurrent updates on two nodes would lose one: SET the new value",
        ),
        "WATCH" | "EVAL" | "EVALSHA" | "FCALL" => Some(
            "needs transactions over the whole cluster; chorus applies MULTI/EXEC on this node \
             only and has no scripting",
        ),
        "BLPOP" | "BRPOP" | "BRPOPLPUSH" | "BLMOVE" | "LPUSH" | "RPUSH" | "LPOP" | "RPOP" => {
            Some("lists need one point of order; chorus has strings and hashes")
        }
        "PUBLISH" | "SPUBLISH" => Some(
            "chorus replicates state, not messages: write a key and subscribe to its keyspace \
             notifications instead",
        ),
        _ => None,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere while holding it; the data is still valid.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Lets the Redis thread's other ready connections run before this one writes its replies:
/// the task goes to the back of the thread's run queue once, with no system call (unlike
/// `yield_now`, which also polls for I/O). A read of many clients thus ends in a burst of
/// replies, as in Redis, which answers every client it read in one pass of its event loop.
/// Replying as each read's requests ran woke a pipelining client's thread far more often:
/// `redis-benchmark -t set -P 16` slept 10.6 to 15.0 times per 1,000 requests against one node,
/// 2.4 to 5.0 against Redis, and 2.5 to 2.7 with this (`DETAIL=1 tests/redis_benchmark.sh`).
async fn others_first() {
    let mut requeued = false;
    std::future::poll_fn(|context| {
        if requeued {
            return Poll::Ready(());
        }
        requeued = true;
        context.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// The primitive under `Connection::run`'s replies: on the Redis thread's kind of runtime
    /// (current-thread, a FIFO run queue), the tasks ready before it run first.
    #[tokio::test]
    async fn others_first_lets_the_tasks_already_ready_run_first() {
        let steps = Arc::new(Mutex::new(Vec::new()));
        let step = |steps: &Arc<Mutex<Vec<&'static str>>>, what| steps.lock().unwrap().push(what);
        let first = tokio::spawn({
            let steps = steps.clone();
            async move {
                step(&steps, "first ran its requests");
                // A requeue without a wake would hang here: fail instead.
                let requeued = tokio::time::timeout(Duration::from_secs(10), super::others_first());
                requeued.await.expect("others_first woke its task");
                step(&steps, "first wrote");
            }
        });
        let second = tokio::spawn({
            let steps = steps.clone();
            async move { step(&steps, "second ran its requests") }
        });
        first.await.unwrap();
        second.await.unwrap();
        let steps = steps.lock().unwrap();
        assert_eq!(*steps, ["first ran its requests", "second ran its requests", "first wrote"]);
    }
}
