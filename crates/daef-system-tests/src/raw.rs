//! Raw HTTP/1.1 on a TCP socket, for the tests that must send what `daef-client` never sends:
//! exact request bytes (a body written by hand, as the seed's worker writes it), header values
//! that are not valid UTF-8, a large body the server refuses before reading, and a second
//! request on the same connection to see whether the server kept it usable.
//!
//! It is a test instrument, not a client: one request at a time, no redirects, no retries, no
//! pooling, no TLS. Every read is bounded by a timeout, and every failure says which step
//! failed (connect, write, read) and how (a reset is told apart from a clean close).

use std::fmt;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on one request's write and one response's read: a hung gateway fails the test instead
/// of hanging it. Generous, because a loaded 2-core machine is slow.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Largest response body accepted.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// How much of a body is shown when a request or response is printed.
const SHOWN_BODY: usize = 512;

/// A request, written to the socket exactly as given (plus `Host` and, when there is a body or
/// the method carries one, `Content-Length`; plus `Content-Type: application/json` when there
/// is a body and no content type was given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target as sent: path and query, percent-encoding included.
    pub target: String,
    /// Header names and raw value bytes, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: &str, target: &str) -> Self {
        Self {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `GET target`.
    pub fn get(target: &str) -> Self {
        Self::new("GET", target)
    }

    /// `DELETE target`.
    pub fn delete(target: &str) -> Self {
        Self::new("DELETE", target)
    }

    /// `POST target` with `body`.
    pub fn post(target: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new("POST", target).body(body)
    }

    /// Adds a header; the value's bytes are sent as they are.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// Adds `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }

    /// Adds the bearer token when there is one.
    pub fn bearer_opt(self, token: Option<&str>) -> Self {
        match token {
            Some(token) => self.bearer(token),
            None => self,
        }
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The bytes put on the wire.
    pub fn encode(&self, host: &str) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        if !self.has_header("host") {
            out.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        let carries_body = matches!(self.method.as_str(), "POST" | "PUT" | "PATCH");
        if (carries_body || !self.body.is_empty()) && !self.has_header("content-length") {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        if !self.body.is_empty() && !self.has_header("content-type") {
            out.extend_from_slice(b"Content-Type: application/json\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.target)?;
        for (name, value) in &self.headers {
            write!(f, "\n  {name}: {}", value.escape_ascii())?;
        }
        if !self.body.is_empty() {
            write!(f, "\n  body: {}", shown(&self.body))?;
        }
        Ok(())
    }
}

/// One response as read off the socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// Header names (as sent) and raw values, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, de-chunked. For an event stream (`text/event-stream`), only what had arrived
    /// with the head: the stream itself is not read.
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value (the first one), lossily as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// True when a `Connection` header carries the `close` token: the server will close the
    /// connection after this response.
    pub fn closes(&self) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(|b| *b == b','))
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    }

    /// The body, lossily as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, when it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The `error` string of a `{"error": …}` body.
    pub fn error_message(&self) -> Option<String> {
        self.json()?.get("error")?.as_str().map(str::to_owned)
    }

    fn is_event_stream(&self) -> bool {
        self.header("content-type")
            .is_some_and(|t| t.trim().starts_with("text/event-stream"))
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)?;
        for (name, value) in &self.headers {
            write!(f, "\n  {name}: {}", value.escape_ascii())?;
        }
        write!(f, "\n  body: {}", shown(&self.body))
    }
}

/// The body as text (escaped where it is not printable ASCII), cut after [`SHOWN_BODY`] bytes.
fn shown(body: &[u8]) -> String {
    if body.len() <= SHOWN_BODY {
        body.escape_ascii().to_string()
    } else {
        format!(
            "{}… ({} bytes in all)",
            body[..SHOWN_BODY].escape_ascii(),
            body.len()
        )
    }
}

