//! Child processes of the tests: one-shot CLI commands with a timeout, and long-running ones
//! (nodes, watches) whose stdout is read line by line and whose stderr goes to a file.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{BIN, CLI_TIMEOUT, LOG_TAIL_LINES};

/// What a finished CLI command left behind.
#[derive(Debug)]
pub struct Output {
    /// The exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output, as bytes (values are arbitrary bytes).
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Standard output as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard output parsed as one JSON value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {self}"))
    }

    /// Fails the test unless the command exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Output {
        assert_eq!(self.code, code, "unexpected exit code: {self}");
        self
    }

    /// Fails the test unless stderr is exactly one non-empty line.
    #[track_caller]
    pub fn expect_one_stderr_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert!(lines.len() == 1 && !lines[0].trim().is_empty(), "stderr not one line: {self}");
        lines[0]
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.stdout[..self.stdout.len().min(2000)];
        let more = if shown.len() < self.stdout.len() { "..." } else { "" };
        let stdout = format!("{}{more}", String::from_utf8_lossy(shown));
        write!(f, "exit {}\n--- stdout\n{stdout}\n--- stderr\n{}", self.code, self.stderr)
    }
}

/// A `chorus` command with no inherited chorus settings: the environment of the machine
/// running the tests must not change what they test.
fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args);
    without_chorus_settings(command)
}

/// The chorus settings read from the environment, removed before each test sets its own.
const CHORUS_SETTINGS: &[&str] = &[
    "CHORUS_CLUSTER_KEY",
    "CHORUS_NODE",
    "CHORUS_THREADS",
    "CHORUS_DATA_DIR",
    "CHORUS_FSYNC",
    "CHORUS_REDIS_PASSWORD",
    "CHORUS_HTTP_TOKEN",
    "CHORUS_TEST_FAULT",
    "RUST_LOG",
];

fn without_chorus_settings(mut command: Command) -> Command {
    for setting in CHORUS_SETTINGS {
        command.env_remove(setting);
    }
    command
}

/// Runs `chorus ARGS` with `stdin` and extra environment, and waits at most [`CLI_TIMEOUT`].
pub fn chorus_with(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
    let mut command = command(args);
    command.envs(env.iter().copied());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("start chorus");
    let writer = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let bytes = bytes.to_vec();
        // A command that fails early stops reading; a broken pipe is then expected.
        std::thread::spawn(move || drop(pipe.write_all(&bytes)))
    });
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll chorus") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`chorus {}` did not finish within {CLI_TIMEOUT:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let stdout = stdout.join().expect("stdout reader");
    let stderr = String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned();
    Output { code: status.code().unwrap_or(-1), stdout, stderr }
}

/// Runs `chorus ARGS` (no stdin, no extra environment).
pub fn chorus(args: &[&str]) -> Output {
    chorus_with(args, None, &[])
}

/// Reads a pipe to its end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// A long-running child (a node or a watch): stdout read line by line on a thread, stderr in
/// a file. Killed when dropped.
pub struct Process {
    label: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: PathBuf,
    status: Option<ExitStatus>,
}

impl Process {
    /// Starts `chorus ARGS` with `env`, its stderr going to `DIR/LABEL.log`.
    pub fn start(label: &str, args: &[&str], env: &[(&str, &str)], dir: &Path) -> Process {
        Process::spawn(label, command(args), env, dir)
    }

    /// Starts `chorus ARGS` as [`Process::start`] does, with every file it writes limited to
    /// `blocks` blocks of 512 bytes (`ulimit -f`, through `sh`) and the signal for going past
    /// the limit ignored: a write past it then fails with `EFBIG`, as on a full disk, and the
    /// process goes on.
    pub fn start_file_limited(
        label: &str,
        args: &[&str],
        env: &[(&str, &str)],
        dir: &Path,
        blocks: u64,
    ) -> Process {
        let mut command = Command::new("sh");
        // Without the limit the test would not test it: exit rather than run unlimited.
        let script = "trap '' XFSZ; ulimit -f \"$1\" || exit 125; shift; exec \"$@\"";
        command.args(["-c", script, "sh", &blocks.to_string(), BIN]).args(args);
        Process::spawn(label, without_chorus_settings(command), env, dir)
    }

    fn spawn(label: &str, mut command: Command, env: &[(&str, &str)], dir: &Path) -> Process {
        let stderr = dir.join(format!("{label}.log"));
        let log = std::fs::File::create(&stderr).expect("create a log file");
        let mut child = command
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start chorus");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            // Ends at end of file, that is when the process exits or is killed.
            while reader.read_until(b'\n', &mut line).is_ok_and(|read| read > 0) {
                let text = String::from_utf8_lossy(&line).trim_end_matches('\n').to_string();
                if sender.send(text).is_err() {
                    return;
                }
                line.clear();
            }
        });
        Process { label: label.to_string(), child, lines, seen: Vec::new(), stderr, status: None }
    }

    /// The label given at start (a node's name).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line of stdout, or `None` if none came before `timeout` or stdout closed.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Reads stdout until a line satisfies `matches`, within `timeout`; fails the test if
    /// none does.
    #[track_caller]
    pub fn expect_line(&mut self, timeout: Duration, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next_line(left) {
                Some(line) if matches(&line) => return line,
                Some(_) => {}
                None => break,
            }
        }
        panic!(
            "{}: no matching line within {timeout:?}; lines so far: {:#?}\n{}",
            self.label,
            self.seen,
            self.log_tail()
        );
    }

    /// Lines of stdout read so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// The log (stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The last lines of the log, for a failure message.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("--- {} stderr ({}), last lines:\n{tail}", self.label, self.stderr.display())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// How the process ended, or `None` while it runs.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("poll a child");
        }
        self.status
    }

    /// Kills the process at once (SIGKILL, as `kill -9`) and reaps it.
    pub fn kill(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// Sends SIGTERM (through `kill(1)`, to this process's id only).
    pub fn terminate(&mut self) {
        if self.try_status().is_none() {
            let pid = self.pid().to_string();
            let status = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
            assert!(status.success(), "kill -TERM {pid} failed");
        }
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
