//! Responses written as they are encoded: a large status or scrape is
//! encoded on a blocking thread into 64 KiB chunks that go out as the
//! client reads them, so memory stays bounded by a few chunks whatever the
//! size of the answer, and a client that stops reading stops the encoder.

use std::io;

use axum::{body::Body, http::header, response::Response};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A chunk goes out once this much is buffered.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the encoder and the connection.
const IN_FLIGHT: usize = 4;

/// Where an encoder writes: `io::Write` (serde_json) and `fmt::Write`
/// (prometheus-client).
pub struct Chunks {
    buf: BytesMut,
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl Chunks {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl io::Write for Chunks {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.put_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl std::fmt::Write for Chunks {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        io::Write::write_all(self, s.as_bytes()).map_err(|_| std::fmt::Error)
    }
}

/// A 200 response of `content_type` whose body `encode` writes on a
/// blocking thread. An encoder's error ends the body early (the client sees
/// a truncated chunked response, not a complete wrong one).
pub fn streamed(
    content_type: &'static str,
    encode: impl FnOnce(&mut Chunks) -> io::Result<()> + Send + 'static,
) -> Response {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut chunks = Chunks {
            buf: BytesMut::with_capacity(CHUNK),
            tx,
        };
        let result = encode(&mut chunks).and_then(|()| chunks.send());
        if let Err(e) = result
            && e.kind() != io::ErrorKind::BrokenPipe
        {
            let _ = chunks.tx.blocking_send(Err(e));
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .expect("a static header is valid")
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn a_large_body_arrives_whole_in_bounded_chunks() {
        let response = streamed("text/plain", |w| {
            for i in 0..100_000 {
                io::Write::write_all(w, format!("line {i}\n").as_bytes())?;
            }
            Ok(())
        });
        let mut body = response.into_body();
        let (mut total, mut lines, mut largest) = (0, 0, 0);
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            largest = largest.max(data.len());
            total += data.len();
            lines += data.iter().filter(|b| **b == b'\n').count();
        }
        assert_eq!(lines, 100_000);
        assert!(total > 10 * CHUNK, "{total}");
        assert!(largest < 2 * CHUNK, "{largest}");
    }

    #[tokio::test]
    async fn a_client_that_goes_away_stops_the_encoder() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let response = streamed("text/plain", move |w| {
            let result = (0..u64::MAX).try_for_each(|_| io::Write::write_all(w, &[b'x'; 1024]));
            done_tx.send(result.is_err()).unwrap();
            Ok(())
        });
        drop(response);
        let stopped = tokio::task::spawn_blocking(move || {
            done_rx.recv_timeout(std::time::Duration::from_secs(60))
        })
        .await
        .unwrap();
        assert_eq!(stopped, Ok(true), "the encoder saw the broken pipe");
    }
}
