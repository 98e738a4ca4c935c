//! The HTTP/1.1 plumbing of the fake Mattermost server: reading requests off a (possibly TLS) socket with keep-alive,
//! `Content-Length` and chunked bodies, and writing responses, including the deliberately broken ways the fault
//! injection needs (one byte at a time, a short body). Kept apart from the Mattermost rules so those read as rules.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// A socket the fake can serve HTTP on: plain TCP or rustls over TCP.
pub trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// Longest request head (request line plus headers) the fake accepts.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body the fake accepts; the client never sends more than a few hundred bytes.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One HTTP request as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The path without the query string, still percent-encoded.
    pub path: String,
    /// The query string without `?`, empty when there is none.
    pub query: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (case-insensitive), like Go's `Header.Get`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the connection must close after the answer (`Connection: close`, or HTTP/1.0 without keep-alive).
    pub fn wants_close(&self) -> bool {
        let connection = self.header("connection").unwrap_or("").to_ascii_lowercase();
        let tokens: Vec<&str> = connection.split(',').map(str::trim).collect();
        if self.version == "HTTP/1.0" { !tokens.contains(&"keep-alive") } else { tokens.contains(&"close") }
    }

    /// A query parameter's first value (no percent-decoding; the fake's parameters are plain words).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

/// One HTTP response to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response { status, headers: vec![("Content-Type".into(), content_type.into())], body: body.into() }
    }

    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response::new(status, "application/json", body)
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Status line and headers, with `Content-Length: content_length` (omitted for 304) and `Connection: close`
    /// when `close`.
    pub fn head_bytes(&self, content_length: usize, close: bool) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if self.status != 304 {
            head.push_str(&format!("Content-Length: {content_length}\r\n"));
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    /// The whole response on the wire.
    pub fn to_bytes(&self, close: bool) -> Vec<u8> {
        let mut out = self.head_bytes(self.body.len(), close);
        if self.status != 304 {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// The status code of a raw answer's status line (`None` when it has none) and the bytes after its head (all of
/// them when the head does not end).
pub fn split_raw_response(bytes: &[u8]) -> (Option<u16>, &[u8]) {
    let status = bytes
        .strip_prefix(b"HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| std::str::from_utf8(code).ok()?.parse().ok());
    let body = find(bytes, b"\r\n\r\n").map_or(bytes, |i| &bytes[i + 4..]);
    (status, body)
}

/// What reading the next request produced.
pub enum ReadOutcome {
    Request(Request),
    /// The peer closed (or went idle too long, or the server is stopping) between requests.
    Closed,
    /// Not HTTP the fake understands; answer 400 and close.
    Malformed(String),
}

/// One accepted connection with its read buffer (bytes of a pipelined next request stay in it).
pub struct Connection {
    stream: Box<dyn ReadWrite>,
    buf: Vec<u8>,
}

/// How often blocked reads wake up to check whether the server is stopping. The socket's read timeout must be set
/// to this by whoever creates the connection.
pub const POLL: Duration = Duration::from_millis(20);

impl Connection {
    pub fn new(stream: Box<dyn ReadWrite>) -> Connection {
        Connection { stream, buf: Vec::new() }
    }

    /// Reads more bytes into the buffer. `Ok(false)` on end of stream; an error when `stop()` turns true, on `idle`
    /// without a byte, or on a socket error.
    fn fill(&mut self, stop: &dyn Fn() -> bool, idle: Duration) -> io::Result<bool> {
        let started = Instant::now();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if stop() {
                return Err(io::Error::other("fake server stopping"));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    if started.elapsed() >= idle {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "idle connection"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one whole request (head and body).
    pub fn read_request(&mut self, stop: &dyn Fn() -> bool, idle: Duration) -> ReadOutcome {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > MAX_HEAD {
                return ReadOutcome::Malformed("request head too large".into());
            }
            match self.fill(stop, idle) {
                Ok(true) => {}
                Ok(false) if self.buf.is_empty() => return ReadOutcome::Closed,
                Ok(false) => return ReadOutcome::Malformed("connection closed inside a request head".into()),
                Err(_) => return ReadOutcome::Closed,
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or("");
        let parts: Vec<&str> = request_line.split(' ').collect();
        let [method, target, version] = parts[..] else {
            return ReadOutcome::Malformed(format!("bad request line {request_line:?}"));
        };
        if !version.starts_with("HTTP/1.") {
            return ReadOutcome::Malformed(format!("unsupported version {version:?}"));
        }
        let mut headers = Vec::new();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                return ReadOutcome::Malformed(format!("bad header line {line:?}"));
            };
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.to_string(), String::new()),
        };
        let mut request =
            Request { method: method.into(), path, query, version: version.into(), headers, body: Vec::new() };
        let chunked = request.header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        let body = if chunked {
            self.read_chunked(stop, idle)
        } else {
            match request.header("content-length").map(|v| v.parse::<usize>()) {
                None => Ok(Vec::new()),
                Some(Ok(n)) if n <= MAX_BODY => self.read_exact_body(n, stop, idle),
                Some(Ok(_)) => Err("request body too large".to_string()),
                Some(Err(_)) => Err("bad Content-Length".to_string()),
            }
        };
        match body {
            Ok(body) => {
                request.body = body;
                ReadOutcome::Request(request)
            }
            Err(why) => ReadOutcome::Malformed(why),
        }
    }

    fn read_exact_body(&mut self, n: usize, stop: &dyn Fn() -> bool, idle: Duration) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            match self.fill(stop, idle) {
                Ok(true) => {}
                Ok(false) => return Err("connection closed inside a request body".into()),
                Err(e) => return Err(format!("reading request body: {e}")),
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn read_line(&mut self, stop: &dyn Fn() -> bool, idle: Duration) -> Result<String, String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err("chunk line too long".into());
            }
            match self.fill(stop, idle) {
                Ok(true) => {}
                Ok(false) => return Err("connection closed inside a chunked body".into()),
                Err(e) => return Err(format!("reading chunked body: {e}")),
            }
        }
    }

    fn read_chunked(&mut self, stop: &dyn Fn() -> bool, idle: Duration) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line(stop, idle)?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {size_text:?}"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line(stop, idle)?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err("request body too large".into());
            }
            body.extend(self.read_exact_body(size, stop, idle)?);
            if !self.read_line(stop, idle)?.is_empty() {
                return Err("chunk not followed by CRLF".into());
            }
        }
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Writes `bytes` one at a time, `interval` apart, giving up when `stop()` turns true.
    pub fn trickle(&mut self, bytes: &[u8], interval: Duration, stop: &dyn Fn() -> bool) -> io::Result<()> {
        for (i, b) in bytes.iter().enumerate() {
            if i > 0 && !sleep_unless(interval, stop) {
                return Err(io::Error::other("fake server stopping"));
            }
            self.write_all(std::slice::from_ref(b))?;
        }
        Ok(())
    }

    /// Keeps the connection open without answering until the peer closes, `stop()` turns true or `limit` passes;
    /// whatever the peer sends is read and dropped.
    pub fn hang(&mut self, stop: &dyn Fn() -> bool, limit: Duration) {
        let started = Instant::now();
        while started.elapsed() < limit {
            match self.fill(stop, limit) {
                Ok(true) => self.buf.clear(),
                Ok(false) | Err(_) => return,
            }
        }
    }
}

/// Sleeps `total` in short steps; false if `stop()` turned true first.
pub fn sleep_unless(total: Duration, stop: &dyn Fn() -> bool) -> bool {
    let deadline = Instant::now() + total;
    loop {
        if stop() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(POLL));
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
