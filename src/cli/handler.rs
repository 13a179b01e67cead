//! `chorus watch PREFIX --exec CMD`: a watch handler in the style of Consul's. Each change runs
//! CMD through `/bin/sh -c`, one run at a time, with the change in `CHORUS_*` environment
//! variables and the value on standard input. A run is bounded by `--exec-timeout` (then its
//! process group is killed); a run that fails is logged and the watch goes on.
//!
//! The watch outlives its node: when the connection drops it reconnects with a backoff and
//! resumes after the last change it handled. Cursors belong to one node process (the watch
//! history is in memory), so it resumes only on the same node identity; after a restart, or
//! when the node's history no longer holds the cursor, changes may have been missed, and the
//! handler runs once with `CHORUS_KIND=reset` so the application reloads what it keeps. The
//! first run of every watch is such a reset (`CHORUS_REASON=start`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use chorus::client::{Client, ClientError, Watch};
use chorus_proto::NodeId;
use chorus_proto::rpc::{Change, ChangeKind, RpcError};
use tokio::io::AsyncWriteExt;

use super::args::Connect;
use chorus::text::{escape_key, hex};

/// The first wait before reconnecting to a node that went away; it doubles at each failure.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// The longest wait between two reconnection attempts.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The shell that runs the handler, as Consul's handlers are run.
const SHELL: &str = "/bin/sh";

/// What the handler is and how long a run may take.
pub struct Handler {
    /// The shell command.
    pub command: String,
    /// The bound of one run.
    pub timeout: Duration,
}

/// Where a watch stands between two connections.
#[derive(Default)]
struct Position {
    /// The node process the cursor belongs to.
    node: Option<NodeId>,
    /// The last change handled there.
    cursor: Option<u64>,
}

/// Why the application must reload: the handler's `CHORUS_REASON` for a reset.
#[derive(Clone, Copy)]
enum Reset {
    Start,
    NodeRestarted,
    HistoryLost,
}

impl Reset {
    fn reason(self) -> &'static str {
        match self {
            Reset::Start => "start",
            Reset::NodeRestarted => "node restarted",
            Reset::HistoryLost => "history lost",
        }
    }
}

/// Follows `prefix` on the node, running `handler` for each change, until SIGINT or SIGTERM
/// (exit 0; a run in progress is killed with its process group) or an error a retry cannot
/// mend (a refused key, a bad prefix).
pub async fn run(connect: &Connect, prefix: &[u8], handler: &Handler) -> Result<i32, ClientError> {
    let mut signals = super::StopSignals::listen();
    tokio::select! {
        result = follow_forever(connect, prefix, handler) => result,
        () = signals.recv() => Ok(0),
    }
}

async fn follow_forever(
    connect: &Connect,
    prefix: &[u8],
    handler: &Handler,
) -> Result<i32, ClientError> {
    let mut position = Position::default();
    let mut backoff = RECONNECT_BACKOFF_MIN;
    loop {
        let error = match follow(connect, prefix, handler, &mut position, &mut backoff).await {
            Ok(()) => continue,
            Err(error) => error,
        };
        match error {
            ClientError::Unauthorised(_)
            | ClientError::Invalid(_)
            | ClientError::Rpc(RpcError::InvalidKey(_) | RpcError::InvalidRequest(_)) => {
                return Err(error);
            }
            _ => {}
        }
        eprintln!("chorus: watch: {}; reconnecting in {backoff:?}", super::chain(&error));
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
    }
}

/// One connection's worth of watching: subscribes (resuming when it can, else running a
/// reset), then handles changes until the stream ends. `Ok` asks for an immediate
/// reconnection (the history dropped changes this watch had not read).
async fn follow(
    connect: &Connect,
    prefix: &[u8],
    handler: &Handler,
    position: &mut Position,
    backoff: &mut Duration,
) -> Result<(), ClientError> {
    let client = connect.client().await?;
    let result = async {
        let (mut watch, reset) = subscribe(&client, prefix, position).await?;
        *backoff = RECONNECT_BACKOFF_MIN;
        if let Some(reset) = reset {
            eprintln!("chorus: watch: reset ({}): the handler reloads", reset.reason());
            handler.run(reset_env(reset, &connect.node), None).await;
        }
        while let Some(change) = watch.next().await {
            match change {
                Ok(change) => {
                    position.cursor = Some(change.cursor);
                    let value = change.value.as_ref().map(|value| value.as_bytes().to_vec());
                    handler.run(change_env(&change, &connect.node), value).await;
                }
                Err(ClientError::Rpc(RpcError::CursorExpired)) => {
                    // The history evicted changes before this watch read them.
                    position.cursor = None;
                    return Ok(());
                }
                Err(error) => return Err(error),
            }
        }
        Err(ClientError::Unreachable("the node closed the watch".into()))
    }
    .await;
    client.close().await;
    result
}

