//! The Redis protocol (RESP) as the Redis front end speaks it: requests decoded from bytes, and
//! replies encoded as RESP2 or RESP3.
//!
//! Requests are flat arrays of bulk strings (what every client sends, in RESP2 and RESP3
//! alike) or inline commands (a line of words, for telnet). This decoder accepts exactly that
//! and nothing nested, so its work and memory are bounded by the limits below. A general RESP
//! decoder was measured first: `redis-protocol` 6 recursed once per nesting level and overflowed
//! the stack on 400 KB of `*1\r\n` repeated, aborting the whole process, which one bad client
//! must never be able to do.
//!
//! Decoding never panics and never allocates more than the bytes it was given: a declared
//! length is checked against its maximum before anything is reserved.

use std::ops::Range;

use crate::limits::VALUE_SIZE_MAX;

/// Most arguments one request may carry (`MSET` of many keys, `HSET` of many fields).
pub const RESP_ARGS_MAX: usize = 64 * 1024;

/// Largest bulk string in a request: the largest value a node accepts.
pub const RESP_BULK_SIZE_MAX: usize = VALUE_SIZE_MAX;

/// Largest request, all arguments together: a few values of the largest size. A connection
/// buffers at most this much of an incomplete request.
pub const RESP_REQUEST_SIZE_MAX: usize = 8 * VALUE_SIZE_MAX;

/// Longest inline command line (Redis's own limit for inline requests is 64 KiB).
pub const RESP_INLINE_SIZE_MAX: usize = 64 * 1024;

/// Longest `*<count>` or `$<length>` header line, digits and sign included.
const HEADER_SIZE_MAX: usize = 24;

/// Why a request could not be decoded. The connection answers with the message as a
/// `-ERR Protocol error: ...` and closes, as Redis does: the framing is lost.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// A byte where a header (`*` or `$`) was expected.
    #[error("expected '{expected}', got '{}'", char::from(*.got))]
    Unexpected {
        /// What was expected.
        expected: char,
        /// What came.
        got: u8,
    },
    /// A header that is not a number in range.
    #[error("invalid {what} length")]
    InvalidLength {
        /// Which header: "multibulk" or "bulk".
        what: &'static str,
    },
    /// A header line without its end.
    #[error("too big {what} count/length header")]
    HeaderTooLong {
        /// Which header.
        what: &'static str,
    },
    /// A bulk string not followed by `\r\n`.
    #[error("bulk string not terminated by CRLF")]
    Unterminated,
    /// More than [`RESP_ARGS_MAX`] arguments.
    #[error("too many arguments (at most {RESP_ARGS_MAX})")]
    TooManyArgs,
    /// A bulk string above [`RESP_BULK_SIZE_MAX`].
    #[error("bulk string of {0} bytes is above the limit of {RESP_BULK_SIZE_MAX}")]
    BulkTooLarge(usize),
    /// A request above [`RESP_REQUEST_SIZE_MAX`].
    #[error("request above {RESP_REQUEST_SIZE_MAX} bytes")]
    RequestTooLarge,
    /// An inline line above [`RESP_INLINE_SIZE_MAX`].
    #[error("too big inline request")]
    InlineTooLarge,
    /// An inline line with an unbalanced quote.
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
}

/// A decoded request: its arguments as ranges of the buffer it was decoded from (so that
/// nothing is copied before the command knows what it needs), or, for an inline command, as
/// owned words (quotes and escapes resolved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A multibulk request: argument ranges into the buffer.
    Bulk(Vec<Range<usize>>),
    /// An inline request's words.
    Inline(Vec<Vec<u8>>),
}

/// Decodes the first request in `buf`: `Ok(None)` when more bytes are needed, else the request
/// and how many bytes it took. An empty inline line decodes as an empty request.
///
/// Each call starts from the beginning of `buf`; a connection that reads a request in many
/// small pieces keeps a [`Decoder`] instead, which goes on where the last call stopped.
pub fn decode(buf: &[u8]) -> Result<Option<(Request, usize)>, RespError> {
    Decoder::default().decode(buf)
}

/// Capacity of ranges a decoder keeps to decode the next request into; a larger vector (a
/// request of many arguments) is let go.
const RECYCLED_ARGS_MAX: usize = 64;

