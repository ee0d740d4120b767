//! Generic forwarding: a call is routed by the service in its path to that service's backends
//! without decoding a message, so a new RPC needs no change here.
//!
//! Headers (the `authorization` metadata included) and `grpc-timeout` pass through; hop-by-hop
//! headers do not; the gateway adds no identity. Unary calls without a deadline get the default
//! one. Calls are spread round-robin over the backends the health checks find serving; a backend
//! that is down fails fast with `UNAVAILABLE`, and one that comes back is used again. No call
//! waits for a backend's answer longer than the request timeout.
//! Before a call is forwarded: the per-address rate limit on sign-up and login, the concurrency
//! limit (shedding the excess), and the size of the first message.

use std::{
    collections::{HashSet, VecDeque},
    convert::Infallible,
    net::IpAddr,
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use http::{HeaderName, HeaderValue, Request, Response, Uri, header};
use http_body::Body as HttpBody;
use prost::Message;
use todo_common::rpc_error::ErrorStatus;
use tokio::sync::Semaphore;
use tonic::{Code, Status, body::Body, transport::server::TcpConnectInfo};
use tower::Service;

use crate::{
    body::{RequestBody, ResponseBody, first_message_length},
    connection::Connection,
};

/// `ErrorInfo.domain` of the gateway's own errors.
pub const DOMAIN: &str = "gateway.todo";

/// Calls limited per client address.
const RATE_LIMITED: &[&str] = &[
    "/todo.auth.v1.AuthService/SignUp",
    "/todo.auth.v1.AuthService/Login",
];

/// Headers that describe one connection, not the call (RFC 9110 §7.6.1), plus the ones the
/// backend connection sets itself. Names, not strings: a name given as a string is parsed and
/// checked on every use.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    header::HOST,
    header::CONTENT_LENGTH,
];

/// The call's deadline (gRPC over HTTP/2).
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// HTTP/2 connections kept to each backend instance. One connection is served by one task at
/// each end, so on a multi-core machine a single one caps the throughput of a busy backend;
/// calls are spread over these round-robin.
const CONNECTIONS_PER_INSTANCE: usize = 4;

/// One backend address.
#[derive(Debug)]
pub struct Instance {
    /// Its URL.
    pub url: String,
    connections: Vec<Connection>,
    next: AtomicUsize,
    /// Whether its last health check said SERVING.
    pub healthy: AtomicBool,
}

impl Instance {
    /// The next of this instance's connections.
    pub fn connection(&self) -> &Connection {
        let next = self.next.fetch_add(1, Ordering::Relaxed);
        &self.connections[next % self.connections.len()]
    }
}

/// The instances of one service.
#[derive(Debug)]
pub struct Backend {
    /// The gRPC service name (`todo.task.v1.TaskService`).
    pub service: &'static str,
    /// Its instances.
    pub instances: Vec<Instance>,
    next: AtomicUsize,
}

