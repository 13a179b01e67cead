//! Data directories (`--data-dir`, issue 14) through the real binary: a whole cluster killed at
//! once under load keeps every acknowledged write and every delete; an old copy of a data
//! directory never brings back a delete the cluster has since collected; a damaged or foreign
//! file is refused with a clear message and left as it is; a node whose disk fills is not
//! ready and says why; a node stopped while a write waits for a slow commit exits with the
//! write on disk. `tests/bench_persist.sh` measures durable write throughput.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus::tls::ClusterKey;
use chorus::{Client, WaitLevel, WriteOptions};
use common::{
    CONVERGE_TIMEOUT, EXIT_TIMEOUT, Node, Process, Scratch, block_on, chorus, eventually,
    free_addrs,
};

/// Writers per node during the load.
const WRITERS_PER_NODE: usize = 2;

/// Writes each writer makes at most before the kill (the kill usually comes first).
const WRITES_PER_WRITER_MAX: usize = 400;

/// Starts `chorus node` on `listen` with a data directory, joining `seeds`, with `env`.
fn spawn(
    name: &str,
    listen: &str,
    seeds: &[String],
    data: &Path,
    env: &[(&str, &str)],
    dir: &Path,
) -> Process {
    let data = data.to_str().expect("a UTF-8 path");
    let mut args = vec!["node", "--listen", listen, "--name", name, "--data-dir", data];
    for seed in seeds {
        args.extend(["--join", seed.as_str()]);
    }
    Process::start(name, &args, env, dir)
}

/// What the load did to one key: its value if a put was acknowledged, whether a delete was,
/// and whether an operation on it was still in flight when the nodes died.
#[derive(Clone, Debug, Default)]
struct Fate {
    put: Option<String>,
    deleted: bool,
    in_flight: bool,
}

type Fates = Arc<Mutex<BTreeMap<String, Fate>>>;

/// One writer: puts `w/KEY` with `--wait all`, and deletes every third key it wrote two steps
/// before, recording what was acknowledged, until the nodes die or `stop` is set.
fn writer(addr: String, prefix: String, fates: Fates, stop: Arc<AtomicBool>) {
    block_on(async move {
        let Ok(client) = Client::connect(&addr, &[ClusterKey::development()]).await else { return };
        let options = WriteOptions {
            wait: WaitLevel::All,
            timeout: Duration::from_secs(5),
            ..WriteOptions::default()
        };
        let record = |key: &str, change: &dyn Fn(&mut Fate)| {
            change(fates.lock().unwrap().entry(key.to_string()).or_default());
        };
        for step in 0..WRITES_PER_WRITER_MAX {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let key = format!("{prefix}/{step:04}");
            let value = format!("v{step}");
            record(&key, &|fate| fate.in_flight = true);
            if client.put(&key, &value, options).await.is_err() {
                return;
            }
            record(&key, &|fate| (fate.put, fate.in_flight) = (Some(value.clone()), false));
            if step % 3 == 2 {
                let doomed = format!("{prefix}/{:04}", step - 2);
                record(&doomed, &|fate| fate.in_flight = true);
                if client.delete(&doomed, options).await.is_err() {
                    return;
                }
                record(&doomed, &|fate| (fate.deleted, fate.in_flight) = (true, false));
            }
        }
    });
}

/// Checks every key whose fate is certain on the node at `addr`; the first mismatch, if any.
fn mismatch(addr: &str, fates: &BTreeMap<String, Fate>) -> Result<(), String> {
    block_on(async {
        let client =
            Client::connect(addr, &[ClusterKey::development()]).await.map_err(|e| e.to_string())?;
        for (key, fate) in fates.iter().filter(|(_, fate)| !fate.in_flight) {
            let found = client.get(key).await.map_err(|e| e.to_string())?;
            let found =
                found.map(|(value, _)| String::from_utf8_lossy(value.as_bytes()).into_owned());
            let expected = if fate.deleted { None } else { fate.put.clone() };
            if found != expected {
                return Err(format!("{key}: found {found:?}, expected {expected:?}"));
            }
        }
        client.close().await;
        Ok(())
    })
}

