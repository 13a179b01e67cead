//! One Redis client connection: requests read and decoded, run in order, replies written.
//!
//! Pipelined requests are answered in one write. A subscribed connection also receives the
//! node's changes as keyspace notifications; one that falls behind the node's change stream
//! (a slow subscriber) skips what it missed, counted, and is never buffered without bound.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chorus_proto::resp::{self, Reply};
use chorus_proto::rpc::Change;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;

use super::batch::{Batch, NAME_INLINE_MAX, Request, command_name};
use super::command::DataFn;
use super::pubsub::Subscriptions;
use super::{Server, data_command, refusal, scan, whole};
use crate::node::{Live, Purpose, SeriesCache};

/// Replies buffered before they are written, even in the middle of a pipeline.
pub(super) const OUTPUT_FLUSH_SIZE: usize = 64 * 1024;

/// Pipelined data commands run in one hold of the node's lock: a pipeline of 16 SETs takes
/// the lock once, not 16 times, while a long pipeline still lets other clients in between.
pub const REDIS_BATCH_MAX: usize = 64;

/// Most commands one `MULTI` block may queue; more abort the block (`EXECABORT`), since
/// `EXEC` runs them all in one hold of the node's lock.
pub const REDIS_MULTI_MAX: usize = 4096;

/// Most bytes a client that has not authenticated may send in one request (Redis's own rule
/// since CVE-2021-32675): a password does not protect memory if anyone may send 8 MiB first.
pub const REDIS_UNAUTHENTICATED_REQUEST_MAX: usize = 16 * 1024;

/// Spare room kept in the input buffer before each read.
const INPUT_READ_SIZE: usize = 16 * 1024;

/// What a request does.
enum Step {
    /// A data command, to batch with its neighbours.
    Data(&'static str, DataFn, Purpose),
    /// Replies to send now.
    Replies(Vec<Reply>),
    /// Another command, to run once the batched ones before it have run.
    Command(String, Vec<Vec<u8>>),
}

/// A queued `MULTI` block: the commands, and whether one was refused while queueing.
#[derive(Default)]
struct Multi {
    queued: Vec<Vec<Vec<u8>>>,
    failed: bool,
}

/// The state of one client connection.
pub struct Connection {
    pub(super) server: Arc<Server>,
    pub(super) id: u64,
    pub(super) db: u8,
    pub(super) resp3: bool,
    pub(super) authenticated: bool,
    pub(super) name: Option<Vec<u8>>,
    multi: Option<Multi>,
    pub(super) subscriptions: Subscriptions,
    pub(super) changes: Option<Live>,
    pub(super) closing: bool,
    /// Commands that may have written ran since the replies were last sent: with a data
    /// directory under `--fsync always`, the replies wait until those writes are on disk.
    pub(super) unsynced: bool,
    /// Handles to this connection's request metrics.
    series: SeriesCache,
    /// The data commands of the read being run (kept to reuse its vectors).
    batch: Batch,
    /// How far the request at the start of the input was decoded, kept between reads.
    decoder: resp::Decoder,
}

impl Connection {
    /// A new connection of `server`.
    pub fn new(server: Arc<Server>) -> Connection {
        let id = server.next_client_id.fetch_add(1, Ordering::Relaxed);
        let authenticated = server.password.is_none();
        Connection {
            server,
            id,
            db: 0,
            resp3: false,
            authenticated,
            name: None,
            multi: None,
            subscriptions: Subscriptions::default(),
            changes: None,
            closing: false,
            series: SeriesCache::default(),
            unsynced: false,
            batch: Batch::default(),
            decoder: resp::Decoder::default(),
        }
    }

