//! Command-line interface (DESIGN section 7.3). Exit codes: 0 success, 1 absent key or failed
//! request, 2 usage error, 3 node unreachable or unauthorised, 4 a write wait timed out.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use chorus::client::{Client, ClientError, WriteOptions, WriteResult};
use chorus::tls::ClusterKey;
use chorus::{NodeHandle, NodeOptions};
use chorus_proto::rpc::{Change, ChangeKind, MemberInfo, RpcError, StatsReport};
use chorus_proto::{Stamp, WaitLevel};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

/// Exit code: the key is absent, or the node refused the request.
const EXIT_FAILED: i32 = 1;
/// Exit code: bad arguments.
const EXIT_USAGE: i32 = 2;
/// Exit code: the node is unreachable or refused the cluster key.
const EXIT_UNREACHABLE: i32 = 3;
/// Exit code: a write's wait timed out before every required member confirmed.
const EXIT_WAIT_TIMEOUT: i32 = 4;

#[derive(Parser)]
#[command(
    name = "chorus",
    version,
    about = "A replicated key-value store for application variables"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The cluster keys of a node, a client or a benchmark: one declaration, the same flag, the
/// same environment variable everywhere.
#[derive(Args, Clone)]
pub struct Keys {
    /// Cluster key (repeatable for rotation: the first signs, all are trusted;
    /// CHORUS_CLUSTER_KEY may hold several, comma-separated).
    #[arg(
        long = "cluster-key",
        env = "CHORUS_CLUSTER_KEY",
        value_delimiter = ',',
        global = true,
        hide_env_values = true
    )]
    pub cluster_keys: Vec<ClusterKey>,
}

#[derive(Args, Clone)]
struct Connect {
    /// The node to talk to.
    #[arg(long, env = "CHORUS_NODE", default_value = chorus::LISTEN_DEFAULT, global = true)]
    node: String,
    #[command(flatten)]
    keys: Keys,
    /// Print one JSON object (one per line for watch).
    #[arg(long, global = true)]
    json: bool,
}

impl Connect {
    async fn client(&self) -> Result<Client, ClientError> {
        Client::connect(&self.node, &self.keys.cluster_keys).await
    }
}

