//! Key commands on one key at a time: `DEL`, `UNLINK`, `EXISTS`, `EXPIRE`, `PEXPIRE`,
//! `EXPIREAT`, `PEXPIREAT`, `PERSIST`, `TTL`, `PTTL`, `TYPE`, `RENAME`, `DEBUG OBJECT`.
//!
//! These run a command in one session: inside `MULTI`, where the block is one hold of the
//! node's lock, and for a hash of at most `MULTI_HASH_FIELDS_MAX` fields. Outside `MULTI`, the
//! commands that work on a whole key (`DEL`, the expiry commands, `RENAME`, `DEBUG OBJECT`) run
//! from `whole`, a page of fields per hold.
//!
//! A Redis key is either a string entry or the fields of a hash (`chorus_proto::keyspace`).
//! An expiry change rewrites the value with the new expiry: under last-writer-wins it is a
//! write like any other, so a concurrent `SET` on another node may win over it.

use chorus_proto::keyspace;
use chorus_proto::resp::Reply;
use chorus_proto::{Key, Value};

use super::command::{Args, arity, integer, op_error, string_key, syntax, ttl_ms, upper};
use super::hashes;
use crate::node::{Found, Session};

/// What a Redis key holds on this node: a string, the fields of a hash, or (briefly, when two
/// nodes wrote the key as different types at once) both. Each command acts on all of it.
struct Held {
    string: Option<(Key, Found)>,
    fields: Vec<hashes::Field>,
    hash_expiry: Option<u64>,
}

impl Held {
    fn expires_at_ms(&self) -> Option<u64> {
        match &self.string {
            Some((_, found)) => found.expires_at_ms,
            None => self.hash_expiry,
        }
    }

    /// Every entry, name and value.
    fn entries(&self) -> Vec<(Key, Value)> {
        let string = self.string.iter().map(|(name, found)| (name.clone(), found.value.clone()));
        let fields = self.fields.iter().map(|(_, name, value)| (name.clone(), value.clone()));
        string.chain(fields).collect()
    }
}

/// Everything a key holds, a hash's fields loaded (for commands that rewrite or delete them).
/// A key too long to name a hash field simply has none.
fn held(session: &Session<'_>, db: u8, key: &[u8]) -> Result<Option<Held>, Reply> {
    let name = string_key(db, key)?;
    let string = session.lookup(&name).map(|found| (name, found));
    // A key too long to name a hash field has none.
    let fields = match keyspace::hash_prefix(db, key) {
        Ok(_) => hashes::fields(session, db, key)?,
        Err(_) => Vec::new(),
    };
    if string.is_none() && fields.is_empty() {
        return Ok(None);
    }
    let hash_expiry = if fields.is_empty() { None } else { hashes::expiry(session, db, key)? };
    Ok(Some(Held { string, fields, hash_expiry }))
}

/// What a key holds, read without loading a hash's fields: its type and expiry. For the
/// commands that only ask (`EXISTS`, `TYPE`, `TTL`), whose work must not grow with a hash.
fn probe(
    session: &Session<'_>,
    db: u8,
    key: &[u8],
) -> Result<Option<(&'static str, Option<u64>)>, Reply> {
    if let Some(found) = session.lookup(&string_key(db, key)?) {
        return Ok(Some(("string", found.expires_at_ms)));
    }
    if hashes::exists(session, db, key) {
        return Ok(Some(("hash", hashes::expiry(session, db, key).unwrap_or(None))));
    }
    Ok(None)
}

/// Deletes everything a key holds.
fn remove(session: &mut Session<'_>, held: Held) -> Result<(), Reply> {
    for (name, _) in held.entries() {
        session.delete(name).map_err(op_error)?;
    }
    Ok(())
}

/// Writes what a key holds again with a new expiry (`None`: none).
fn rewrite(session: &mut Session<'_>, held: Held, ttl_ms: Option<u64>) -> Result<(), Reply> {
    for (name, value) in held.entries() {
        session.put(name, value, ttl_ms).map_err(op_error)?;
    }
    Ok(())
}

/// `DEL key [key ...]` and `UNLINK`: how many of the keys this node held.
pub fn del(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    if args.is_empty() {
        return arity("del");
    }
    let mut deleted = 0;
    for key in args {
        let outcome = held(session, db, key).and_then(|held| match held {
            Some(held) => remove(session, held).map(|()| 1),
            None => Ok(0),
        });
        match outcome {
            Ok(count) => deleted += count,
            Err(reply) => return reply,
        }
    }
    Reply::Integer(deleted)
}

/// `EXISTS key [key ...]`: how many of the keys exist (a repeated key counts each time).
pub fn exists(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    if args.is_empty() {
        return arity("exists");
    }
    let mut count = 0;
    for key in args {
        match probe(session, db, key) {
            Ok(found) => count += i64::from(found.is_some()),
            Err(reply) => return reply,
        }
    }
    Reply::Integer(count)
}

/// `EXPIRE key seconds [NX|XX|GT|LT]`.
pub fn expire(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    set_expiry(session, db, args, "expire", 1_000, false)
}

/// `PEXPIRE key milliseconds [NX|XX|GT|LT]`.
pub fn pexpire(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    set_expiry(session, db, args, "pexpire", 1, false)
}

/// `EXPIREAT key unix-seconds [NX|XX|GT|LT]`.
pub fn expireat(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    set_expiry(session, db, args, "expireat", 1_000, true)
}

/// `PEXPIREAT key unix-milliseconds [NX|XX|GT|LT]`.
pub fn pexpireat(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    set_expiry(session, db, args, "pexpireat", 1, true)
}

