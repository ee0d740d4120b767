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
//! With `--tcp` it is a byte relay instead: each client connection gets one of its own to the
//! backend, and bytes are copied both ways without reading HTTP/2. That is the cost of the
//! extra hop alone, which no proxy avoids, below the protocol work of one that routes calls.
//!
//! ```sh
//! todo-passthrough 127.0.0.1:7000 127.0.0.1:50052
//! todo-passthrough --tcp 127.0.0.1:7001 127.0.0.1:50052
//! ```

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

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
    let (Some(listen), Some(backend)) = (args.next(), args.next()) else {
        fail(
            64,
            "usage: todo-passthrough [--tcp] <listen address> <backend address>",
        )
    };
    let listener = TcpListener::bind(&listen)
        .await
        .unwrap_or_else(|e| fail(1, &format!("listen on {listen}: {e}")));
    if bytes_only {
        relay_bytes(listener, backend).await
    }
    let mut senders = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        senders.push(connect(&backend).await);
    }
    let origin: Uri = format!("http://{backend}")
        .parse()
        .unwrap_or_else(|e| fail(64, &format!("backend address {backend}: {e}")));
    let forward = Forward(Arc::new(Backend {
        senders,
        next: AtomicUsize::new(0),
        origin,
    }));
    let service = TowerToHyperService::new(tonic_web::GrpcWebLayer::new().layer(forward));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
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
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let backend = backend.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(&backend).await else {
                return;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
    }
}

fn fail(code: i32, message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(code)
}

/// One HTTP/2 connection to the backend, driven by a task of its own.
async fn connect(backend: &str) -> SendRequest<Body> {
    let stream = TcpStream::connect(backend)
        .await
        .unwrap_or_else(|e| fail(1, &format!("connect to {backend}: {e}")));
    let _ = stream.set_nodelay(true);
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap_or_else(|e| fail(1, &format!("HTTP/2 with {backend}: {e}")));
    tokio::spawn(connection);
    sender
}

struct Backend {
    senders: Vec<SendRequest<Body>>,
    next: AtomicUsize,
    origin: Uri,
}

/// Sends every call to the backend's connections in turn.
#[derive(Clone)]
struct Forward(Arc<Backend>);

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
            let mut uri = backend.origin.clone().into_parts();
            uri.path_and_query = parts.uri.path_and_query().cloned();
            if let Ok(uri) = Uri::from_parts(uri) {
                parts.uri = uri;
            }
            let next = backend.next.fetch_add(1, Ordering::Relaxed) % backend.senders.len();
            let mut sender = backend.senders[next].clone();
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