#[derive(Args)]
struct WaitArgs {
    /// Return once `local`, `all` live members, or N nodes hold the write.
    #[arg(long, default_value = "local", value_parser = parse_wait)]
    wait: WaitLevel,
    /// How long to wait for them.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Node(NodeArgs),
    /// Write a value (`-` reads it from stdin, `@FILE` from a file).
    Put {
        key: String,
        value: String,
        /// Expire the key after this long (e.g. 30s, 10m).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        connect: Connect,
    },
    /// Print a key's value.
    Get {
        key: String,
        #[command(flatten)]
        connect: Connect,
    },
    /// Delete a key.
    Del {
        key: String,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        connect: Connect,
    },
    /// List keys with a prefix.
    Ls {
        prefix: Option<String>,
        /// At most this many keys.
        #[arg(long)]
        limit: Option<u64>,
        #[command(flatten)]
        connect: Connect,
    },
    /// Print changes to keys with a prefix as they happen.
    Watch {
        prefix: Option<String>,
        #[command(flatten)]
        connect: Connect,
    },
    /// List the members as the node sees them.
    Members {
        #[command(flatten)]
        connect: Connect,
    },
    /// Print the node's counters.
    Stats {
        #[command(flatten)]
        connect: Connect,
    },
    /// Print a new cluster key.
    Keygen {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure throughput, latency and propagation (like redis-benchmark).
    Bench(crate::bench::BenchArgs),
    /// Run a guided demo on a local five-node cluster.
    Demo {
        /// Nodes in the demo cluster.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..=20))]
        nodes: u16,
        /// Print JSON lines instead of prose.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct NodeArgs {
    /// Address to listen on (UDP); port 0 picks a free port.
    #[arg(long, default_value = chorus::LISTEN_DEFAULT)]
    listen: SocketAddr,
    /// Seed node to join through (repeatable; DNS names are resolved on every attempt).
    #[arg(long)]
    join: Vec<String>,
    /// Name shown to humans (default: host name and port).
    #[arg(long)]
    name: Option<String>,
    /// Address peers should use when it differs from --listen (for 0.0.0.0 or NAT).
    #[arg(long)]
    advertise: Option<String>,
    #[command(flatten)]
    keys: Keys,
    /// Log level: error, warn, info, debug, trace (or a tracing filter).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Print JSON (the ready line).
    #[arg(long)]
    json: bool,
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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
        Command::Node(args) => node(args).await,
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
        Command::Demo { nodes, json } => crate::demo::run(nodes.into(), json).await,
        Command::Bench(args) => crate::bench::run(args).await,
        client_command => match client(client_command).await {
            Ok(code) => code,
            Err(error) => report(&error),
        },
    }
}

async fn node(args: NodeArgs) -> i32 {
    init_logging(&args.log_level);
    let options = NodeOptions {
        listen: args.listen,
        advertise: args.advertise,
        join: args.join,
        name: args.name,
        keys: args.keys.cluster_keys,
        tune: None,
    };
    let mut handle = match NodeHandle::start(options).await {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("chorus: {error}");
            return EXIT_USAGE;
        }
    };
    // Logged before joining, so a node that cannot join still says where it listens.
    tracing::info!(name = %handle.name(), id = %handle.id(), listen = %handle.addr(), "listening");
    tokio::select! {
        () = handle.joined() => {}
        () = shutdown_signal() => {
            handle.stop();
            return 0;
        }
    }
    if args.json {
        let line = json!({"ready": true, "name": handle.name(), "id": handle.id().to_string(), "listen": handle.addr().to_string()});
        out!("{line}");
    } else {
        out!("ready name={} id={} listen={}", handle.name(), handle.id(), handle.addr());
    }
    let _ = std::io::stdout().flush();
    tokio::select! {
        () = shutdown_signal() => {}
        () = handle.failed() => {
            tracing::error!("the node's driver stopped unexpectedly; exiting so a supervisor can restart it");
            return EXIT_FAILED;
        }
    }
    tracing::info!("shutting down: handing off writes and announcing departure");
    let handed_off = handle.shutdown().await;
    if !handed_off {
        tracing::warn!("no peer confirmed this node's writes before the shutdown deadline");
    }
    0
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
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

async fn client(command: Command) -> Result<i32, ClientError> {
    match command {
        Command::Put { key, value, ttl, wait, connect } => {
            let value = match read_value(&value) {
                Ok(value) => value,
                Err(why) => {
                    eprintln!("chorus: {why}");
                    return Ok(EXIT_USAGE);
                }
            };
            let client = connect.client().await?;
            let options = WriteOptions { ttl, wait: wait.wait, timeout: wait.timeout };
            let result = client.put(key.as_bytes(), value, options).await?;
            Ok(print_write(&result, connect.json))
        }
        Command::Del { key, wait, connect } => {
            let client = connect.client().await?;
            let options = WriteOptions { ttl: None, wait: wait.wait, timeout: wait.timeout };
            let result = client.delete(key.as_bytes(), options).await?;
            Ok(print_write(&result, connect.json))
        }
        Command::Get { key, connect } => {
            let client = connect.client().await?;
            let Some((value, stamp)) = client.get(key.as_bytes()).await? else {
                if connect.json {
                    out!("{}", json!({ "key": key, "found": false }));
                }
                return Ok(EXIT_FAILED);
            };
            if connect.json {
                let mut object = json!({ "key": key, "found": true, "stamp": stamp_json(&stamp) });
                bytes_json(&mut object, "value", value.as_bytes());
                out!("{object}");
            } else {
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(value.as_bytes());
                let _ = stdout.flush();
            }
            Ok(0)
        }
        Command::Ls { prefix, limit, connect } => {
            let client = connect.client().await?;
            let prefix = prefix.unwrap_or_default();
            let mut remaining = limit.unwrap_or(u64::MAX);
            let mut after: Option<Vec<u8>> = None;
            // With --json the keys go in one object (DESIGN 7.3), so they are collected first.
            let mut listed = Vec::new();
            while remaining > 0 {
                let page = remaining.min(u64::from(chorus_proto::rpc::LIST_LIMIT_MAX)) as u32;
                let (keys, more) = client.list(prefix.as_bytes(), after.as_deref(), page).await?;
                remaining -= keys.len() as u64;
                for key in &keys {
                    if connect.json {
                        listed.push(key.to_string());
                    } else {
                        out!("{key}");
                    }
                }
                match keys.last() {
                    Some(last) if more => after = Some(last.as_bytes().to_vec()),
                    _ => break,
                }
            }
            if connect.json {
                out!("{}", json!({ "prefix": prefix, "keys": listed }));
            }
            Ok(0)
        }
        Command::Watch { prefix, connect } => {
            let client = connect.client().await?;
            let mut watch = client.watch(prefix.unwrap_or_default().as_bytes(), None).await?;
            while let Some(change) = watch.next().await {
                print_change(&change?, connect.json);
            }
            Err(ClientError::Unreachable("the node closed the watch".into()))
        }
        Command::Members { connect } => {
            let client = connect.client().await?;
            let members = client.members().await?;
            if connect.json {
                let members: Vec<_> = members.iter().map(member_json).collect();
                out!("{}", json!({ "members": members }));
                return Ok(0);
            }
            for member in members {
                out!("{} {} {} {}", member.name, member.id, member.addr, member.state.as_str());
            }
            Ok(0)
        }
        Command::Stats { connect } => {
            let client = connect.client().await?;
            let stats = client.stats().await?;
            print_stats(&stats, connect.json);
            Ok(0)
        }
        Command::Node(_) | Command::Keygen { .. } | Command::Demo { .. } | Command::Bench(_) => {
            Ok(EXIT_USAGE)
        }
    }
}

fn report(error: &ClientError) -> i32 {
    eprintln!("chorus: {error}");
    match error {
        ClientError::Unreachable(_) | ClientError::Unauthorised(_) => EXIT_UNREACHABLE,
        ClientError::Invalid(_) => EXIT_USAGE,
        ClientError::Rpc(RpcError::InvalidKey(_) | RpcError::InvalidRequest(_)) => EXIT_USAGE,
        ClientError::Rpc(_) | ClientError::Protocol(_) => EXIT_FAILED,
    }
}

/// A VALUE argument: `-` reads standard input, `@FILE` reads a file, anything else is literal.
fn read_value(argument: &str) -> Result<Vec<u8>, String> {
    let limit = chorus_proto::limits::VALUE_SIZE_MAX as u64 + 1;
    if argument == "-" {
        let mut value = Vec::new();
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut value)
            .map_err(|e| format!("reading stdin: {e}"))?;
        return Ok(value);
    }
    if let Some(path) = argument.strip_prefix('@') {
        let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
        let mut value = Vec::new();
        file.take(limit).read_to_end(&mut value).map_err(|e| format!("{path}: {e}"))?;
        return Ok(value);
    }
    Ok(argument.as_bytes().to_vec())
}

