//! External HTTP checks (a chaos experiment's steady state and abort
//! conditions): does a GET answer 200 within a timeout?

use std::time::Duration;

use axum::http::{Method, Request, StatusCode, Uri, header};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A URL to GET: `http://HOST:PORT/PATH` (no TLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    uri: Uri,
    host: String,
    port: u16,
}

impl HttpCheck {
    /// Parses `url`, which must be `http://` with a host.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "`{url}`: only http:// (the check does not speak TLS)"
            ));
        }
        let authority = uri.authority().ok_or_else(|| format!("`{url}`: no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        Ok(Self {
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(80),
            uri,
        })
    }

    /// Whether a GET answers 200 within `timeout` (connect included).
    pub async fn ok(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.get())
            .await
            .is_ok_and(|status| status == Some(StatusCode::OK))
    }

    async fn get(&self) -> Option<StatusCode> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .ok()?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        let connection = tokio::spawn(connection);
        let target = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let request = Request::builder()
            .method(Method::GET)
            .uri(target)
            .header(header::HOST, self.uri.authority()?.as_str())
            .header(header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .ok()?;
        let status = sender.send_request(request).await.ok().map(|r| r.status());
        connection.abort();
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls_only() {
        let c = HttpCheck::parse("http://127.0.0.1:8080/health?x=1").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 8080));
        assert_eq!(HttpCheck::parse("http://[::1]/").unwrap().port, 80);
        assert!(HttpCheck::parse("https://127.0.0.1/").is_err());
        assert!(HttpCheck::parse("/health").is_err());
        assert!(HttpCheck::parse("http://").is_err());
    }
}