#[test]
fn a_whole_cluster_killed_at_once_keeps_every_acknowledged_write_and_delete() {
    let scratch = Scratch::new("persist_kill_all");
    let addrs = free_addrs(3);
    let names = ["p1", "p2", "p3"];
    let data: Vec<PathBuf> =
        names.iter().map(|name| scratch.path().join(format!("{name}-data"))).collect();
    let start = |seeds: &[String]| -> Vec<Node> {
        let processes: Vec<Process> = (0..3)
            .map(|i| spawn(names[i], &addrs[i], seeds, &data[i], &[], scratch.path()))
            .collect();
        processes.into_iter().map(|process| Node::await_ready(process, None)).collect()
    };
    let mut nodes = start(&addrs);
    let ids: Vec<String> = nodes.iter().map(|node| node.id().to_string()).collect();
    eventually("every node sees three members alive", CONVERGE_TIMEOUT, || {
        let alive = nodes
            .iter()
            .all(|node| node.members().iter().filter(|m| m.state == "alive").count() == 3);
        if alive { Ok(()) } else { Err("not yet".into()) }
    });

    let fates: Fates = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3 * WRITERS_PER_NODE)
        .map(|w| {
            let (addr, prefix) = (addrs[w % 3].clone(), format!("w{w}"));
            let (fates, stop) = (fates.clone(), stop.clone());
            std::thread::spawn(move || writer(addr, prefix, fates, stop))
        })
        .collect();
    eventually("the load acknowledged some writes", CONVERGE_TIMEOUT, || {
        let acked = fates.lock().unwrap().values().filter(|fate| fate.deleted).count();
        if acked >= 20 { Ok(()) } else { Err(format!("{acked} deletes acknowledged")) }
    });
    // kill -9 of all three at once, with writes in flight.
    for node in &mut nodes {
        node.process.kill();
    }
    stop.store(true, Ordering::Relaxed);
    writers.into_iter().for_each(|writer| writer.join().expect("a writer thread"));
    let fates = fates.lock().unwrap().clone();
    let acked = fates.values().filter(|fate| !fate.in_flight && fate.put.is_some()).count();
    assert!(acked >= 20, "the load wrote too little to prove anything: {acked}");

    // Restarted without --join: each node rejoins the peers its data directory knew.
    let nodes = start(&[]);
    for (node, old) in nodes.iter().zip(&ids) {
        assert_ne!(node.id(), old, "{} restored under a new identity", node.name());
        eventually(
            &format!("{} holds every acknowledged write and delete", node.name()),
            CONVERGE_TIMEOUT,
            || mismatch(node.addr(), &fates),
        );
    }
    eventually("the restarted nodes see each other", CONVERGE_TIMEOUT, || {
        let alive = nodes
            .iter()
            .all(|node| node.members().iter().filter(|m| m.state == "alive").count() == 3);
        if alive { Ok(()) } else { Err("not yet".into()) }
    });
}

/// Short collection for the test: tombstones kept 1 s once stable, dead members listed 10 s.
const QUICK: [(&str, &str); 2] =
    [("CHORUS_TEST_TOMBSTONE_GRACE_MS", "1000"), ("CHORUS_TEST_DEAD_REMOVE_MS", "10000")];