fn print_write(result: &WriteResult, json: bool) -> i32 {
    let timed_out = result.wait.as_ref().is_some_and(|wait| !wait.complete);
    if json {
        let mut object = json!({ "stamp": stamp_json(&result.stamp) });
        if let Some(wait) = &result.wait {
            object["wait"] = json!({
                "complete": wait.complete,
                "confirmed": wait.confirmed.iter().map(member_json).collect::<Vec<_>>(),
                "missing": wait.missing.iter().map(member_json).collect::<Vec<_>>(),
            });
        }
        out!("{object}");
    } else {
        out!("{}", result.stamp);
        if let Some(wait) = &result.wait {
            let names = |members: &[MemberInfo]| {
                members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(",")
            };
            out!("confirmed={}", names(&wait.confirmed));
            if !wait.complete {
                out!("missing={}", names(&wait.missing));
            }
        }
    }
    if timed_out {
        eprintln!("chorus: the wait timed out before every required member confirmed");
        return EXIT_WAIT_TIMEOUT;
    }
    0
}

fn print_change(change: &Change, json: bool) {
    let key = change.key.to_string();
    if json {
        let kind = match change.kind {
            ChangeKind::Put => "put",
            ChangeKind::Delete => "del",
            ChangeKind::Expire => "expire",
        };
        let mut object = json!({ "cursor": change.cursor, "kind": kind, "key": key });
        if let Some(value) = &change.value {
            bytes_json(&mut object, "value", value.as_bytes());
        }
        if let Some(stamp) = &change.stamp {
            object["stamp"] = stamp_json(stamp);
        }
        out!("{object}");
    } else {
        match (change.kind, &change.value) {
            (ChangeKind::Put, Some(value)) => out!("put {key} {}", escape(value.as_bytes())),
            (ChangeKind::Put, None) => out!("put {key}"),
            (ChangeKind::Delete, _) => out!("del {key}"),
            (ChangeKind::Expire, _) => out!("expire {key}"),
        }
    }
    let _ = std::io::stdout().flush();
}

