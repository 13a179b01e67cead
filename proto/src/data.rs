//! Validated keys and values: a `Key` or `Value` that exists is within its limits.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::limits::{KEY_SIZE_MAX, VALUE_SIZE_MAX};

/// Why a byte string is not a valid key or value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// Keys must have at least one byte.
    #[error("invalid key: a key must not be empty")]
    KeyEmpty,
    /// The key is longer than `KEY_SIZE_MAX`.
    #[error("key too large: {size} bytes, the maximum is {KEY_SIZE_MAX}")]
    KeyTooLarge {
        /// Its length.
        size: usize,
    },
    /// The value is longer than the allowed maximum.
    #[error("value too large: {size} bytes, the maximum is {size_max}")]
    ValueTooLarge {
        /// Its length.
        size: usize,
        /// The maximum that applied.
        size_max: usize,
    },
}

/// A key: 1 to `KEY_SIZE_MAX` bytes. Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Arc<[u8]>);

impl Key {
    /// Validates `bytes` as a key.
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<Key, DataError> {
        let bytes = bytes.as_ref();
        match bytes.len() {
            0 => Err(DataError::KeyEmpty),
            size if size > KEY_SIZE_MAX => Err(DataError::KeyTooLarge { size }),
            _ => Ok(Key(bytes.into())),
        }
    }

    /// A key from bytes the store held as a key: valid already, so not checked again.
    pub(crate) fn held(bytes: &[u8]) -> Key {
        Key(bytes.into())
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Lets an ordered map of keys be searched by a byte slice (prefix listing). Sound because the
/// derived order and equality of `Key` are those of its bytes.
impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// A value: at most `VALUE_SIZE_MAX` bytes. Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Value(Arc<[u8]>);

impl Value {
    /// Validates `bytes` as a value of at most `VALUE_SIZE_MAX` bytes.
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<Value, DataError> {
        Value::with_limit(bytes, VALUE_SIZE_MAX)
    }

    /// Validates `bytes` as a value of at most `size_max` bytes (a node may lower the limit).
    pub fn with_limit(bytes: impl AsRef<[u8]>, size_max: usize) -> Result<Value, DataError> {
        let bytes = bytes.as_ref();
        let size_max = size_max.min(VALUE_SIZE_MAX);
        if bytes.len() > size_max {
            return Err(DataError::ValueTooLarge { size: bytes.len(), size_max });
        }
        Ok(Value(bytes.into()))
    }

    /// A value from bytes the store held as a value: valid already, so not checked again.
    pub(crate) fn held(bytes: &[u8]) -> Value {
        Value(bytes.into())
    }

    /// The value's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 32;
        let shown = &self.0[..self.0.len().min(SHOWN)];
        write!(f, "{:?}", String::from_utf8_lossy(shown))?;
        if self.0.len() > SHOWN {
            write!(f, "..({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

/// Serialises keys and values as byte strings, and validates them on the way in, so decoding
/// peer input can only ever produce valid data.
macro_rules! bytes_serde {
    ($type:ident) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct BytesVisitor;
                impl Visitor<'_> for BytesVisitor {
                    type Value = $type;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a ", stringify!($type), " as bytes"))
                    }
                    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<$type, E> {
                        $type::new(bytes).map_err(E::custom)
                    }
                }
                deserializer.deserialize_bytes(BytesVisitor)
            }
        }
    };
}

bytes_serde!(Key);
bytes_serde!(Value);
