//! What every command needs: its arguments, the connection's state, arity and number
//! parsing, and the errors Redis clients expect, word for word where they parse them.

use chorus_proto::Key;
use chorus_proto::keyspace::{self, KeyspaceError};
use chorus_proto::limits::TTL_MS_MAX;
use chorus_proto::resp::Reply;

use crate::node::OpError;

/// Most bytes of replies a connection holds before writing them: above it the client gets an
/// error and is disconnected. 32 large values (1 MiB each) fit.
pub const REDIS_OUTPUT_MAX: usize = 32 * 1024 * 1024;

/// The arguments after the command's name, as slices of the buffer they were read into.
pub type Args<'a> = [&'a [u8]];

/// The arguments of a command that is not a data command (owned: such commands are rare).
pub type OwnedArgs = [Vec<u8>];

/// A data command: reads and writes one database of the node in one session.
pub type DataFn = fn(&mut crate::node::Session<'_>, u8, &Args) -> Reply;

/// `-ERR wrong number of arguments for 'get' command`.
pub fn arity(name: &str) -> Reply {
    Reply::error(format!("wrong number of arguments for '{}' command", name.to_lowercase()))
}

/// `-WRONGTYPE`, as Redis answers a command on a key of the other type.
pub fn wrong_type() -> Reply {
    Reply::Error("WRONGTYPE Operation against a key holding the wrong kind of value".into())
}

/// `-ERR syntax error`.
pub fn syntax() -> Reply {
    Reply::error("syntax error")
}

/// `-ERR value is not an integer or out of range`.
pub fn not_integer() -> Reply {
    Reply::error("value is not an integer or out of range")
}

/// An argument as an integer.
pub fn integer(arg: &[u8]) -> Result<i64, Reply> {
    std::str::from_utf8(arg).ok().and_then(|text| text.parse().ok()).ok_or_else(not_integer)
}

/// An argument in upper case, for matching command and option names (ASCII, as Redis does:
/// Unicode case mapping cost a measurable share of every command).
pub fn upper(arg: &[u8]) -> String {
    let mut upper = String::from_utf8_lossy(arg).into_owned();
    upper.make_ascii_uppercase();
    upper
}

/// The reply for an operation's error.
pub fn op_error(error: OpError) -> Reply {
    match error {
        OpError::TooLarge { size, size_max } => {
            Reply::error(format!("value of {size} bytes is above this node's limit of {size_max}"))
        }
        OpError::Invalid(why) if why.contains("TTL") || why.contains("ttl") => {
            Reply::error("invalid expire time in command")
        }
        other => Reply::error(other),
    }
}

/// The reply for a key that has no entry name.
pub fn key_error(error: KeyspaceError) -> Reply {
    Reply::error(error)
}

/// The entry name of string key `key` in database `db`.
pub fn string_key(db: u8, key: &[u8]) -> Result<Key, Reply> {
    keyspace::string_key(db, key).map_err(key_error)
}

/// `-ERR invalid expire time in command`.
pub fn invalid_expire() -> Reply {
    Reply::error("invalid expire time in command")
}

/// Milliseconds from now until a relative or absolute time given in units of `unit_ms`:
/// `None` when that time is not in the future (the key is to be deleted). Expiries beyond
/// `TTL_MS_MAX` (a year) are held at it: a session store asking for a cookie's two-year
/// lifetime gets a year rather than an error on every save.
pub fn ttl_ms(
    amount: i64,
    unit_ms: i64,
    absolute: bool,
    now_ms: u64,
) -> Result<Option<u64>, Reply> {
    let ms = amount.checked_mul(unit_ms).ok_or_else(invalid_expire)?;
    let relative = if absolute { ms.saturating_sub(now_ms as i64) } else { ms };
    Ok(u64::try_from(relative).ok().filter(|ms| *ms > 0).map(|ms| ms.min(TTL_MS_MAX)))
}
