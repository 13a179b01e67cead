//! Persistence: the data directory's file (`--data-dir`). Only file IO lives here; what is
//! stored and how it is encoded is `chorus_proto::disk`'s.
//!
//! The file is one redb database, `DIR/chorus.redb`: a `meta` table with the header and the
//! state record, and an `entries` table with one row per held entry (key → encoded
//! [`DiskEntry`]). redb commits are atomic and crash-safe (copy-on-write pages, a checksummed
//! commit slot, one fsync per durable commit), and it reuses freed pages, so a file whose rows
//! churn (sessions written and collected) stays near the size of its live data.
//!
//! A file that is not chorus's, of another format version, of another cluster, truncated or
//! corrupt is refused with a message saying which, and left as it is: never wiped.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chorus_proto::Update;
use chorus_proto::disk::{Batch, CLUSTER_MARKER_SIZE, DiskEntry, DiskError, DiskHeader, DiskState};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

/// The file's name inside the data directory.
pub const DATA_FILE: &str = "chorus.redb";

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
const HEADER_ROW: &str = "header";
const STATE_ROW: &str = "state";

/// When a write counts as done (`--fsync`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fsync {
    /// A write is acknowledged once a commit holding it reached the disk (fsync). Writes of
    /// many clients share one commit (group commit).
    #[default]
    Always,
    /// Writes are acknowledged at once and committed, with an fsync, at most every given
    /// interval: a crash may lose the writes of the last interval (and the commit under way).
    Batch(Duration),
    /// Writes are acknowledged at once and committed every [`FSYNC_NEVER_INTERVAL`] and at a
    /// graceful shutdown: a crash may lose up to that long of writes.
    Never,
}

/// How often `--fsync never` commits anyway, so that a crash loses a bounded stretch.
pub const FSYNC_NEVER_INTERVAL: Duration = Duration::from_secs(10);

impl Fsync {
    /// How long the writer gathers changes before it commits them.
    pub fn interval(self) -> Duration {
        match self {
            Fsync::Always => Duration::ZERO,
            Fsync::Batch(interval) => interval,
            Fsync::Never => FSYNC_NEVER_INTERVAL,
        }
    }
}

impl FromStr for Fsync {
    type Err = String;

    fn from_str(text: &str) -> Result<Fsync, String> {
        match text {
            "always" => Ok(Fsync::Always),
            "never" => Ok(Fsync::Never),
            _ => {
                let ms =
                    text.strip_prefix("batch=").and_then(|ms| ms.strip_suffix("ms").or(Some(ms)));
                match ms.map(str::parse::<u64>) {
                    Some(Ok(ms)) if ms > 0 && ms <= 60_000 => {
                        Ok(Fsync::Batch(Duration::from_millis(ms)))
                    }
                    _ => Err(format!(
                        "--fsync takes always, never or batch=<ms> (1 to 60000), not {text:?}"
                    )),
                }
            }
        }
    }
}

/// Why a data directory could not be used. Every message names the file and says what to do;
/// nothing is deleted.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// The directory or file could not be created or read.
    #[error("cannot use the data directory {}: {source}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// redb refused the file: truncated, corrupt, or open in another process.
    #[error(
        "refusing the data file {}: {why}. It is left as it is; restore it from a backup, or \
         move it away to start this node empty (it then syncs from its peers)",
        .path.display()
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// redb's reason.
        why: String,
    },
    /// Another process has the file open.
    #[error(
        "the data file {} is in use by another process: is another chorus node running on \
         this --data-dir? Each node needs a directory of its own",
        .path.display()
    )]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// A record of the file is not what chorus wrote.
    #[error(
        "refusing the data file {}: {source}. It is left as it is; restore it from a backup, \
         or move it away to start this node empty",
        .path.display()
    )]
    Record {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: DiskError,
    },
    /// The file belongs to a cluster with another key.
    #[error(
        "refusing the data file {}: it belongs to a cluster with another cluster key. Start \
         with that key (or list it among --cluster-key while rotating), or use another \
         --data-dir",
        .path.display()
    )]
    ForeignCluster {
        /// The file.
        path: PathBuf,
    },
}