impl Backend {
    /// Connections to `urls` (`http://host:port`), opened when first used, each failing to
    /// connect within `connect_timeout`.
    pub fn new(
        service: &'static str,
        urls: &[String],
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        let instances = urls
            .iter()
            .map(|url| {
                let origin: Uri = url.parse().map_err(|e| format!("backend {url}: {e}"))?;
                Ok(Instance {
                    url: url.clone(),
                    connections: (0..CONNECTIONS_PER_INSTANCE)
                        .map(|_| Connection::new(origin.clone(), connect_timeout))
                        .collect::<Result<_, String>>()
                        .map_err(|e| format!("backend {e}"))?,
                    next: AtomicUsize::new(0),
                    // Optimistic until the first check: the first calls need not wait for it.
                    healthy: AtomicBool::new(true),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if instances.is_empty() {
            return Err(format!("no backend for {service}"));
        }
        Ok(Self {
            service,
            instances,
            next: AtomicUsize::new(0),
        })
    }

    /// The next instance, round-robin, skipping unhealthy ones while any is healthy.
    fn pick(&self) -> &Instance {
        let count = self.instances.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| &self.instances[(start + offset) % count])
            .find(|instance| instance.healthy.load(Ordering::Relaxed))
            .unwrap_or(&self.instances[start % count])
    }
}

/// Limits applied before forwarding.
#[derive(Debug)]
pub struct Limits {
    /// Largest first message, bytes.
    pub max_message_bytes: usize,
    /// Deadline of unary calls that have none.
    pub default_deadline: Duration,
    /// The same as a `grpc-timeout` value.
    default_deadline_header: HeaderValue,
    /// The longest the gateway waits for a backend's answer to any call (`--request-timeout`);
    /// a shorter deadline of the call's wins.
    pub request_timeout: Duration,
    /// Calls in flight.
    pub calls: Arc<Semaphore>,
    /// Sign-up and login calls per client address.
    pub auth_calls: DefaultKeyedRateLimiter<IpAddr>,
}

impl Limits {
    /// Limits with these values.
    pub fn new(
        max_message_bytes: usize,
        default_deadline: Duration,
        request_timeout: Duration,
        max_calls: u32,
        auth_calls_per_minute: u32,
    ) -> Self {
        let per_minute = NonZeroU32::new(auth_calls_per_minute).unwrap_or(NonZeroU32::MIN);
        let millis = default_deadline.as_millis().min(99_999_999);
        Self {
            max_message_bytes,
            default_deadline,
            default_deadline_header: HeaderValue::from_str(&format!("{millis}m"))
                .expect("digits and a unit"),
            request_timeout,
            calls: Arc::new(Semaphore::new(
                usize::try_from(max_calls).unwrap_or(usize::MAX),
            )),
            auth_calls: RateLimiter::keyed(Quota::per_minute(per_minute)),
        }
    }
}

/// The fallback service of the gateway: forwards every call it is given.
#[derive(Clone, Debug)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backends: Vec<Arc<Backend>>,
    limits: Limits,
    /// Paths of server-streaming methods: they get no default deadline.
    streaming: HashSet<String>,
}

impl Forwarder {
    /// Forgets rate-limit state of addresses that have been quiet for a full period, so the
    /// table does not grow with every address ever seen. Call it now and then.
    pub fn forget_quiet_clients(&self) {
        self.inner.limits.auth_calls.retain_recent();
    }

    /// Forwards to `backends` under `limits`.
    pub fn new(backends: Vec<Arc<Backend>>, limits: Limits) -> Self {
        Self {
            inner: Arc::new(Inner {
                backends,
                limits,
                streaming: streaming_methods(),
            }),
        }
    }
}

/// `/package.Service/Method` of every server-streaming method in the contracts.
fn streaming_methods() -> HashSet<String> {
    let Ok(set) = prost_types::FileDescriptorSet::decode(todo_proto::FILE_DESCRIPTOR_SET) else {
        return HashSet::new();
    };
    set.file
        .iter()
        .flat_map(|file| {
            file.service.iter().flat_map(move |service| {
                service
                    .method
                    .iter()
                    .filter(|method| method.server_streaming())
                    .map(move |method| {
                        format!("/{}.{}/{}", file.package(), service.name(), method.name())
                    })
            })
        })
        .collect()
}

/// A trailers-only gRPC answer.
fn answer(status: Status) -> Response<Body> {
    let (parts, ()) = status.into_http::<()>().into_parts();
    Response::from_parts(parts, Body::empty())
}

impl<B> Service<Request<B>> for Forwarder
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { Ok(inner.forward(request).await.unwrap_or_else(answer)) })
    }
}