fn set_expiry(
    session: &mut Session<'_>,
    db: u8,
    args: &Args,
    name: &str,
    unit_ms: i64,
    absolute: bool,
) -> Reply {
    let (key, amount, condition) = match expiry_args(args, name) {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    let now_ms = session.now_ms();
    let outcome = held(session, db, key).and_then(|held| {
        let Some(held) = held else { return Ok(0) };
        let ttl_ms = ttl_ms(amount, unit_ms, absolute, now_ms)?;
        let new_at = ttl_ms.map(|ttl| now_ms + ttl);
        if !expiry_allowed(condition.as_deref(), held.expires_at_ms(), new_at)? {
            return Ok(0);
        }
        match ttl_ms {
            Some(ttl_ms) => rewrite(session, held, Some(ttl_ms))?,
            None => remove(session, held)?,
        }
        Ok(1)
    });
    outcome.map_or_else(|reply| reply, Reply::Integer)
}

/// An expiry command's arguments: the key, the amount, and the condition (`NX`, `XX`, `GT`,
/// `LT`) if one is given.
pub fn expiry_args<'a>(
    args: &'a Args,
    name: &str,
) -> Result<(&'a [u8], i64, Option<String>), Reply> {
    let [key, amount, condition @ ..] = args else { return Err(arity(name)) };
    let amount = integer(amount)?;
    let condition = match condition {
        [] => None,
        [word] => Some(upper(word)),
        _ => return Err(syntax()),
    };
    Ok((key, amount, condition))
}

/// Whether an expiry change from `old_at` to `new_at` (wall ms; `None`: none) passes the
/// condition `NX`, `XX`, `GT` or `LT`, if given.
pub fn expiry_allowed(
    condition: Option<&str>,
    old_at: Option<u64>,
    new_at: Option<u64>,
) -> Result<bool, Reply> {
    Ok(match condition {
        None => true,
        Some("NX") => old_at.is_none(),
        Some("XX") => old_at.is_some(),
        // No expiry counts as an infinite one.
        Some("GT") => old_at.is_some_and(|old| new_at.is_some_and(|new| new > old)),
        Some("LT") => new_at.is_some_and(|new| old_at.is_none_or(|old| new < old)),
        Some(_) => return Err(syntax()),
    })
}

/// `PERSIST key`: 1 if the key had an expiry and now has none.
pub fn persist(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    let [key] = args else { return arity("persist") };
    let outcome = held(session, db, key).and_then(|held| match held {
        Some(held) if held.expires_at_ms().is_some() => rewrite(session, held, None).map(|()| 1),
        _ => Ok(0),
    });
    outcome.map_or_else(|reply| reply, Reply::Integer)
}

/// `TTL key`: seconds left, -1 without expiry, -2 when absent.
pub fn ttl(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    let [key] = args else { return arity("ttl") };
    time_left(session, db, key, 1_000)
}

/// `PTTL key`: milliseconds left, -1 without expiry, -2 when absent.
pub fn pttl(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    let [key] = args else { return arity("pttl") };
    time_left(session, db, key, 1)
}

fn time_left(session: &Session<'_>, db: u8, key: &[u8], unit_ms: u64) -> Reply {
    match probe(session, db, key) {
        Err(reply) => reply,
        Ok(None) => Reply::Integer(-2),
        Ok(Some((_, expires_at_ms))) => match expires_at_ms {
            None => Reply::Integer(-1),
            // Rounded to the nearest unit, as Redis's TTL does.
            Some(at) => Reply::Integer(
                ((at.saturating_sub(session.now_ms()) + unit_ms / 2) / unit_ms) as i64,
            ),
        },
    }
}

/// `TYPE key`: `string`, `hash` or `none`.
pub fn kind(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    let [key] = args else { return arity("type") };
    match probe(session, db, key) {
        Ok(Some((kind, _))) => Reply::Simple(kind.into()),
        Ok(None) => Reply::Simple("none".into()),
        Err(reply) => reply,
    }
}

/// `RENAME key newkey`: the value (and expiry) written under the new name, the old deleted.
pub fn rename(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    let [from, to] = args else { return arity("rename") };
    let outcome = held(session, db, from).and_then(|held| {
        let held = held.ok_or_else(|| Reply::error("no such key"))?;
        let ttl_ms = held.expires_at_ms().map(|at| at.saturating_sub(session.now_ms()).max(1));
        if let Some(target) = self::held(session, db, to)? {
            remove(session, target)?;
        }
        let mut copies = Vec::new();
        if let Some((_, found)) = &held.string {
            copies.push((string_key(db, to)?, found.value.clone()));
        }
        for (field, _, value) in &held.fields {
            copies.push((hashes::field_key(db, to, field)?, value.clone()));
        }
        remove(session, held)?;
        for (name, value) in copies {
            session.put(name, value, ttl_ms).map_err(op_error)?;
        }
        Ok(Reply::ok())
    });
    outcome.unwrap_or_else(|reply| reply)
}

/// `DEBUG OBJECT key`, in Redis's format (Lucee reads `serializedlength` from it).
pub fn debug(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    let [subcommand, key] = args else { return arity("debug") };
    if upper(subcommand) != "OBJECT" {
        return Reply::error("DEBUG supports only OBJECT here");
    }
    match held(session, db, key) {
        Err(reply) => reply,
        Ok(None) => Reply::error("no such key"),
        Ok(Some(held)) => {
            let (encoding, length) = match &held.string {
                Some((_, found)) => ("raw", found.value.len()),
                None => ("hashtable", held.fields.iter().map(|(f, _, v)| f.len() + v.len()).sum()),
            };
            let text = format!(
                "Value at:0x0 refcount:1 encoding:{encoding} serializedlength:{length} lru:0 lru_seconds_idle:0"
            );
            Reply::Simple(text.into())
        }
    }
}
