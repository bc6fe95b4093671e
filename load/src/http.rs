//! The hot path's HTTP/1.1 client: one keep-alive connection, one request
//! at a time.
//!
//! A general client (reqwest, over hyper) hands each request to a
//! connection task through channels, builds a header map and parses a URL
//! per request: about 40 µs of CPU per checkout here, which on two cores
//! shared with the server caps what a run can measure. This one writes the
//! request with one `write_all` from reused buffers and reads just the
//! status line, `Content-Length` and `Connection`; a 2xx
//! body is skipped unread.
//!
//! Bodies are framed by `Content-Length`. Every answer of this API has one;
//! anything else (no length, or a `Transfer-Encoding`) is read to the end of
//! the connection, which is then closed. Chunked bodies are not decoded.

use std::fmt::{self, Write as _};

use anyhow::{Context, bail};
use reqwest::header::HeaderValue;
use tokio::net::TcpStream;

use crate::REQUEST_TIMEOUT;

/// Most bytes of response head the client accepts.
const RESPONSE_HEAD_MAX: usize = 16 * 1024;

/// Where the hot path connects: resolved once.
#[derive(Clone)]
pub struct Target {
    addr: std::net::SocketAddr,
    /// The `Host` header's value.
    host: String,
}

impl Target {
    pub async fn resolve(url: &reqwest::Url) -> anyhow::Result<Target> {
        if url.scheme() != "http" {
            bail!("{url}: the load generator speaks plain http only");
        }
        let host = url.host_str().context("the URL has no host")?;
        let port = url.port_or_known_default().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        Ok(Target {
            addr,
            host: format!("{host}:{port}"),
        })
    }
}

/// Why a request on a [`Conn`] got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnError {
    Connect,
    Timeout,
    Transport,
}

impl ConnError {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnError::Connect => "connect",
            ConnError::Timeout => "timeout",
            ConnError::Transport => "transport",
        }
    }
}

/// A response as the hot path sees it: status, and the body of a non-2xx
/// answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// What the client reads from a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: u16,
    /// `Content-Length`, when given and a number.
    length: Option<usize>,
    /// The connection ends after this response.
    close: bool,
}

/// One keep-alive HTTP/1.1 connection, one request at a time.
pub struct Conn {
    target: Target,
    stream: Option<TcpStream>,
    out: Vec<u8>,
    input: Vec<u8>,
}

impl Conn {
    pub fn new(target: Target) -> Conn {
        Conn {
            target,
            stream: None,
            out: Vec::with_capacity(2048),
            input: Vec::with_capacity(4096),
        }
    }

    /// POSTs `body` to `path`; any failure or timeout drops the connection.
    pub async fn post(
        &mut self,
        path: &str,
        auth: &HeaderValue,
        key: &str,
        body: &[u8],
    ) -> Result<Response, ConnError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(path, auth, key, body)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err(ConnError::Timeout)
            }
        }
    }

    async fn exchange(
        &mut self,
        path: &str,
        auth: &HeaderValue,
        key: &str,
        body: &[u8],
    ) -> Result<Response, ConnError> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.target.addr)
                .await
                .map_err(|_| ConnError::Connect)?;
            stream.set_nodelay(true).map_err(|_| ConnError::Connect)?;
            self.stream = Some(stream);
            self.input.clear();
        }
        let request = Request {
            host: &self.target.host,
            path,
            auth: auth.as_bytes(),
            key,
            body,
        };
        request.write_into(&mut self.out);
        let stream = self.stream.as_mut().expect("connected above");
        write_all(stream, &self.out)
            .await
            .map_err(|_| ConnError::Transport)?;
        let head_end = read_head(stream, &mut self.input).await?;
        let mut head = parse_head(&self.input[..head_end])?;
        let body = match head.length {
            Some(n) => {
                fill(stream, &mut self.input, head_end + n).await?;
                take_body(&mut self.input, head_end, n, head.status)
            }
            None => {
                head.close = true;
                read_to_end(stream, &mut self.input).await?;
                self.input.split_off(head_end)
            }
        };
        if head.close {
            self.stream = None;
        }
        Ok(Response {
            status: head.status,
            body,
        })
    }
}