/// A call the gateway takes: its backend, the body read so far, its place among the calls in
/// flight.
struct Admitted<'a> {
    backend: &'a Arc<Backend>,
    read: VecDeque<Bytes>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Inner {
    /// Checks a call before it is forwarded: a known service, the rate limit of sign-ups and
    /// logins, room among the calls in flight, and the size of the first message (read up to
    /// its header, so that an oversized one never reaches a backend).
    async fn admit<B>(
        &self,
        parts: &http::request::Parts,
        body: &mut B,
    ) -> Result<Admitted<'_>, Status>
    where
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = parts.uri.path();
        let service = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        let Some(backend) = self.backends.iter().find(|b| b.service == service) else {
            return Err(Status::unimplemented(format!("unknown service {service}")));
        };

        if RATE_LIMITED.contains(&path)
            && let Some(peer) = parts
                .extensions
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr)
            && let Err(not_until) = self.limits.auth_calls.check_key(&peer.ip())
        {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            return Err(ErrorStatus::new(
                Code::ResourceExhausted,
                DOMAIN,
                "RATE_LIMITED",
                "too many sign-up or login calls from this address; try again later",
            )
            .retry_after(wait.max(Duration::from_millis(1)))
            .build());
        }

        // Shed load at once rather than queue: the client may retry elsewhere or later.
        let Ok(permit) = self.limits.calls.clone().try_acquire_owned() else {
            return Err(ErrorStatus::new(
                Code::Unavailable,
                DOMAIN,
                "OVERLOADED",
                "the gateway is at capacity; retry shortly",
            )
            .retry_after(Duration::from_millis(100))
            .build());
        };

        let mut read = VecDeque::new();
        let mut seen = 0;
        while seen < 5 {
            match std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        seen += data.len();
                        read.push_back(data);
                    }
                }
                Some(Err(error)) => return Err(Status::from_error(error.into())),
                None => break,
            }
        }
        if first_message_length(&read).is_some_and(|length| length > self.limits.max_message_bytes)
        {
            return Err(ErrorStatus::new(
                Code::ResourceExhausted,
                DOMAIN,
                "MESSAGE_TOO_LARGE",
                format!(
                    "the request message is larger than {} bytes",
                    self.limits.max_message_bytes
                ),
            )
            .build());
        }
        Ok(Admitted {
            backend,
            read,
            _permit: permit,
        })
    }

    async fn forward<B>(&self, request: Request<B>) -> Result<Response<Body>, Status>
    where
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (mut parts, mut body) = request.into_parts();
        // (A refused body is dropped unread here; `DrainLayer` reads the rest for HTTP/1.1.)
        let Admitted {
            backend,
            read,
            _permit,
        } = self.admit(&parts, &mut body).await?;
        let streaming = self.streaming.contains(parts.uri.path());

        for name in &HOP_BY_HOP {
            parts.headers.remove(name);
        }
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
        // The deadline the backend is given is the one the gateway keeps to for its answer.
        let deadline = match parts.headers.get(&GRPC_TIMEOUT) {
            Some(value) => grpc_timeout(value),
            None if streaming => None,
            None => {
                parts
                    .headers
                    .insert(GRPC_TIMEOUT, self.limits.default_deadline_header.clone());
                Some(self.limits.default_deadline)
            }
        };
        parts.extensions = http::Extensions::new();
        let request = Request::from_parts(parts, Body::new(RequestBody::new(read, body)));

        // The wait is bounded here, for every call, and not also by the server's timeout
        // layer: one timer per call instead of two.
        let wait = deadline.map_or(self.limits.request_timeout, |deadline| {
            deadline.min(self.limits.request_timeout)
        });

        let instance = backend.pick();
        let sent = instance.connection().send(request);
        let answered = tokio::time::timeout(wait, sent).await;
        match answered {
            Ok(Ok(response)) => {
                let (parts, body) = response.into_parts();
                Ok(Response::from_parts(
                    parts,
                    Body::new(ResponseBody::new(body)),
                ))
            }
            Err(_) => Err(ErrorStatus::new(
                Code::DeadlineExceeded,
                DOMAIN,
                "DEADLINE_EXCEEDED",
                "the call's deadline (or the gateway's request timeout) passed before the backend \
                 answered",
            )
            .build()),
            Ok(Err(error)) => {
                tracing::warn!(backend = instance.url, %error, "backend unreachable");
                Err(ErrorStatus::new(
                    Code::Unavailable,
                    DOMAIN,
                    "BACKEND_UNAVAILABLE",
                    format!("{} is unavailable; retry", backend.service),
                )
                .build())
            }
        }
    }
}

