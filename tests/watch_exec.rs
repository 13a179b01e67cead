//! Watch handlers (issue 13, item 6): `chorus watch PREFIX --exec CMD` runs CMD for each
//! change made anywhere in the cluster, one run at a time, with the change in its environment
//! and the value on standard input; a failing or overlong run is logged and the watch goes
//! on; and the watch outlives its node's restart on the same address, telling the handler to
//! reload (`reset`) and then handling later changes.

mod common;

use std::path::Path;

use common::{
    CONVERGE_TIMEOUT, EXIT_TIMEOUT, Node, Process, Scratch, block_on, eventually, start_together,
};

/// The handler under test: one line a run, `KIND|KEY|VALUE|REASON`, appended to a file; the
/// key `app/fail` makes it exit 3, `app/slow` makes it outlive its timeout.
/// A run that finds another one's lock directory writes `overlap`: runs are one at a time.
const HANDLER: &str = r#"mkdir "$OUT.lock" || echo overlap >> "$OUT"
printf '%s|%s|%s|%s\n' "$CHORUS_KIND" "$CHORUS_KEY" "$(cat)" "$CHORUS_REASON" >> "$OUT"
sleep 0.1; rmdir "$OUT.lock"
case "$CHORUS_KEY" in app/fail) exit 3;; app/slow) sleep 60;; esac"#;

/// Polls until the handler's file has a line starting with `line`.
#[track_caller]
fn await_handled(out: &Path, line: &str, watch: &Process) {
    eventually(&format!("the handler ran for {line:?}"), CONVERGE_TIMEOUT, || {
        let runs = std::fs::read_to_string(out).unwrap_or_default();
        if runs.lines().any(|run| run.starts_with(line)) {
            Ok(())
        } else {
            Err(format!("runs so far:\n{runs}\n{}", watch.log_tail()))
        }
    });
}

#[test]
fn a_watch_handler_sees_other_nodes_changes_and_survives_its_node_restarting() {
    let scratch = Scratch::new("watch_exec");
    // Both get the same seed list and start together (a node with seeds is ready once it
    // reached one).
    let (addrs, mut nodes) = start_together(&["a", "b"], scratch.path());
    let (b, a) = (nodes.pop().expect("b"), nodes.pop().expect("a"));
    let out = scratch.path().join("runs.txt");
    let out_text = out.to_string_lossy().into_owned();
    let args = ["watch", "app/", "--node", &addrs[0], "--exec", HANDLER, "--exec-timeout", "1s"];
    let watch = Process::start("watch-a", &args, &[("OUT", &out_text)], scratch.path());
    await_handled(&out, "reset|||start", &watch);

    // A change made on b runs the handler of the watch on a, with key and value.
    b.put("app/one", "first value");
    await_handled(&out, "put|app/one|first value|", &watch);
    b.put("other/ignored", "x");
    // A failing run and an overlong one are logged; the changes after them are handled.
    for key in ["app/fail", "app/slow"] {
        b.put(key, "x");
    }
    b.cli(&["del", "app/one"]).expect_code(0);
    await_handled(&out, "del|app/one||", &watch);
    let log = watch.log();
    assert!(log.contains("failed: exit status: 3"), "the failure is logged:\n{log}");
    assert!(log.contains("killed"), "the overlong run is killed and logged:\n{log}");
    let runs = std::fs::read_to_string(&out).expect("the handler's file");
    assert!(!runs.contains("other/ignored"), "only the prefix is watched:\n{runs}");

    // a stops (SIGTERM) and starts again on its own address: the watch reconnects, tells the
    // handler to reload, and handles the changes made after.
    let mut process = a.process;
    process.terminate();
    assert!(process.wait_exit(EXIT_TIMEOUT).is_some(), "a exits\n{}", process.log_tail());
    drop(process);
    let restarted = Node::spawn_at("a", &addrs[0], &addrs, None, scratch.path());
    let _a = Node::await_ready(restarted, None);
    await_handled(&out, "reset|||node restarted", &watch);
    b.put("app/two", "after the restart");
    await_handled(&out, "put|app/two|after the restart|", &watch);
    let runs = std::fs::read_to_string(&out).expect("the handler's file");
    assert!(!runs.contains("overlap"), "runs are one at a time:\n{runs}");
}

/// Whether a process runs (a zombie, killed but not yet reaped by its new parent, does not).
fn runs(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
    state.is_some_and(|state| state != 'Z' && state != 'X')
}

/// SIGTERM stops a watch with exit 0 and kills the run in progress with what it started.
#[test]
fn a_stopped_watch_kills_its_running_handler() {
    let scratch = Scratch::new("watch_exec_stop");
    let (addrs, _nodes) = start_together(&["a"], scratch.path());
    let pid_file = scratch.path().join("handler.pid");
    let pid_text = pid_file.to_string_lossy().into_owned();
    let handler = r#"sleep 60 & echo $! > "$PID_FILE"; wait"#;
    let args = ["watch", "app/", "--node", &addrs[0], "--exec", handler, "--exec-timeout", "2m"];
    let mut watch = Process::start("watch", &args, &[("PID_FILE", &pid_text)], scratch.path());
    let pid = eventually("the handler runs", CONVERGE_TIMEOUT, || {
        let pid = std::fs::read_to_string(&pid_file).unwrap_or_default().trim().to_string();
        if !pid.is_empty() && runs(&pid) { Ok(pid) } else { Err(watch.log_tail()) }
    });
    watch.terminate();
    let status = watch.wait_exit(EXIT_TIMEOUT).expect("the watch exits");
    assert!(status.success(), "{status:?}\n{}", watch.log_tail());
    eventually("the handler's child is killed", CONVERGE_TIMEOUT, || {
        if runs(&pid) { Err(format!("{pid} still runs")) } else { Ok(()) }
    });
}

/// A handler slower than the changes falls behind the node's watch history (64 MiB of
/// values): the watch then runs `reset` (`history lost`), so the application reloads, and goes
/// on with the changes after.
#[test]
fn a_handler_that_falls_behind_the_history_is_told_to_reload() {
    let scratch = Scratch::new("watch_exec_lost");
    let (addrs, nodes) = start_together(&["a"], scratch.path());
    let out = scratch.path().join("runs.txt");
    let out_text = out.to_string_lossy().into_owned();
    // The run for big/0 holds the watch until the test says go.
    let handler = r#"echo "$CHORUS_KIND|$CHORUS_KEY|$CHORUS_REASON" >> "$OUT"
if [ "$CHORUS_KEY" = big/0 ]; then i=0; while [ ! -e "$OUT.go" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; fi"#;
    let args = ["watch", "big/", "--node", &addrs[0], "--exec", handler, "--exec-timeout", "90s"];
    let watch = Process::start("watch", &args, &[("OUT", &out_text)], scratch.path());
    await_handled(&out, "reset||start", &watch);
    let value = vec![b'v'; 1024 * 1024];
    block_on(async {
        let client = chorus::Client::connect(nodes[0].addr(), &[]).await.expect("connect");
        for index in 0..80 {
            let key = format!("big/{index}");
            client.put(&key, &value, Default::default()).await.expect("a 1 MiB put");
        }
        client.close().await;
    });
    await_handled(&out, "put|big/0|", &watch);
    std::fs::write(scratch.path().join("runs.txt.go"), b"").expect("the go file");
    await_handled(&out, "reset||history lost", &watch);
    nodes[0].put("big/after", "x");
    await_handled(&out, "put|big/after|", &watch);
}
