//! Hash commands: `HSET`, `HMSET`, `HSETNX`, `HGET`, `HMGET`, `HGETALL`, `HDEL`, `HEXISTS`,
//! `HLEN`, `HKEYS`, `HVALS`.
//!
//! The commands that read a whole hash (`HGETALL`, `HKEYS`, `HVALS`, `HLEN`) run from here
//! inside `MULTI` only (at most [`MULTI_HASH_FIELDS_MAX`] fields); outside it, from `whole`.
//!
//! Each field is its own last-writer-wins entry (`chorus_proto::keyspace`), so writes to
//! different fields on different nodes all survive. A hash's expiry is its fields' expiry: a
//! new field takes the expiry the hash already has, as it keeps the key's TTL in Redis.

use chorus_proto::keyspace;
use chorus_proto::resp::Reply;
use chorus_proto::rpc::LIST_LIMIT_MAX;
use chorus_proto::{Key, Value};

use super::command::{Args, arity, key_error, op_error, string_key, wrong_type};
use crate::node::{OpError, Session};

/// One field of a hash: its name, its entry name, its value.
pub type Field = (Vec<u8>, Key, Value);

/// Most fields a command reads or rewrites in one session (inside `MULTI`, whose block is one
/// hold of the node's lock); above it the command is refused there, and runs outside `MULTI`
/// a page per hold (`whole`). A session store's hash has tens of fields.
pub const MULTI_HASH_FIELDS_MAX: usize = 4096;

/// Every live field of hash `key` in database `db`: its name, entry name and value; refused
/// above [`MULTI_HASH_FIELDS_MAX`] fields.
pub fn fields(session: &Session<'_>, db: u8, key: &[u8]) -> Result<Vec<Field>, Reply> {
    let prefix = keyspace::hash_prefix(db, key).map_err(key_error)?;
    let mut found = Vec::new();
    let mut after: Option<Key> = None;
    loop {
        if found.len() > MULTI_HASH_FIELDS_MAX {
            return Err(Reply::error(format!(
                "hash of more than {MULTI_HASH_FIELDS_MAX} fields: too large for MULTI on chorus, \
                 which runs the block in one hold of the node's lock; send the command outside \
                 MULTI, where it works a page of fields at a time"
            )));
        }
        let page = session.list(&prefix, after.as_ref(), LIST_LIMIT_MAX as usize);
        let full = page.len() == LIST_LIMIT_MAX as usize;
        after = page.last().map(|(name, _)| name.clone());
        for (name, value) in page {
            let field = name.as_bytes()[prefix.len()..].to_vec();
            found.push((field, name, value));
        }
        if !full {
            return Ok(found);
        }
    }
}

/// Whether hash `key` has any field on this node.
pub fn exists(session: &Session<'_>, db: u8, key: &[u8]) -> bool {
    session.holds_from(&keyspace::hashes_prefix(db))
        && keyspace::hash_prefix(db, key)
            .is_ok_and(|prefix| !session.list(&prefix, None, 1).is_empty())
}

/// Deletes every field of hash `key` (a key written as a string stops being a hash).
pub fn clear(session: &mut Session<'_>, db: u8, key: &[u8]) -> Result<(), OpError> {
    // Every SET runs this: when no hash field of the database is held at all (no key sorts
    // at or after their common prefix), it costs one look at the last key.
    if !session.holds_from(&keyspace::hashes_prefix(db)) {
        return Ok(());
    }
    // Every field, however many: `fields` refuses a hash above `MULTI_HASH_FIELDS_MAX`, and a
    // SET must not leave a large hash behind it (the key would be a string and a hash at once).
    let Ok(prefix) = keyspace::hash_prefix(db, key) else { return Ok(()) };
    for (name, _) in session.list(&prefix, None, usize::MAX) {
        session.delete(name)?;
    }
    Ok(())
}

/// The expiry (wall ms) hash `key` has, if any of its fields carries one. A hash's fields all
/// carry the same expiry when it was set through Redis; the first field's is reported.
pub fn expiry(session: &Session<'_>, db: u8, key: &[u8]) -> Result<Option<u64>, Reply> {
    let Ok(prefix) = keyspace::hash_prefix(db, key) else { return Ok(None) };
    let first = session.list(&prefix, None, 1);
    Ok(first
        .first()
        .and_then(|(name, _)| session.lookup(name))
        .and_then(|found| found.expires_at_ms))
}

pub fn field_key(db: u8, key: &[u8], field: &[u8]) -> Result<Key, Reply> {
    keyspace::hash_field(db, key, field).map_err(key_error)
}

