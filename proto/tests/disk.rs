//! Data directories in the in-memory cluster: nodes keep journals, a model disk applies their
//! batches (every row through the on-disk encoding), and nodes restart from what it kept.
//! Restored state must come back whole, and an old copy must never bring a delete back.

mod harness;

use std::cell::Cell;

use chorus_proto::disk::{Batch, DiskImage, DiskState};
use chorus_proto::{Event, ResetReason};
use harness::{Cluster, key};

/// One node's data directory, in memory.
#[derive(Clone, Debug, Default)]
struct Disk(DiskImage);

impl Disk {
    fn sync(&mut self, cluster: &mut Cluster, index: usize) {
        let batch = cluster.take_batch(index);
        // The state record goes through its encoding too.
        let state = DiskState::decode(&batch.state.encode().unwrap()).unwrap();
        self.0.apply(Batch { state, ..batch });
    }

    fn restore(&self, cluster: &mut Cluster, index: usize) {
        let (state, entries) = self.0.restorable().expect("a state was written");
        cluster.restore(index, state, entries);
    }
}

#[test]
fn a_whole_cluster_crashed_at_once_comes_back_from_its_disks() {
    let mut cluster = Cluster::new(3);
    cluster.keep_journals();
    let mut disks = vec![Disk::default(); 3];
    cluster.put(0, "app/flag", "on");
    cluster.put(1, "app/gone", "soon");
    cluster.put(2, "app/ttl", "later");
    cluster.run_for(2_000);
    cluster.write(1, "app/gone", None, None, chorus_proto::WaitLevel::Local, 0);
    cluster.run_for(2_000);
    let old_ids: Vec<_> = (0..3).map(|i| cluster.id(i)).collect();
    for (index, disk) in disks.iter_mut().enumerate() {
        disk.sync(&mut cluster, index);
        cluster.crash(index);
    }
    for (index, disk) in disks.iter().enumerate() {
        disk.restore(&mut cluster, index);
        assert_ne!(cluster.id(index), old_ids[index], "a restored node takes a new identity");
        assert_eq!(cluster.get(index, "app/flag").as_deref(), Some("on"));
        assert_eq!(cluster.get(index, "app/gone"), None);
    }
    assert!(cluster.run_until(30_000, |c| c.all_see_alive() && c.converged()));
    // A restored node's writes beat what it restored.
    cluster.put(2, "app/flag", "off");
    assert!(cluster.run_until(5_000, |c| c.everywhere("app/flag", Some("off"))));
    assert!(cluster.everywhere("app/ttl", Some("later")) && cluster.everywhere("app/gone", None));
}

#[test]
fn an_old_copy_of_a_data_directory_never_brings_a_collected_delete_back() {
    let mut cluster = Cluster::new(3);
    cluster.keep_journals();
    cluster.put(0, "session/1", "alive");
    cluster.put(0, "config/kept", "yes");
    assert!(cluster.run_until(5_000, |c| c.everywhere("session/1", Some("alive"))));
    let mut old = Disk::default();
    old.sync(&mut cluster, 2);
    cluster.write(0, "session/1", None, None, chorus_proto::WaitLevel::Local, 0);
    let collected = |c: &Cluster| {
        c.running().iter().all(|&i| c.node(i).store().entry(&key("session/1")).is_none())
    };
    assert!(cluster.run_until(60_000, collected), "the tombstone was not collected");

    cluster.crash(2);
    old.restore(&mut cluster, 2);
    // The copy holds the deleted value; it must never be shared, and must go.
    let leaked = Cell::new(false);
    let settled = cluster.run_until(30_000, |c| {
        let others = [0, 1].iter().any(|&i| c.get(i, "session/1").is_some());
        leaked.set(leaked.get() || others);
        c.all_see_alive() && c.converged() && c.everywhere("session/1", None)
    });
    assert!(!leaked.get(), "a collected delete came back from an old data directory");
    assert!(settled, "the restored node did not settle");
    let dropped = cluster.events[2]
        .iter()
        .any(|event| matches!(event, Event::Reset { reason: ResetReason::Pruned, .. }));
    assert!(dropped, "the restored node should have dropped its stale state");
    assert!(cluster.everywhere("config/kept", Some("yes")));
}
