//! Commands on a whole key, which may be a hash of any number of fields: `DEL`, `UNLINK`,
//! `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT`, `PERSIST`, `RENAME`, `HGETALL`, `HKEYS`,
//! `HVALS`, `HLEN`, `DEBUG OBJECT`.
//!
//! They run batched with a pipeline's other data commands, in one session, from `keys` and
//! `hashes`, unless a key they touch is a hash of more than [`HASH_FIELDS_PER_HOLD`] fields
//! ([`defers`] looks, in that session). Such a command ends the session and runs from here,
//! over several holds of the node's lock, before the commands after it: each page of at most [`HASH_FIELDS_PER_HOLD`] fields is listed in one hold (which visits
//! at most `LIST_VISIT_MAX` entries, tombstones included) and, for a write, deleted or rewritten
//! in the next. A hash of 100,000 fields thus never holds the lock for long, and the node goes
//! on serving gossip and other clients in between: the command yields the Redis thread after
//! each page, so the node's other Redis clients are served too.
//!
//! The cost is atomicity on this node: while a large hash is deleted, renamed or given an
//! expiry, another client of this node may see it partly done, as clients of the other nodes
//! always could (every field is its own last-writer-wins write, and reaches them one by one).
//! Each field is rewritten with its value as held in that hold, so a concurrent `HSET` of a
//! field is never undone by an older copy. A string or a hash small enough for one page is
//! read and written in its batch's hold, at one moment. Inside `MULTI` the commands run in the block's one hold,
//! from `keys` and `hashes`, for a hash of at most `MULTI_HASH_FIELDS_MAX` fields.

use chorus_proto::keyspace;
use chorus_proto::resp::Reply;
use chorus_proto::{Key, Value};

use super::command::{
    Args, REDIS_OUTPUT_MAX, arity, key_error, op_error, string_key, ttl_ms, upper,
};
use super::keys::{expiry_allowed, expiry_args};
use crate::node::{Driver, Found, OpError, Purpose, Session};

/// Most hash fields one hold of the node's lock lists, deletes or rewrites.
pub const HASH_FIELDS_PER_HOLD: usize = 256;

/// The whole-key commands (upper case).
static COMMANDS: &[&str] = &[
    "DEL",
    "UNLINK",
    "EXPIRE",
    "PEXPIRE",
    "EXPIREAT",
    "PEXPIREAT",
    "PERSIST",
    "RENAME",
    "HGETALL",
    "HKEYS",
    "HVALS",
    "HLEN",
    "DEBUG",
];

/// Whether a whole-key command, batched with its pipeline's neighbours, must leave the batch
/// and run from here a page per hold instead: when a key it touches may be a hash of more than
/// [`HASH_FIELDS_PER_HOLD`] fields. A string key, or a small hash, runs in the batch (a
/// pipelined `SET` + `EXPIRE`, as Lucee sends for every cache put, stays one hold).
pub fn defers(session: &Session<'_>, db: u8, name: &str, args: &Args) -> bool {
    // Every batched command asks, a GET or SET too: when the database holds no hash at all
    // (no key sorts at or after its hash prefix: one look at the last key), nothing defers,
    // and the command's name is not even looked up.
    if !session.holds_from(&keyspace::hashes_prefix(db)) {
        return false;
    }
    let keys = match name {
        "DEL" | "UNLINK" | "RENAME" => args,
        "DEBUG" => args.get(1..2).unwrap_or_default(),
        _ if COMMANDS.contains(&name) => args.get(..1).unwrap_or_default(),
        _ => return false,
    };
    keys.iter().any(|key| large(session, db, key))
}

/// Whether hash `key` may hold more fields than one hold handles: more than
/// [`HASH_FIELDS_PER_HOLD`] live ones, or so many tombstones before them that one listing
/// could not tell.
fn large(session: &Session<'_>, db: u8, key: &[u8]) -> bool {
    let Ok(prefix) = keyspace::hash_prefix(db, key) else { return false };
    let page = session.list_page(&prefix, None, HASH_FIELDS_PER_HOLD + 1);
    page.entries.len() > HASH_FIELDS_PER_HOLD || page.resume_after.is_some()
}