/// The time a `grpc-timeout` value allows: 1 to 8 digits and a unit (gRPC over HTTP/2);
/// `None` for any other value, which is passed on as it came.
fn grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let value = value.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0_u64, |n, digit| n * 10 + u64::from(digit - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_are_read_in_every_unit_and_nothing_else_is() {
        let read = |value: &'static str| grpc_timeout(&HeaderValue::from_static(value));
        assert_eq!(read("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(read("3M"), Some(Duration::from_secs(180)));
        assert_eq!(read("30S"), Some(Duration::from_secs(30)));
        assert_eq!(read("30000m"), Some(Duration::from_secs(30)));
        assert_eq!(read("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(read("0n"), Some(Duration::ZERO));
        for bad in ["", "m", "123456789m", "12x", "1.5S", "-1S", "10 S", "S10"] {
            assert_eq!(read(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_streaming_methods_come_from_the_contracts() {
        let streaming = streaming_methods();
        assert!(streaming.contains("/todo.task.v1.TaskService/WatchTasks"));
        assert!(!streaming.contains("/todo.task.v1.TaskService/ListTasks"));
    }

    #[tokio::test]
    async fn round_robin_skips_unhealthy_instances_while_any_is_healthy() {
        let urls = vec![
            "http://127.0.0.1:1".to_owned(),
            "http://127.0.0.1:2".to_owned(),
        ];
        let backend = Backend::new("s", &urls, Duration::from_millis(10)).unwrap();
        let picks: Vec<&str> = (0..4).map(|_| backend.pick().url.as_str()).collect();
        assert_eq!(
            picks,
            [
                "http://127.0.0.1:1",
                "http://127.0.0.1:2",
                "http://127.0.0.1:1",
                "http://127.0.0.1:2"
            ]
        );
        backend.instances[0].healthy.store(false, Ordering::Relaxed);
        assert!((0..4).all(|_| backend.pick().url == "http://127.0.0.1:2"));
        backend.instances[1].healthy.store(false, Ordering::Relaxed);
        backend.pick(); // all down: still tries one rather than failing here
    }

    /// A backend that takes connections and never answers.
    async fn silent_backend() -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                connections.push(connection);
            }
        });
        (url, held)
    }

    /// The status a silent backend's call ends with through a gateway whose request timeout is
    /// `request_timeout`, and how long it took.
    async fn waited(
        request_timeout: Duration,
        method: &str,
        grpc_timeout: Option<&'static str>,
    ) -> (Code, Duration) {
        let (url, _backend) = silent_backend().await;
        let backend = Backend::new("todo.task.v1.TaskService", &[url], Duration::from_secs(5));
        let limits = Limits::new(1 << 20, Duration::from_secs(60), request_timeout, 16, 30);
        let mut forwarder = Forwarder::new(vec![Arc::new(backend.unwrap())], limits);
        let mut request = Request::post(format!("/todo.task.v1.TaskService/{method}"))
            .header(header::CONTENT_TYPE, "application/grpc");
        if let Some(value) = grpc_timeout {
            request = request.header(GRPC_TIMEOUT, value);
        }
        let started = std::time::Instant::now();
        let response = forwarder
            .call(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = Status::from_header_map(response.headers()).expect("a trailers-only answer");
        (status.code(), started.elapsed())
    }

    #[tokio::test]
    async fn no_call_waits_for_a_backend_longer_than_the_request_timeout() {
        let short = Duration::from_millis(200);
        // A client deadline longer than the request timeout, none (the default deadline is a
        // minute), and a stream, which gets no default deadline.
        for (method, grpc_timeout) in [
            ("GetTask", Some("10S")),
            ("GetTask", None),
            ("WatchTasks", None),
        ] {
            let (code, took) = waited(short, method, grpc_timeout).await;
            assert_eq!(code, Code::DeadlineExceeded, "{method} {grpc_timeout:?}");
            assert!(took >= short, "{method} {grpc_timeout:?}: {took:?}");
            assert!(
                took < Duration::from_secs(5),
                "{method} {grpc_timeout:?}: {took:?}"
            );
        }
        // A client deadline shorter than the request timeout wins.
        let (code, took) = waited(Duration::from_secs(60), "GetTask", Some("200m")).await;
        assert_eq!(code, Code::DeadlineExceeded);
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}