/// A JSON POST as the hot path sends it.
struct Request<'a> {
    host: &'a str,
    path: &'a str,
    auth: &'a [u8],
    key: &'a str,
    body: &'a [u8],
}

impl Request<'_> {
    /// Writes the whole request into `out` (cleared first).
    fn write_into(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(b"POST ");
        out.extend_from_slice(self.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(self.host.as_bytes());
        out.extend_from_slice(b"\r\nAuthorization: ");
        out.extend_from_slice(self.auth);
        out.extend_from_slice(b"\r\nContent-Type: application/json\r\nIdempotency-Key: ");
        out.extend_from_slice(self.key.as_bytes());
        let _ = write!(
            Adapter(out),
            "\r\nContent-Length: {}\r\n\r\n",
            self.body.len()
        );
        out.extend_from_slice(self.body);
    }
}

/// Where the head in `input` ends (just past its blank line), if it is all
/// there.
fn head_end(input: &[u8]) -> Option<usize> {
    find(input, b"\r\n\r\n").map(|i| i + 4)
}

/// Parses a response head: the status line and the headers the client reads.
fn parse_head(head: &[u8]) -> Result<Head, ConnError> {
    let head = std::str::from_utf8(head).map_err(|_| ConnError::Transport)?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or(ConnError::Transport)?;
    let mut parsed = Head {
        status,
        length: None,
        close: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            parsed.length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            parsed.close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Every answer of this API has a length; anything else is
            // read to the end of the connection.
            parsed.close = true;
        }
    }
    Ok(parsed)
}

/// Takes one response of `length` body bytes off the front of `input`;
/// returns the body of a non-2xx answer (a 2xx body is dropped unread).
fn take_body(input: &mut Vec<u8>, head_end: usize, length: usize, status: u16) -> Vec<u8> {
    let body = if (200..300).contains(&status) {
        Vec::new()
    } else {
        input[head_end..head_end + length].to_vec()
    };
    input.drain(..head_end + length);
    body
}

/// Reads until `input` holds a whole head; returns where it ends.
async fn read_head(stream: &TcpStream, input: &mut Vec<u8>) -> Result<usize, ConnError> {
    loop {
        if let Some(end) = head_end(input) {
            return Ok(end);
        }
        if input.len() > RESPONSE_HEAD_MAX {
            return Err(ConnError::Transport);
        }
        if read_more(stream, input)
            .await
            .map_err(|_| ConnError::Transport)?
            == 0
        {
            return Err(ConnError::Transport);
        }
    }
}

/// Reads until `input` holds at least `len` bytes.
async fn fill(stream: &TcpStream, input: &mut Vec<u8>, len: usize) -> Result<(), ConnError> {
    while input.len() < len {
        if read_more(stream, input)
            .await
            .map_err(|_| ConnError::Transport)?
            == 0
        {
            return Err(ConnError::Transport);
        }
    }
    Ok(())
}

