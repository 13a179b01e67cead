//! The CLI's arguments (clap): every command, flag and environment variable of the README's CLI table, and
//! the parsers for durations and wait levels.

use std::net::SocketAddr;
use std::time::Duration;

use chorus::client::{Client, ClientError};
use chorus::text::{parse_duration, parse_wait};
use chorus::tls::ClusterKey;
use chorus_proto::WaitLevel;
use chorus_proto::limits::{VALUE_SIZE_MAX, WAIT_TIMEOUT_MS_MAX};
use clap::{Args, Parser, Subcommand};

/// How long one run of a `watch --exec` handler may take by default (`--exec-timeout`).
pub const HANDLER_TIMEOUT_DEFAULT: &str = "30s";

#[derive(Parser)]
#[command(
    name = "chorus",
    version,
    about = "A replicated key-value store for application variables"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
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
pub struct Connect {
    /// The node to talk to.
    #[arg(long, env = "CHORUS_NODE", default_value = chorus::LISTEN_DEFAULT, global = true)]
    pub node: String,
    #[command(flatten)]
    pub keys: Keys,
    /// Print one JSON object (one per line for watch).
    #[arg(long, global = true)]
    pub json: bool,
    /// Give up on a node that does not answer the handshake within this long (e.g. 500ms).
    #[arg(long, env = "CHORUS_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration, global = true)]
    pub connect_timeout: Duration,
}

impl Connect {
    /// A client of the node these flags name.
    pub async fn client(&self) -> Result<Client, ClientError> {
        Client::connect_within(&self.node, &self.keys.cluster_keys, self.connect_timeout).await
    }
}

/// A KEY argument: its bytes as given (any bytes the shell can pass), or hex with `--hex`, for
/// keys that are not text.
#[derive(Args)]
pub struct KeyArg {
    /// The key.
    pub key: std::ffi::OsString,
    /// KEY (or PREFIX) is hex, two digits a byte: `--hex 6170702fff` names `app/` then 0xff.
    #[arg(long)]
    pub hex: bool,
}

impl KeyArg {
    /// The key's bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        argument_bytes(&self.key, self.hex)
    }
}

/// An optional PREFIX argument, read as [`KeyArg`] reads a key.
#[derive(Args)]
pub struct PrefixArg {
    /// Only keys starting with this (every key when absent).
    pub prefix: Option<std::ffi::OsString>,
    /// PREFIX is hex, two digits a byte.
    #[arg(long)]
    pub hex: bool,
}

impl PrefixArg {
    /// The prefix's bytes (empty when absent).
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        self.prefix.as_ref().map_or(Ok(Vec::new()), |prefix| argument_bytes(prefix, self.hex))
    }
}

/// A key or prefix argument's bytes: as the OS passed them (on Unix, any bytes), or decoded
/// from hex.
fn argument_bytes(argument: &std::ffi::OsStr, hex: bool) -> Result<Vec<u8>, String> {
    let bytes = argument.as_encoded_bytes();
    if !hex {
        return Ok(bytes.to_vec());
    }
    let digit = |byte: u8| (byte as char).to_digit(16);
    if !bytes.len().is_multiple_of(2) {
        return Err(format!("--hex: '{}' has an odd number of digits", argument.display()));
    }
    bytes
        .chunks(2)
        .map(|pair| match (digit(pair[0]), digit(pair[1])) {
            (Some(high), Some(low)) => Ok((high * 16 + low) as u8),
            _ => Err(format!("--hex: '{}' is not hex", argument.display())),
        })
        .collect()
}