/// What a data directory held when it was opened.
pub struct Restored {
    /// The state record.
    pub state: DiskState,
    /// Every held entry.
    pub entries: Vec<Update>,
}

/// An open data directory.
pub struct DataDir {
    db: Database,
    path: PathBuf,
}

impl DataDir {
    /// Opens (or creates) the data directory `dir` for a cluster whose keys have `markers`
    /// (the first signs; a file marked with any of them is this cluster's, and is marked with
    /// the first from now on). Returns what it held, if it held a state. Blocking.
    pub fn open(
        dir: &Path,
        markers: &[[u8; CLUSTER_MARKER_SIZE]],
    ) -> Result<(DataDir, Option<Restored>), DataDirError> {
        let io = |source| DataDirError::Io { path: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(DATA_FILE);
        if !path.try_exists().map_err(io)? {
            create(dir, &path, markers[0])?;
        }
        check_cluster_untouched(&path, markers)?;
        let unreadable =
            |path: &Path, why: String| DataDirError::Unreadable { path: path.into(), why };
        // A file corrupted outside redb may panic redb's open (its documentation says so)
        // even with the integrity check; that too is a refusal, not a crash.
        let opened = std::panic::catch_unwind(|| {
            Database::builder().set_check_integrity_on_open(true).open(&path)
        });
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
                return Err(DataDirError::InUse { path });
            }
            Ok(Err(error)) => return Err(unreadable(&path, error.to_string())),
            Err(_) => {
                return Err(unreadable(
                    &path,
                    "the file is corrupt (redb could not open it)".into(),
                ));
            }
        };
        let data_dir = DataDir { db, path };
        let read = std::panic::AssertUnwindSafe(|| data_dir.read(markers));
        let restored = std::panic::catch_unwind(read).unwrap_or_else(|_| {
            Err(unreadable(&data_dir.path, "the file is corrupt (a read failed)".into()))
        })?;
        Ok((data_dir, restored))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the header, re-marks it for the signing key, and reads the state and entries.
    fn read(
        &self,
        markers: &[[u8; CLUSTER_MARKER_SIZE]],
    ) -> Result<Option<Restored>, DataDirError> {
        let (header, restored) = self.read_records()?;
        if !markers.contains(&header.cluster) {
            return Err(DataDirError::ForeignCluster { path: self.path.clone() });
        }
        if header.cluster != markers[0] {
            self.write_header(markers[0]).map_err(|error| self.storage(error))?;
        }
        Ok(restored)
    }

    /// The header, then the state and every entry if a state was written. Every read guard
    /// is gone when this returns, so the caller may write.
    fn read_records(&self) -> Result<(DiskHeader, Option<Restored>), DataDirError> {
        let storage = |error: redb::Error| self.storage(error);
        let record = |source| DataDirError::Record { path: self.path.clone(), source };
        let read = self.db.begin_read().map_err(|e| storage(e.into()))?;
        let meta = read.open_table(META).map_err(|_| record(DiskError::NotChorus))?;
        let header = match meta.get(HEADER_ROW).map_err(|e| storage(e.into()))? {
            Some(header) => DiskHeader::decode(header.value()).map_err(record)?,
            None => return Err(record(DiskError::NotChorus)),
        };
        let state = match meta.get(STATE_ROW).map_err(|e| storage(e.into()))? {
            Some(state) => DiskState::decode(state.value()).map_err(record)?,
            None => return Ok((header, None)),
        };
        let table = read.open_table(ENTRIES).map_err(|e| storage(e.into()))?;
        let count = table.len().map_err(|e| storage(e.into()))?;
        let mut entries = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for row in table.iter().map_err(|e| storage(e.into()))? {
            let (key, row) = row.map_err(|e| storage(e.into()))?;
            entries.push(DiskEntry::decode(key.value(), row.value()).map_err(record)?);
        }
        Ok((header, Some(Restored { state, entries })))
    }