/// Reads until the peer closes the connection.
async fn read_to_end(stream: &TcpStream, input: &mut Vec<u8>) -> Result<(), ConnError> {
    while read_more(stream, input)
        .await
        .map_err(|_| ConnError::Transport)?
        > 0
    {}
    Ok(())
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Appends what the socket has to `into`; 0 at the end of the stream.
async fn read_more(stream: &TcpStream, into: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 8192];
    loop {
        stream.readable().await?;
        match stream.try_read(&mut chunk) {
            Ok(n) => {
                into.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// `fmt::Write` into a byte buffer.
struct Adapter<'a>(&'a mut Vec<u8>);

impl fmt::Write for Adapter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn head(text: &str) -> Result<Head, ConnError> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn the_status_line_gives_the_status() {
        let h = head("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(h.status, 201);
        assert_eq!(head("HTTP/1.1 503 \r\n\r\n").unwrap().status, 503);
        assert_eq!(head("HTTP/1.1 422\r\n\r\n").unwrap().status, 422);
    }

    #[test]
    fn a_malformed_head_is_a_transport_error() {
        assert_eq!(head("HTTP/1.1\r\n\r\n"), Err(ConnError::Transport));
        assert_eq!(head("HTTP/1.1 OK 200\r\n\r\n"), Err(ConnError::Transport));
        assert_eq!(head(""), Err(ConnError::Transport));
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nX: \xff\r\n\r\n"),
            Err(ConnError::Transport)
        );
    }

    #[test]
    fn headers_are_read_by_name_in_any_case() {
        let h = head(
            "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\nCONTENT-LENGTH: 17\r\n\
             Tally-Consistency-Token:  abc \r\nConnection: keep-alive\r\nno colon here\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            h,
            Head {
                status: 201,
                length: Some(17),
                close: false
            }
        );
    }

    #[test]
    fn close_no_length_and_transfer_encoding_end_the_connection() {
        let h = head("HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 2\r\n\r\n").unwrap();
        assert!(h.close);
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!((h.length, h.close), (None, true));
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n").unwrap();
        assert_eq!((h.length, h.close), (None, false));
    }

    #[test]
    fn the_head_ends_at_the_blank_line() {
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r\nbody"), Some(19));
    }

    #[test]
    fn a_body_is_taken_by_its_length_and_kept_only_when_refused() {
        let mut input = b"HEAD\r\n\r\n{\"code\":\"x\"}NEXT".to_vec();
        let body = take_body(&mut input, 8, 12, 422);
        assert_eq!(body, b"{\"code\":\"x\"}");
        assert_eq!(input, b"NEXT", "the next response stays buffered");
        let mut input = b"HEAD\r\n\r\nokNEXT".to_vec();
        assert!(take_body(&mut input, 8, 2, 201).is_empty());
        assert_eq!(input, b"NEXT");
    }

    #[test]
    fn a_request_is_written_whole() {
        let mut out = b"stale".to_vec();
        Request {
            host: "127.0.0.1:8080",
            path: "/v1/sales",
            auth: b"Bearer t",
            key: "O1",
            body: b"{}",
        }
        .write_into(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /v1/sales HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer t\r\n\
             Content-Type: application/json\r\nIdempotency-Key: O1\r\nContent-Length: 2\r\n\r\n{}"
        );
    }

    /// A server on loopback that answers each request it reads with the
    /// next of `answers`, then closes.
    async fn serve(answers: Vec<&'static str>) -> Target {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0u8; 4096];
            for answer in answers {
                let _ = socket.read(&mut buffer).await.unwrap();
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        Target {
            addr,
            host: addr.to_string(),
        }
    }

    #[tokio::test]
    async fn a_connection_reads_length_framed_answers_and_stays_open() {
        let target = serve(vec![
            "HTTP/1.1 201 Created\r\nContent-Length: 2\r\nTally-Consistency-Token: t\r\n\r\n{}",
            "HTTP/1.1 422 Unprocessable\r\nContent-Length: 10\r\n\r\n{\"code\":1}",
        ])
        .await;
        let mut conn = Conn::new(target);
        let auth = HeaderValue::from_static("Bearer t");
        let first = conn.post("/v1/sales", &auth, "k1", b"{}").await.unwrap();
        assert_eq!(first.status, 201);
        assert!(first.body.is_empty());
        let second = conn.post("/v1/sales", &auth, "k2", b"{}").await.unwrap();
        assert_eq!(
            (second.status, second.body.as_slice()),
            (422, &b"{\"code\":1}"[..])
        );
        assert!(conn.stream.is_some(), "keep-alive");
    }

    #[tokio::test]
    async fn a_body_without_a_length_is_read_to_the_close() {
        let target = serve(vec![
            "HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ])
        .await;
        let mut conn = Conn::new(target);
        let auth = HeaderValue::from_static("Bearer t");
        let answer = conn.post("/v1/sales", &auth, "k", b"{}").await.unwrap();
        assert_eq!(answer.status, 500);
        assert_eq!(answer.body, b"5\r\nhello\r\n0\r\n\r\n", "not decoded");
        assert!(conn.stream.is_none(), "closed after reading to the end");
    }

    #[tokio::test]
    async fn a_connection_closed_mid_answer_is_a_transport_error() {
        let target = serve(vec!["HTTP/1.1 201 Created\r\nContent-Length: 10\r\n\r\n{}"]).await;
        let mut conn = Conn::new(target);
        let auth = HeaderValue::from_static("Bearer t");
        let error = conn.post("/v1/sales", &auth, "k", b"{}").await.unwrap_err();
        assert_eq!(error, ConnError::Transport);
        assert!(conn.stream.is_none());
    }
}
