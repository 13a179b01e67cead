//! The harness of the black-box tests: real `chorus` processes on 127.0.0.1, port 0.
//!
//! - [`Cluster`] starts nodes (the first alone, the others joining it), reads each `ready`
//!   line with a deadline, keeps each node's stderr in a scratch file, prints the tail of every
//!   log when a test fails, and kills every process it started when dropped.
//! - [`Node::cli`] and [`chorus`] run one CLI command with a timeout and return its exit code,
//!   stdout and stderr.
//! - [`eventually`] polls a condition with short sleeps until a generous deadline. Tests never
//!   assert how long something took: shared machines are slow in bursts.
// Each test file uses a different subset of the harness.
#![allow(dead_code, unused_imports)]

mod http;
pub mod load;
mod process;
mod resp;
mod rng;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use http::{Event, Events, Http, HttpResponse, free_tcp_addr, read_response};
pub use process::{Output, Process, chorus, chorus_with};
pub use resp::{Redis, Resp, encode};
pub use rng::Rng;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_chorus");

/// How long a node may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one CLI command may take before the test fails (a client gives up on an
/// unreachable node after 5 s; a waited write after its own timeout plus 10 s).
pub const CLI_TIMEOUT: Duration = Duration::from_secs(40);

/// How long replication (a write, a membership change) may take to reach every node.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long failure detection may take: 10 to 30 s of silence marks a member dead (about 20 s
/// on 5 nodes, ARCHITECTURE.md); the rest is slack for a loaded machine.
pub const DETECT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a terminated node may take to exit (its handoff gives up after 5 s).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of each log printed when a test fails.
pub const LOG_TAIL_LINES: usize = 80;

/// The environment variable of the binary's test-only fault switch (`src/frontend/mod.rs`).
pub const TEST_FAULT_ENV: &str = "CHORUS_TEST_FAULT";

/// Whether the binary under test reads the test-only fault switch ([`TEST_FAULT_ENV`]), which
/// debug builds only do (`cargo test` builds one); when not, says that the test is skipped.
pub fn fault_switch_read() -> bool {
    let read = cfg!(debug_assertions);
    if !read {
        eprintln!("skipped: the fault switch exists in debug builds only");
    }
    read
}