/// Why an exchange failed, and at which step.
#[derive(Debug)]
pub enum Error {
    /// The TCP connection could not be opened.
    Connect(io::Error),
    /// Writing the request failed (a reset or a broken pipe: the server closed on us).
    Write(io::Error),
    /// Reading the response failed (`ConnectionReset` when the server reset the connection).
    Read(io::Error),
    /// The server closed the connection cleanly before a whole response arrived, after
    /// `received` bytes of it.
    Closed {
        /// Bytes of the response that did arrive.
        received: usize,
    },
    /// No answer within [`TIMEOUT`]; says what was being waited for.
    Timeout(&'static str),
    /// The bytes were not an HTTP/1.1 response (or more than the bounds allow).
    Malformed(String),
}

impl Error {
    /// True when the server reset the connection (as opposed to closing it cleanly).
    pub fn is_reset(&self) -> bool {
        match self {
            Error::Write(e) | Error::Read(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            ),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect(e) => write!(f, "connect failed: {e}"),
            Error::Write(e) => write!(f, "writing the request failed: {e} ({:?})", e.kind()),
            Error::Read(e) => write!(f, "reading the response failed: {e} ({:?})", e.kind()),
            Error::Closed { received: 0 } => {
                write!(f, "the server closed the connection without answering")
            }
            Error::Closed { received } => write!(
                f,
                "the server closed the connection after {received} bytes of a response"
            ),
            Error::Timeout(what) => write!(f, "timed out after {TIMEOUT:?} {what}"),
            Error::Malformed(why) => write!(f, "malformed response: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// One TCP connection to a server, carrying requests one after another.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    host: String,
    /// Bytes read but not yet consumed as part of a response.
    buf: Vec<u8>,
}

impl Conn {
    /// Connects to `addr` (`host:port`).
    pub async fn open(addr: &str) -> Result<Conn, Error> {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout("connecting"))?
            .map_err(Error::Connect)?;
        // Requests are written whole; nothing is gained by waiting to coalesce them.
        stream.set_nodelay(true).map_err(Error::Connect)?;
        Ok(Conn {
            stream,
            host: addr.to_owned(),
            buf: Vec::new(),
        })
    }

    /// Writes one request.
    pub async fn send(&mut self, request: &Request) -> Result<(), Error> {
        let bytes = request.encode(&self.host);
        tokio::time::timeout(TIMEOUT, self.stream.write_all(&bytes))
            .await
            .map_err(|_| Error::Timeout("writing the request"))?
            .map_err(Error::Write)
    }

    /// Reads one response (skipping any `1xx` interim response).
    pub async fn receive(&mut self) -> Result<Response, Error> {
        tokio::time::timeout(TIMEOUT, self.read_response())
            .await
            .map_err(|_| Error::Timeout("waiting for the response"))?
    }

    /// Writes one request and reads its response.
    pub async fn exchange(&mut self, request: &Request) -> Result<Response, Error> {
        self.send(request).await?;
        self.receive().await
    }

    /// Waits for the server to close the connection: `Ok` on a clean close (EOF) with no
    /// further byte sent, an error on a reset, on bytes, or when it stays open.
    pub async fn expect_close(&mut self) -> Result<(), Error> {
        if !self.buf.is_empty() {
            return Err(Error::Malformed(format!(
                "{} unexpected bytes after the response: {}",
                self.buf.len(),
                shown(&self.buf)
            )));
        }
        let mut byte = [0u8; 1];
        match tokio::time::timeout(TIMEOUT, self.stream.read(&mut byte)).await {
            Err(_) => Err(Error::Timeout("waiting for the server to close")),
            Ok(Ok(0)) => Ok(()),
            Ok(Ok(_)) => Err(Error::Malformed(format!(
                "unexpected byte after the response: {}",
                byte.escape_ascii()
            ))),
            Ok(Err(e)) => Err(Error::Read(e)),
        }
    }

    /// Reads more bytes into the buffer; `Ok(0)` at EOF.
    async fn fill(&mut self) -> Result<usize, Error> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await.map_err(Error::Read)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads until the buffer holds at least `n` bytes; a clean close first is
    /// [`Error::Closed`] after `so_far` + what arrived.
    async fn fill_to(&mut self, n: usize, so_far: usize) -> Result<(), Error> {
        while self.buf.len() < n {
            if self.fill().await? == 0 {
                return Err(Error::Closed {
                    received: so_far + self.buf.len(),
                });
            }
        }
        Ok(())
    }

    /// The buffer's first line (without CRLF), consumed; reads more until there is one.
    async fn line(&mut self, so_far: usize) -> Result<Vec<u8>, Error> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line = self.buf[..end].to_vec();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Error::Malformed("a line longer than 64 KiB".into()));
            }
            if self.fill().await? == 0 {
                return Err(Error::Closed {
                    received: so_far + self.buf.len(),
                });
            }
        }
    }

    async fn read_response(&mut self) -> Result<Response, Error> {
        loop {
            let mut response = self.read_head().await?;
            if (100..200).contains(&response.status) {
                continue;
            }
            if matches!(response.status, 204 | 304) {
                return Ok(response);
            }
            if response.is_event_stream() {
                // A stream that may never end: what came with the head is all we take.
                response.body = std::mem::take(&mut self.buf);
                return Ok(response);
            }
            let chunked = response
                .header("transfer-encoding")
                .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
            response.body = if chunked {
                self.read_chunked().await?
            } else if let Some(length) = response.header("content-length") {
                let length: usize = length.trim().parse().map_err(|_| {
                    Error::Malformed(format!("Content-Length {length:?} is not a number"))
                })?;
                if length > MAX_BODY {
                    return Err(Error::Malformed(format!("a body of {length} bytes")));
                }
                self.fill_to(length, 0).await?;
                self.buf.drain(..length).collect()
            } else {
                // No length: the body ends when the connection does.
                while self.fill().await? > 0 {
                    if self.buf.len() > MAX_BODY {
                        return Err(Error::Malformed("a body over 16 MiB".into()));
                    }
                }
                std::mem::take(&mut self.buf)
            };
            return Ok(response);
        }
    }

    async fn read_head(&mut self) -> Result<Response, Error> {
        let end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Error::Malformed("a response head over 64 KiB".into()));
            }
            if self.fill().await? == 0 {
                return Err(Error::Closed {
                    received: self.buf.len(),
                });
            }
        };
        let head: Vec<u8> = self.buf.drain(..end + 4).collect();
        let text = String::from_utf8_lossy(&head[..end]).into_owned();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(Error::Malformed(format!("status line {status_line:?}")));
        }
        let status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| Error::Malformed(format!("status line {status_line:?}")))?;
        let reason = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        // Header values are kept as bytes: split the raw head, not the lossy text.
        for raw in head[..end].split(|b| *b == b'\n').skip(1) {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let Some(colon) = raw.iter().position(|b| *b == b':') else {
                return Err(Error::Malformed(format!(
                    "header line {:?}",
                    raw.escape_ascii().to_string()
                )));
            };
            headers.push((
                String::from_utf8_lossy(&raw[..colon]).trim().to_owned(),
                raw[colon + 1..].trim_ascii().to_vec(),
            ));
        }
        Ok(Response {
            status,
            reason,
            headers,
            body: Vec::new(),
        })
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>, Error> {
        let mut body = Vec::new();
        loop {
            let line = self.line(body.len()).await?;
            let size_text = String::from_utf8_lossy(&line);
            let size_text = size_text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| Error::Malformed(format!("chunk size {size_text:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.line(body.len()).await?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(Error::Malformed("a body over 16 MiB".into()));
            }
            self.fill_to(size + 2, body.len()).await?;
            body.extend(self.buf.drain(..size));
            if self.buf.drain(..2).as_slice() != b"\r\n" {
                return Err(Error::Malformed("a chunk not followed by CRLF".into()));
            }
        }
    }
}

