//! Commands over a whole database: `KEYS`, `SCAN`, `DBSIZE`, `FLUSHDB`, `FLUSHALL`.
//!
//! A database's entries are walked in pages, each in its own short hold of the node's lock
//! that visits at most `LIST_VISIT_MAX` entries, tombstones included, so a large database (or
//! one full of deletes not yet collected) never holds the lock for long: string keys first,
//! then hash fields (each hash reported once). `SCAN` cursors are numbers, as clients parse them (redis-py turns
//! them into integers): each names a position kept by the node, shared by all its
//! connections, the oldest forgotten beyond [`SCAN_CURSORS_MAX`].

use std::collections::BTreeMap;
use std::sync::Mutex;

use chorus_proto::Key;
use chorus_proto::keyspace::{self, DATABASES, Name, RESERVED_BYTE};
use chorus_proto::resp::Reply;
use chorus_proto::rpc::LIST_LIMIT_MAX;

use super::command::{OwnedArgs, arity, integer, not_integer, op_error, syntax, upper};
use super::glob;
use crate::node::{Driver, OpError, Purpose, Session};

/// `SCAN` positions a node remembers; a client that comes back with a forgotten cursor gets
/// an error and starts again (Redis's own cursors never expire, but hold no memory).
pub const SCAN_CURSORS_MAX: usize = 4096;

/// Most entry names one page of a walk lists, in one hold of the node's lock.
const PAGE_NAMES_MAX: usize = LIST_LIMIT_MAX as usize;

/// Most holds of the node's lock one page of a walk (one `SCAN` call) takes.
const PAGE_HOLDS_MAX: usize = 8;

/// Longest `KEYS`/`SCAN MATCH` pattern: a glob is matched against every key, so its length
/// bounds the work per key.
pub const REDIS_PATTERN_SIZE_MAX: usize = 1024;

/// Most keys `KEYS` returns: beyond it, the client is told to use `SCAN`.
pub const KEYS_RESULT_MAX: usize = 1_000_000;

/// The commands over a whole database, run by `Connection::walk` (in `server`).
const COMMANDS: &[&str] = &["KEYS", "SCAN", "DBSIZE", "FLUSHDB", "FLUSHALL"];

/// Whether `name` (upper case) is a command over a whole database: it works a page per hold of
/// the lock, and its connection sends the replies before it first.
pub fn walks(name: &str) -> bool {
    COMMANDS.contains(&name)
}

/// Where a walk of one database stands.
#[derive(Clone, Debug, Default)]
pub struct Position {
    /// In the hash fields (after the string keys).
    hashes: bool,
    /// The last entry name seen.
    after: Option<Key>,
    /// The last hash reported, so that its other fields are skipped.
    last_hash: Option<Vec<u8>>,
}

/// The node's `SCAN` cursors.
#[derive(Debug, Default)]
pub struct Cursors {
    next: u64,
    positions: BTreeMap<u64, (u8, Position)>,
    /// Cursors by the order they were issued in.
    order: BTreeMap<u64, u64>,
}

/// Reads up to about `count` keys of database `db` from `position`; `None` once the walk is
/// over. Each page of names is its own hold of the node's lock (visiting at most
/// `LIST_VISIT_MAX` entries, tombstones included), and one call takes at most
/// [`PAGE_HOLDS_MAX`] of them: it may then hold fewer keys than asked, or none, with a
/// position to go on from, as SCAN allows.
async fn page(
    driver: &Driver,
    db: u8,
    mut position: Position,
    count: usize,
) -> Result<(Vec<Vec<u8>>, Option<Position>), OpError> {
    let mut keys = Vec::new();
    // Names listed in this call: one big hash (many fields, one key) must not keep the walk
    // going for long either.
    let mut listed_total = 0;
    for _ in 0..PAGE_HOLDS_MAX {
        if listed_total >= PAGE_NAMES_MAX || keys.len() >= count {
            break;
        }
        let prefix = if position.hashes {
            keyspace::hashes_prefix(db).to_vec()
        } else {
            keyspace::strings_prefix(db)
        };
        let listed = driver.list_page(&prefix, position.after.as_ref(), count.max(1))?;
        listed_total += listed.entries.len();
        let mut exhausted = listed.resume_after.is_none();
        for (name, _) in listed.entries {
            if !position.hashes && plain_ended(db, &name) {
                exhausted = true;
                break;
            }
            match keyspace::parse(name.as_bytes()) {
                Some(Name::String { key, .. }) => keys.push(key),
                Some(Name::HashField { key, .. }) if position.last_hash.as_ref() != Some(&key) => {
                    position.last_hash = Some(key.clone());
                    keys.push(key);
                }
                _ => {}
            }
            position.after = Some(name);
        }
        if let Some(resume) = listed.resume_after.filter(|_| !exhausted) {
            // The page stopped early (its budget, or `count`): go on after the last name it
            // visited, which may be a tombstone's.
            exhausted = !position.hashes && plain_ended(db, &resume);
            position.after = Some(resume);
        }
        if exhausted {
            if position.hashes {
                return Ok((keys, None));
            }
            position = Position { hashes: true, ..Position::default() };
        }
        // Other clients of this Redis thread are served between pages.
        tokio::task::yield_now().await;
    }
    Ok((keys, Some(position)))
}