    fn storage(&self, error: redb::Error) -> DataDirError {
        DataDirError::Unreadable { path: self.path.clone(), why: error.to_string() }
    }

    fn write_header(&self, marker: [u8; CLUSTER_MARKER_SIZE]) -> Result<(), redb::Error> {
        let write = self.db.begin_write()?;
        write.open_table(META)?.insert(HEADER_ROW, DiskHeader::new(marker).encode().as_slice())?;
        write.commit()?;
        Ok(())
    }

    /// Writes one batch in one transaction: a reset first deletes every row; then each changed
    /// row is written or removed, and the state record replaced. Returns once the commit is on
    /// disk (fsync). Blocking: the writer runs it outside the node's lock, on a thread of its
    /// own.
    pub fn write(&self, batch: &Batch) -> Result<(), redb::Error> {
        let mut write = self.db.begin_write()?;
        write.set_durability(redb::Durability::Immediate)?;
        {
            if batch.journal.reset {
                write.delete_table(ENTRIES)?;
            }
            let mut table = write.open_table(ENTRIES)?;
            for (key, row) in &batch.journal.rows {
                match row {
                    Some(update) => {
                        table.insert(key.as_bytes(), DiskEntry::encode(update).as_slice())?;
                    }
                    None => {
                        table.remove(key.as_bytes())?;
                    }
                }
            }
            let state = batch.state.encode().map_err(|e| std::io::Error::other(e.to_string()))?;
            write.open_table(META)?.insert(STATE_ROW, state.as_slice())?;
        }
        write.commit()?;
        Ok(())
    }
}

/// Refuses another cluster's file without writing to it, when it can be read as it is (it was
/// closed cleanly; opening it for writing would mark it open). A file that needs recovery
/// after a crash, or that does not open, is left to the full open, which refuses it or
/// recovers it and checks it then.
fn check_cluster_untouched(
    path: &Path,
    markers: &[[u8; CLUSTER_MARKER_SIZE]],
) -> Result<(), DataDirError> {
    let opened = std::panic::catch_unwind(|| Database::builder().open_read_only(path));
    let Ok(Ok(db)) = opened else { return Ok(()) };
    let header = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let read = db.begin_read().ok()?;
        let meta = read.open_table(META).ok()?;
        let row = meta.get(HEADER_ROW).ok()??;
        DiskHeader::decode(row.value()).ok()
    }));
    match header {
        Ok(Some(header)) if !markers.contains(&header.cluster) => {
            Err(DataDirError::ForeignCluster { path: path.to_path_buf() })
        }
        _ => Ok(()),
    }
}

/// Creates the file with its header under a temporary name, then renames it into place, so
/// `chorus.redb` never exists without a header (a crash while creating leaves only the
/// temporary file, which the next start replaces).
fn create(dir: &Path, path: &Path, marker: [u8; CLUSTER_MARKER_SIZE]) -> Result<(), DataDirError> {
    let fresh = dir.join(format!("{DATA_FILE}.new"));
    let io = |source| DataDirError::Io { path: fresh.clone(), source };
    if fresh.try_exists().map_err(io)? {
        std::fs::remove_file(&fresh).map_err(io)?;
    }
    let unreadable = |error: redb::Error| DataDirError::Unreadable {
        path: fresh.clone(),
        why: error.to_string(),
    };
    let db = Database::create(&fresh).map_err(|e| unreadable(e.into()))?;
    DataDir { db, path: fresh.clone() }.write_header(marker).map_err(unreadable)?;
    std::fs::rename(&fresh, path).map_err(io)?;
    std::fs::File::open(dir).and_then(|dir| dir.sync_all()).map_err(io)
}

mod handoff;
#[cfg(test)]
mod tests;

pub use handoff::Persist;