/// A request decoder that keeps its progress through an incomplete request between calls, so
/// that a request arriving a few bytes at a time is read once in all rather than from its
/// start on every read (which was quadratic in its arguments: a `*65536` request trickled in
/// small reads re-read every argument before the new bytes each time).
///
/// Between a call that answered `Ok(None)` and the next, the caller keeps the request's bytes
/// in place (the next `buf` starts where the last one did, and only grows). A call that
/// answers a request or an error starts the next request afresh. A shorter `buf` than the
/// last call's is taken for a new request.
#[derive(Clone, Debug, Default)]
pub struct Decoder {
    /// The argument count a `*` header announced, once it was read.
    count: Option<usize>,
    /// The arguments read so far, as ranges of the request's bytes.
    args: Vec<Range<usize>>,
    /// Where the next argument's `$` header starts.
    at: usize,
    /// How many bytes of an inline line were searched for its end.
    searched: usize,
    /// The length of `buf` at the last call.
    seen: usize,
    /// Headers read, for the tests that count the work of a trickled request.
    #[cfg(test)]
    headers: usize,
}

impl Decoder {
    /// Decodes the first request in `buf`, going on from where the last call stopped: `Ok(None)`
    /// when more bytes are needed, else the request and how many bytes it took.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<(Request, usize)>, RespError> {
        if buf.len() < self.seen {
            self.restart();
        }
        self.seen = buf.len();
        let decoded = match buf.first() {
            None => Ok(None),
            Some(b'*') => self.decode_bulk(buf),
            Some(_) => self.decode_inline(buf),
        };
        if !matches!(decoded, Ok(None)) {
            self.restart();
        }
        decoded
    }

    /// Forgets the request in progress.
    fn restart(&mut self) {
        (self.count, self.at, self.searched, self.seen) = (None, 0, 0, 0);
        self.args.clear();
        if self.args.capacity() > RECYCLED_ARGS_MAX {
            self.args = Vec::new();
        }
    }

    /// Takes back the vector of a request's ranges once the caller is done with them, to
    /// decode the next request into (a pipelined command then allocates nothing for them).
    pub fn recycle(&mut self, mut args: Vec<Range<usize>>) {
        if self.args.capacity() == 0 && args.capacity() <= RECYCLED_ARGS_MAX {
            args.clear();
            self.args = args;
        }
    }

    fn decode_bulk(&mut self, buf: &[u8]) -> Result<Option<(Request, usize)>, RespError> {
        let count = match self.count {
            Some(count) => count,
            None => {
                let Some((count, at)) = self.header(buf, 0, b'*', "multibulk")? else {
                    return Ok(None);
                };
                // `*-1` and `*0` are empty requests, which Redis ignores.
                let count = usize::try_from(count).unwrap_or(0);
                if count > RESP_ARGS_MAX {
                    return Err(RespError::TooManyArgs);
                }
                // Reserve by what is already here, not by what the header promises.
                self.args.clear();
                self.args.reserve(count.min(buf.len() / 4));
                (self.count, self.at) = (Some(count), at);
                count
            }
        };
        while self.args.len() < count {
            let Some((len, start)) = self.header(buf, self.at, b'$', "bulk")? else {
                return incomplete(self.at);
            };
            let len =
                usize::try_from(len).map_err(|_| RespError::InvalidLength { what: "bulk" })?;
            if len > RESP_BULK_SIZE_MAX {
                return Err(RespError::BulkTooLarge(len));
            }
            let end = start + len;
            if end.saturating_add(2) > RESP_REQUEST_SIZE_MAX {
                return Err(RespError::RequestTooLarge);
            }
            if buf.len() < end + 2 {
                return incomplete(end + 2);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(RespError::Unterminated);
            }
            self.args.push(start..end);
            self.at = end + 2;
        }
        Ok(Some((Request::Bulk(std::mem::take(&mut self.args)), self.at)))
    }

    fn header(
        &mut self,
        buf: &[u8],
        at: usize,
        kind: u8,
        what: &'static str,
    ) -> Result<Option<(i64, usize)>, RespError> {
        #[cfg(test)]
        {
            self.headers += 1;
        }
        header(buf, at, kind, what)
    }

    fn decode_inline(&mut self, buf: &[u8]) -> Result<Option<(Request, usize)>, RespError> {
        // The bytes searched before hold no newline: the search goes on after them.
        let from = self.searched.min(buf.len());
        let Some(end) = buf[from..].iter().position(|&byte| byte == b'\n').map(|n| from + n) else {
            self.searched = buf.len();
            return if buf.len() > RESP_INLINE_SIZE_MAX {
                Err(RespError::InlineTooLarge)
            } else {
                Ok(None)
            };
        };
        if end > RESP_INLINE_SIZE_MAX {
            return Err(RespError::InlineTooLarge);
        }
        let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
        let words = split_words(line)?;
        if words.len() > RESP_ARGS_MAX {
            return Err(RespError::TooManyArgs);
        }
        Ok(Some((Request::Inline(words), end + 1)))
    }
}