/// `HSET key field value [field value ...]`: how many fields are new.
pub fn hset(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    match write_fields(session, db, args, "hset") {
        Ok(added) => Reply::Integer(added),
        Err(reply) => reply,
    }
}

/// `HMSET key field value [field value ...]`.
pub fn hmset(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    match write_fields(session, db, args, "hmset") {
        Ok(_) => Reply::ok(),
        Err(reply) => reply,
    }
}

fn write_fields(session: &mut Session<'_>, db: u8, args: &Args, name: &str) -> Result<i64, Reply> {
    let [key, pairs @ ..] = args else { return Err(arity(name)) };
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Err(arity(name));
    }
    if session.lookup(&string_key(db, key)?).is_some() {
        return Err(wrong_type());
    }
    let ttl_ms = expiry(session, db, key)?.map(|at| at.saturating_sub(session.now_ms()).max(1));
    let mut writes = Vec::with_capacity(pairs.len() / 2);
    for pair in pairs.chunks_exact(2) {
        let value = Value::new(pair[1]).map_err(Reply::error)?;
        writes.push((field_key(db, key, pair[0])?, value));
    }
    let mut added = 0;
    for (name, value) in writes {
        added += i64::from(session.lookup(&name).is_none());
        session.put(name, value, ttl_ms).map_err(op_error)?;
    }
    Ok(added)
}

/// `HSETNX key field value`: 1 if this node had no such field and took this one.
pub fn hsetnx(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    let [key, field, _] = args else { return arity("hsetnx") };
    match field_key(db, key, field) {
        Ok(name) if session.lookup(&name).is_some() => Reply::Integer(0),
        Ok(_) => hset(session, db, args),
        Err(reply) => reply,
    }
}

/// `HGET key field`.
pub fn hget(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    let [key, field] = args else { return arity("hget") };
    match field_key(db, key, field) {
        Ok(name) => session.lookup(&name).map_or(Reply::Null, |found| Reply::Value(found.value)),
        Err(reply) => reply,
    }
}

/// `HMGET key field [field ...]`.
pub fn hmget(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    let [key, fields @ ..] = args else { return arity("hmget") };
    if fields.is_empty() {
        return arity("hmget");
    }
    let values = fields.iter().map(|field| match field_key(db, key, field) {
        Ok(name) => session.lookup(&name).map_or(Reply::Null, |found| Reply::Value(found.value)),
        Err(_) => Reply::Null,
    });
    Reply::Array(values.collect())
}

/// The commands that read a whole hash (`HGETALL`, `HKEYS`, `HVALS`, `HLEN`): the hash's
/// fields, shaped into a reply by `shape`.
fn whole_hash(
    session: &Session<'_>,
    db: u8,
    args: &Args,
    name: &str,
    shape: fn(Vec<Field>) -> Reply,
) -> Reply {
    let [key] = args else { return arity(name) };
    fields(session, db, key).map_or_else(|reply| reply, shape)
}

/// `HGETALL key`: a map (RESP3) or field, value, field, value... (RESP2).
pub fn hgetall(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    whole_hash(session, db, args, "hgetall", |found| {
        Reply::Map(found.into_iter().map(|(f, _, v)| (Reply::Bulk(f), Reply::Value(v))).collect())
    })
}

/// `HKEYS key`.
pub fn hkeys(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    whole_hash(session, db, args, "hkeys", |found| {
        Reply::Array(found.into_iter().map(|(field, _, _)| Reply::Bulk(field)).collect())
    })
}

/// `HVALS key`.
pub fn hvals(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    whole_hash(session, db, args, "hvals", |found| {
        Reply::Array(found.into_iter().map(|(_, _, value)| Reply::Value(value)).collect())
    })
}

/// `HLEN key`.
pub fn hlen(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    whole_hash(session, db, args, "hlen", |found| Reply::Integer(found.len() as i64))
}

/// `HEXISTS key field`.
pub fn hexists(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    let [key, field] = args else { return arity("hexists") };
    match field_key(db, key, field) {
        Ok(name) => Reply::Integer(i64::from(session.lookup(&name).is_some())),
        Err(reply) => reply,
    }
}

/// `HDEL key field [field ...]`: how many fields this node held.
pub fn hdel(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    let [key, fields @ ..] = args else { return arity("hdel") };
    if fields.is_empty() {
        return arity("hdel");
    }
    let mut deleted = 0;
    for field in fields {
        let name = match field_key(db, key, field) {
            Ok(name) => name,
            Err(reply) => return reply,
        };
        match session.delete(name) {
            Ok(true) => deleted += 1,
            Ok(false) => {}
            Err(error) => return op_error(error),
        }
    }
    Reply::Integer(deleted)
}
