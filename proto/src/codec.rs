//! The wire codec: postcard bodies, bounded on the way out and checked on the way in.
//!
//! Frames on streams are a big-endian `u32` length and a body; [`frame_length`] checks the
//! length against the maximum before the reader allocates anything. Decoding never panics on
//! any input: it returns a [`CodecError`].

use postcard::ser_flavors::Flavor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::limits::MESSAGE_SIZE_MAX;

/// Bytes in a frame's length prefix.
pub const FRAME_HEADER_SIZE: usize = 4;

/// Bytes reserved before encoding: most messages (an RPC request or answer, a push of a few
/// small writes) fit, so encoding them allocates once instead of growing byte by byte.
const ENCODE_CAPACITY_INITIAL: usize = 256;

/// Why bytes could not be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The message is larger than allowed.
    #[error("message too large: {size} bytes, the maximum is {size_max}")]
    TooLarge {
        /// Its size, or the size reached when encoding stopped.
        size: usize,
        /// The maximum that applied.
        size_max: usize,
    },
    /// The bytes are not a valid message.
    #[error("malformed message")]
    Malformed(#[source] postcard::Error),
    /// The message could not be serialised (a type the format cannot carry: a bug).
    #[error("message did not encode")]
    Encode(#[source] postcard::Error),
    /// A valid message followed by extra bytes.
    #[error("{0} bytes after the message")]
    TrailingBytes(usize),
}

/// A growable buffer that refuses to grow past a maximum, so encoding a message that is too
/// large fails at the limit instead of allocating the whole thing first.
struct BoundedVec {
    bytes: Vec<u8>,
    size_max: usize,
}

impl Flavor for BoundedVec {
    type Output = Vec<u8>;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        if self.bytes.len() >= self.size_max {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.bytes.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if self.bytes.len() + bytes.len() > self.size_max {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.bytes)
    }
}

/// Encodes `message` into at most `MESSAGE_SIZE_MAX` bytes.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    encode_with_limit(message, MESSAGE_SIZE_MAX)
}

/// Encodes `message` into at most `size_max` bytes, after `prefix` (for a frame header).
fn encode_into<T: Serialize>(
    message: &T,
    prefix: Vec<u8>,
    size_max: usize,
) -> Result<Vec<u8>, CodecError> {
    let flavor = BoundedVec { bytes: prefix, size_max };
    postcard::serialize_with_flavor(message, flavor).map_err(|error| match error {
        postcard::Error::SerializeBufferFull => {
            CodecError::TooLarge { size: size_max + 1, size_max }
        }
        other => CodecError::Encode(other),
    })
}

/// Encodes `message` into at most `size_max` bytes.
pub fn encode_with_limit<T: Serialize>(
    message: &T,
    size_max: usize,
) -> Result<Vec<u8>, CodecError> {
    encode_into(message, Vec::with_capacity(ENCODE_CAPACITY_INITIAL), size_max)
}

/// Encodes `message` as a frame: a `u32` length, then the body of at most `MESSAGE_SIZE_MAX`.
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    encode_frame_sized(message, ENCODE_CAPACITY_INITIAL)
}

/// Encodes `message` as a frame (see [`encode_frame`]) into a buffer that starts with room
/// for `size_hint` bytes (capped at `MESSAGE_SIZE_MAX`), so a message whose size the caller can
/// bound is encoded without growing the buffer step by step.
pub fn encode_frame_sized<T: Serialize>(
    message: &T,
    size_hint: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut header = Vec::with_capacity(FRAME_HEADER_SIZE + size_hint.min(MESSAGE_SIZE_MAX));
    header.resize(FRAME_HEADER_SIZE, 0);
    let mut frame = encode_into(message, header, FRAME_HEADER_SIZE + MESSAGE_SIZE_MAX)?;
    let body = frame.len() - FRAME_HEADER_SIZE;
    // Fits: the flavour capped the body at MESSAGE_SIZE_MAX, which is below u32::MAX.
    frame[..FRAME_HEADER_SIZE].copy_from_slice(&(body as u32).to_be_bytes());
    Ok(frame)
}

/// The body length a frame header announces, refused if above `MESSAGE_SIZE_MAX`.
pub fn frame_length(header: [u8; FRAME_HEADER_SIZE]) -> Result<usize, CodecError> {
    let size = u32::from_be_bytes(header) as usize;
    if size > MESSAGE_SIZE_MAX {
        return Err(CodecError::TooLarge { size, size_max: MESSAGE_SIZE_MAX });
    }
    Ok(size)
}

/// Decodes one message that must span all of `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MESSAGE_SIZE_MAX {
        return Err(CodecError::TooLarge { size: bytes.len(), size_max: MESSAGE_SIZE_MAX });
    }
    let (message, rest) = postcard::take_from_bytes(bytes).map_err(CodecError::Malformed)?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes(rest.len()));
    }
    Ok(message)
}