/// Polls `check` until it returns `Ok`, sleeping briefly between attempts; fails the test with
/// the last reason if `timeout` passes first.
pub fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match check() {
            Ok(value) => return value,
            Err(why) if Instant::now() >= deadline => {
                panic!("{what}: not true after {timeout:?} ({attempts} attempts): {why}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Runs `future` to completion on a fresh single-threaded runtime (for `chorus::Client` and
/// raw quinn connections).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    runtime.expect("build a tokio runtime").block_on(future)
}

/// A scratch directory for one test: logs and value files. Kept when the test fails.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// A new empty directory named after `test`.
    pub fn new(test: &str) -> Scratch {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{test}-{}-{nanos}-{unique}", std::process::id());
        let path = std::env::temp_dir().join("chorus-e2e").join(name);
        std::fs::create_dir_all(&path).expect("create the scratch directory");
        Scratch { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` to a file in the directory and returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, bytes).expect("write a scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("scratch files kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// What a node printed on its ready line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready {
    /// `name=`
    pub name: String,
    /// `id=`
    pub id: String,
    /// `listen=`: the address actually bound.
    pub addr: String,
    /// `redis=`: where the node serves Redis (every test node does, on a free port).
    pub redis: Option<String>,
    /// `http=`: where the node serves HTTP (every test node does, on a free port).
    pub http: Option<String>,
}

impl Ready {
    /// Parses `ready name=<name> id=<id> listen=<addr> [redis=<addr>] [http=<addr>]`.
    pub fn parse(line: &str) -> Option<Ready> {
        let rest = line.strip_prefix("ready ")?;
        let mut fields = rest.split(' ').peekable();
        let name = fields.next()?.strip_prefix("name=")?.to_string();
        let id = fields.next()?.strip_prefix("id=")?.to_string();
        let addr = fields.next()?.strip_prefix("listen=")?.to_string();
        let mut optional = |prefix: &str| {
            let value = fields.peek()?.strip_prefix(prefix)?.to_string();
            fields.next();
            Some(value)
        };
        let redis = optional("redis=");
        let http = optional("http=");
        let valid = fields.next().is_none()
            && id.len() == 16
            && id.bytes().all(|b| b.is_ascii_hexdigit())
            && addr.parse::<std::net::SocketAddr>().is_ok_and(|a| a.port() != 0);
        valid.then_some(Ready { name, id, addr, redis, http })
    }
}

/// One line of `chorus members`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Name.
    pub name: String,
    /// Node id.
    pub id: String,
    /// Advertised address.
    pub addr: String,
    /// alive, suspect, dead or left.
    pub state: String,
}

/// A running node of a test cluster.
pub struct Node {
    /// What its ready line said.
    pub ready: Ready,
    /// The cluster key it and its clients use (`None`: the development key).
    pub key: Option<String>,
    /// The process.
    pub process: Process,
}

impl Node {
    /// Starts `chorus node` on 127.0.0.1 port 0, joining `join` if given, without waiting.
    pub fn spawn(name: &str, join: Option<&str>, key: Option<&str>, dir: &Path) -> Process {
        Node::spawn_joining(name, join, key, &[], dir)
    }

    /// [`Node::spawn`] with `env` added to the node's environment.
    pub fn spawn_joining(
        name: &str,
        join: Option<&str>,
        key: Option<&str>,
        env: &[(&str, &str)],
        dir: &Path,
    ) -> Process {
        let seeds: Vec<String> = join.map(str::to_string).into_iter().collect();
        Node::spawn_with("127.0.0.1:0", &seeds, name, key, env, dir)
    }

    /// Starts `chorus node` alone on 127.0.0.1 port 0 with `env` added to its environment
    /// (the test-only fault switch, `CHORUS_THREADS`), without waiting.
    pub fn spawn_with_env(name: &str, env: &[(&str, &str)], dir: &Path) -> Process {
        Node::spawn_with("127.0.0.1:0", &[], name, None, env, dir)
    }

    /// Starts `chorus node` on `listen` with every address in `seeds` as `--join` (its own
    /// address may be among them), without waiting.
    pub fn spawn_at(
        name: &str,
        listen: &str,
        seeds: &[String],
        key: Option<&str>,
        dir: &Path,
    ) -> Process {
        Node::spawn_with(listen, seeds, name, key, &[], dir)
    }

    /// Starts `chorus node`: `key` (`None`: the development key) and then `env` in its
    /// environment.
    fn spawn_with(
        listen: &str,
        seeds: &[String],
        name: &str,
        key: Option<&str>,
        env: &[(&str, &str)],
        dir: &Path,
    ) -> Process {
        let mut args = vec![
            "node",
            "--listen",
            listen,
            "--redis",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--name",
            name,
        ];
        for seed in seeds {
            args.extend(["--join", seed.as_str()]);
        }
        let mut all: Vec<(&str, &str)> =
            key.map(|key| ("CHORUS_CLUSTER_KEY", key)).into_iter().collect();
        all.extend_from_slice(env);
        Process::start(name, &args, &all, dir)
    }

    /// Waits for `process` to print its ready line and returns the node.
    #[track_caller]
    pub fn await_ready(mut process: Process, key: Option<&str>) -> Node {
        let Some(line) = process.next_line(READY_TIMEOUT) else {
            let status = process.wait_exit(Duration::ZERO);
            panic!(
                "{}: no ready line within {READY_TIMEOUT:?} (exit status {status:?})\n{}",
                process.label(),
                process.log_tail()
            );
        };
        let ready = Ready::parse(&line)
            .unwrap_or_else(|| panic!("{}: not a ready line: {line:?}", process.label()));
        assert_eq!(ready.name, process.label(), "the ready line names the node");
        Node { ready, key: key.map(str::to_string), process }
    }

    /// The node's HTTP front end (every test node serves one).
    pub fn http(&self) -> Http {
        Http::new(self.ready.http.as_deref().expect("test nodes serve HTTP"))
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.ready.name
    }

    /// The node's id.
    pub fn id(&self) -> &str {
        &self.ready.id
    }

    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.ready.addr
    }

    /// Runs `chorus ARGS --node ADDR` (and the node's key) with `stdin`.
    pub fn cli_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut args = args.to_vec();
        args.extend(["--node", self.addr()]);
        if let Some(key) = &self.key {
            args.extend(["--cluster-key", key]);
        }
        chorus_with(&args, stdin, &[])
    }

    /// Runs `chorus ARGS --node ADDR` (and the node's key).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_stdin(args, None)
    }

    /// `put KEY VALUE`, which must succeed.
    #[track_caller]
    pub fn put(&self, key: &str, value: &str) {
        self.cli(&["put", key, value]).expect_code(0);
    }

    /// `get KEY`: the value, or `None` if absent (exit 1); any other exit fails the test.
    #[track_caller]
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let output = self.cli(&["get", key]);
        match output.code {
            0 => Some(output.stdout),
            1 if output.stdout.is_empty() => None,
            _ => panic!("get {key} on {}: {output}", self.name()),
        }
    }

    /// Polls until `get KEY` on this node returns `expected` (`None`: absent).
    #[track_caller]
    pub fn await_value(&self, key: &str, expected: Option<&[u8]>) {
        let what = format!("{} reads {key} as {:?}", self.name(), expected.map(lossy));
        eventually(&what, CONVERGE_TIMEOUT, || {
            let found = self.get(key);
            if found.as_deref() == expected {
                Ok(())
            } else {
                Err(format!("found {:?}", found.as_deref().map(lossy)))
            }
        });
    }

    /// `members`, parsed; the command must succeed.
    #[track_caller]
    pub fn members(&self) -> Vec<Member> {
        let output = self.cli(&["members"]);
        output.expect_code(0);
        output
            .text()
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                assert_eq!(fields.len(), 4, "a members line is name, id, address, state: {line:?}");
                Member {
                    name: fields[0].to_string(),
                    id: fields[1].to_string(),
                    addr: fields[2].to_string(),
                    state: fields[3].to_string(),
                }
            })
            .collect()
    }

    /// Polls until this node sees the member with `id` in `state`.
    #[track_caller]
    pub fn await_member_state(&self, id: &str, state: &str, timeout: Duration) {
        let what = format!("{} sees {id} as {state}", self.name());
        eventually(&what, timeout, || {
            let members = self.members();
            match members.iter().find(|member| member.id == id) {
                Some(member) if member.state == state => Ok(()),
                _ => Err(format!("members: {members:?}")),
            }
        });
    }

    /// Starts `chorus watch PREFIX` (with `--json` if asked) against this node.
    pub fn watch(&self, prefix: &str, json: bool, dir: &Path) -> Process {
        let mut args = vec!["watch", prefix, "--node", self.addr()];
        if json {
            args.push("--json");
        }
        if let Some(key) = &self.key {
            args.extend(["--cluster-key", key]);
        }
        Process::start(&format!("watch-{}", self.name()), &args, &[], dir)
    }

    /// A watch prints nothing when it starts: writes `key` through this node until every one
    /// of `watches` printed a line, so that nothing written after this can be missed.
    #[track_caller]
    pub fn await_watches(&self, key: &str, watches: &mut [&mut Process]) {
        eventually("the watches are running", CONVERGE_TIMEOUT, || {
            self.put(key, "1");
            let seen: Vec<bool> = watches
                .iter_mut()
                .map(|watch| watch.next_line(Duration::from_millis(500)).is_some())
                .collect();
            if seen.iter().all(|seen| *seen) { Ok(()) } else { Err(format!("seen: {seen:?}")) }
        });
    }
}

/// Nodes named `names` on free addresses of their own, each given the same seed list (every
/// address, its own included), started together; returns the addresses and the ready nodes.
pub fn start_together(names: &[&str], dir: &Path) -> (Vec<String>, Vec<Node>) {
    let addrs = free_addrs(names.len());
    let processes: Vec<Process> = names
        .iter()
        .zip(&addrs)
        .map(|(name, addr)| Node::spawn_at(name, addr, &addrs, None, dir))
        .collect();
    let nodes = processes.into_iter().map(|process| Node::await_ready(process, None)).collect();
    (addrs, nodes)
}

/// `count` addresses on 127.0.0.1 whose UDP ports were free a moment ago (for nodes that must
/// know each other's addresses before they start, or restart on their own).
pub fn free_addrs(count: usize) -> Vec<String> {
    let sockets: Vec<std::net::UdpSocket> = (0..count)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a free UDP port"))
        .collect();
    sockets.iter().map(|socket| socket.local_addr().expect("bound").to_string()).collect()
}

/// Bytes as text for messages.
pub fn lossy(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]);
    if bytes.len() > 80 { format!("{text}... ({} bytes)", bytes.len()) } else { text.into() }
}

/// Real node processes on 127.0.0.1: the first started alone, the others joining it.
pub struct Cluster {
    /// The nodes, in start order (killed nodes stay, their process gone).
    pub nodes: Vec<Node>,
    /// The cluster key (`None`: the development key).
    pub key: Option<String>,
    /// What every node of it gets in its environment besides the key (`CHORUS_THREADS`).
    env: Vec<(&'static str, &'static str)>,
    /// Logs and scratch files; declared last so that it is dropped after the processes.
    pub scratch: Scratch,
}

impl Cluster {
    /// Starts nodes named `names` with the development key and waits until every node sees
    /// every other alive.
    pub fn start(test: &str, names: &[&str]) -> Cluster {
        Cluster::start_with_key(test, names, None)
    }

    /// Starts nodes named `names` with `key` and waits until every node sees every other
    /// alive.
    pub fn start_with_key(test: &str, names: &[&str], key: Option<&str>) -> Cluster {
        Cluster::start_with(test, names, key, &[])
    }

    /// Starts nodes named `names` with `env` added to each one's environment and waits until
    /// every node sees every other alive.
    pub fn start_with_env(
        test: &str,
        names: &[&str],
        env: &[(&'static str, &'static str)],
    ) -> Cluster {
        Cluster::start_with(test, names, None, env)
    }

    fn start_with(
        test: &str,
        names: &[&str],
        key: Option<&str>,
        env: &[(&'static str, &'static str)],
    ) -> Cluster {
        let scratch = Scratch::new(test);
        let (key_text, env_kept) = (key.map(str::to_string), env.to_vec());
        let mut cluster = Cluster { nodes: Vec::new(), key: key_text, env: env_kept, scratch };
        let dir = cluster.scratch.path().to_path_buf();
        let first = Node::spawn_joining(names[0], None, key, env, &dir);
        cluster.nodes.push(Node::await_ready(first, key));
        // The others start together and join through the first.
        let seed = cluster.nodes[0].addr().to_string();
        let joining: Vec<Process> = names[1..]
            .iter()
            .map(|name| Node::spawn_joining(name, Some(&seed), key, env, &dir))
            .collect();
        for process in joining {
            cluster.nodes.push(Node::await_ready(process, key));
        }
        cluster.await_full_membership();
        cluster
    }

    /// Starts one more node joining the first running node, and waits for its ready line.
    pub fn add(&mut self, name: &str) -> &Node {
        let seed = self
            .nodes
            .iter_mut()
            .find_map(|node| node.process.is_running().then(|| node.addr().to_string()));
        let (key, dir) = (self.key.as_deref(), self.scratch.path());
        let process = Node::spawn_joining(name, seed.as_deref(), key, &self.env, dir);
        self.nodes.push(Node::await_ready(process, self.key.as_deref()));
        self.nodes.last().expect("just pushed")
    }

    /// The node named `name` started last.
    #[track_caller]
    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().rev().find(|node| node.name() == name).expect("a node with that name")
    }

    /// The node named `name` started last, mutably.
    #[track_caller]
    pub fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes.iter_mut().rev().find(|node| node.name() == name).expect("a node with that name")
    }

    /// Polls until every running node lists every running node as alive.
    pub fn await_full_membership(&mut self) {
        let running: Vec<bool> =
            self.nodes.iter_mut().map(|node| node.process.is_running()).collect();
        let running: Vec<&Node> =
            self.nodes.iter().zip(running).filter_map(|(node, up)| up.then_some(node)).collect();
        for node in &running {
            let what = format!("{} sees every node alive", node.name());
            eventually(&what, CONVERGE_TIMEOUT, || {
                let members = node.members();
                let all_alive = running
                    .iter()
                    .all(|other| members.iter().any(|m| m.id == other.id() && m.state == "alive"));
                if all_alive { Ok(()) } else { Err(format!("members: {members:?}")) }
            });
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.process.kill();
        }
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!("{}", node.process.log_tail());
            }
        }
    }
}