/// Runs the whole-key command named `name` (upper case; one [`defers`] deferred) over as many
/// holds of the lock as the key needs; the Redis thread serves its other clients in between.
pub async fn run(name: &str, driver: &Driver, db: u8, args: &Args<'_>) -> Reply {
    match name {
        "DEL" | "UNLINK" => del(driver, db, args).await,
        "EXPIRE" => set_expiry(driver, db, args, "expire", 1_000, false).await,
        "PEXPIRE" => set_expiry(driver, db, args, "pexpire", 1, false).await,
        "EXPIREAT" => set_expiry(driver, db, args, "expireat", 1_000, true).await,
        "PEXPIREAT" => set_expiry(driver, db, args, "pexpireat", 1, true).await,
        "PERSIST" => persist(driver, db, args).await,
        "RENAME" => rename(driver, db, args).await,
        "HGETALL" => hgetall(driver, db, args).await,
        "HKEYS" => hkeys(driver, db, args).await,
        "HVALS" => hvals(driver, db, args).await,
        "HLEN" => hlen(driver, db, args).await,
        "DEBUG" => debug(driver, db, args).await,
        _ => Reply::error(format!("{name} is not a command on a whole key")),
    }
}

/// Lets the Redis thread serve its other clients: between the pages of a command on a whole
/// key, once a page's hold of the lock is over.
async fn between_pages() {
    tokio::task::yield_now().await;
}