/// Whether `name`, met in the walk of database `db`'s string keys, lies past them: database
/// 0's plain names end where the reserved ones begin.
fn plain_ended(db: u8, name: &Key) -> bool {
    db == 0 && name.as_bytes().first() == Some(&RESERVED_BYTE)
}

/// A walk over every key of one database, one page per short session: each page is handed
/// out after the lock is released (matching a pattern, counting or deleting take their own
/// time), and the Redis thread serves its other clients between pages.
struct Walk<'a> {
    driver: &'a Driver,
    db: u8,
    position: Option<Position>,
}

impl<'a> Walk<'a> {
    fn new(driver: &'a Driver, db: u8) -> Walk<'a> {
        Walk { driver, db, position: Some(Position::default()) }
    }

    /// The next page of keys; `None` once the walk is over.
    async fn next(&mut self) -> Result<Option<Vec<Vec<u8>>>, Reply> {
        let Some(from) = self.position.take() else { return Ok(None) };
        let count = LIST_LIMIT_MAX as usize;
        let (keys, next) = page(self.driver, self.db, from, count).await.map_err(op_error)?;
        self.position = next;
        Ok(Some(keys))
    }
}

/// A pattern within [`REDIS_PATTERN_SIZE_MAX`], runs of `*` collapsed (they match the same).
fn pattern(raw: &[u8]) -> Result<Vec<u8>, Reply> {
    if raw.len() > REDIS_PATTERN_SIZE_MAX {
        return Err(Reply::error(format!("patterns are at most {REDIS_PATTERN_SIZE_MAX} bytes")));
    }
    let mut collapsed: Vec<u8> = Vec::with_capacity(raw.len());
    for &byte in raw {
        if !(byte == b'*' && collapsed.last() == Some(&b'*')) {
            collapsed.push(byte);
        }
    }
    Ok(collapsed)
}

/// `KEYS pattern`.
pub async fn keys(driver: &Driver, db: u8, args: &OwnedArgs) -> Reply {
    let [raw] = args else { return arity("keys") };
    let pattern = match pattern(raw) {
        Ok(pattern) => pattern,
        Err(reply) => return reply,
    };
    let (mut found, mut walk) = (Vec::new(), Walk::new(driver, db));
    loop {
        match walk.next().await {
            Ok(Some(keys)) => {
                found.extend(keys.into_iter().filter(|key| glob::matches(&pattern, key)));
                if found.len() > KEYS_RESULT_MAX {
                    return Reply::error(format!(
                        "more than {KEYS_RESULT_MAX} keys match: use SCAN"
                    ));
                }
            }
            Ok(None) => return Reply::Array(found.into_iter().map(Reply::Bulk).collect()),
            Err(reply) => return reply,
        }
    }
}

/// `DBSIZE`.
pub async fn dbsize(driver: &Driver, db: u8) -> Reply {
    let (mut count, mut walk) = (0, Walk::new(driver, db));
    loop {
        match walk.next().await {
            Ok(Some(keys)) => count += keys.len() as i64,
            Ok(None) => return Reply::Integer(count),
            Err(reply) => return reply,
        }
    }
}

/// `FLUSHDB [ASYNC|SYNC]`: deletes every key of the database (a tombstone each).
pub async fn flushdb(driver: &Driver, db: u8, args: &OwnedArgs) -> Reply {
    if args.len() > 1 {
        return syntax();
    }
    match flush(driver, db).await {
        Ok(()) => Reply::ok(),
        Err(reply) => reply,
    }
}

/// `FLUSHALL [ASYNC|SYNC]`: every database.
pub async fn flushall(driver: &Driver, args: &OwnedArgs) -> Reply {
    if args.len() > 1 {
        return syntax();
    }
    for db in 0..DATABASES {
        if let Err(reply) = flush(driver, db).await {
            return reply;
        }
    }
    Reply::ok()
}

async fn flush(driver: &Driver, db: u8) -> Result<(), Reply> {
    let mut walk = Walk::new(driver, db);
    while let Some(keys) = walk.next().await? {
        if !keys.is_empty() {
            // A hash's fields are deleted a page per hold.
            super::whole::delete_keys(driver, db, &keys).await?;
        }
    }
    Ok(())
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
pub async fn scan(driver: &Driver, cursors: &Mutex<Cursors>, db: u8, args: &OwnedArgs) -> Reply {
    let [cursor, options @ ..] = args else { return arity("scan") };
    let Ok(cursor) = std::str::from_utf8(cursor).unwrap_or("").parse::<u64>() else {
        return Reply::error("invalid cursor");
    };
    let (pattern, count, kind) = match scan_options(options) {
        Ok(options) => options,
        Err(reply) => return reply,
    };
    let from = if cursor == 0 {
        Position::default()
    } else {
        // Kept, not consumed: a client that retries a SCAN with the same cursor goes on.
        match lock(cursors).positions.get(&cursor).cloned() {
            Some((cursor_db, position)) if cursor_db == db => position,
            _ => {
                return Reply::error(
                    "invalid cursor (forgotten or from another database): SCAN again from 0",
                );
            }
        }
    };
    let (keys, next) = match page(driver, db, from, count).await {
        Ok(page) => page,
        Err(error) => return op_error(error),
    };
    // Matched after the lock is released; TYPE needs one short session of its own.
    let mut keys: Vec<Vec<u8>> = keys
        .into_iter()
        .filter(|key| pattern.as_ref().is_none_or(|p| glob::matches(p, key)))
        .collect();
    if let Some(kind) = &kind {
        let kept = driver.session(Purpose::Read, |session| {
            keys.drain(..).filter(|key| type_of(session, db, key) == *kind).collect::<Vec<_>>()
        });
        keys = match kept {
            Ok(kept) => kept,
            Err(error) => return op_error(error),
        };
    }
    let next_cursor = next.map_or(0, |position| remember(cursors, db, position));
    let keys = Reply::Array(keys.into_iter().map(Reply::Bulk).collect());
    Reply::Array(vec![Reply::text(next_cursor.to_string()), keys])
}

/// What `SCAN` was asked for: a pattern, a page size, a type.
type ScanOptions = (Option<Vec<u8>>, usize, Option<String>);

fn scan_options(options: &OwnedArgs) -> Result<ScanOptions, Reply> {
    let (mut pattern, mut count, mut kind) = (None, 10usize, None);
    for pair in options.chunks(2) {
        let [option, value] = pair else { return Err(syntax()) };
        match upper(option).as_str() {
            "MATCH" => pattern = Some(self::pattern(value)?),
            "COUNT" => {
                let wanted = integer(value)?;
                count = usize::try_from(wanted).ok().filter(|n| *n > 0).ok_or_else(not_integer)?;
            }
            "TYPE" => kind = Some(String::from_utf8_lossy(value).to_lowercase()),
            _ => return Err(syntax()),
        }
    }
    Ok((pattern, count.min(LIST_LIMIT_MAX as usize), kind))
}

fn type_of(session: &mut Session<'_>, db: u8, key: &[u8]) -> String {
    match super::keys::kind(session, db, &[key]) {
        Reply::Simple(kind) => kind.into_owned(),
        _ => "none".into(),
    }
}

/// Keeps a position under a new cursor: a random number (another client cannot guess it and
/// take it over), remembered in order of issue so the oldest is forgotten first.
fn remember(cursors: &Mutex<Cursors>, db: u8, position: Position) -> u64 {
    let mut cursors = lock(cursors);
    let cursor = loop {
        // 53 bits: clients that parse the cursor as a double (JavaScript) keep it exact.
        let cursor = rand::random::<u64>() >> 11;
        if cursor != 0 && !cursors.positions.contains_key(&cursor) {
            break cursor;
        }
    };
    cursors.next += 1;
    let issued = cursors.next;
    cursors.positions.insert(cursor, (db, position));
    cursors.order.insert(issued, cursor);
    while cursors.positions.len() > SCAN_CURSORS_MAX {
        let Some((_, oldest)) = cursors.order.pop_first() else { break };
        cursors.positions.remove(&oldest);
    }
    cursor
}

fn lock(cursors: &Mutex<Cursors>) -> std::sync::MutexGuard<'_, Cursors> {
    // A poisoned lock only means a panic elsewhere while holding it; the table is still valid.
    cursors.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