/// Starts the watch on this connection: after the last handled change when the node is the
/// same process and still holds it, else from now with the reset the handler must run.
async fn subscribe(
    client: &Client,
    prefix: &[u8],
    position: &mut Position,
) -> Result<(Watch, Option<Reset>), ClientError> {
    let node = client.stats().await?.id;
    let resume = match (position.node, position.cursor) {
        (None, _) => Err(Reset::Start),
        (Some(known), _) if known != node => Err(Reset::NodeRestarted),
        (Some(_), None) => Err(Reset::HistoryLost),
        (Some(_), Some(cursor)) => Ok(cursor),
    };
    position.node = Some(node);
    let (watch, reset) = match resume {
        Ok(cursor) => match client.watch(prefix, Some(cursor)).await {
            Err(ClientError::Rpc(RpcError::CursorExpired)) => {
                (client.watch(prefix, None).await?, Some(Reset::HistoryLost))
            }
            watch => (watch?, None),
        },
        Err(reset) => (client.watch(prefix, None).await?, Some(reset)),
    };
    if reset.is_some() {
        position.cursor = None;
    }
    Ok((watch, reset))
}

/// The environment of a change's run.
fn change_env(change: &Change, node: &str) -> Vec<(&'static str, OsString)> {
    let kind = match change.kind {
        ChangeKind::Put => "put",
        ChangeKind::Delete => "del",
        ChangeKind::Expire => "expire",
    };
    let key = change.key.as_bytes();
    // An environment value cannot hold a NUL byte; such a key is given escaped (as `watch`
    // prints it), and its exact bytes are always in CHORUS_KEY_HEX.
    let key_text = if key.contains(&0) {
        OsString::from(escape_key(key))
    } else {
        OsString::from_vec(key.to_vec())
    };
    let mut env = vec![
        ("CHORUS_KIND", kind.into()),
        ("CHORUS_KEY", key_text),
        ("CHORUS_KEY_HEX", hex(key).into()),
        ("CHORUS_INDEX", change.cursor.to_string().into()),
        ("CHORUS_NODE", node.into()),
    ];
    if let Some(stamp) = &change.stamp {
        env.push(("CHORUS_STAMP", stamp.to_string().into()));
    }
    if let Some(value) = &change.value {
        env.push(("CHORUS_VALUE_SIZE", value.as_bytes().len().to_string().into()));
    }
    env
}

/// The environment of a reset's run.
fn reset_env(reset: Reset, node: &str) -> Vec<(&'static str, OsString)> {
    vec![
        ("CHORUS_KIND", "reset".into()),
        ("CHORUS_REASON", reset.reason().into()),
        ("CHORUS_NODE", node.into()),
    ]
}

impl Handler {
    /// Runs the command once with `env` and `stdin` (empty when `None`), at most `timeout`;
    /// says on stderr when it failed, and returns either way.
    async fn run(&self, env: Vec<(&'static str, OsString)>, stdin: Option<Vec<u8>>) {
        let kind = env.first().map(|(_, kind)| kind.to_string_lossy().into_owned());
        let what = kind.unwrap_or_default();
        let mut command = tokio::process::Command::new(SHELL);
        command
            .arg("-c")
            .arg(&self.command)
            .envs(env)
            .stdin(std::process::Stdio::piped())
            // Its own process group, so a timeout kills what the shell started too.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                eprintln!("chorus: watch: cannot run the handler ({what}): {error}");
                return;
            }
        };
        // Kills the run's process group if this future is dropped before the run ends (the
        // watch interrupted) or when it overruns.
        let mut group = Group(child.id());
        let pipe = child.stdin.take();
        let feed = async move {
            if let (Some(mut pipe), Some(value)) = (pipe, stdin) {
                // A handler that does not read its input closes the pipe: not an error.
                let _ = pipe.write_all(&value).await;
            }
        };
        let finished = async {
            let ((), status) = tokio::join!(feed, child.wait());
            status
        };
        let outcome = tokio::time::timeout(self.timeout, finished).await;
        match outcome {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => eprintln!("chorus: watch: the handler ({what}) failed: {status}"),
            Ok(Err(error)) => eprintln!("chorus: watch: the handler ({what}): {error}"),
            Err(_) => {
                group.kill();
                let _ = child.wait().await;
                let timeout = self.timeout;
                eprintln!("chorus: watch: the handler ({what}) ran over {timeout:?}: killed");
            }
        }
        // The shell exited by itself: its group may hold nothing, or processes it left
        // running in the background, which are its business.
        group.0 = None;
    }
}

/// A handler run's process group (the shell's id), killed when dropped unless cleared.
struct Group(Option<u32>);

impl Group {
    /// Kills every process of the group (the shell and what it started).
    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            // The shell's own `kill` takes a negative id for a group; std offers no group
            // kill, and `libc::kill` would be this crate's only `unsafe`.
            let group = format!("kill -9 -{pid}");
            let _ = std::process::Command::new(SHELL).arg("-c").arg(group).status();
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}