#[derive(Args)]
pub struct WaitArgs {
    /// Return once `local`, `all` live members, or N nodes hold the write.
    #[arg(long, default_value = "local", value_parser = parse_wait)]
    pub wait: WaitLevel,
    /// How long to wait for them (at most 60s).
    #[arg(long, default_value = "5s", value_parser = parse_wait_timeout)]
    pub timeout: Duration,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a node.
    Node(NodeArgs),
    /// Write a value (`-` reads it from stdin, `@FILE` from a file).
    Put {
        #[command(flatten)]
        key: KeyArg,
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
        #[command(flatten)]
        key: KeyArg,
        #[command(flatten)]
        connect: Connect,
    },
    /// Delete a key.
    Del {
        #[command(flatten)]
        key: KeyArg,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        connect: Connect,
    },
    /// List keys with a prefix.
    Ls {
        #[command(flatten)]
        prefix: PrefixArg,
        /// At most this many keys.
        #[arg(long)]
        limit: Option<u64>,
        #[command(flatten)]
        connect: Connect,
    },
    /// Print changes to keys with a prefix as they happen (or run a command for each).
    Watch {
        #[command(flatten)]
        prefix: PrefixArg,
        /// Run this shell command (`sh -c`) for each change instead of printing it, one run at
        /// a time: CHORUS_KIND (put, del, expire, or reset: reload everything), CHORUS_KEY,
        /// CHORUS_KEY_HEX, CHORUS_INDEX, CHORUS_STAMP in the environment, the value on
        /// standard input. Reconnects and resumes when the node restarts.
        #[arg(long, value_name = "CMD")]
        exec: Option<String>,
        /// Kill a run of the --exec command that takes longer than this.
        #[arg(long, default_value = HANDLER_TIMEOUT_DEFAULT,
              value_parser = parse_duration, requires = "exec")]
        exec_timeout: Duration,
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
    Bench(BenchArgs),
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
pub struct NodeArgs {
    /// Address to listen on (UDP); port 0 picks a free port.
    #[arg(long, default_value = chorus::LISTEN_DEFAULT)]
    pub listen: SocketAddr,
    /// Seed node to join through (repeatable; DNS names are resolved on every attempt).
    #[arg(long)]
    pub join: Vec<String>,
    /// Name shown to humans (default: host name and port).
    #[arg(long)]
    pub name: Option<String>,
    /// Address peers should use when it differs from --listen (for 0.0.0.0 or NAT).
    #[arg(long)]
    pub advertise: Option<String>,
    #[command(flatten)]
    pub keys: Keys,
    /// Also serve the Redis protocol (RESP2 and RESP3) on this TCP address, e.g.
    /// 127.0.0.1:6379; port 0 picks a free port. Off unless given.
    #[arg(long, value_name = "ADDR")]
    pub redis: Option<SocketAddr>,
    /// The password Redis clients must give (AUTH); required to serve Redis on an address
    /// other than loopback.
    #[arg(long, env = "CHORUS_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// Also serve HTTP on this TCP address: the API, watch, /metrics, /health and /ready, e.g.
    /// 127.0.0.1:8500; port 0 picks a free port. Off unless given.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// The bearer token HTTP clients must send (`Authorization: Bearer TOKEN`; /health and
    /// /ready need none); required to serve HTTP on an address other than loopback.
    #[arg(long, env = "CHORUS_HTTP_TOKEN", hide_env_values = true)]
    pub http_token: Option<String>,
    /// On SIGTERM, report not ready (/ready answers 503) and keep serving this long before
    /// the node stops taking writes and leaves, so that load balancers stop sending first.
    /// Set it to your probe's period times its failure threshold.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Keep the replica on disk in this directory (created if missing): a restart, even of
    /// every node at once, comes back with every write it had acknowledged. In memory only
    /// unless given.
    #[arg(long, env = "CHORUS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// With --data-dir, when a write is acknowledged: always (once on disk, fsynced; writes of
    /// many clients share one fsync), batch=<ms> (at once; committed every <ms>, so a crash
    /// may lose that long of writes), never (at once; committed every 10 s and at shutdown).
    #[arg(long, env = "CHORUS_FSYNC", default_value = "always", value_name = "POLICY")]
    pub fsync: chorus::Fsync,
    /// Threads serving the node: 1 (as Redis: clients, gossip and timers take turns on one
    /// thread, the cheapest per Redis request), or more, for a heavy load on the QUIC RPC (the
    /// CLI, the Rust client), whose TLS work then spreads over that many cores, the Redis
    /// protocol on a thread of its own. Disk commits have threads of their own either way.
    #[arg(long, env = "CHORUS_THREADS", default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
    /// Log level: error, warn, info, debug, trace (or a tracing filter).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Print JSON (the ready line).
    #[arg(long)]
    pub json: bool,
}

/// A test `chorus bench` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Test {
    /// Writes of random keys.
    Put,
    /// Reads of random keys.
    Get,
    /// One write at a time, until every other node's watch reported it.
    Propagation,
    /// A local cluster cut in two under write load, then healed: the time until every node
    /// has seen every write (`--local` only; not in the default set).
    Heal,
}

/// Arguments of `chorus bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// A running node (repeatable): put and get go to the first; propagation writes at the
    /// first and watches the others.
    #[arg(long = "node", env = "CHORUS_NODE", value_delimiter = ',', conflicts_with = "local")]
    pub nodes: Vec<String>,
    /// Start a local cluster of N nodes in this process instead (loopback, development key).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub local: Option<u16>,
    #[command(flatten)]
    pub cluster: Keys,
    /// Concurrent clients, each with its own connection.
    #[arg(short = 'c', long = "clients", default_value_t = 50,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub clients: u16,
    /// Requests per test (put, get).
    #[arg(short = 'n', long = "requests", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,
    /// Value size in bytes.
    #[arg(short = 'd', long = "data-size", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(0..=VALUE_SIZE_MAX as i64))]
    pub data_size: u32,
    /// Key space: keys are drawn uniformly from this many.
    #[arg(short = 'k', long = "keys", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// Put each key of the key space once, in order (-n is then the key count): fills a node
    /// with exactly `-k` keys, for measurements over a known data set.
    #[arg(long)]
    pub fill: bool,
    /// Tests to run, comma-separated.
    #[arg(
        short = 't',
        long = "tests",
        value_delimiter = ',',
        default_value = "put,get,propagation"
    )]
    pub tests: Vec<Test>,
    /// Writes timed by the propagation test.
    #[arg(long = "writes", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub writes: u64,
    /// How long the heal test keeps the cluster cut in two, under write load, in seconds
    /// (30 s: long enough for each side to declare the other dead).
    #[arg(long = "partition-secs", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub partition_secs: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A wait's timeout: a duration of at most `WAIT_TIMEOUT_MS_MAX`, which the node enforces
/// too; checked here so the mistake is a usage error before anything is sent.
pub fn parse_wait_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text)?;
    if timeout.as_millis() > u128::from(WAIT_TIMEOUT_MS_MAX) {
        let max_s = WAIT_TIMEOUT_MS_MAX / 1_000;
        return Err(format!("'{text}': a write waits at most {max_s}s"));
    }
    Ok(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keys_decode_and_refuse_nonsense() {
        let hex = |text: &str| argument_bytes(std::ffi::OsStr::new(text), true);
        assert_eq!(hex("6170702fFF"), Ok(b"app/\xff".to_vec()));
        assert!(hex("abc").is_err() && hex("zz").is_err() && hex("+1").is_err());
        assert_eq!(argument_bytes(std::ffi::OsStr::new("6f"), false), Ok(b"6f".to_vec()));
    }

    #[test]
    fn wait_timeouts_are_bounded() {
        assert_eq!(parse_wait_timeout("60s"), Ok(Duration::from_secs(60)));
        assert!(parse_wait_timeout("61s").is_err() && parse_wait_timeout("2h").is_err());
    }
}
