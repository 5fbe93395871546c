//! A deliberately small HTTP/1.1 server and client for the control socket and the
//! metrics endpoint: one request per connection, bodies bounded, no keep-alive.
//! Enough for `curl --unix-socket` and for Prometheus; nothing more is exposed.

use std::{io, path::Path, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    net::UnixStream,
};

/// Largest request or response head, and largest request body, accepted.
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;
/// A client must send its whole request within this.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// `key=value` pairs of the query string, percent-decoded.
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Self {
            status,
            content_type: "application/json",
            body,
        }
    }

    pub fn text(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
        }
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: impl std::fmt::Display) -> Self {
        Self::json(status, &serde_json::json!({ "error": message.to_string() }))
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn bad(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

/// Reads one request.
pub async fn read_request<S: AsyncRead + Unpin>(stream: S) -> io::Result<Request> {
    tokio::time::timeout(READ_TIMEOUT, read_request_inner(stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request not received in time"))?
}

async fn read_request_inner<S: AsyncRead + Unpin>(stream: S) -> io::Result<Request> {
    let mut reader = BufReader::new(stream);
    let (start, headers) = read_head(&mut reader).await?;
    let mut parts = start.split_whitespace();
    let (method, target) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/1.") => (m.to_owned(), t.to_owned()),
        _ => return Err(bad("malformed request line")),
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let body = read_body(&mut reader, &headers).await?;
    Ok(Request {
        method,
        path: percent_decode(path),
        query: parse_query(query),
        body,
    })
}

/// The start line and the headers (names lower-cased).
async fn read_head<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
) -> io::Result<(String, Vec<(String, String)>)> {
    let mut start = String::new();
    let mut headers = Vec::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).await?;
        total += n;
        if n == 0 || total > MAX_HEAD {
            return Err(bad("incomplete or oversized head"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if start.is_empty() {
            start = line.to_owned();
            continue;
        }
        if line.is_empty() {
            return Ok((start, headers));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("malformed header"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    headers: &[(String, String)],
) -> io::Result<Vec<u8>> {
    let Some(len) = header(headers, "content-length") else {
        return Ok(Vec::new());
    };
    let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
    if len > MAX_BODY {
        return Err(bad("body too large"));
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).await?;
    Ok(body)
}

/// Writes a complete response and closes the write side.
pub async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: &Response,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&response.body).await?;
    stream.shutdown().await
}

/// Starts a response whose body is streamed until the connection closes.
pub async fn write_stream_head<S: AsyncWrite + Unpin>(
    stream: &mut S,
    content_type: &str,
) -> io::Result<()> {
    let head =
        format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\nconnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await
}

/// Sends one request over the Unix socket at `path`; the status and body.
pub async fn request(
    path: &Path,
    method: &str,
    target: &str,
    body: Option<&[u8]>,
) -> io::Result<(u16, Vec<u8>)> {
    let stream = UnixStream::connect(path).await?;
    let (read, mut write) = stream.into_split();
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nhost: enforcer\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    write.write_all(head.as_bytes()).await?;
    write.write_all(body).await?;
    let mut reader = BufReader::new(read);
    let (status, headers) = read_status(&mut reader).await?;
    let body = match header(&headers, "content-length") {
        Some(_) => read_body(&mut reader, &headers).await?,
        None => {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).await?;
            all
        }
    };
    Ok((status, body))
}

/// Sends a request and hands back the response's status and a reader of its
/// (streamed) body.
pub async fn request_stream(
    path: &Path,
    target: &str,
) -> io::Result<(u16, impl AsyncBufReadExt + Unpin)> {
    let stream = UnixStream::connect(path).await?;
    let (read, mut write) = stream.into_split();
    let head = format!("GET {target} HTTP/1.1\r\nhost: enforcer\r\nconnection: close\r\n\r\n");
    write.write_all(head.as_bytes()).await?;
    let mut reader = BufReader::new(read);
    let (status, _) = read_status(&mut reader).await?;
    // Keep the write half alive with the reader: closing it early may end the stream.
    Ok((
        status,
        HoldWriter {
            reader,
            _write: write,
        },
    ))
}

/// A reader that keeps the connection's write half open while it lives.
struct HoldWriter<R> {
    reader: R,
    _write: tokio::net::unix::OwnedWriteHalf,
}

impl<R: AsyncRead + Unpin> AsyncRead for HoldWriter<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl<R: tokio::io::AsyncBufRead + Unpin> tokio::io::AsyncBufRead for HoldWriter<R> {
    fn poll_fill_buf(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<&[u8]>> {
        std::pin::Pin::new(&mut self.get_mut().reader).poll_fill_buf(cx)
    }

    fn consume(mut self: std::pin::Pin<&mut Self>, amt: usize) {
        std::pin::Pin::new(&mut self.reader).consume(amt)
    }
}

async fn read_status<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
) -> io::Result<(u16, Vec<(String, String)>)> {
    let (start, headers) = read_head(reader).await?;
    let status = start
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("malformed status line"))?;
    Ok((status, headers))
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` as space in queries).
pub fn percent_decode(text: &str) -> String {
    // One hex digit's value. Not `u8::from_str_radix` on the pair, which takes
    // a sign too: it decoded `%+3` as byte 3.
    let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes everything but unreserved characters, for query values.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_a_request_with_query_and_body() {
        let raw = b"POST /v1/trip?dest=%5Bfd00%3A%3A1%5D%3A443&x=a+b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody";
        let req = read_request(&raw[..]).await.unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1/trip");
        assert_eq!(req.param("dest"), Some("[fd00::1]:443"));
        assert_eq!(req.param("x"), Some("a b"));
        assert_eq!(req.body, b"body");
    }

    #[tokio::test]
    async fn rejects_malformed_and_oversized_requests() {
        assert!(read_request(&b"GARBAGE\r\n\r\n"[..]).await.is_err());
        let huge = format!("GET / HTTP/1.1\r\ncontent-length: {}\r\n\r\n", MAX_BODY + 1);
        assert!(read_request(huge.as_bytes()).await.is_err());
        assert!(read_request(&b"GET / HTTP/1.1\r\n"[..]).await.is_err());
    }

    /// The `api` fuzz target's crash: a sign after `%` was taken as part of
    /// an escape.
    #[test]
    fn only_two_hex_digits_make_an_escape() {
        assert_eq!(percent_decode("%+3A"), "% 3A");
        assert_eq!(percent_decode("%-1%zz%4"), "%-1%zz%4");
        assert_eq!(percent_decode("%41%4a%4A"), "AJJ");
    }

    #[test]
    fn percent_round_trip() {
        for s in ["[fd00::1]:443", "a b/c?d=e&f", "plain"] {
            assert_eq!(percent_decode(&percent_encode(s)), s);
        }
    }
}