/// More bytes are needed; refuses a request that could not fit even once they come.
fn incomplete(needed: usize) -> Result<Option<(Request, usize)>, RespError> {
    if needed > RESP_REQUEST_SIZE_MAX { Err(RespError::RequestTooLarge) } else { Ok(None) }
}

/// Reads a `<kind><number>\r\n` header at `at`: the number and where the next part starts.
fn header(
    buf: &[u8],
    at: usize,
    kind: u8,
    what: &'static str,
) -> Result<Option<(i64, usize)>, RespError> {
    let Some(&first) = buf.get(at) else { return Ok(None) };
    if first != kind {
        return Err(RespError::Unexpected { expected: char::from(kind), got: first });
    }
    let window = &buf[at + 1..buf.len().min(at + 1 + HEADER_SIZE_MAX)];
    let Some(end) = window.iter().position(|&byte| byte == b'\r') else {
        return if window.len() == HEADER_SIZE_MAX {
            Err(RespError::HeaderTooLong { what })
        } else {
            Ok(None)
        };
    };
    let Some(&newline) = buf.get(at + 1 + end + 1) else { return Ok(None) };
    if newline != b'\n' {
        return Err(RespError::InvalidLength { what });
    }
    let number = length(&window[..end]).ok_or(RespError::InvalidLength { what })?;
    Ok(Some((number, at + 1 + end + 2)))
}

/// A header's number: `-1` or decimal digits, at most `i64::MAX` (a hand-made loop: UTF-8
/// validation and `str::parse` cost a measurable share of every request).
fn length(digits: &[u8]) -> Option<i64> {
    if digits == b"-1" {
        return Some(-1);
    }
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0i64, |number, &digit| {
        if !digit.is_ascii_digit() {
            return None;
        }
        number.checked_mul(10)?.checked_add(i64::from(digit - b'0'))
    })
}

/// Splits an inline line into words: blanks separate, `"..."` (with `\n`, `\t`, `\\`, `\"`
/// and `\xHH` escapes) and `'...'` quote, as redis-cli and Redis's own `sdssplitargs` do.
fn split_words(line: &[u8]) -> Result<Vec<Vec<u8>>, RespError> {
    let mut words = Vec::new();
    let mut at = 0;
    while at < line.len() {
        if line[at].is_ascii_whitespace() {
            at += 1;
            continue;
        }
        let (word, next) = match line[at] {
            b'"' => double_quoted(line, at + 1)?,
            b'\'' => single_quoted(line, at + 1)?,
            _ => {
                let end = line[at..]
                    .iter()
                    .position(u8::is_ascii_whitespace)
                    .map_or(line.len(), |n| at + n);
                (line[at..end].to_vec(), end)
            }
        };
        words.push(word);
        at = next;
    }
    Ok(words)
}

fn double_quoted(line: &[u8], mut at: usize) -> Result<(Vec<u8>, usize), RespError> {
    let mut word = Vec::new();
    loop {
        match line.get(at) {
            None => return Err(RespError::UnbalancedQuotes),
            Some(b'"') => return closed(line, at + 1, word),
            Some(b'\\') => {
                let hex = line.get(at + 2..at + 4).and_then(|digits| {
                    std::str::from_utf8(digits).ok().and_then(|d| u8::from_str_radix(d, 16).ok())
                });
                match (line.get(at + 1), hex) {
                    (Some(b'x'), Some(byte)) => {
                        word.push(byte);
                        at += 4;
                        continue;
                    }
                    (Some(&escaped), _) => word.push(match escaped {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    }),
                    (None, _) => return Err(RespError::UnbalancedQuotes),
                }
                at += 2;
            }
            Some(&byte) => {
                word.push(byte);
                at += 1;
            }
        }
    }
}