/// Opens a connection, sends one request, reads its response.
pub async fn once(addr: &str, request: &Request) -> Result<Response, Error> {
    Conn::open(addr).await?.exchange(request).await
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that reads one request head and answers with `reply` bytes, then closes.
    async fn serve_once(reply: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut chunk = [0u8; 1024];
            while find(&seen, b"\r\n\r\n").is_none() {
                let n = socket.read(&mut chunk).await.unwrap();
                if n == 0 {
                    return;
                }
                seen.extend_from_slice(&chunk[..n]);
            }
            socket.write_all(reply).await.unwrap();
        });
        addr
    }

    #[test]
    fn encodes_raw_header_bytes_and_length() {
        let bytes = Request::post("/v1/jobs", "{}")
            .header("X-DAEF-Tenant", [0xff, 0xfe])
            .encode("h:1");
        assert_eq!(
            bytes,
            b"POST /v1/jobs HTTP/1.1\r\nHost: h:1\r\nX-DAEF-Tenant: \xff\xfe\r\n\
              Content-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"
        );
        assert_eq!(
            Request::get("/healthz").encode("h:1"),
            b"GET /healthz HTTP/1.1\r\nHost: h:1\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn reads_a_chunked_body() {
        let addr = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
              3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .await;
        let mut conn = Conn::open(&addr).await.unwrap();
        let response = conn.exchange(&Request::get("/")).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"abcde");
        assert!(response.closes());
        conn.expect_close().await.unwrap();
    }

    #[tokio::test]
    async fn a_close_before_the_response_is_not_a_response() {
        let addr = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await;
        match once(&addr, &Request::get("/")).await {
            Err(Error::Closed { received: 3 }) => {}
            other => panic!("{other:?}"),
        }
    }
}