    /// Serves the client until it leaves, breaks the protocol, or its replies outgrow
    /// `REDIS_OUTPUT_MAX`.
    pub async fn run(mut self, mut stream: TcpStream) {
        let mut input = Vec::with_capacity(INPUT_READ_SIZE);
        let mut output = Vec::new();
        while !self.closing {
            if input.capacity() - input.len() < INPUT_READ_SIZE / 4 {
                input.reserve(INPUT_READ_SIZE);
            }
            // Replies to requests wait for the thread's other ready connections; notifications
            // go at once, so that a subscriber drains its changes as fast as they come.
            let replies = tokio::select! {
                read = stream.read_buf(&mut input) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if self.requests(&mut input, &mut output, &mut stream).await.is_err() {
                            return;
                        }
                        true
                    }
                },
                change = next_change(&mut self.changes) => {
                    self.notify_all(change, &mut output).await;
                    false
                }
            };
            if output.is_empty() {
                continue;
            }
            if replies {
                super::others_first().await;
            }
            if !self.synced().await || stream.write_all(&output).await.is_err() {
                return;
            }
            output.clear();
        }
        let _ = stream.shutdown().await;
    }

    /// Waits until the writes behind the pending replies are durable; false if they cannot be,
    /// and the connection closes rather than answer OK for them.
    async fn synced(&mut self) -> bool {
        if !std::mem::take(&mut self.unsynced) {
            return true;
        }
        match self.server.driver.synced().await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(client = self.id, %error, "closing a Redis connection: its writes are not durable");
                false
            }
        }
    }

    /// Runs every complete request in `input`, replies into `output` (written as it grows).
    async fn requests(
        &mut self,
        input: &mut Vec<u8>,
        output: &mut Vec<u8>,
        stream: &mut TcpStream,
    ) -> std::io::Result<()> {
        let consumed = self.run_requests(input, output, stream).await?;
        input.drain(..consumed);
        if !self.authenticated && input.len() > REDIS_UNAUTHENTICATED_REQUEST_MAX {
            let why =
                format!("requests above {REDIS_UNAUTHENTICATED_REQUEST_MAX} bytes need AUTH first");
            Reply::Error(format!("NOAUTH {why}")).encode(self.resp3, output);
            self.closing = true;
        }
        if input.capacity() > 4 * INPUT_READ_SIZE && input.len() < INPUT_READ_SIZE {
            // A large request passed: give its buffer back.
            input.shrink_to(INPUT_READ_SIZE);
        }
        Ok(())
    }

    /// Runs the complete requests at the start of `bytes`; returns how many bytes they took.
    async fn run_requests(
        &mut self,
        bytes: &[u8],
        output: &mut Vec<u8>,
        stream: &mut TcpStream,
    ) -> std::io::Result<usize> {
        let mut consumed = 0;
        // The batch's vectors are kept from read to read, so they are not allocated again.
        let mut batch = std::mem::take(&mut self.batch);
        while !self.closing {
            match self.decoder.decode(&bytes[consumed..]) {
                Ok(None) => break,
                Ok(Some((resp::Request::Bulk(mut ranges), used))) => {
                    for range in &mut ranges {
                        *range = consumed + range.start..consumed + range.end;
                    }
                    consumed += used;
                    let request = Request { bytes, ranges: &ranges };
                    match self.plan(request) {
                        Step::Data(kind, command, purpose) => {
                            batch.push(kind, command, purpose, &ranges[1..]);
                            if batch.len() >= REDIS_BATCH_MAX
                                && let Some(next) = self.run_now(bytes, &mut batch, output)
                            {
                                self.run_deferred(bytes, &mut batch, next, output, stream).await?;
                            }
                        }
                        step => self.step(step, bytes, &mut batch, output, stream).await?,
                    }
                    self.decoder.recycle(ranges);
                }
                Ok(Some((resp::Request::Inline(words), used))) => {
                    consumed += used;
                    // Rare (a person at a terminal): run alone, from the words joined.
                    let (joined, ranges) = Request::join(&words);
                    let request = Request { bytes: &joined, ranges: &ranges };
                    let step = self.plan(request);
                    self.run_batch(bytes, &mut batch, output, stream).await?;
                    let mut alone = Batch::default();
                    if let Step::Data(kind, command, purpose) = step {
                        alone.push(kind, command, purpose, &ranges[1..]);
                    }
                    self.run_batch(&joined, &mut alone, output, stream).await?;
                    self.step(step, bytes, &mut batch, output, stream).await?;
                }
                Err(error) => {
                    self.run_batch(bytes, &mut batch, output, stream).await?;
                    Reply::error(format!("Protocol error: {error}")).encode(self.resp3, output);
                    self.closing = true;
                }
            }
            if output.len() >= OUTPUT_FLUSH_SIZE {
                self.run_batch(bytes, &mut batch, output, stream).await?;
                self.flush(output, stream).await?;
            }
        }
        if let Some(next) = self.run_now(bytes, &mut batch, output) {
            self.run_deferred(bytes, &mut batch, next, output, stream).await?;
        }
        self.batch = batch;
        Ok(consumed)
    }

    /// Sends the replies in `output` now, once the writes behind them are durable.
    pub(super) async fn flush(
        &mut self,
        output: &mut Vec<u8>,
        stream: &mut TcpStream,
    ) -> std::io::Result<()> {
        if output.is_empty() {
            return Ok(());
        }
        if !self.synced().await {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        stream.write_all(output).await?;
        output.clear();
        Ok(())
    }

    /// Runs a step that is not a batched data command, after the batched ones before it.
    async fn step(
        &mut self,
        step: Step,
        bytes: &[u8],
        batch: &mut Batch,
        output: &mut Vec<u8>,
        stream: &mut TcpStream,
    ) -> std::io::Result<()> {
        match step {
            Step::Data(..) => {}
            Step::Replies(replies) => {
                self.run_batch(bytes, batch, output, stream).await?;
                self.encode(replies, output);
            }
            Step::Command(name, args) => {
                // The batched commands came first: they run, with the state they were sent
                // in (database, protocol), before this one changes it.
                self.run_batch(bytes, batch, output, stream).await?;
                if scan::walks(&name) {
                    // Boxed, as `run_deferred`'s: a rare future, and a large one.
                    return Box::pin(self.walk(&name, &args, output, stream)).await;
                }
                self.unsynced = true;
                let replies = self.execute(&name, &args);
                self.encode(replies, output);
            }
        }
        Ok(())
    }

    /// Runs the batched data commands and empties the batch (`run_now`, then `run_deferred`).
    async fn run_batch(
        &mut self,
        bytes: &[u8],
        batch: &mut Batch,
        output: &mut Vec<u8>,
        stream: &mut TcpStream,
    ) -> std::io::Result<()> {
        match self.run_now(bytes, batch, output) {
            Some(next) => self.run_deferred(bytes, batch, next, output, stream).await,
            None => Ok(()),
        }
    }

    /// Runs the batched data commands, whose arguments are ranges of `bytes`, in one
    /// session, their replies in order into `output`, and empties the batch; or, when a
    /// command on a whole key turns out to be a large hash, stops there and returns its
    /// index, for `run_deferred`. Not async: the path of every GET and SET awaits nothing.
    fn run_now(&mut self, bytes: &[u8], batch: &mut Batch, output: &mut Vec<u8>) -> Option<usize> {
        if batch.commands.is_empty() {
            return None;
        }
        self.unsynced |= batch.writes;
        let next = self.run_session(bytes, batch, 0, batch.writes, output);
        if next < batch.len() {
            return Some(next);
        }
        batch.clear();
        None
    }

    /// Runs the batch from command `next`, one that `whole` runs, on, and empties it: the
    /// replies before it are sent, it runs a page of fields per hold while the Redis thread
    /// serves its other clients, and the commands after it run in a new session, up to the
    /// next such one. Boxed: a rare future, and a large one; inline, it would grow every
    /// connection's future and what every read moves (about 90 instructions per unpipelined
    /// GET, counted by tests/profile_vs_redis.sh).
    fn run_deferred<'a>(
        &'a mut self,
        bytes: &'a [u8],
        batch: &'a mut Batch,
        mut next: usize,
        output: &'a mut Vec<u8>,
        stream: &'a mut TcpStream,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<()>> + Send + 'a>> {
        Box::pin(async move {
            while let Some((kind, _, at)) = batch.commands.get(next).cloned() {
                self.flush(output, stream).await?;
                let started = Instant::now();
                let args = batch.args_of(bytes, at);
                let server = self.server.clone();
                let turn = server.long_turn().await;
                let reply = whole::run(kind, &server.driver, self.db, &args).await;
                self.observe(kind, result_of(&reply), started.elapsed(), 1);
                self.encode_long(reply, output).await;
                drop(turn);
                next += 1;
                if next < batch.len() {
                    next = self.run_session(bytes, batch, next, batch.writes, output);
                }
            }
            batch.clear();
            Ok(())
        })
    }

    /// Runs the batched commands from `from` on in one session, until one defers to `whole`;
    /// returns the index of that one (or the batch's length).
    fn run_session(
        &mut self,
        bytes: &[u8],
        batch: &Batch,
        from: usize,
        writes: bool,
        output: &mut Vec<u8>,
    ) -> usize {
        let (db, purpose) = (self.db, if writes { Purpose::Write } else { Purpose::Read });
        let started = Instant::now();
        let replies = batch.with_args(bytes, |commands, args| {
            self.server.driver.session(purpose, |session| {
                let mut replies = Vec::with_capacity(commands.len() - from);
                for (kind, command, at) in &commands[from..] {
                    let args = &args[at.clone()];
                    if whole::defers(session, db, kind, args) {
                        break;
                    }
                    replies.push(command(session, db, args));
                }
                replies
            })
        });
        let replies = replies.unwrap_or_else(|error| {
            batch.commands[from..].iter().map(|_| super::command::op_error(error.clone())).collect()
        });
        // The commands of a pipelined batch share one session: each is counted with its time,
        // a run of one command with one result at once.
        let took = started.elapsed();
        let ended = batch.commands[from..].iter().zip(&replies);
        let ended = ended.map(|((kind, _, _), reply)| (*kind, result_of(reply)));
        for_each_run(ended, |kind, result, requests| self.observe(kind, result, took, requests));
        let ran = from + replies.len();
        self.encode(replies, output);
        ran
    }

    /// Counts `requests` commands of `kind` that ended with `result` in the request metrics.
    fn observe(&mut self, kind: &'static str, result: &'static str, took: Duration, requests: u64) {
        let metrics = self.server.driver.metrics();
        self.series.observe(metrics, "redis", kind, result, took, requests);
    }

    /// Decides what one request does: a data command, to run with its neighbours in one
    /// session, or replies now (most give one reply, (un)subscribing one per channel).
    fn plan(&mut self, request: Request<'_>) -> Step {
        let Some(name) = request.arg(0) else { return Step::Replies(Vec::new()) };
        let mut buffer = [0; NAME_INLINE_MAX];
        let name = command_name(name, &mut buffer);
        if let Some(reply) = self.gate(&name, request) {
            return Step::Replies(vec![reply]);
        }
        if let Some((kind, command, purpose)) = data_command(&name) {
            return Step::Data(kind, command, purpose);
        }
        Step::Command(name.into_owned(), request.owned_args())
    }

    /// What a connection's state answers before a command runs: authentication, a queued
    /// MULTI, the commands a subscribed RESP2 connection may send.
    fn gate(&mut self, name: &str, request: Request<'_>) -> Option<Reply> {
        if !self.authenticated && !matches!(name, "AUTH" | "HELLO" | "QUIT" | "RESET") {
            return Some(Reply::Error("NOAUTH Authentication required.".into()));
        }
        if self.multi.is_some() && !matches!(name, "EXEC" | "DISCARD" | "MULTI" | "QUIT" | "RESET")
        {
            return Some(self.queue(name.to_string(), &request.owned_args()));
        }
        if self.resp3 || self.subscriptions.count() == 0 {
            return None;
        }
        match name {
            // A subscribed RESP2 connection answers in the shape of a message (redis-py's
            // PubSub.ping reads it as one).
            "PING" => {
                let text = request.arg(1).unwrap_or_default().to_vec();
                Some(Reply::Array(vec![Reply::text("pong"), Reply::Bulk(text)]))
            }
            "SUBSCRIBE" | "PSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "QUIT" | "RESET" => None,
            _ => Some(Reply::error(format!(
                "Can't execute '{}': only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                name.to_lowercase()
            ))),
        }
    }

    /// Runs a command that is not a data command.
    fn execute(&mut self, name: &str, args: &[Vec<u8>]) -> Vec<Reply> {
        match name {
            "MULTI" if self.multi.is_some() => vec![Reply::error("MULTI calls can not be nested")],
            "MULTI" => {
                self.multi = Some(Multi::default());
                vec![Reply::ok()]
            }
            "EXEC" => vec![self.exec()],
            "DISCARD" => match self.multi.take() {
                Some(_) => vec![Reply::ok()],
                None => vec![Reply::error("DISCARD without MULTI")],
            },
            "SUBSCRIBE" | "PSUBSCRIBE" => self.subscribe(name == "PSUBSCRIBE", args),
            "UNSUBSCRIBE" | "PUNSUBSCRIBE" => {
                let replies = self.subscriptions.unsubscribe(name == "PUNSUBSCRIBE", args);
                if self.subscriptions.count() == 0 {
                    self.changes = None;
                }
                replies
            }
            _ => vec![self.other(name, args)],
        }
    }

    fn subscribe(&mut self, pattern: bool, names: &[Vec<u8>]) -> Vec<Reply> {
        if names.is_empty() {
            return vec![super::command::arity(if pattern { "psubscribe" } else { "subscribe" })];
        }
        if self.changes.is_none() {
            match self.server.driver.subscribe(None) {
                Ok(live) => self.changes = Some(live),
                Err(error) => return vec![super::command::op_error(error)],
            }
        }
        self.subscriptions.subscribe(pattern, names)
    }

    /// Queues a command inside `MULTI`, or refuses it (and then the whole block).
    fn queue(&mut self, name: String, args: &[Vec<u8>]) -> Reply {
        let Some(multi) = self.multi.as_mut() else { return Reply::error("not in MULTI") };
        if multi.queued.len() >= REDIS_MULTI_MAX {
            multi.failed = true;
            return Reply::error(format!("MULTI holds at most {REDIS_MULTI_MAX} commands"));
        }
        if data_command(&name).is_none() && !matches!(name.as_str(), "PING" | "ECHO") {
            multi.failed = true;
            return Reply::error(format!(
                "'{}' cannot run inside MULTI on chorus",
                name.to_lowercase()
            ));
        }
        let mut command = vec![name.into_bytes()];
        command.extend_from_slice(args);
        multi.queued.push(command);
        Reply::Simple("QUEUED".into())
    }

    /// Runs a `MULTI` block in one session: nothing else runs on this node in between.
    fn exec(&mut self) -> Reply {
        let Some(multi) = self.multi.take() else { return Reply::error("EXEC without MULTI") };
        if multi.failed {
            return Reply::Error(
                "EXECABORT Transaction discarded because of previous errors.".into(),
            );
        }
        let db = self.db;
        let replies = self.server.driver.session(Purpose::Write, |session| {
            let run = |command: &Vec<Vec<u8>>| {
                let name = String::from_utf8_lossy(&command[0]).into_owned();
                match data_command(&name) {
                    Some((_, data, _)) => {
                        let args: Vec<&[u8]> = command[1..].iter().map(Vec::as_slice).collect();
                        data(session, db, &args)
                    }
                    None if name == "ECHO" => command.get(1).map_or_else(
                        || super::command::arity("echo"),
                        |text| Reply::Bulk(text.clone()),
                    ),
                    None => Reply::Simple("PONG".into()),
                }
            };
            multi.queued.iter().map(run).collect()
        });
        replies.map_or_else(super::command::op_error, Reply::Array)
    }

    /// Commands that are not data commands: the connection's and the server's, the refused,
    /// and the unknown (counted by name).
    fn other(&mut self, name: &str, args: &[Vec<u8>]) -> Reply {
        if let Some(reply) = self.server_command(name, args) {
            return reply;
        }
        if let Some(why) = refusal(name) {
            return Reply::error(format!("{name} is not supported by chorus: it {why}"));
        }
        // Counted by name in stats, so a user can tell which command their framework needs.
        let label: String = name
            .to_lowercase()
            .chars()
            .take(32)
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.server.driver.count("redis_unknown_", &label);
        let start: Vec<String> =
            args.iter().take(3).map(|arg| format!("'{}'", String::from_utf8_lossy(arg))).collect();
        Reply::error(format!(
            "unknown command '{}', with args beginning with: {}",
            name.to_lowercase(),
            start.join(" ")
        ))
    }
}