fn tombstones(node: &Node) -> u64 {
    let stats = node.cli(&["stats", "--json"]);
    stats.expect_code(0);
    stats.json()["tombstones"]
        .as_u64()
        .unwrap_or_else(|| panic!("stats without tombstones: {}", stats.text()))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn an_old_copy_of_a_data_directory_never_brings_a_collected_delete_back() {
    let scratch = Scratch::new("persist_old_copy");
    let addrs = free_addrs(3);
    let names = ["o1", "o2", "o3"];
    let data: Vec<PathBuf> =
        names.iter().map(|name| scratch.path().join(format!("{name}-data"))).collect();
    let spawn_node =
        |i: usize| spawn(names[i], &addrs[i], &addrs, &data[i], &QUICK, scratch.path());
    let processes: Vec<Process> = (0..3).map(spawn_node).collect();
    let mut nodes: Vec<Node> =
        processes.into_iter().map(|process| Node::await_ready(process, None)).collect();
    nodes[0]
        .cli(&["put", "config/kept", "yes", "--wait", "all", "--timeout", "20s"])
        .expect_code(0);
    nodes[0]
        .cli(&["put", "session/1", "alive", "--wait", "all", "--timeout", "20s"])
        .expect_code(0);

    // A copy of o3's directory while the session is alive (taken with o3 stopped cleanly).
    let mut o3 = nodes.pop().unwrap();
    o3.process.terminate();
    assert!(o3.process.wait_exit(EXIT_TIMEOUT).is_some(), "o3 exits on SIGTERM");
    let backup = scratch.path().join("o3-backup");
    copy_dir(&data[2], &backup);
    nodes.push(Node::await_ready(spawn_node(2), None));
    nodes[2].await_value("session/1", Some(b"alive"));

    // The session is deleted and its tombstone collected everywhere.
    nodes[0].cli(&["del", "session/1", "--wait", "all", "--timeout", "20s"]).expect_code(0);
    for node in &nodes {
        eventually(
            &format!("{} collected the tombstone", node.name()),
            Duration::from_secs(60),
            || match tombstones(node) {
                0 => Ok(()),
                held => Err(format!("{held} tombstones held")),
            },
        );
    }

    // o3 is killed and restored from the old copy, which still holds the session.
    let mut o3 = nodes.pop().unwrap();
    o3.process.kill();
    std::fs::remove_dir_all(&data[2]).unwrap();
    copy_dir(&backup, &data[2]);
    nodes.push(Node::await_ready(spawn_node(2), None));
    for _ in 0..20 {
        for node in &nodes {
            assert_eq!(
                node.get("session/1"),
                None,
                "{} reads a collected delete back",
                node.name()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    nodes[2].await_value("config/kept", Some(b"yes"));
    let log = nodes[2].process.log();
    assert!(
        log.contains("dropped its state"),
        "the restored node should drop its stale state:\n{}",
        nodes[2].process.log_tail()
    );
}

/// Starts a node on `data` and expects it to refuse the directory: exit 2, a message naming
/// the file, nothing changed on disk.
#[track_caller]
fn expect_refusal(data: &Path, env: &[(&str, &str)], scratch: &Scratch, says: &str) {
    let file = data.join("chorus.redb");
    let before = std::fs::read(&file).unwrap();
    let mut process = spawn("refused", "127.0.0.1:0", &[], data, env, scratch.path());
    let status = process.wait_exit(EXIT_TIMEOUT).expect("a node refusing its data directory exits");
    assert_eq!(status.code(), Some(2), "exit code\n{}", process.log_tail());
    let log = process.log();
    assert!(
        log.contains("refusing the data file") && log.contains(says),
        "message\n{}",
        process.log_tail()
    );
    assert!(log.contains(file.to_str().unwrap()), "the message names the file\n{log}");
    assert!(std::fs::read(&file).unwrap() == before, "the refused file was changed ({says})");
}

#[test]
fn a_truncated_corrupt_or_foreign_data_file_is_refused_and_left_alone() {
    let scratch = Scratch::new("persist_refused");
    let data = scratch.path().join("data");
    let node =
        Node::await_ready(spawn("first", "127.0.0.1:0", &[], &data, &[], scratch.path()), None);
    for i in 0..50 {
        node.cli(&["put", &format!("k{i}"), "value"]).expect_code(0);
    }
    let mut process = node.process;
    process.terminate();
    assert!(process.wait_exit(EXIT_TIMEOUT).is_some());
    let file = data.join("chorus.redb");
    let whole = std::fs::read(&file).unwrap();

    // Another cluster's key.
    let key = common::chorus(&["keygen"]).text().trim().to_string();
    expect_refusal(&data, &[("CHORUS_CLUSTER_KEY", &key)], &scratch, "another cluster key");
    // Truncated, then garbled.
    std::fs::write(&file, &whole[..whole.len() / 2]).unwrap();
    expect_refusal(&data, &[], &scratch, "");
    let garbled: Vec<u8> =
        whole.iter().enumerate().map(|(i, b)| if i % 61 == 7 { !b } else { *b }).collect();
    std::fs::write(&file, garbled).unwrap();
    expect_refusal(&data, &[], &scratch, "");
    // The intact file is still this cluster's.
    std::fs::write(&file, &whole).unwrap();
    let node =
        Node::await_ready(spawn("again", "127.0.0.1:0", &[], &data, &[], scratch.path()), None);
    node.await_value("k49", Some(b"value"));
}

/// Blocks of 512 bytes (2 MiB) the full-disk test lets a node's files reach: room for the
/// data file as created (72 KiB) and about a dozen 64 KiB values, well short of the 16 MiB it
/// writes. redb doubles the file when it grows, so the failure is that growth (`set_len`
/// refused with `EFBIG`); on a real full disk it is more often a write or an fsync.
const FULL_DISK_BLOCKS: u64 = 4_096;

#[test]
fn a_node_whose_data_directory_fails_is_not_ready_and_says_why() {
    let scratch = Scratch::new("persist_full");
    let data = scratch.path().join("data");
    let data = data.to_str().expect("a UTF-8 path");
    let args = ["node", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--name", "full"];
    let args = [&args[..], &["--data-dir", data]].concat();
    let process = Process::start_file_limited("full", &args, &[], scratch.path(), FULL_DISK_BLOCKS);
    let node = Node::await_ready(process, None);
    let http = node.http();
    assert_eq!(http.get("/ready").status, 200);
    // 64 KiB values until the data file passes the limit (at most 16 MiB of them).
    let value = vec![b'v'; 64 * 1024];
    let failed = (0..256).find_map(|i| {
        let written = http.put(&format!("/v1/kv/k{i}"), &value);
        (written.status != 200).then_some((i, written))
    });
    let Some((first_failed, written)) = failed else {
        panic!("no write failed past the file size limit\n{}", node.process.log_tail())
    };
    assert!(first_failed > 0, "the first write already failed\n{}", node.process.log_tail());
    assert_eq!(written.status, 500, "{}", written.text());
    assert_eq!(written.json()["error"], "not_durable", "{}", written.text());
    // Not ready, saying why, from the failure on; later writes fail at once; reads go on.
    let ready = http.get("/ready");
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(ready.text().contains("the data directory failed"), "{}", ready.text());
    assert_eq!(http.put("/v1/kv/after", b"small").status, 500);
    assert_eq!(http.get("/v1/kv/k0").status, 200);
    assert_eq!(http.get(&format!("/v1/kv/k{first_failed}")).status, 200, "applied in memory");
    assert_eq!(http.get("/health").status, 200);
    assert!(node.process.log().contains("writing the data directory failed"));
    // Restarted on a disk with room, it is ready and holds every acknowledged write.
    let mut process = node.process;
    process.terminate();
    assert!(process.wait_exit(EXIT_TIMEOUT).is_some(), "{}", process.log_tail());
    let args: Vec<&str> =
        args.iter().map(|arg| if *arg == "full" { "again" } else { arg }).collect();
    let node = Node::await_ready(Process::start("again", &args, &[], scratch.path()), None);
    let http = node.http();
    assert_eq!(http.get("/ready").status, 200);
    for i in 0..first_failed {
        assert_eq!(http.get(&format!("/v1/kv/k{i}")).body, value, "k{i} was acknowledged");
    }
}

/// A node stopped with SIGTERM while a write waits for its commit: the write is on disk when
/// the process has exited, whatever its client was told, and a client told it succeeded is
/// right. Two things keep it: the shutdown's own commit waits for the one under way, and the
/// runtime, dropped before the process exits, waits for the blocking thread that writes (with
/// both taken out, the write is lost and this fails; with either, it passes). The commit is
/// held by the test-only fault switch (`persist-commit-stall`, read by debug builds only), as
/// a slow disk would, until another commit is asked for: the shutdown's always comes while
/// this one is under way. No drain period, so the shutdown begins right after the SIGTERM.
#[test]
fn a_shutdown_while_a_write_waits_for_the_disk_finishes_the_commit() {
    if !common::fault_switch_read() {
        return;
    }
    let scratch = Scratch::new("persist_stall");
    let data = scratch.path().join("data");
    let fault = [(common::TEST_FAULT_ENV, "persist-commit-stall")];
    let dir = data.to_str().expect("a UTF-8 path");
    let args =
        ["node", "--listen", "127.0.0.1:0", "--name", "stall", "--data-dir", dir, "--drain", "0s"];
    let node = Node::await_ready(Process::start("stall", &args, &fault, scratch.path()), None);
    let addr = node.ready.addr.clone();
    let put = std::thread::spawn(move || chorus(&["put", "held", "v", "--node", &addr]));
    eventually("the write's commit is held", CONVERGE_TIMEOUT, || {
        let log = node.process.log();
        let held = log.contains("test fault: this commit is held");
        held.then_some(()).ok_or_else(|| format!("put done: {}\n{log}", put.is_finished()))
    });
    let mut process = node.process;
    process.terminate();
    let status = process.wait_exit(EXIT_TIMEOUT);
    assert!(status.is_some_and(|status| status.success()), "{status:?}\n{}", process.log_tail());
    // The race this is about: the shutdown began while the commit was held.
    let log = process.log();
    let at = |line: &str| log.find(line).unwrap_or_else(|| panic!("no {line:?} in\n{log}"));
    let (shutdown, written) = ("shutting down: handing off", "test fault: the held commit goes");
    assert!(at(shutdown) < at(written), "{log}");
    let put = put.join().expect("the put's thread");
    // Told or not, the client knows: success, or an error that says why.
    assert!(put.code == 0 || !put.stderr.trim().is_empty(), "{put}");
    let again = spawn("again", "127.0.0.1:0", &[], &data, &[], scratch.path());
    let node = Node::await_ready(again, None);
    assert_eq!(node.get("held").as_deref(), Some(&b"v"[..]), "put: {put}");
}
