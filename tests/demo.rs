//! `chorus demo`, the quick start's first command: it runs its whole story and exits 0, and
//! each step a newcomer reads is there (propagation, the Redis door, partition, heal, summary).

mod common;

use common::chorus;

#[test]
fn the_demo_tells_its_whole_story() {
    let output = chorus(&["demo", "--nodes", "3", "--json"]);
    output.expect_code(0);
    let steps: Vec<serde_json::Value> = output
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let kinds: Vec<&str> = steps.iter().filter_map(|step| step["step"].as_str()).collect();
    for kind in ["cluster", "arrived", "redis", "summary"] {
        assert!(kinds.contains(&kind), "no {kind} step in {kinds:?}\n{output}");
    }
    let redis = steps.iter().find(|step| step["step"] == "redis").expect("checked above");
    let addr = redis["redis"].as_str().unwrap_or_default();
    assert!(addr.parse::<std::net::SocketAddr>().is_ok(), "the Redis address is shown: {redis}");
}
