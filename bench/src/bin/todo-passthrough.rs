//! `todo-passthrough`: the floor of forwarding gRPC with the libraries the gateway is built on
//! (hyper and h2 on tokio, tonic-web), a reference for the gateway's target lines.
//!
//! It does only what no gateway can avoid: it accepts connections (HTTP/2, and HTTP/1.1 for
//! gRPC-web, which tonic-web translates as in the gateway), sends each call as it is over one
//! of four HTTP/2 connections to one backend (as many as the gateway keeps to an instance), and
//! passes the answer back. No routing, limits, checks, deadlines, logs, CORS, health or
//! reconnection: what the gateway costs per call above this is what those cost. It allocates
//! with mimalloc and keeps the libraries' tracing off, as the servers do. It is a measuring
//! instrument of the benchmark, not a server to deploy.
//!
//! With `--h2` it forwards gRPC with `h2` alone, below hyper: one task per client connection
//! reads its calls and relays each one's headers, data and trailers over the same four backend
//! connections, with no task per call and no channel to a backend connection's task. That is
//! the least protocol work a proxy that ends the client's HTTP/2 connections can do with these
//! libraries.
//!
//! With `--tcp` it is a byte relay instead: each client connection gets one of its own to the
//! backend, and bytes are copied both ways without reading HTTP/2. That is the cost of the
//! extra hop alone, which no proxy avoids, below the protocol work of one that routes calls.
//!
//! ```sh
//! todo-passthrough 127.0.0.1:7000 127.0.0.1:50052
//! todo-passthrough --h2 127.0.0.1:7002 127.0.0.1:50052
//! todo-passthrough --tcp 127.0.0.1:7001 127.0.0.1:50052
//! ```

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use futures_util::{StreamExt, stream::FuturesUnordered};
use http::{Request, Response, StatusCode, Uri};
use hyper::client::conn::http2::SendRequest;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::net::{TcpListener, TcpStream};
use tonic::body::Body;
use tower::Layer;

/// The servers' allocator, so that the floor is not raised by another one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// As many connections to the backend as the gateway keeps to each instance.
const CONNECTIONS: usize = 4;

#[tokio::main]
async fn main() {
    // The libraries' spans and events, off: the servers filter theirs out at `warn`, and with no
    // subscriber at all each would go to `log` instead.
    let _ = tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
    let mut args = std::env::args().skip(1).peekable();
    let bytes_only = args.next_if_eq("--tcp").is_some();
    let h2_only = !bytes_only && args.next_if_eq("--h2").is_some();
    let (Some(listen), Some(backend)) = (args.next(), args.next()) else {
        fail(
            64,
            "usage: todo-passthrough [--tcp | --h2] <listen address> <backend address>",
        )
    };
    let listener = TcpListener::bind(&listen)
        .await
        .unwrap_or_else(|e| fail(1, &format!("listen on {listen}: {e}")));
    if bytes_only {
        relay_bytes(listener, backend).await
    }
    let origin: Uri = format!("http://{backend}")
        .parse()
        .unwrap_or_else(|e| fail(64, &format!("backend address {backend}: {e}")));
    if h2_only {
        relay_h2(listener, &backend, origin).await
    }
    let mut senders = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        senders.push(connect(&backend).await);
    }
    let forward = Forward(Arc::new(Backend::new(senders, origin)));
    let service = TowerToHyperService::new(tonic_web::GrpcWebLayer::new().layer(forward));
    loop {
        let stream = next_client(&listener).await;
        let service = service.clone();
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `--tcp`: each connection is relayed byte for byte to a connection of its own to the backend,
/// without reading HTTP/2 at all. What a forwarding hop costs on this machine before any
/// protocol work: the kernel's loopback, two more reads and writes per message, and the wake-ups.
async fn relay_bytes(listener: TcpListener, backend: String) -> ! {
    loop {
        let mut client = next_client(&listener).await;
        let backend = backend.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(&backend).await else {
                return;
            };
            let _ = server.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
    }
}

/// `--h2`: calls relayed with `h2` alone. Each client connection is served by one task, which
/// drives the connection and all its calls; the calls go round-robin over [`CONNECTIONS`]
/// backend connections, each driven by a task of its own.
async fn relay_h2(listener: TcpListener, backend: &str, origin: Uri) -> ! {
    let mut senders = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let (sender, connection) = h2::client::handshake(open(backend).await)
            .await
            .unwrap_or_else(|e| fail(1, &format!("HTTP/2 with {backend}: {e}")));
        tokio::spawn(connection);
        senders.push(sender);
    }
    let backend = Arc::new(Backend::new(senders, origin));
    loop {
        let stream = next_client(&listener).await;
        let backend = backend.clone();
        tokio::spawn(async move {
            let Ok(mut connection) = h2::server::handshake(stream).await else {
                return;
            };
            let mut calls = FuturesUnordered::new();
            loop {
                tokio::select! {
                    accepted = connection.accept() => match accepted {
                        Some(Ok((request, respond))) => calls.push(backend.relay(request, respond)),
                        _ => return,
                    },
                    Some(()) = calls.next(), if !calls.is_empty() => {}
                }
            }
        });
    }
}