/// The next change for a subscribed connection; never, for one that is not subscribed.
async fn next_change(changes: &mut Option<Live>) -> Result<Change, broadcast::error::RecvError> {
    match changes {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// How a command ended, for the request metrics.
fn result_of(reply: &Reply) -> &'static str {
    if matches!(reply, Reply::Error(_)) { "error" } else { "ok" }
}

/// Calls `each` with every run of consecutive equal `(kind, result)` pairs of `ended` and how
/// many there are in the run; allocates nothing (an unpipelined command is a run of one).
fn for_each_run(
    ended: impl Iterator<Item = (&'static str, &'static str)>,
    mut each: impl FnMut(&'static str, &'static str, u64),
) {
    let mut run: Option<(&'static str, &'static str, u64)> = None;
    for (kind, result) in ended {
        match &mut run {
            Some((k, r, count)) if *k == kind && *r == result => *count += 1,
            _ => {
                if let Some((k, r, count)) = run.replace((kind, result, 1)) {
                    each(k, r, count);
                }
            }
        }
    }
    if let Some((kind, result, count)) = run {
        each(kind, result, count);
    }
}

#[cfg(test)]
mod tests {
    use super::for_each_run;

    fn runs(ended: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str, u64)> {
        let mut runs = Vec::new();
        for_each_run(ended.iter().copied(), |kind, result, count| runs.push((kind, result, count)));
        runs
    }

    #[test]
    fn a_batch_is_counted_by_runs_of_one_command_with_one_result() {
        let ended = [
            ("SET", "ok"),
            ("SET", "ok"),
            ("SET", "error"),
            ("SET", "ok"),
            ("GET", "ok"),
            ("GET", "ok"),
            ("SET", "ok"),
        ];
        let expected = [
            ("SET", "ok", 2),
            ("SET", "error", 1),
            ("SET", "ok", 1),
            ("GET", "ok", 2),
            ("SET", "ok", 1),
        ];
        assert_eq!(runs(&ended), expected);
        assert_eq!(runs(&[("GET", "ok")]), [("GET", "ok", 1)]);
        assert!(runs(&[]).is_empty());
    }
}
