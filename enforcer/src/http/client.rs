//! The CLI's HTTP client over the control socket (hyper, one request per
//! connection). Answers are read whole for JSON and streamed for `events`;
//! no size limit applies to answers (the daemon is trusted, and a status of
//! 100 000 destinations is tens of megabytes).

use std::path::{Path, PathBuf};

use axum::http::{Method, Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::api::ErrorBody;

/// Why a request did not get an answer it could use.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the daemon at {socket}: {source} (is `enforcer run` running?)")]
    Unreachable {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to the daemon at {socket}: {source}")]
    Http {
        socket: PathBuf,
        source: hyper::Error,
    },
    /// The daemon refused the request (4xx): nothing changed.
    #[error("{message}")]
    Refused { status: StatusCode, message: String },
    /// The daemon failed (5xx).
    #[error("the daemon failed: {message}")]
    Failed { status: StatusCode, message: String },
    #[error("the daemon's answer is not what this client reads: {0}")]
    Answer(String),
}

/// A connection's worth of client: the socket it talks to.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_owned(),
        }
    }

    fn http(&self, source: hyper::Error) -> ClientError {
        ClientError::Http {
            socket: self.socket.clone(),
            source,
        }
    }

    /// Sends one request; the response once its head has arrived (the body
    /// is still to be read). A 4xx or 5xx is an error carrying the daemon's
    /// message.
    pub async fn send(
        &self,
        method: Method,
        target: &str,
        body: Option<Bytes>,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let http = |source| self.http(source);
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Unreachable {
                    socket: self.socket.clone(),
                    source,
                })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(target)
            .header(header::HOST, "enforcer")
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ClientError::Answer(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.into_body().collect().await.map_err(http)?;
        let bytes = body.to_bytes();
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        Err(if status.is_client_error() {
            ClientError::Refused { status, message }
        } else {
            ClientError::Failed { status, message }
        })
    }

    /// The whole answer's bytes.
    pub async fn bytes(
        &self,
        method: Method,
        target: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, ClientError> {
        let response = self.send(method, target, body).await?;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|source| self.http(source))?;
        Ok(body.to_bytes())
    }

    /// The answer, read as `T`.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        target: &str,
        body: Option<Bytes>,
    ) -> Result<T, ClientError> {
        let bytes = self.bytes(method, target, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Answer(e.to_string()))
    }
}