fn single_quoted(line: &[u8], mut at: usize) -> Result<(Vec<u8>, usize), RespError> {
    let mut word = Vec::new();
    loop {
        match (line.get(at), line.get(at + 1)) {
            (None, _) => return Err(RespError::UnbalancedQuotes),
            (Some(b'\\'), Some(b'\'')) => {
                word.push(b'\'');
                at += 2;
            }
            (Some(b'\''), _) => return closed(line, at + 1, word),
            (Some(&byte), _) => {
                word.push(byte);
                at += 1;
            }
        }
    }
}

/// A closing quote must be followed by a blank or the end of the line.
fn closed(line: &[u8], at: usize, word: Vec<u8>) -> Result<(Vec<u8>, usize), RespError> {
    match line.get(at) {
        None => Ok((word, at)),
        Some(byte) if byte.is_ascii_whitespace() => Ok((word, at)),
        Some(_) => Err(RespError::UnbalancedQuotes),
    }
}

/// A reply, encoded for the connection's protocol version: RESP3 types fall back to their
/// RESP2 forms (a map to a flat array, a set to an array, a double to a bulk string, a
/// boolean to an integer, null to a null bulk string).
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+OK`: most are constant text, kept without an allocation.
    Simple(std::borrow::Cow<'static, str>),
    /// `-ERR ...`: the text after the dash, its first word the error code.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// A bulk string.
    Bulk(Vec<u8>),
    /// A bulk string that is a stored value, shared rather than copied.
    Value(crate::data::Value),
    /// A null (a missing key).
    Null,
    /// An array.
    Array(Vec<Reply>),
    /// A map (RESP3), a flat array of keys and values in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A set (RESP3), an array in RESP2.
    Set(Vec<Reply>),
    /// An out-of-band push (RESP3: pub/sub messages), an array in RESP2.
    Push(Vec<Reply>),
    /// A double (RESP3), a bulk string in RESP2.
    Double(f64),
    /// A boolean (RESP3), an integer in RESP2.
    Boolean(bool),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple("OK".into())
    }

    /// An error reply with the `ERR` code.
    pub fn error(message: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {message}"))
    }

    /// A bulk string of text.
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::Bulk(text.into().into_bytes())
    }

    /// The reply's encoded size, the larger of the two protocol versions' where they differ
    /// (exact but for doubles, bounded), computed without encoding: what a connection checks
    /// against its output limit before encoding. It was a bound of 24 bytes per header, which
    /// put a `KEYS *` reply of a million 11-byte keys (18 MB) at 37 MB, above the 32 MiB limit.
    pub fn encoded_len(&self) -> usize {
        match self {
            Reply::Simple(text) => text.len() + 3,
            Reply::Error(text) => text.len() + 3,
            Reply::Integer(number) => {
                number_line_len(number.unsigned_abs()) + usize::from(*number < 0)
            }
            // `$-1` in RESP2, `_` in RESP3; `:1` or `#t`.
            Reply::Null => 5,
            Reply::Boolean(_) => 4,
            // A line or a bulk string of at most `DOUBLE_TEXT_MAX` characters.
            Reply::Double(_) => 2 * number_line_len(u64::MAX) + DOUBLE_TEXT_MAX,
            Reply::Bulk(bytes) => bulk_len(bytes.len()),
            Reply::Value(value) => bulk_len(value.len()),
            Reply::Array(items) | Reply::Set(items) | Reply::Push(items) => {
                items.iter().fold(number_line_len(items.len() as u64), |size, item| {
                    size.saturating_add(item.encoded_len())
                })
            }
            // RESP2 counts a map's keys and values (`*2N`), RESP3 its pairs (`%N`).
            Reply::Map(pairs) => {
                pairs.iter().fold(number_line_len(2 * pairs.len() as u64), |size, (key, value)| {
                    size.saturating_add(key.encoded_len()).saturating_add(value.encoded_len())
                })
            }
        }
    }

    /// Appends the header line of an aggregate reply (array, set, push or map) for protocol
    /// version `resp3` and returns true; writes nothing and returns false for any other reply.
    /// The elements follow as their own encodings, a map's as key then value: a caller may
    /// encode a long reply a part at a time (the Redis front end does, yielding between parts).
    pub fn encode_head(&self, resp3: bool, out: &mut Vec<u8>) -> bool {
        let (kind, count) = match self {
            Reply::Array(items) => (b'*', items.len()),
            Reply::Set(items) => (if resp3 { b'~' } else { b'*' }, items.len()),
            Reply::Push(items) => (if resp3 { b'>' } else { b'*' }, items.len()),
            Reply::Map(pairs) if resp3 => (b'%', pairs.len()),
            Reply::Map(pairs) => (b'*', 2 * pairs.len()),
            _ => return false,
        };
        number_line(out, kind, count as i64);
        true
    }

    /// Appends the reply's encoding to `out`, for protocol version `resp3` (else RESP2).
    pub fn encode(&self, resp3: bool, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(text) => line(out, b'+', text.as_bytes()),
            Reply::Error(text) => line(out, b'-', text.as_bytes()),
            Reply::Integer(number) => number_line(out, b':', *number),
            Reply::Bulk(bytes) => bulk(out, bytes),
            Reply::Value(value) => bulk(out, value.as_bytes()),
            Reply::Null if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::Null => out.extend_from_slice(b"$-1\r\n"),
            Reply::Array(items) | Reply::Set(items) | Reply::Push(items) => {
                self.encode_head(resp3, out);
                items.iter().for_each(|item| item.encode(resp3, out));
            }
            Reply::Map(pairs) => {
                self.encode_head(resp3, out);
                for (key, value) in pairs {
                    key.encode(resp3, out);
                    value.encode(resp3, out);
                }
            }
            Reply::Double(number) if resp3 => line(out, b',', format_double(*number).as_bytes()),
            Reply::Double(number) => bulk(out, format_double(*number).as_bytes()),
            Reply::Boolean(truth) if resp3 => line(out, b'#', if *truth { b"t" } else { b"f" }),
            Reply::Boolean(truth) => line(out, b':', if *truth { b"1" } else { b"0" }),
        }
    }
}

