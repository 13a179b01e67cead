//! String commands: `GET`, `SET` (with `EX PX EXAT PXAT KEEPTTL NX XX GET`), `SETEX`,
//! `PSETEX`, `SETNX`, `MGET`, `MSET`, `STRLEN`.
//!
//! Every write is last-writer-wins: `SET` is exact; `NX` and `XX` look at this node only, so
//! two nodes may both "create" a key (the later write wins everywhere), which is why `SET NX`
//! is no lock here.

use chorus_proto::Value;
use chorus_proto::resp::Reply;

use super::command::{
    Args, arity, integer, invalid_expire, op_error, string_key, syntax, ttl_ms, upper, wrong_type,
};
use super::hashes;
use crate::node::Session;

/// `GET key`.
pub fn get(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    let [key] = args else { return arity("get") };
    let name = match string_key(db, key) {
        Ok(name) => name,
        Err(reply) => return reply,
    };
    match session.lookup(&name) {
        Some(found) => Reply::Value(found.value),
        None if hashes::exists(session, db, key) => wrong_type(),
        None => Reply::Null,
    }
}

/// `STRLEN key`.
pub fn strlen(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    let [key] = args else { return arity("strlen") };
    match string_key(db, key) {
        Ok(key) => Reply::Integer(session.lookup(&key).map_or(0, |found| found.value.len() as i64)),
        Err(reply) => reply,
    }
}

/// `MGET key [key ...]`.
pub fn mget(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    if args.is_empty() {
        return arity("mget");
    }
    let values = args.iter().map(|key| match string_key(db, key) {
        Ok(key) => session.lookup(&key).map_or(Reply::Null, |found| Reply::Value(found.value)),
        // A key that cannot exist reads as absent, as Redis's MGET never fails on one key.
        Err(_) => Reply::Null,
    });
    Reply::Array(values.collect())
}

/// How a `SET` treats the key's expiry and existence.
#[derive(Default)]
struct SetOptions {
    ttl_ms: Option<u64>,
    expired: bool,
    keep_ttl: bool,
    only_new: bool,
    only_existing: bool,
    get: bool,
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`.
pub fn set(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    let [key, value, options @ ..] = args else { return arity("set") };
    let options = match set_options(options, session.now_ms()) {
        Ok(options) => options,
        Err(reply) => return reply,
    };
    let key = match string_key(db, key) {
        Ok(key) => key,
        Err(reply) => return reply,
    };
    // Only NX, XX, GET and KEEPTTL read what the key held: a plain SET skips the lookup.
    let reads_old = options.only_new || options.only_existing || options.get || options.keep_ttl;
    let old = if reads_old { session.lookup(&key) } else { None };
    let old_reply = || old.clone().map_or(Reply::Null, |found| Reply::Value(found.value));
    if (options.only_new && old.is_some()) || (options.only_existing && old.is_none()) {
        return if options.get { old_reply() } else { Reply::Null };
    }
    let value = match Value::new(value) {
        Ok(value) => value,
        Err(error) => return Reply::error(error),
    };
    let ttl_ms = if options.keep_ttl {
        old.as_ref()
            .and_then(|found| found.expires_at_ms)
            .map(|at| at.saturating_sub(session.now_ms()).max(1))
    } else {
        options.ttl_ms
    };
    let written = if options.expired {
        session.delete(key).map(drop)
    } else {
        session.put(key, value, ttl_ms).map(drop)
    };
    // A SET replaces whatever the key held, a hash included.
    let written = written.and_then(|()| hashes::clear(session, db, args[0]));
    match written {
        Err(error) => op_error(error),
        Ok(()) if options.get => old_reply(),
        Ok(()) => Reply::ok(),
    }
}

fn set_options(options: &Args, now_ms: u64) -> Result<SetOptions, Reply> {
    let mut parsed = SetOptions::default();
    let mut expiry_given = false;
    let mut at = 0;
    while at < options.len() {
        let option = upper(options[at]);
        match option.as_str() {
            "NX" => parsed.only_new = true,
            "XX" => parsed.only_existing = true,
            "GET" => parsed.get = true,
            "KEEPTTL" => parsed.keep_ttl = true,
            "EX" | "PX" | "EXAT" | "PXAT" => {
                let unit_ms = if option.starts_with("EX") { 1_000 } else { 1 };
                let absolute = option.ends_with("AT");
                let amount = options.get(at + 1).ok_or_else(syntax).and_then(|arg| integer(arg))?;
                if expiry_given {
                    return Err(syntax());
                }
                if amount <= 0 {
                    return Err(invalid_expire());
                }
                expiry_given = true;
                parsed.ttl_ms = ttl_ms(amount, unit_ms, absolute, now_ms)?;
                parsed.expired = parsed.ttl_ms.is_none();
                at += 1;
            }
            _ => return Err(syntax()),
        }
        at += 1;
    }
    if (parsed.only_new && parsed.only_existing) || (parsed.keep_ttl && expiry_given) {
        return Err(syntax());
    }
    Ok(parsed)
}

/// `SETEX key seconds value`.
pub fn setex(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    set_with_ttl(session, db, args, "setex", "EX")
}

/// `PSETEX key milliseconds value`.
pub fn psetex(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    set_with_ttl(session, db, args, "psetex", "PX")
}

fn set_with_ttl(session: &mut Session<'_>, db: u8, args: &Args, name: &str, unit: &str) -> Reply {
    let [key, amount, value] = args else { return arity(name) };
    set(session, db, &[key, value, unit.as_bytes(), amount])
}

/// `SETNX key value`: 1 if this node had no value for the key and took this one.
pub fn setnx(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    let [key, value] = args else { return arity("setnx") };
    match set(session, db, &[key, value, b"NX"]) {
        Reply::Simple(_) => Reply::Integer(1),
        Reply::Null => Reply::Integer(0),
        error => error,
    }
}

/// `MSET key value [key value ...]`: every pair written in this one session.
pub fn mset(session: &mut Session<'_>, db: u8, args: &Args) -> Reply {
    if args.is_empty() || !args.len().is_multiple_of(2) {
        return arity("mset");
    }
    // Check every pair before writing any, so a bad pair writes nothing.
    let mut pairs = Vec::with_capacity(args.len() / 2);
    for pair in args.chunks_exact(2) {
        let key = match string_key(db, pair[0]) {
            Ok(key) => key,
            Err(reply) => return reply,
        };
        match Value::new(pair[1]) {
            Ok(value) => pairs.push((key, value)),
            Err(error) => return Reply::error(error),
        }
    }
    for ((key, value), pair) in pairs.into_iter().zip(args.chunks_exact(2)) {
        let written =
            session.put(key, value, None).and_then(|_| hashes::clear(session, db, pair[0]));
        if let Err(error) = written {
            return op_error(error);
        }
    }
    Reply::ok()
}
