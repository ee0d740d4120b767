//! HTTP/2 connections to a backend, made with hyper directly.
//!
//! A forwarded call needs no more than a connection's request sender: tonic's `Channel` adds a
//! tower `Buffer` (another task and channel hop per call), its own layers and a timer per call,
//! which cost the gateway 2.4 of the 37.9 us of CPU it spent per forwarded ListTasks (h2load,
//! alternating rounds against one task service). A [`Connection`] is opened on first use and
//! opened again by the first call that finds it closed; a backend that is down fails that call
//! at once (connection refused) or within the connect timeout.
//!
//! A backend gone silently (its host down or cut off, no reset) is noticed by TCP itself, not by
//! HTTP/2 pings: hyper's pings take a lock and read the clock on every frame received, which
//! cost the gateway 1.3 us of its 33 per forwarded GetTask (h2load, 3 alternating rounds), while
//! the kernel's keepalive probes cost a call nothing. See [`open_stream`].

use std::{sync::Mutex, time::Duration};

use http::{Request, Response, Uri, uri::Scheme};
use hyper::{body::Incoming, client::conn::http2::SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tonic::body::Body;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a backend connection may be silent before TCP probes it.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// The time between probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Probes unanswered before the connection is given up.
const KEEPALIVE_PROBES: u32 = 2;
/// How long data sent to a backend may stay unacknowledged before the connection is given up:
/// the same bound for a backend that dies with calls in flight.
const UNACKNOWLEDGED_LIMIT: Duration = Duration::from_secs(50);

/// A TCP connection to a backend at `authority` (`host:port`), without Nagle's delay and
/// watched for silence: TCP keepalive and the user timeout give up a backend gone silently
/// within about 50 s, idle (30 s, then 2 probes 10 s apart) or with calls in flight (data
/// unacknowledged for 50 s). The connection then closes, its calls fail with `UNAVAILABLE`,
/// and the next call opens a new one.
async fn open_stream(authority: &str) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let socket = socket2::SockRef::from(&stream);
    socket.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_PROBES),
    )?;
    socket.set_tcp_user_timeout(Some(UNACKNOWLEDGED_LIMIT))?;
    Ok(stream)
}

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
        let stream = open_stream(authority).await?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn backend_connections_are_watched_for_silence_by_tcp() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        // A plain connection has none of it.
        let plain = TcpStream::connect(&authority).await.unwrap();
        assert!(!socket2::SockRef::from(&plain).keepalive().unwrap());

        let stream = open_stream(&authority).await.unwrap();
        assert!(stream.nodelay().unwrap());
        let socket = socket2::SockRef::from(&stream);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), KEEPALIVE_PROBES);
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(UNACKNOWLEDGED_LIMIT)
        );
    }
}
