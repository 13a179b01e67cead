//! The data file on a real file system: a round trip, and every refusal.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chorus_proto::disk::{Batch, DiskState, Journal};
use chorus_proto::{Hlc, Key, NodeId, Stamp, Update, Value};

use super::*;

/// A fresh directory under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("chorus-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const MARKER: [u8; CLUSTER_MARKER_SIZE] = [7; CLUSTER_MARKER_SIZE];

fn update(key: &str, seq: u64, value: Option<&str>) -> Update {
    Update {
        key: Key::new(key).unwrap(),
        stamp: Stamp { hlc: Hlc::new(1_000 + seq, 0), node: NodeId(1) },
        seq,
        value: value.map(|v| Value::new(v).unwrap()),
        expires_at_ms: None,
    }
}

fn batch(reset: bool, rows: &[(&str, Option<Update>)], bases: u64) -> Batch {
    let rows = rows.iter().map(|(key, row)| (Key::new(key).unwrap(), row.clone())).collect();
    let state = DiskState {
        id: NodeId(1),
        bases: BTreeMap::from([(NodeId(1), bases)]),
        ..DiskState::default()
    };
    Batch { journal: Journal { reset, rows }, state }
}

#[test]
fn batches_come_back_on_reopen_and_a_reset_drops_every_row() {
    let scratch = Scratch::new("round-trip");
    let (dir, restored) = DataDir::open(&scratch.0, &[MARKER]).unwrap();
    assert!(restored.is_none(), "a new directory holds nothing");
    let a = update("a", 1, Some("1"));
    let b = update("b", 2, None);
    dir.write(&batch(false, &[("a", Some(a.clone())), ("b", Some(b.clone()))], 2)).unwrap();
    dir.write(&batch(false, &[("b", None)], 3)).unwrap();
    drop(dir);
    let (dir, restored) = DataDir::open(&scratch.0, &[MARKER]).unwrap();
    let restored = restored.expect("a state was written");
    assert_eq!(restored.entries, vec![a]);
    assert_eq!(restored.state.bases[&NodeId(1)], 3);
    dir.write(&batch(true, &[("c", Some(update("c", 4, Some("4"))))], 4)).unwrap();
    drop(dir);
    let (_, restored) = DataDir::open(&scratch.0, &[MARKER]).unwrap();
    let keys: Vec<_> = restored.unwrap().entries.into_iter().map(|u| u.key).collect();
    assert_eq!(keys, vec![Key::new("c").unwrap()]);
}

#[test]
fn a_file_open_in_another_process_is_refused_as_in_use() {
    let scratch = Scratch::new("in-use");
    let (_open, _) = DataDir::open(&scratch.0, &[MARKER]).unwrap();
    let refused = DataDir::open(&scratch.0, &[MARKER]).err().expect("refused");
    assert!(matches!(refused, DataDirError::InUse { .. }), "{refused}");
}

#[test]
fn another_clusters_file_is_refused_and_a_rotated_key_is_accepted() {
    let scratch = Scratch::new("foreign");
    let (dir, _) = DataDir::open(&scratch.0, &[MARKER]).unwrap();
    dir.write(&batch(false, &[], 0)).unwrap();
    drop(dir);
    let other = [9; CLUSTER_MARKER_SIZE];
    let refused = DataDir::open(&scratch.0, &[other]).err().expect("refused");
    assert!(matches!(refused, DataDirError::ForeignCluster { .. }), "{refused}");
    // While rotating, the old key is still listed: accepted, and re-marked for the new one.
    assert!(DataDir::open(&scratch.0, &[other, MARKER]).unwrap().1.is_some());
    assert!(DataDir::open(&scratch.0, &[other]).is_ok());
}

#[test]
fn truncated_garbled_and_foreign_files_are_refused_and_left_alone() {
    let scratch = Scratch::new("corrupt");
    let (dir, _) = DataDir::open(&scratch.0, &[MARKER]).unwrap();
    let rows: Vec<_> =
        (1..200).map(|i| (format!("k{i}"), update(&format!("k{i}"), i, Some("v")))).collect();
    let rows: Vec<_> = rows.iter().map(|(k, u)| (k.as_str(), Some(u.clone()))).collect();
    dir.write(&batch(false, &rows, 199)).unwrap();
    drop(dir);
    let file = scratch.0.join(DATA_FILE);
    let whole = std::fs::read(&file).unwrap();
    let damaged: [(&str, Vec<u8>); 4] = [
        ("truncated", whole[..whole.len() / 2].to_vec()),
        ("empty", Vec::new()),
        (
            "garbled",
            whole.iter().enumerate().map(|(i, b)| if i % 97 == 5 { !b } else { *b }).collect(),
        ),
        ("foreign", b"not a database at all, just text".repeat(100)),
    ];
    for (what, bytes) in damaged {
        std::fs::write(&file, &bytes).unwrap();
        let refused = DataDir::open(&scratch.0, &[MARKER]).err();
        let refused = refused.unwrap_or_else(|| panic!("a {what} file was accepted"));
        assert!(refused.to_string().contains("refusing the data file"), "{what}: {refused}");
        assert_eq!(std::fs::read(&file).unwrap(), bytes, "a {what} file was changed");
    }
}