impl Backend<h2::client::SendRequest<Bytes>> {
    /// Relays one call: its headers to the next backend connection, then its body and trailers
    /// one way and the answer's the other, as they come. A call the backend cannot take is
    /// reset.
    async fn relay(
        &self,
        request: Request<h2::RecvStream>,
        mut respond: h2::server::SendResponse<Bytes>,
    ) {
        let (mut parts, body) = request.into_parts();
        self.aim(&mut parts);
        let sent = async {
            let mut sender = self.next_sender().ready().await?;
            let request = Request::from_parts(parts, ());
            sender.send_request(request, body.is_end_stream())
        };
        let (answer, upstream) = match sent.await {
            Ok(sent) => sent,
            Err(_) => return respond.send_reset(h2::Reason::REFUSED_STREAM),
        };
        let downstream = async {
            let Ok(answer) = answer.await else {
                return respond.send_reset(h2::Reason::INTERNAL_ERROR);
            };
            let (parts, body) = answer.into_parts();
            let end = body.is_end_stream();
            if let Ok(sender) = respond.send_response(Response::from_parts(parts, ()), end) {
                copy_h2(body, sender).await;
            }
        };
        tokio::join!(copy_h2(body, upstream), downstream);
    }
}

/// Copies one side of a call, data then trailers, from `from` to `to`, returning the flow
/// control window as it goes. Data is handed on without waiting for the other side's window:
/// enough for the small unary messages this instrument relays, not for a stream.
async fn copy_h2(mut from: h2::RecvStream, mut to: h2::SendStream<Bytes>) {
    if from.is_end_stream() {
        return;
    }
    while let Some(data) = from.data().await {
        let Ok(data) = data else {
            return to.send_reset(h2::Reason::CANCEL);
        };
        let _ = from.flow_control().release_capacity(data.len());
        // The end goes with the last data, as it came. An empty frame that does not end the
        // stream is not passed on: h2 counts such frames as a flood and closes the connection.
        let end = from.is_end_stream();
        if data.is_empty() && !end {
            continue;
        }
        if to.send_data(data, end).is_err() || end {
            return;
        }
    }
    let _ = match from.trailers().await {
        Ok(Some(trailers)) => to.send_trailers(trailers),
        Ok(None) => to.send_data(Bytes::new(), true),
        Err(_) => return to.send_reset(h2::Reason::CANCEL),
    };
}

/// The next client connection, without Nagle's delay.
async fn next_client(listener: &TcpListener) -> TcpStream {
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            return stream;
        }
    }
}

/// A connection to the backend, without Nagle's delay; the process ends if there is none.
async fn open(backend: &str) -> TcpStream {
    let stream = TcpStream::connect(backend)
        .await
        .unwrap_or_else(|e| fail(1, &format!("connect to {backend}: {e}")));
    let _ = stream.set_nodelay(true);
    stream
}

fn fail(code: i32, message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(code)
}

/// One HTTP/2 connection to the backend, driven by a task of its own.
async fn connect(backend: &str) -> SendRequest<Body> {
    let stream = TokioIo::new(open(backend).await);
    let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), stream)
        .await
        .unwrap_or_else(|e| fail(1, &format!("HTTP/2 with {backend}: {e}")));
    tokio::spawn(connection);
    sender
}

/// The backend: its connections' senders, used in turn, and its origin.
struct Backend<S> {
    senders: Vec<S>,
    next: AtomicUsize,
    origin: Uri,
}

impl<S: Clone> Backend<S> {
    fn new(senders: Vec<S>, origin: Uri) -> Self {
        Self {
            senders,
            next: AtomicUsize::new(0),
            origin,
        }
    }

    /// Points a call's request at the backend: its scheme and authority, the call's path.
    fn aim(&self, parts: &mut http::request::Parts) {
        let mut uri = self.origin.clone().into_parts();
        uri.path_and_query = parts.uri.path_and_query().cloned();
        if let Ok(uri) = Uri::from_parts(uri) {
            parts.uri = uri;
        }
    }

    /// The sender of the next connection, round-robin.
    fn next_sender(&self) -> S {
        let next = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        self.senders[next].clone()
    }
}

/// Sends every call to the backend's connections in turn.
#[derive(Clone)]
struct Forward(Arc<Backend<SendRequest<Body>>>);

impl tower::Service<Request<Body>> for Forward {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let backend = self.0.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            backend.aim(&mut parts);
            let mut sender = backend.next_sender();
            Ok(
                match sender.send_request(Request::from_parts(parts, body)).await {
                    Ok(response) => response.map(Body::new),
                    Err(_) => {
                        let mut response = Response::new(Body::empty());
                        *response.status_mut() = StatusCode::BAD_GATEWAY;
                        response
                    }
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;
    use tonic_health::{
        ServingStatus,
        pb::{HealthCheckRequest, health_check_response, health_client::HealthClient},
    };

    use super::*;

    /// A health service on a port of its own, serving `service`.
    async fn backend(service: &str) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status(service, ServingStatus::Serving)
            .await;
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        addr
    }

    #[tokio::test]
    async fn the_h2_relay_passes_every_call_of_a_tonic_client_and_its_status() {
        let backend = backend("todo.Test").await.to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = listener.local_addr().unwrap();
        let origin: Uri = format!("http://{backend}").parse().unwrap();
        tokio::spawn(async move {
            relay_h2(listener, &backend, origin).await;
        });
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{relay}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);
        // Many calls on one connection: a tonic client ends each request with an empty DATA
        // frame, and passed on as a frame of its own each one would count towards h2's flood
        // guard until the backend closed the connection.
        for n in 0..1_500 {
            let request = HealthCheckRequest {
                service: "todo.Test".into(),
            };
            let answer = client
                .check(request)
                .await
                .unwrap_or_else(|status| panic!("call {n}: {status:?}"));
            assert_eq!(
                answer.into_inner().status(),
                health_check_response::ServingStatus::Serving
            );
        }
        // A failure comes through with its code.
        let request = HealthCheckRequest {
            service: "todo.Unknown".into(),
        };
        let status = client.check(request).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
}