fn print_stats(stats: &StatsReport, json: bool) {
    let node = &stats.node;
    let skew_peers: Vec<String> =
        node.skew_by_peer.iter().map(|(peer, count)| format!("{peer}:{count}")).collect();
    let fields: Vec<(&str, serde_json::Value)> = vec![
        ("name", json!(stats.name)),
        ("id", json!(stats.id.to_string())),
        ("uptime_ms", json!(stats.uptime_ms)),
        ("keys", json!(stats.keys)),
        ("tombstones", json!(stats.tombstones)),
        ("expired", json!(stats.expired)),
        ("members_alive", json!(stats.members[0])),
        ("members_suspect", json!(stats.members[1])),
        ("members_dead", json!(stats.members[2])),
        ("members_left", json!(stats.members[3])),
        ("messages_sent", json!(node.messages_sent)),
        ("bytes_sent", json!(stats.bytes_sent)),
        ("messages_received", json!(node.messages_received)),
        ("bytes_received", json!(stats.bytes_received)),
        ("messages_invalid", json!(stats.messages_invalid)),
        ("updates_applied", json!(node.updates_applied)),
        ("updates_duplicate", json!(node.updates_duplicate)),
        ("messages_dropped", json!(node.pushes_dropped)),
        ("collected", json!(node.collected)),
        ("resets", json!(node.resets)),
        ("exchanges_refused", json!(node.exchanges_refused)),
        ("skew_refused", json!(node.skew_refused)),
        ("skew_ms_max", json!(node.skew_ms_max)),
        ("skew_peers", json!(skew_peers.join(","))),
    ];
    if json {
        let object: serde_json::Map<String, serde_json::Value> =
            fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        out!("{}", serde_json::Value::Object(object));
    } else {
        for (name, value) in fields {
            match value {
                serde_json::Value::String(text) => out!("{name}={text}"),
                other => out!("{name}={other}"),
            }
        }
    }
}

fn member_json(member: &MemberInfo) -> serde_json::Value {
    json!({
        "name": member.name,
        "id": member.id.to_string(),
        "addr": member.addr,
        "state": member.state.as_str(),
        "incarnation": member.incarnation,
    })
}

fn stamp_json(stamp: &Stamp) -> serde_json::Value {
    json!({
        "text": stamp.to_string(),
        "wall_ms": stamp.hlc.wall_ms(),
        "logical": stamp.hlc.logical(),
        "node": stamp.node.to_string(),
    })
}

/// Puts bytes in a JSON object: as text when they are UTF-8, else as hex under `<field>_hex`.
fn bytes_json(object: &mut serde_json::Value, field: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => object[field] = json!(text),
        Err(_) => {
            object[format!("{field}_hex")] =
                json!(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
        }
    }
}

/// One line of text for a value: control characters and backslashes escaped.
fn escape(bytes: &[u8]) -> String {
    let mut line = String::new();
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if c.is_control() => line.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => line.push(c),
        }
    }
    line
}

fn parse_wait(text: &str) -> Result<WaitLevel, String> {
    match text {
        "local" => Ok(WaitLevel::Local),
        "all" => Ok(WaitLevel::All),
        count => match count.parse::<u32>() {
            Ok(0) | Err(_) => {
                Err(format!("'{text}': expected local, all, or a number of nodes (1 or more)"))
            }
            Ok(1) => Ok(WaitLevel::Local),
            Ok(count) => Ok(WaitLevel::Count(count)),
        },
    }
}

/// Parses durations such as `500ms`, `30s`, `10m`, `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}': expected a number and a unit (ms, s, m, h)"))?;
    let millis = match unit {
        "ms" => Some(number),
        "s" => number.checked_mul(1_000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => return Err(format!("'{text}': the unit must be ms, s, m or h")),
    };
    millis.map(Duration::from_millis).ok_or_else(|| format!("'{text}': too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        for bad in ["", "s", "10", "10d", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wait_levels_parse() {
        assert_eq!(parse_wait("all"), Ok(WaitLevel::All));
        assert_eq!(parse_wait("local"), Ok(WaitLevel::Local));
        assert_eq!(parse_wait("3"), Ok(WaitLevel::Count(3)));
        assert!(parse_wait("0").is_err());
        assert!(parse_wait("most").is_err());
    }

    #[test]
    fn watch_lines_stay_on_one_line() {
        assert_eq!(escape(b"a\nb\\c\td"), "a\\nb\\\\c\\td");
    }
}