/// The length of a number's line without its sign: type byte, digits, CRLF.
fn number_line_len(number: u64) -> usize {
    let digits = number.checked_ilog10().map_or(1, |log| log as usize + 1);
    1 + digits + 2
}

/// The length of a bulk string of `len` bytes.
fn bulk_len(len: usize) -> usize {
    number_line_len(len as u64) + len + 2
}

fn line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
    out.push(kind);
    // A line must not break the framing: an error or status text never carries CR or LF.
    out.extend(text.iter().map(|&byte| if byte == b'\r' || byte == b'\n' { b' ' } else { byte }));
    out.extend_from_slice(b"\r\n");
}

/// A line of a number (`:42`, `$5`, `*3`), written without an allocation: every reply has one.
fn number_line(out: &mut Vec<u8>, kind: u8, number: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = number.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.push(kind);
    if number < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    number_line(out, b'$', bytes.len() as i64);
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// The longest text `format_double` writes: 17 significant digits, a sign, and `0.0000` or an
/// exponent such as `e-308` (`-1.2345678901234567e-308`, `-0.000012345678901234567`).
const DOUBLE_TEXT_MAX: usize = 24;

fn format_double(number: f64) -> String {
    if number.is_infinite() {
        if number > 0.0 { "inf".into() } else { "-inf".into() }
    } else if number != 0.0 && !(1e-5..1e16).contains(&number.abs()) {
        // Rust's plain form writes every digit (300 of them for 1e300): an exponent instead.
        format!("{number:e}")
    } else {
        number.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(buf: &[u8]) -> Vec<Vec<u8>> {
        match decode(buf).expect("decodes").expect("complete").0 {
            Request::Bulk(ranges) => ranges.into_iter().map(|range| buf[range].to_vec()).collect(),
            Request::Inline(words) => words,
        }
    }

    #[test]
    fn a_recycled_vector_of_ranges_is_decoded_into() {
        let mut decoder = Decoder::default();
        let ping = b"*1\r\n$4\r\nPING\r\n";
        let Ok(Some((Request::Bulk(ranges), _))) = decoder.decode(ping) else { panic!("PING") };
        let kept = ranges.as_ptr();
        decoder.recycle(ranges);
        let Ok(Some((Request::Bulk(again), _))) = decoder.decode(ping) else { panic!("PING") };
        assert_eq!(again.as_ptr(), kept, "the same vector, refilled");
        assert_eq!(again, std::iter::once(8..12).collect::<Vec<_>>());
    }

    #[test]
    fn multibulk_requests_decode_and_wait_for_their_end() {
        let request = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
        assert_eq!(args(request), vec![b"GET".to_vec(), b"key".to_vec()]);
        for cut in 0..request.len() {
            assert_eq!(decode(&request[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(decode(b"*0\r\n"), Ok(Some((Request::Bulk(vec![]), 4))));
    }

    #[test]
    fn inline_requests_split_and_unquote() {
        assert_eq!(
            args(b"SET a \"x y\\n\\x41\"\r\n"),
            vec![b"SET".to_vec(), b"a".to_vec(), b"x y\nA".to_vec()]
        );
        assert_eq!(args(b"PING\n"), vec![b"PING".to_vec()]);
        assert_eq!(args(b"ECHO 'it\\'s'\r\n"), vec![b"ECHO".to_vec(), b"it's".to_vec()]);
        assert_eq!(decode(b"ECHO \"open\r\n"), Err(RespError::UnbalancedQuotes));
    }

    #[test]
    fn hostile_headers_are_refused_before_anything_is_reserved() {
        assert_eq!(decode(b"*99999999999\r\n"), Err(RespError::TooManyArgs));
        assert_eq!(decode(b"*1\r\n$99999999999\r\n"), Err(RespError::BulkTooLarge(99_999_999_999)));
        assert!(matches!(decode(b"*1\r\n*1\r\n"), Err(RespError::Unexpected { .. })));
        assert!(matches!(decode(b"*1\r\n$-5\r\n"), Err(RespError::InvalidLength { .. })));
        assert!(matches!(decode(b"*abc\r\n"), Err(RespError::InvalidLength { .. })));
        for bad in ["*\r\n", "*+1\r\n", "*-\r\n", "*1 \r\n", "*99999999999999999999\r\n"] {
            assert!(
                matches!(decode(bad.as_bytes()), Err(RespError::InvalidLength { .. })),
                "{bad}"
            );
        }
        assert_eq!(decode(b"*-1\r\n"), Ok(Some((Request::Bulk(Vec::new()), 5))));
        let long = [b"*".as_slice(), &[b'1'; 40]].concat();
        assert!(matches!(decode(&long), Err(RespError::HeaderTooLong { .. })));
        let nested = b"*1\r\n".repeat(100_000);
        assert!(matches!(decode(&nested), Err(RespError::Unexpected { .. })));
    }

    /// A `*20000` request trickled 16 bytes at a time: each call reads the headers that
    /// arrived since the last (at most one incomplete header again), not every argument again.
    #[test]
    fn a_trickled_request_is_read_once() {
        let count = 20_000;
        let mut request = format!("*{count}\r\n").into_bytes();
        for n in 0..count {
            let arg = format!("a{n}");
            request.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
        let mut decoder = Decoder::default();
        let mut calls = 0;
        for end in (16..request.len()).step_by(16) {
            assert_eq!(decoder.decode(&request[..end]), Ok(None));
            calls += 1;
            // Every argument header once, plus one incomplete header per call at most.
            assert!(decoder.headers <= 1 + count + calls, "{} headers read", decoder.headers);
        }
        let whole = decoder.decode(&request).expect("decodes").expect("complete");
        assert_eq!(Some(whole), decode(&request).expect("decodes"));
        assert!(decoder.headers <= 2 + count + calls, "{} headers read", decoder.headers);
        // The decoder starts the next request afresh.
        let ping = Request::Bulk(std::iter::once(8..12).collect());
        assert_eq!(decoder.decode(b"*1\r\n$4\r\nPING\r\n"), Ok(Some((ping, 14))));
    }

    #[test]
    fn a_trickled_inline_line_and_a_shorter_buffer_decode_as_at_once() {
        let line = format!("SET key {}\r\n", "v".repeat(40_000)).into_bytes();
        let mut decoder = Decoder::default();
        for end in 0..line.len() - 1 {
            assert_eq!(decoder.decode(&line[..end]), Ok(None), "cut at {end}");
        }
        assert_eq!(decoder.decode(&line), decode(&line));
        // A buffer shorter than the last one is another request, not the rest of this one.
        assert_eq!(decoder.decode(b"*2\r\n$3\r\nGET\r\n"), Ok(None));
        assert_eq!(
            decoder.decode(b"PING\r\n"),
            Ok(Some((Request::Inline(vec![b"PING".to_vec()]), 6)))
        );
    }

    #[test]
    fn replies_encode_in_both_versions() {
        for number in [0, 7, -5, 1_234_567, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            Reply::Integer(number).encode(false, &mut out);
            assert_eq!(out, format!(":{number}\r\n").into_bytes());
        }
        let mut out = Vec::new();
        Reply::Bulk(vec![b'x'; 10]).encode(false, &mut out);
        assert!(out.starts_with(b"$10\r\nxxxxxxxxxx\r\n"));
        let map = Reply::Map(vec![(Reply::text("proto"), Reply::Integer(3))]);
        let mut resp2 = Vec::new();
        map.encode(false, &mut resp2);
        assert_eq!(resp2, b"*2\r\n$5\r\nproto\r\n:3\r\n");
        let mut resp3 = Vec::new();
        map.encode(true, &mut resp3);
        assert_eq!(resp3, b"%1\r\n$5\r\nproto\r\n:3\r\n");
        let mut null = Vec::new();
        Reply::Null.encode(false, &mut null);
        Reply::Null.encode(true, &mut null);
        assert_eq!(null, b"$-1\r\n_\r\n");
        let mut error = Vec::new();
        Reply::error("bad\r\nline").encode(false, &mut error);
        assert_eq!(error, b"-ERR bad  line\r\n");
    }

    #[test]
    fn encoded_len_bounds_the_encoding() {
        let value = crate::data::Value::new(vec![b'v'; 1000]).expect("valid");
        let doubles = [-1.234_567_890_123_456_7e-308, -1.234_567_890_123_456_7e-5, f64::NAN];
        let doubles = doubles.into_iter().chain([f64::INFINITY, f64::NEG_INFINITY, -0.0, 1e300]);
        for double in doubles {
            assert!(format_double(double).len() <= DOUBLE_TEXT_MAX, "{}", format_double(double));
        }
        let pairs = (0..5).map(|n| (Reply::Integer(n), Reply::Double(-1.234_567_890_123_456_7e-5)));
        let replies = [
            map_of_everything(value),
            Reply::Push(vec![Reply::text("message"), Reply::Null, Reply::Integer(-12_345)]),
            Reply::Map(pairs.collect()),
        ];
        for reply in replies {
            for resp3 in [false, true] {
                let mut out = Vec::new();
                reply.encode(resp3, &mut out);
                assert!(
                    out.len() <= reply.encoded_len(),
                    "{reply:?}: {} > {}",
                    out.len(),
                    reply.encoded_len()
                );
            }
        }
    }

    #[test]
    fn encoded_len_is_exact_for_strings_integers_and_arrays() {
        let keys = (0..1_234).map(|n| Reply::text(format!("key:{n:0width$}", width = n % 13)));
        let replies = [
            Reply::Array(keys.collect()),
            Reply::Array(vec![Reply::Integer(0), Reply::Integer(-9), Reply::Integer(i64::MIN)]),
            Reply::Array(vec![Reply::Integer(i64::MAX), Reply::Integer(10), Reply::Bulk(vec![])]),
            Reply::Set(vec![Reply::Simple("OK".into()), Reply::error("no")]),
        ];
        for reply in replies {
            for resp3 in [false, true] {
                let mut out = Vec::new();
                reply.encode(resp3, &mut out);
                assert_eq!(out.len(), reply.encoded_len(), "{reply:?} (resp3 {resp3})");
            }
        }
    }

    fn map_of_everything(value: crate::data::Value) -> Reply {
        Reply::Map(vec![
            (Reply::text("value"), Reply::Value(value)),
            (
                Reply::Simple("OK".into()),
                Reply::Set(vec![Reply::Boolean(true), Reply::Double(-1.5e300)]),
            ),
        ])
    }
}
