//! `chorus bench`: short runs print the figures a user reads, as JSON and as a table, against a
//! cluster it starts itself and against running nodes. Timings are measured, never asserted.

mod common;

use common::{Cluster, chorus};

/// Fails the test unless `report[test]` holds sane figures for `done` operations.
#[track_caller]
fn assert_figures(report: &serde_json::Value, test: &str, done: u64) {
    let figures = &report[test];
    for field in ["ops_per_s", "p50_ms", "p99_ms", "max_ms"] {
        let value = figures[field].as_f64();
        assert!(value.is_some_and(|v| v > 0.0), "{test}.{field} = {value:?} in {report}");
    }
    let (p50, p99, max) = (&figures["p50_ms"], &figures["p99_ms"], &figures["max_ms"]);
    assert!(p50.as_f64() <= p99.as_f64() && p99.as_f64() <= max.as_f64(), "{report}");
    assert_eq!(figures["done"], done, "{test} in {report}");
    assert_eq!(figures["errors"], 0, "{test} in {report}");
}

#[test]
fn bench_on_a_local_cluster_reports_put_get_and_propagation() {
    let args = ["bench", "--local", "3", "-c", "4", "-n", "200", "-k", "50", "--writes", "20"];
    let output = chorus(&[&args[..], &["--json"]].concat());
    output.expect_code(0);
    let report = output.json();
    assert_figures(&report, "put", 200);
    assert_figures(&report, "get", 200);
    assert_figures(&report, "propagation", 20);
    // Each write must reach both other nodes, so at least two messages carried it.
    let messages = report["propagation"]["msgs_per_write"].as_f64().unwrap_or(0.0);
    let bytes = report["propagation"]["bytes_per_write"].as_f64().unwrap_or(0.0);
    assert!(messages >= 2.0 && bytes > messages, "{report}");
}

#[test]
fn bench_prints_a_table_and_skips_propagation_on_one_node() {
    let output = chorus(&["bench", "--local", "1", "-c", "2", "-n", "50"]);
    output.expect_code(0);
    let text = output.text();
    for test in ["put ", "get "] {
        assert!(text.lines().any(|line| line.starts_with(test)), "no {test}row: {output}");
    }
    assert!(!text.lines().any(|line| line.starts_with("propagation ")), "{output}");
    assert!(output.stderr.contains("propagation needs two nodes"), "{output}");
}

#[test]
fn bench_measures_running_nodes() {
    let mut cluster = Cluster::start("bench_nodes", &["a", "b"]);
    cluster.await_full_membership();
    let (a, b) = (cluster.node("a").addr(), cluster.node("b").addr());
    let args = ["bench", "--node", a, "--node", b, "-c", "3", "-n", "60", "--writes", "10"];
    let output = chorus(&[&args[..], &["--json"]].concat());
    output.expect_code(0);
    let report = output.json();
    assert_eq!(report["nodes"], 2, "{report}");
    assert_figures(&report, "put", 60);
    assert_figures(&report, "get", 60);
    assert_figures(&report, "propagation", 10);
}

/// 500 clients, each with its own connection: handshakes in waves, the timeout bounding the wait
/// for each in turn (sharing one 5 s deadline, 500 handshakes timed out on 2 cores).
#[test]
fn bench_connects_five_hundred_clients() {
    let output =
        chorus(&["bench", "--local", "1", "-c", "500", "-n", "1000", "-t", "get", "--json"]);
    output.expect_code(0);
    assert_figures(&output.json(), "get", 1000);
}

/// The heal test cuts a local cluster in two under writes, heals it and reports how long
/// every node took to see every write (reported, never timed).
#[test]
fn bench_heal_reports_convergence_after_a_partition() {
    let args = ["bench", "--local", "3", "-t", "heal", "--partition-secs", "1", "-c", "4"];
    let output = chorus(&[&args[..], &["--json"]].concat());
    output.expect_code(0);
    let heal = &output.json()["heal"];
    assert!(heal["writes"].as_u64().is_some_and(|writes| writes > 0), "{heal}");
    assert_eq!(heal["errors"], 0, "{heal}");
    assert!(heal["converged_ms"].as_f64().is_some(), "{heal}");
}
