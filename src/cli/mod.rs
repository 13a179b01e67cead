//! Command-line interface (README, CLI). Exit codes: 0 success, 1 absent key or failed
//! request, 2 usage error, 3 node unreachable or unauthorised, 4 a write wait timed out,
//! 5 the node refused a write for its clock (off from its peers, or not yet compared).

mod args;
mod bench;
mod commands;
mod demo;
mod handler;
mod heal;
mod local;
mod notify;
mod print;
mod serve;

use chorus::client::ClientError;
use chorus::tls::ClusterKey;
use chorus_proto::rpc::RpcError;
use clap::Parser;
use serde_json::json;

use args::{Cli, Command};

/// Exit code: the key is absent, or the node refused the request.
const EXIT_FAILED: i32 = 1;
/// Exit code: bad arguments.
const EXIT_USAGE: i32 = 2;
/// Exit code: the node is unreachable or refused the cluster key.
const EXIT_UNREACHABLE: i32 = 3;
/// Exit code: a write's wait timed out before every required member confirmed.
const EXIT_WAIT_TIMEOUT: i32 = 4;
/// Exit code: the node refused a write because of its clock: write to another node, or fix
/// the node's clock (NTP); a node not yet compared with its peers takes writes a moment later.
const EXIT_CLOCK: i32 = 5;

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    // A node runs on `--threads` (one unless asked, `node_runtime`); the other commands (a
    // client, a load generator, the demo's nodes in one process) keep a worker per CPU.
    let mut builder = match &cli.command {
        Command::Node(args) => chorus::node_runtime(args.threads.into()),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("chorus: cannot start the runtime: {error}");
            return EXIT_FAILED;
        }
    };
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> i32 {
    match command {
        Command::Node(args) => serve::run(args).await,
        Command::Keygen { json } => {
            let key = ClusterKey::generate();
            if json {
                out!(
                    "{}",
                    json!({ "cluster_key": key.to_string(), "fingerprint": key.fingerprint() })
                );
            } else {
                out!("{key}");
            }
            0
        }
        Command::Demo { nodes, json } => demo::run(nodes.into(), json).await,
        Command::Bench(args) => bench::run(args).await,
        client_command => match commands::run(client_command).await {
            Ok(code) => code,
            Err(error) => report(&error),
        },
    }
}

/// An error as text, for the commands that report errors as strings (bench, heal).
pub fn text(error: impl std::fmt::Display) -> String {
    error.to_string()
}

/// An error and every cause under it, as one line: `cannot bind: Address already in use`.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        line.push_str(": ");
        line.push_str(&error.to_string());
        cause = error.source();
    }
    line
}

fn report(error: &ClientError) -> i32 {
    eprintln!("chorus: {}", chain(error));
    match error {
        ClientError::Unreachable(_) | ClientError::Unauthorised(_) => EXIT_UNREACHABLE,
        ClientError::Invalid(_) => EXIT_USAGE,
        ClientError::Rpc(RpcError::InvalidKey(_) | RpcError::InvalidRequest(_)) => EXIT_USAGE,
        ClientError::Rpc(RpcError::ClockOffset { .. } | RpcError::ClockUnchecked) => EXIT_CLOCK,
        ClientError::Rpc(_) | ClientError::Protocol(_) => EXIT_FAILED,
    }
}

/// SIGINT and SIGTERM (`chorus node` and `chorus watch --exec` stop on either), listened for
/// from [`StopSignals::listen`] (at once, not on a first poll) until the process exits. One
/// listener for the whole run: a signal sent between two waits is kept for the next one.
/// Before, each wait made its own listener when first polled. A `select!` that ended before
/// polling it (the node already ready) left none: a SIGTERM then met its default action and
/// killed the process with no handoff. And a signal that came between one listener and the
/// next could be missed (tokio keeps its handler, but a new listener does not see a signal
/// already handled): the node ran on. Sent SIGTERM the moment it told systemd it was ready, a
/// node died so in 33 of 150 runs beside two busy loops and ran on in 1; none of 150 since
/// (`tests/sigterm_after_ready.py 150`; `tests/deploy.rs` had failed so twice).
struct StopSignals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Starts listening (in the runtime). A signal that cannot be listened for (never seen on
    /// Linux) keeps its default action: it ends the process.
    fn listen() -> StopSignals {
        use tokio::signal::unix::{SignalKind, signal};
        StopSignals {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    /// Waits for the next SIGINT or SIGTERM, or returns at once for one already received.
    async fn recv(&mut self) {
        async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => _ = signal.recv().await,
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = next(&mut self.interrupt) => {}
            () = next(&mut self.terminate) => {}
        }
    }
}
