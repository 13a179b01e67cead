//! Redis databases and hash fields in chorus's one key space.
//!
//! One data model serves every front end: a string key written through Redis database 0 is
//! the very entry `chorus get`, the Rust client and HTTP see under the same name. Databases
//! other than 0, and hash fields, are entries too, under names no text key can take: they
//! start with byte `0xFF`, which never occurs in UTF-8.
//!
//! - database `n` > 0, string key `k`: `FF 's' n k`
//! - database `n`, hash `k`, field `f`: `FF 'h' n len(k) as u16 BE, k, f`
//!
//! Each hash field is its own last-writer-wins entry, so two nodes writing different fields of
//! one hash both survive (as Redis Active-Active merges hashes). Per-entry metadata stays
//! O(1): the database and field live in the key's bytes, not beside it. The cost is room:
//! a hash's key and field share the key limit (`KEY_SIZE_MAX`) with 5 bytes of prefix.

use crate::data::Key;
use crate::limits::KEY_SIZE_MAX;

/// How many Redis databases a node serves (`SELECT 0` to `SELECT 15`, as Redis by default).
pub const DATABASES: u8 = 16;

/// The first byte of every name that is not a database-0 string key.
pub const RESERVED_BYTE: u8 = 0xFF;

const STRING_TAG: u8 = b's';
const HASH_TAG: u8 = b'h';
const HASH_HEADER_SIZE: usize = 5;

/// Why a Redis name has no entry name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyspaceError {
    /// A database number out of range.
    #[error("DB index is out of range (0 to {})", DATABASES - 1)]
    Database,
    /// An empty key.
    #[error("empty keys are not allowed")]
    Empty,
    /// A key that starts with the reserved byte.
    #[error("keys starting with byte 0xFF are reserved for databases and hash fields")]
    Reserved,
    /// A key (with its database or field) above the key limit.
    #[error("key too long: {size} bytes with its database and field, at most {KEY_SIZE_MAX}")]
    TooLong {
        /// The whole name's size.
        size: usize,
    },
}

/// What an entry's name means to Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Name {
    /// A string key of a database.
    String {
        /// The database.
        db: u8,
        /// The key.
        key: Vec<u8>,
    },
    /// One field of a hash.
    HashField {
        /// The database.
        db: u8,
        /// The hash's key.
        key: Vec<u8>,
        /// The field.
        field: Vec<u8>,
    },
}

/// The entry name of string key `key` in database `db`.
pub fn string_key(db: u8, key: &[u8]) -> Result<Key, KeyspaceError> {
    check(db, key)?;
    if db == 0 {
        // Copied once, straight into the key (this runs on every GET and SET).
        return entry_key(key);
    }
    entry_key(&[&[RESERVED_BYTE, STRING_TAG, db], key].concat())
}

/// The entry name of field `field` of hash `key` in database `db`.
pub fn hash_field(db: u8, key: &[u8], field: &[u8]) -> Result<Key, KeyspaceError> {
    check(db, key)?;
    let mut name = hash_prefix(db, key)?;
    name.extend_from_slice(field);
    entry_key(&name)
}

/// The prefix every field of hash `key` in database `db` starts with.
pub fn hash_prefix(db: u8, key: &[u8]) -> Result<Vec<u8>, KeyspaceError> {
    check(db, key)?;
    let size = HASH_HEADER_SIZE + key.len();
    let length = u16::try_from(key.len()).map_err(|_| KeyspaceError::TooLong { size })?;
    if size > KEY_SIZE_MAX {
        return Err(KeyspaceError::TooLong { size });
    }
    let [high, low] = length.to_be_bytes();
    Ok([&[RESERVED_BYTE, HASH_TAG, db, high, low], key].concat())
}

/// The prefix of every string key of database `db` (empty for database 0, whose keys are
/// the plain names: a scan of it stops at the first reserved name).
pub fn strings_prefix(db: u8) -> Vec<u8> {
    if db == 0 { Vec::new() } else { vec![RESERVED_BYTE, STRING_TAG, db] }
}

/// The prefix of every hash field of database `db`.
pub fn hashes_prefix(db: u8) -> [u8; 3] {
    [RESERVED_BYTE, HASH_TAG, db]
}

/// What an entry's name means to Redis; `None` for a reserved name this version does not know.
pub fn parse(name: &[u8]) -> Option<Name> {
    match name {
        [RESERVED_BYTE, STRING_TAG, db, key @ ..] if !key.is_empty() => {
            Some(Name::String { db: *db, key: key.to_vec() })
        }
        [RESERVED_BYTE, HASH_TAG, db, high, low, rest @ ..] => {
            let length = usize::from(u16::from_be_bytes([*high, *low]));
            let (key, field) = (rest.get(..length)?, rest.get(length..)?);
            Some(Name::HashField { db: *db, key: key.to_vec(), field: field.to_vec() })
        }
        [RESERVED_BYTE, ..] => None,
        key => Some(Name::String { db: 0, key: key.to_vec() }),
    }
}

fn check(db: u8, key: &[u8]) -> Result<(), KeyspaceError> {
    if db >= DATABASES {
        return Err(KeyspaceError::Database);
    }
    match key.first() {
        None => Err(KeyspaceError::Empty),
        Some(&RESERVED_BYTE) => Err(KeyspaceError::Reserved),
        Some(_) => Ok(()),
    }
}

fn entry_key(name: &[u8]) -> Result<Key, KeyspaceError> {
    let size = name.len();
    Key::new(name).map_err(|_| KeyspaceError::TooLong { size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_zero_strings_are_plain_names() {
        assert_eq!(string_key(0, b"app/flags/x").expect("valid").as_bytes(), b"app/flags/x");
        assert_eq!(
            parse(b"app/flags/x"),
            Some(Name::String { db: 0, key: b"app/flags/x".to_vec() })
        );
    }

    #[test]
    fn every_name_parses_back() {
        for db in [0, 1, 15] {
            let string = string_key(db, b"k").expect("valid");
            assert_eq!(parse(string.as_bytes()), Some(Name::String { db, key: b"k".to_vec() }));
            let field = hash_field(db, b"sess:1", b"attr").expect("valid");
            let expected = Name::HashField { db, key: b"sess:1".to_vec(), field: b"attr".to_vec() };
            assert_eq!(parse(field.as_bytes()), Some(expected));
            assert!(field.as_bytes().starts_with(&hash_prefix(db, b"sess:1").expect("valid")));
            assert!(field.as_bytes().starts_with(&hashes_prefix(db)));
        }
    }

    #[test]
    fn a_hash_prefix_never_covers_a_longer_key() {
        // The length in the prefix keeps hash "a" from listing the fields of hash "ab".
        let a = hash_prefix(0, b"a").expect("valid");
        let ab_field = hash_field(0, b"ab", b"f").expect("valid");
        assert!(!ab_field.as_bytes().starts_with(&a));
    }

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(string_key(16, b"k"), Err(KeyspaceError::Database));
        assert_eq!(string_key(0, b""), Err(KeyspaceError::Empty));
        assert_eq!(string_key(0, b"\xffx"), Err(KeyspaceError::Reserved));
        let long = vec![b'k'; KEY_SIZE_MAX];
        assert!(string_key(0, &long).is_ok());
        assert!(matches!(string_key(1, &long), Err(KeyspaceError::TooLong { .. })));
        assert!(matches!(hash_field(0, &long, b"f"), Err(KeyspaceError::TooLong { .. })));
    }
}
