//! The handoff between a node's driver and its data directory's writer: the file, the
//! policy, the writer's wake-up and what it published. A leaf beside the file IO, so that the
//! driver (which wakes the writer) and the writer (which calls the driver) both reach it
//! without reaching each other in a circle; the writer itself is `node/persist.rs`.

use std::sync::Arc;

use tokio::sync::{Mutex, Notify, watch};

use super::{DataDir, Fsync};

/// What the writer published: the last batch on disk, or why writing stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Durable {
    /// The number of the last batch on disk.
    pub batch: u64,
    /// Why writing stopped, once it did.
    pub failed: Option<String>,
}

/// A node's data directory and its writer's channels.
pub struct Persist {
    /// The file.
    pub dir: Arc<DataDir>,
    /// When writes count as done.
    pub fsync: Fsync,
    /// The node has changes to write.
    pub wake: Notify,
    /// The last batch on disk, published by the writer.
    pub durable: watch::Sender<Durable>,
    /// Held across taking and committing a batch, so commits land in batch order.
    pub commit: Mutex<()>,
}

impl Persist {
    /// The writer's side of `dir`, committing under `fsync`.
    pub fn new(dir: DataDir, fsync: Fsync) -> Persist {
        Persist {
            dir: Arc::new(dir),
            fsync,
            wake: Notify::new(),
            durable: watch::Sender::new(Durable::default()),
            commit: Mutex::new(()),
        }
    }

    /// Wakes the writer.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}
