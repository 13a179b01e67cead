//! `chorus node`: runs a node until SIGINT or SIGTERM, prints the ready line, and leaves
//! gracefully.

use std::io::Write;

use chorus::{NodeHandle, NodeOptions};
use serde_json::json;

use super::args::NodeArgs;
use super::notify;
use super::{EXIT_FAILED, EXIT_USAGE};

pub async fn run(args: NodeArgs) -> i32 {
    init_logging(&args.log_level);
    let (drain_for, json) = (args.drain, args.json);
    let options = options(args);
    // Before the node starts: from here on SIGINT and SIGTERM stop it gracefully, whenever
    // they come (one during the start is acted on once the start returns).
    let mut signals = super::StopSignals::listen();
    let mut handle = match NodeHandle::start(options).await {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("chorus: {}", super::chain(&error));
            return EXIT_USAGE;
        }
    };
    // Logged before joining, so a node that cannot join still says where it listens.
    tracing::info!(name = %handle.name(), id = %handle.id(), redis = ?handle.redis_addr(), http = ?handle.http_addr(), listen = %handle.addr(), "listening");
    // Watched from here on: a node that never joins must not run on with a dead part either.
    let mut readiness = handle.readiness_watch();
    // In this order: a signal that came during the start stops the node before it says ready.
    let signalled = tokio::select! {
        biased;
        failure = handle.failed() => return failed(failure),
        () = signals.recv() => true,
        _ = readiness.wait_for(Result::is_ok) => false,
    };
    if signalled {
        // Not ready yet (joining, catching up, or its clock off), but it may have taken
        // writes: they are handed off and committed as in any graceful stop.
        notify::stopping();
        handle.shutdown().await;
        return 0;
    }
    if json {
        let mut line = json!({"ready": true, "name": handle.name(), "id": handle.id().to_string(), "listen": handle.addr().to_string()});
        if let Some(redis) = handle.redis_addr() {
            line["redis"] = json!(redis.to_string());
        }
        if let Some(http) = handle.http_addr() {
            line["http"] = json!(http.to_string());
        }
        out!("{line}");
    } else {
        let redis = handle.redis_addr().map(|addr| format!(" redis={addr}")).unwrap_or_default();
        let http = handle.http_addr().map(|addr| format!(" http={addr}")).unwrap_or_default();
        out!(
            "ready name={} id={} listen={}{redis}{http}",
            handle.name(),
            handle.id(),
            handle.addr()
        );
    }
    let _ = std::io::stdout().flush();
    notify::ready();
    tokio::select! {
        () = signals.recv() => {}
        failure = handle.failed() => return failed(failure),
    }
    notify::stopping();
    drain(&handle, drain_for, &mut signals).await;
    tracing::info!("shutting down: handing off writes and announcing departure");
    let handed_off = handle.shutdown().await;
    if !handed_off {
        tracing::warn!("no peer confirmed this node's writes before the shutdown deadline");
    }
    0
}

/// Logs why the node failed; the exit code that tells a supervisor to restart it.
fn failed(failure: chorus::NodeFailure) -> i32 {
    tracing::error!(%failure, "the node failed; exiting so a supervisor can restart it");
    EXIT_FAILED
}

/// The node's options from its command line.
fn options(args: NodeArgs) -> NodeOptions {
    NodeOptions {
        listen: args.listen,
        advertise: args.advertise,
        join: args.join,
        name: args.name,
        keys: args.keys.cluster_keys,
        tune: Some(tune_for_tests),
        clock: chorus::Clock::System,
        redis: args
            .redis
            .map(|listen| chorus::RedisOptions { listen, password: args.redis_password.clone() }),
        http: args
            .http
            .map(|listen| chorus::HttpOptions { listen, token: args.http_token.clone() }),
        data_dir: args.data_dir,
        fsync: args.fsync,
    }
}

/// Shorter protocol periods for the black-box tests, from environment variables that only
/// they set: `CHORUS_TEST_TOMBSTONE_GRACE_MS` (how long a stable tombstone is kept) and
/// `CHORUS_TEST_DEAD_REMOVE_MS` (how long a dead member stays listed). A test must not wait
/// minutes to see a tombstone collected. Not a user setting: the defaults are the design's.
fn tune_for_tests(config: &mut chorus::Config) {
    let read = |name: &str| std::env::var(name).ok().and_then(|ms| ms.parse::<u64>().ok());
    if let Some(ms) = read("CHORUS_TEST_TOMBSTONE_GRACE_MS") {
        config.tombstone_grace_ms = ms;
    }
    if let Some(ms) = read("CHORUS_TEST_DEAD_REMOVE_MS") {
        config.dead_remove_ms = ms;
        config.left_remove_ms = config.left_remove_ms.min(ms);
    }
}

/// Reports not ready and keeps serving for `delay`, so that load balancers polling `/ready`
/// stop sending before the node refuses writes; a second signal cuts it short.
async fn drain(handle: &NodeHandle, delay: std::time::Duration, signals: &mut super::StopSignals) {
    if delay.is_zero() {
        return;
    }
    handle.begin_drain();
    tracing::info!(
        delay_ms = delay.as_millis() as u64,
        "draining: /ready answers 503, still serving"
    );
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = signals.recv() => {}
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: escape codes make a log file or a journal hard to read.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
