//! A small HTTP/1.1 client on std TCP for the black-box tests (no client crate, nothing beyond
//! the Rust toolchain): one connection per request (`Connection: close`), bodies by length or
//! chunked, and a reader of server-sent events. Every read is bounded by a timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long one request may take to be answered (a long poll waits up to its `wait`).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// The address of a free TCP port on 127.0.0.1 (free a moment ago).
pub fn free_tcp_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free TCP port");
    listener.local_addr().expect("bound").to_string()
}

/// A node's HTTP front end.
#[derive(Clone, Debug)]
pub struct Http {
    /// `host:port`.
    pub addr: String,
    /// The bearer token sent with every request, if any.
    pub token: Option<String>,
}

/// An answer.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body, chunked encoding removed.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(given, _)| given == name).map(|(_, value)| value.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; fails the test if it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): status {} {:?}", self.status, self.text()))
    }
}

impl Http {
    /// The front end at `addr`, without a token.
    pub fn new(addr: &str) -> Http {
        Http { addr: addr.to_string(), token: None }
    }

    /// Connects and sends the request head (and body); the stream to read the answer from.
    #[track_caller]
    pub fn send(
        &self,
        method: &str,
        target: &str,
        body: Option<&[u8]>,
        extra: &[(&str, &str)],
    ) -> TcpStream {
        self.open(method, target, body, extra).expect("connect to the HTTP front end")
    }

    /// `GET target`, or `None` when nothing listens there (yet, or any more).
    pub fn try_get(&self, target: &str) -> Option<HttpResponse> {
        self.open("GET", target, None, &[]).ok().map(read_response)
    }

    fn open(
        &self,
        method: &str,
        target: &str,
        body: Option<&[u8]>,
        extra: &[(&str, &str)],
    ) -> std::io::Result<TcpStream> {
        let mut stream = TcpStream::connect(&self.addr)?;
        stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
        let mut head =
            format!("{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        if let Some(body) = body {
            // A large body may be refused (413) before it is all sent: that is not an error here.
            let _ = stream.write_all(body);
        }
        Ok(stream)
    }

    /// Sends a request and reads the whole answer.
    #[track_caller]
    pub fn request(&self, method: &str, target: &str, body: Option<&[u8]>) -> HttpResponse {
        read_response(self.send(method, target, body, &[]))
    }

    /// `GET target`.
    #[track_caller]
    pub fn get(&self, target: &str) -> HttpResponse {
        self.request("GET", target, None)
    }

    /// `PUT target` with `body`.
    #[track_caller]
    pub fn put(&self, target: &str, body: &[u8]) -> HttpResponse {
        self.request("PUT", target, Some(body))
    }

    /// Opens a server-sent events stream.
    #[track_caller]
    pub fn events(&self, target: &str, extra: &[(&str, &str)]) -> Events {
        let stream = self.send("GET", target, None, extra);
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader);
        assert_eq!(status, 200, "the stream {target} opens");
        let chunked =
            headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
        Events { reader, chunked, buffer: Vec::new() }
    }
}

/// Reads the status line and headers.
fn read_head(reader: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read the status line");
    let status = line.split(' ').nth(1).and_then(|code| code.parse().ok());
    let status = status.unwrap_or_else(|| panic!("not a status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("read a header");
        let header = line.trim_end();
        if header.is_empty() {
            return (status, headers);
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
}

/// Reads a whole answer; an interim `100 Continue` is skipped.
#[track_caller]
pub fn read_response(stream: TcpStream) -> HttpResponse {
    let mut reader = BufReader::new(stream);
    let (mut status, mut headers) = read_head(&mut reader);
    while status == 100 {
        (status, headers) = read_head(&mut reader);
    }
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        while let Some(chunk) = read_chunk(&mut reader) {
            body.extend(chunk);
        }
    } else {
        let _ = reader.read_to_end(&mut body);
    }
    HttpResponse { status, headers, body }
}

/// One chunk of a chunked body; `None` at the last (empty) chunk or the end of the stream.
fn read_chunk(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let size = usize::from_str_radix(line.trim(), 16).ok()?;
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).ok()?;
    chunk.truncate(size);
    (size > 0).then_some(chunk)
}

/// One server-sent event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `event:`
    pub event: String,
    /// `id:`
    pub id: String,
    /// `data:` (lines joined)
    pub data: String,
}

/// A server-sent events stream being read.
pub struct Events {
    reader: BufReader<TcpStream>,
    chunked: bool,
    buffer: Vec<u8>,
}

impl Events {
    /// The next event (comments, such as keep-alives, skipped), or `None` if the stream ended
    /// or `timeout` passed.
    pub fn next(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_event(&String::from_utf8_lossy(&block)) {
                    return Some(event);
                }
                continue;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            if self.chunked {
                self.buffer.extend(read_chunk(&mut self.reader)?);
            } else {
                let mut bytes = [0u8; 4096];
                let read = self.reader.read(&mut bytes).ok().filter(|read| *read > 0)?;
                self.buffer.extend(&bytes[..read]);
            }
        }
    }
}

fn parse_event(block: &str) -> Option<Event> {
    let mut event = Event::default();
    let mut seen = false;
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_string();
        match field {
            "event" => event.event = value,
            "id" => event.id = value,
            "data" if event.data.is_empty() => event.data = value,
            "data" => event.data = format!("{}\n{value}", event.data),
            _ => continue,
        }
        seen = true;
    }
    seen.then_some(event)
}
