//! HTTP/2 connections to a backend, made with hyper directly.
//!
//! A forwarded call needs no more than a connection's request sender: tonic's `Channel` adds a
//! tower `Buffer` (another task and channel hop per call), its own layers and a timer per call,
//! which cost the gateway 2.4 of the 37.9 us of CPU it spent per forwarded ListTasks (h2load,
//! alternating rounds against one task service). A [`Connection`] is opened on first use and
//! opened again by the first call that finds it closed; a backend that is down fails that call
//! at once (connection refused) or within the connect timeout.

use std::{sync::Mutex, time::Duration};

use http::{Request, Response, Uri, uri::Scheme};
use hyper::{body::Incoming, client::conn::http2::SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tonic::body::Body;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// HTTP/2 pings on idle connections, so that a backend gone silently is noticed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// One HTTP/2 connection to a backend instance, (re)opened when a call needs it.
#[derive(Debug)]
pub struct Connection {
    /// `http://host:port`, the scheme and authority of every request sent.
    origin: Uri,
    connect_timeout: Duration,
    /// The open connection's sender; `None` before the first call.
    sender: Mutex<Option<SendRequest<Body>>>,
    /// Held while connecting, so that calls finding the connection closed open one, not many.
    connecting: tokio::sync::Mutex<()>,
}

impl Connection {
    /// A connection to `origin` (`http://host:port`), not opened yet.
    pub fn new(origin: Uri, connect_timeout: Duration) -> Result<Self, String> {
        if origin.scheme() != Some(&Scheme::HTTP) || origin.authority().is_none() {
            return Err(format!("{origin}: expected http://host:port"));
        }
        Ok(Self {
            origin,
            connect_timeout,
            sender: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    /// Sends `request` (its URI's path and query; the scheme and authority are the backend's)
    /// and returns the backend's response headers, its body to follow.
    pub async fn send(&self, request: Request<Body>) -> Result<Response<Incoming>, BoxError> {
        let (mut parts, body) = request.into_parts();
        let mut uri = self.origin.clone().into_parts();
        uri.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri = Uri::from_parts(uri)?;
        let mut sender = self.sender().await?;
        Ok(sender
            .send_request(Request::from_parts(parts, body))
            .await?)
    }

    /// The open connection's sender, connecting first when there is none or it closed.
    async fn sender(&self) -> Result<SendRequest<Body>, BoxError> {
        if let Some(sender) = self.open() {
            return Ok(sender);
        }
        let _turn = self.connecting.lock().await;
        if let Some(sender) = self.open() {
            return Ok(sender);
        }
        let sender = tokio::time::timeout(self.connect_timeout, self.connect())
            .await
            .map_err(|_| {
                format!(
                    "no connection to {} within {:?}",
                    self.origin, self.connect_timeout
                )
            })??;
        *self
            .sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sender.clone());
        Ok(sender)
    }

    fn open(&self) -> Option<SendRequest<Body>> {
        self.sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .filter(|sender| !sender.is_closed())
            .cloned()
    }

    async fn connect(&self) -> Result<SendRequest<Body>, BoxError> {
        let authority = self.origin.authority().map_or("", |a| a.as_str());
        let stream = TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(stream))
            .await?;
        let origin = self.origin.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(backend = %origin, %error, "backend connection closed");
            }
        });
        Ok(sender)
    }
}

/// A [`Connection`] as a tower service, for generated gRPC clients (the health checks).
#[derive(Clone, Debug)]
pub struct Client<'a>(pub &'a Connection);

impl<'a> tower::Service<Request<Body>> for Client<'a> {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send + 'a>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let connection = self.0;
        Box::pin(connection.send(request))
    }
}