/// Runs `work` in one session taken for `purpose`; its error, or the node's, as a reply.
fn step<R>(
    driver: &Driver,
    purpose: Purpose,
    work: impl FnOnce(&mut Session<'_>) -> Result<R, OpError>,
) -> Result<R, Reply> {
    driver.session(purpose, work).and_then(|result| result).map_err(op_error)
}

/// Hands every page of live fields under `prefix` to `work`, each page listed in one hold of
/// the lock and handled after it.
async fn pages(
    driver: &Driver,
    prefix: &[u8],
    mut work: impl FnMut(Vec<(Key, Value)>) -> Result<(), Reply>,
) -> Result<(), Reply> {
    let mut after = None;
    loop {
        let page =
            driver.list_page(prefix, after.as_ref(), HASH_FIELDS_PER_HOLD).map_err(op_error)?;
        if !page.entries.is_empty() {
            work(page.entries)?;
        }
        match page.resume_after {
            Some(name) => after = Some(name),
            None => return Ok(()),
        }
        between_pages().await;
    }
}

/// What a key holds, read without loading a hash's fields.
struct Probe {
    /// The string entry's name.
    string_name: Key,
    /// The prefix of the hash's fields; `None` for a key too long to name one.
    prefix: Option<Vec<u8>>,
    string: Option<Found>,
    /// Whether the hash has a field, with the expiry of the first.
    hash: Option<Option<u64>>,
    /// The wall clock when the key was read.
    now_ms: u64,
}

impl Probe {
    fn exists(&self) -> bool {
        self.string.is_some() || self.hash.is_some()
    }

    fn expires_at_ms(&self) -> Option<u64> {
        match &self.string {
            Some(found) => found.expires_at_ms,
            None => self.hash.flatten(),
        }
    }
}

/// Reads what key `key` of database `db` holds: its string, and its hash's first field.
async fn probe(driver: &Driver, db: u8, key: &[u8]) -> Result<Probe, Reply> {
    let string_name = string_key(db, key)?;
    let prefix = keyspace::hash_prefix(db, key).ok();
    let (string, now_ms) = step(driver, Purpose::Read, |session| {
        Ok((session.lookup(&string_name), session.now_ms()))
    })?;
    let mut first = None;
    if let Some(prefix) = &prefix {
        let mut after = None;
        while first.is_none() {
            let page = driver.list_page(prefix, after.as_ref(), 1).map_err(op_error)?;
            first = page.entries.into_iter().next().map(|(name, _)| name);
            match page.resume_after {
                Some(name) => after = Some(name),
                None => break,
            }
            between_pages().await;
        }
    }
    let hash = match first {
        Some(name) => Some(step(driver, Purpose::Read, |session| {
            Ok(session.lookup(&name).and_then(|found| found.expires_at_ms))
        })?),
        None => None,
    };
    Ok(Probe { string_name, prefix, string, hash, now_ms })
}

/// Milliseconds from `now_ms` until the absolute expiry `at`, at least one.
fn ttl_until(at: Option<u64>, now_ms: u64) -> Option<u64> {
    at.map(|at| at.saturating_sub(now_ms).max(1))
}

/// Deletes every field of hash `key` of database `db`, a page per hold; whether this node
/// held any of them live.
async fn delete_fields(driver: &Driver, db: u8, key: &[u8]) -> Result<bool, Reply> {
    // A key too long to name a hash field has none.
    let Ok(prefix) = keyspace::hash_prefix(db, key) else { return Ok(false) };
    let mut deleted = false;
    pages(driver, &prefix, |page| {
        let any = step(driver, Purpose::Write, |session| {
            let mut any = false;
            for (name, _) in page {
                any |= session.delete(name)?;
            }
            Ok(any)
        })?;
        deleted |= any;
        Ok(())
    })
    .await?;
    Ok(deleted)
}

/// Deletes every entry `keys` of database `db` hold: their strings, [`HASH_FIELDS_PER_HOLD`]
/// keys per hold, then their hashes' fields, a page per hold; how many keys this node held
/// (`DEL`, `FLUSHDB`).
pub async fn delete_keys(
    driver: &Driver,
    db: u8,
    keys: &[impl AsRef<[u8]> + Sync],
) -> Result<i64, Reply> {
    let mut held = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(HASH_FIELDS_PER_HOLD) {
        let names =
            chunk.iter().map(|key| string_key(db, key.as_ref())).collect::<Result<Vec<_>, _>>()?;
        held.extend(step(driver, Purpose::Write, |session| {
            names.into_iter().map(|name| session.delete(name)).collect::<Result<Vec<_>, _>>()
        })?);
        between_pages().await;
    }
    for (key, held) in keys.iter().zip(&mut held) {
        *held |= delete_fields(driver, db, key.as_ref()).await?;
        // Most keys are strings, their listing one short hold: tokio's budget yields once
        // every few dozen of them rather than after each.
        tokio::task::consume_budget().await;
    }
    Ok(held.into_iter().filter(|held| *held).count() as i64)
}

/// Deletes every entry key `key` of database `db` holds.
async fn delete_key(driver: &Driver, db: u8, key: &[u8]) -> Result<(), Reply> {
    delete_keys(driver, db, &[key]).await.map(|_| ())
}

/// `DEL key [key ...]` and `UNLINK`: how many of the keys this node held.
async fn del(driver: &Driver, db: u8, args: &Args<'_>) -> Reply {
    if args.is_empty() {
        return arity("del");
    }
    delete_keys(driver, db, args).await.map_or_else(|reply| reply, Reply::Integer)
}

/// Writes what the key holds again with the absolute expiry `at` (`None`: none): its string in
/// one hold, its fields a page per hold, each with its value as held in that hold.
async fn rewrite(driver: &Driver, probe: &Probe, at: Option<u64>) -> Result<(), Reply> {
    if probe.string.is_some() {
        step(driver, Purpose::Write, |session| {
            if let Some(found) = session.lookup(&probe.string_name) {
                let ttl = ttl_until(at, session.now_ms());
                session.put(probe.string_name.clone(), found.value, ttl)?;
            }
            Ok(())
        })?;
    }
    let Some(prefix) = probe.prefix.as_ref().filter(|_| probe.hash.is_some()) else {
        return Ok(());
    };
    pages(driver, prefix, |page| {
        step(driver, Purpose::Write, |session| {
            let ttl = ttl_until(at, session.now_ms());
            for (name, _) in page {
                if let Some(found) = session.lookup(&name) {
                    session.put(name, found.value, ttl)?;
                }
            }
            Ok(())
        })
    })
    .await
}

/// `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT key amount [NX|XX|GT|LT]`, in units of
/// `unit_ms`, relative or absolute.
async fn set_expiry(
    driver: &Driver,
    db: u8,
    args: &Args<'_>,
    name: &str,
    unit_ms: i64,
    absolute: bool,
) -> Reply {
    let outcome: Result<i64, Reply> = async {
        let (key, amount, condition) = expiry_args(args, name)?;
        let probe = probe(driver, db, key).await?;
        if !probe.exists() {
            return Ok(0);
        }
        let new_at = ttl_ms(amount, unit_ms, absolute, probe.now_ms)?.map(|ttl| probe.now_ms + ttl);
        if !expiry_allowed(condition.as_deref(), probe.expires_at_ms(), new_at)? {
            return Ok(0);
        }
        match new_at {
            Some(at) => rewrite(driver, &probe, Some(at)).await?,
            // An expiry in the past deletes the key.
            None => delete_key(driver, db, key).await?,
        }
        Ok(1)
    }
    .await;
    outcome.map_or_else(|reply| reply, Reply::Integer)
}

/// `PERSIST key`: 1 if the key had an expiry and now has none.
async fn persist(driver: &Driver, db: u8, args: &Args<'_>) -> Reply {
    let [key] = args else { return arity("persist") };
    let outcome: Result<i64, Reply> = async {
        let probe = probe(driver, db, key).await?;
        match probe.expires_at_ms() {
            Some(_) => rewrite(driver, &probe, None).await.map(|()| 1),
            None => Ok(0),
        }
    }
    .await;
    outcome.map_or_else(|reply| reply, Reply::Integer)
}

/// `RENAME key newkey`: the value (and expiry) written under the new name, the old deleted;
/// a hash moves a page of fields per hold.
async fn rename(driver: &Driver, db: u8, args: &Args<'_>) -> Reply {
    let [from, to] = args else { return arity("rename") };
    let outcome: Result<(), Reply> = async {
        let probe = probe(driver, db, from).await?;
        if !probe.exists() {
            return Err(Reply::error("no such key"));
        }
        let target = string_key(db, to)?;
        let target_prefix = match probe.hash {
            Some(_) => Some(keyspace::hash_prefix(db, to).map_err(key_error)?),
            None => None,
        };
        if from == to {
            return Ok(());
        }
        let at = probe.expires_at_ms();
        delete_key(driver, db, to).await?;
        step(driver, Purpose::Write, |session| {
            if let Some(found) = session.lookup(&probe.string_name) {
                session.put(target, found.value, ttl_until(at, session.now_ms()))?;
                session.delete(probe.string_name.clone())?;
            }
            Ok(())
        })?;
        match (&probe.prefix, target_prefix) {
            (Some(prefix), Some(target_prefix)) => {
                move_fields(driver, prefix, &target_prefix, at).await
            }
            _ => Ok(()),
        }
    }
    .await;
    outcome.map_or_else(|reply| reply, |()| Reply::ok())
}

/// Moves every field under `prefix` to the same field under `target`, expiring at `at`.
async fn move_fields(
    driver: &Driver,
    prefix: &[u8],
    target: &[u8],
    at: Option<u64>,
) -> Result<(), Reply> {
    pages(driver, prefix, |page| {
        let mut moves = Vec::with_capacity(page.len());
        for (name, _) in page {
            let field = &name.as_bytes()[prefix.len()..];
            let moved = Key::new([target, field].concat()).map_err(Reply::error)?;
            moves.push((name, moved));
        }
        step(driver, Purpose::Write, |session| {
            let ttl = ttl_until(at, session.now_ms());
            for (name, moved) in moves {
                if let Some(found) = session.lookup(&name) {
                    session.put(moved, found.value, ttl)?;
                    session.delete(name)?;
                }
            }
            Ok(())
        })
    })
    .await
}

/// Reads every field of the hash named by `args` a page per hold, handing each field and value
/// to `add`, which says how many bytes of reply it kept: a reply above the connection's output
/// limit is refused before it is all read.
async fn read_hash(
    driver: &Driver,
    db: u8,
    args: &Args<'_>,
    name: &str,
    mut add: impl FnMut(Vec<u8>, Value) -> usize,
) -> Result<(), Reply> {
    let [key] = args else { return Err(arity(name)) };
    let prefix = keyspace::hash_prefix(db, key).map_err(key_error)?;
    let mut size = 0usize;
    pages(driver, &prefix, |page| {
        for (entry, value) in page {
            size = size.saturating_add(add(entry.as_bytes()[prefix.len()..].to_vec(), value));
            if size > REDIS_OUTPUT_MAX {
                return Err(Reply::error(format!(
                    "reply above this connection's output limit of {REDIS_OUTPUT_MAX} bytes"
                )));
            }
        }
        Ok(())
    })
    .await
}

/// A reply item's encoded size beyond its bytes: a header line and its end.
const ITEM_OVERHEAD: usize = 32;

/// `HGETALL key`: a map (RESP3) or field, value, field, value... (RESP2).
async fn hgetall(driver: &Driver, db: u8, args: &Args<'_>) -> Reply {
    let mut pairs = Vec::new();
    let read = read_hash(driver, db, args, "hgetall", |field, value| {
        let size = field.len() + value.len() + 2 * ITEM_OVERHEAD;
        pairs.push((Reply::Bulk(field), Reply::Value(value)));
        size
    })
    .await;
    read.map_or_else(|reply| reply, |()| Reply::Map(pairs))
}

/// `HKEYS key`.
async fn hkeys(driver: &Driver, db: u8, args: &Args<'_>) -> Reply {
    let mut fields = Vec::new();
    let read = read_hash(driver, db, args, "hkeys", |field, _| {
        let size = field.len() + ITEM_OVERHEAD;
        fields.push(Reply::Bulk(field));
        size
    })
    .await;
    read.map_or_else(|reply| reply, |()| Reply::Array(fields))
}

/// `HVALS key`.
async fn hvals(driver: &Driver, db: u8, args: &Args<'_>) -> Reply {
    let mut values = Vec::new();
    let read = read_hash(driver, db, args, "hvals", |_, value| {
        let size = value.len() + ITEM_OVERHEAD;
        values.push(Reply::Value(value));
        size
    })
    .await;
    read.map_or_else(|reply| reply, |()| Reply::Array(values))
}

/// `HLEN key`.
async fn hlen(driver: &Driver, db: u8, args: &Args<'_>) -> Reply {
    let mut count = 0;
    let read = read_hash(driver, db, args, "hlen", |_, _| {
        count += 1;
        0
    })
    .await;
    read.map_or_else(|reply| reply, |()| Reply::Integer(count))
}

/// `DEBUG OBJECT key`, in Redis's format (Lucee reads `serializedlength` from it).
async fn debug(driver: &Driver, db: u8, args: &Args<'_>) -> Reply {
    let [subcommand, key] = args else { return arity("debug") };
    if upper(subcommand) != "OBJECT" {
        return Reply::error("DEBUG supports only OBJECT here");
    }
    let outcome: Result<String, Reply> = async {
        let probe = probe(driver, db, key).await?;
        let (encoding, mut length) = match &probe.string {
            Some(found) => ("raw", found.value.len()),
            None => ("hashtable", 0),
        };
        match (&probe.prefix, probe.string.is_none() && probe.hash.is_some()) {
            (Some(prefix), true) => pages(driver, prefix, |page| {
                let sizes = page
                    .iter()
                    .map(|(name, value)| name.as_bytes().len() - prefix.len() + value.len());
                length += sizes.sum::<usize>();
                Ok(())
            })
            .await?,
            _ if !probe.exists() => return Err(Reply::error("no such key")),
            _ => {}
        }
        Ok(format!(
            "Value at:0x0 refcount:1 encoding:{encoding} serializedlength:{length} lru:0 lru_seconds_idle:0"
        ))
    }
    .await;
    outcome.map_or_else(|reply| reply, |text| Reply::Simple(text.into()))
}
