//! A small blocking Redis client for the tests: sends commands as arrays of bulk strings (or
//! raw bytes, for hostile input) and reads RESP2 and RESP3 replies into [`Resp`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long a reply may take before the test fails.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// A reply, RESP3 types included.
#[derive(Clone, Debug, PartialEq)]
pub enum Resp {
    /// `+text`
    Simple(String),
    /// `-text`
    Error(String),
    /// `:n`
    Integer(i64),
    /// `$n` bytes
    Bulk(Vec<u8>),
    /// `$-1`, `*-1` or `_`
    Null,
    /// `*n`, `~n` (set)
    Array(Vec<Resp>),
    /// `%n`
    Map(Vec<(Resp, Resp)>),
    /// `>n`
    Push(Vec<Resp>),
    /// `#t` / `#f`, `,double`
    Other(String),
}

impl Resp {
    /// The bytes of a bulk or simple string.
    #[track_caller]
    pub fn bytes(&self) -> &[u8] {
        match self {
            Resp::Bulk(bytes) => bytes,
            Resp::Simple(text) => text.as_bytes(),
            other => panic!("not a string: {other:?}"),
        }
    }

    /// The text of a bulk or simple string.
    #[track_caller]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }
}

/// A connection to a node's Redis port.
pub struct Redis {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Redis {
    /// Connects to `addr`.
    #[track_caller]
    pub fn connect(addr: &str) -> Redis {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).expect("a timeout can be set");
        let writer = stream.try_clone().expect("a socket can be cloned");
        Redis { reader: BufReader::new(stream), writer }
    }

    /// Sends one command without reading its reply (for pipelines).
    pub fn send(&mut self, args: &[&[u8]]) {
        self.raw(&encode(args));
    }

    /// Sends raw bytes.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("the node takes the bytes");
    }

    /// Sends raw bytes that the node may refuse before they are all sent: it answers a
    /// protocol error as soon as it sees one and closes the connection, and the rest of a
    /// long request then meets a closed socket.
    pub fn try_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Sends one command and reads its reply.
    #[track_caller]
    pub fn call(&mut self, args: &[&str]) -> Resp {
        let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
        self.send(&args);
        self.read().expect("a reply")
    }

    /// Reads one reply; `None` if the node closed the connection.
    pub fn read(&mut self) -> Option<Resp> {
        let mut line = Vec::new();
        if self.reader.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        let line = String::from_utf8_lossy(&line).trim_end_matches("\r\n").to_string();
        let (kind, rest) = line.split_at(1);
        let count = || rest.parse::<i64>().unwrap_or(-1);
        Some(match kind {
            "+" => Resp::Simple(rest.into()),
            "-" => Resp::Error(rest.into()),
            ":" => Resp::Integer(count()),
            "_" => Resp::Null,
            "#" | "," => Resp::Other(rest.into()),
            "$" if count() < 0 => Resp::Null,
            "$" => {
                let mut bytes = vec![0; count() as usize + 2];
                self.reader.read_exact(&mut bytes).ok()?;
                bytes.truncate(count() as usize);
                Resp::Bulk(bytes)
            }
            "*" if count() < 0 => Resp::Null,
            "*" | "~" => Resp::Array(self.items(count())?),
            ">" => Resp::Push(self.items(count())?),
            "%" => {
                let items = self.items(count() * 2)?;
                Resp::Map(items.chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect())
            }
            other => panic!("unexpected reply type {other:?} in {line:?}"),
        })
    }

    fn items(&mut self, count: i64) -> Option<Vec<Resp>> {
        (0..count).map(|_| self.read()).collect()
    }
}

/// A command as a client encodes it: an array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut bytes = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        bytes.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        bytes.extend_from_slice(arg);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes
}
