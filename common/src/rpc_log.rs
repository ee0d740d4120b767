//! One log line per RPC: method, status code, latency and peer, written when the response ends
//! (trailers included, so streaming calls are logged once, with their final status).
//!
//! A call whose request body broke off (the client reset the stream or closed the connection
//! before sending all of it) is the client's doing, whatever status the server then answered
//! to nobody (tonic makes most such breaks `INTERNAL`): it is logged as cancelled, at info
//! level, so that a client going away never reads as a server fault.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::Instant,
};

use http::{HeaderMap, HeaderName, Request, Response, uri::PathAndQuery};
use http_body::{Body, Frame, SizeHint};
use tonic::Code;
use tower::{Layer, Service};

/// Wraps a service so that each call is logged once, as it completes.
#[derive(Clone, Copy, Debug)]
pub struct RpcLogLayer {
    server: &'static str,
}

impl RpcLogLayer {
    /// Logs the calls of the server called `server`.
    pub fn new(server: &'static str) -> Self {
        Self { server }
    }
}

impl<S> Layer<S> for RpcLogLayer {
    type Service = RpcLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcLog {
            inner,
            server: self.server,
        }
    }
}

/// The service made by [`RpcLogLayer`].
#[derive(Clone, Debug)]
pub struct RpcLog<S> {
    inner: S,
    server: &'static str,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RpcLog<S>
where
    S: Service<Request<WatchedBody<ReqBody>>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body,
{
    type Response = Response<LoggedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let broken_off = Arc::new(AtomicBool::new(false));
        let record = CallRecord {
            server: self.server,
            // The path shares the request's bytes: no copy per call.
            method: request.uri().path_and_query().cloned(),
            started: Instant::now(),
            code: None,
            broken_off: broken_off.clone(),
        };
        let response = self
            .inner
            .call(request.map(|inner| WatchedBody { inner, broken_off }));
        Box::pin(async move {
            let mut record = record;
            let response = response.await?;
            // A trailers-only response (every error tonic answers before the body) carries the
            // status in its headers.
            record.code = grpc_code(response.headers());
            Ok(response.map(|inner| LoggedBody {
                inner,
                record: Some(record),
            }))
        })
    }
}

#[derive(Debug)]
struct CallRecord {
    server: &'static str,
    /// The call's path, `/package.Service/Method`.
    method: Option<PathAndQuery>,
    started: Instant,
    code: Option<Code>,
    /// Set when the request body fails.
    broken_off: Arc<AtomicBool>,
}

impl CallRecord {
    fn emit(self, outcome: Outcome) {
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let server = self.server;
        let rpc = self.method.as_ref().map_or("", PathAndQuery::path);
        if self.broken_off.load(Ordering::Relaxed) {
            tracing::info!(
                server,
                rpc,
                code = "Cancelled",
                latency_ms,
                "rpc broken off by the client"
            );
            return;
        }
        match (outcome, self.code) {
            (Outcome::Finished, Some(code)) => log_code(server, rpc, code, latency_ms),
            (Outcome::Finished, None) => {
                tracing::warn!(server, rpc, latency_ms, "rpc ended without a grpc-status");
            }
            (Outcome::BodyError, _) => {
                tracing::warn!(server, rpc, latency_ms, "rpc response failed mid-stream");
            }
            (Outcome::Dropped, _) => {
                tracing::info!(server, rpc, code = "Cancelled", latency_ms, "rpc");
            }
        }
    }
}

fn log_code(server: &str, rpc: &str, code: Code, latency_ms: f64) {
    let name = code_name(code);
    match code {
        // Server faults: a bug, or data at risk.
        Code::Internal | Code::Unknown | Code::DataLoss => {
            tracing::error!(server, rpc, code = name, latency_ms, "rpc");
        }
        // A dependency down or too slow, or a client calling what is not there.
        Code::Unavailable | Code::DeadlineExceeded | Code::Unimplemented => {
            tracing::warn!(server, rpc, code = name, latency_ms, "rpc");
        }
        _ => tracing::info!(server, rpc, code = name, latency_ms, "rpc"),
    }
}

/// The name of `code` as it is spelled in the logs (its Rust name), without formatting a
/// string on every call.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Finished,
    BodyError,
    Dropped,
}

/// A name, not a string: a name given as a string is parsed and checked on every use.
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

fn grpc_code(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get(&GRPC_STATUS)?.to_str().ok()?;
    value.parse::<i32>().ok().map(Code::from_i32)
}

pin_project_lite::pin_project! {
    /// A request body that notes whether it failed (the client broke the call off).
    #[derive(Debug)]
    pub struct WatchedBody<B> {
        #[pin]
        inner: B,
        broken_off: Arc<AtomicBool>,
    }
}

impl<B: Body> Body for WatchedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Err(_)) = &frame {
            this.broken_off.store(true, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A response body that logs its call when it ends, fails, or is dropped unfinished.
    #[derive(Debug)]
    pub struct LoggedBody<B> {
        #[pin]
        inner: B,
        record: Option<CallRecord>,
    }

    impl<B> PinnedDrop for LoggedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(record) = this.project().record.take() {
                // A trailers-only response (status in the headers, empty body) may be dropped
                // without being polled: its status is known. Otherwise the peer went away.
                let outcome = if record.code.is_some() { Outcome::Finished } else { Outcome::Dropped };
                record.emit(outcome);
            }
        }
    }
}

impl<B: Body> Body for LoggedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                // In gRPC the trailers are the last frame: the call is over.
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(mut record) = this.record.take()
                {
                    record.code = grpc_code(trailers).or(record.code);
                    record.emit(Outcome::Finished);
                }
            }
            Some(Err(_)) => {
                if let Some(record) = this.record.take() {
                    record.emit(Outcome::BodyError);
                }
            }
            None => {
                if let Some(record) = this.record.take() {
                    record.emit(Outcome::Finished);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;

    use super::*;

    /// A request body: one chunk, then either its end or a failure.
    struct Request(Option<Bytes>, bool);

    impl Body for Request {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(match self.0.take() {
                Some(chunk) => Some(Ok(Frame::data(chunk))),
                None if self.1 => Some(Err(std::io::Error::from(
                    std::io::ErrorKind::ConnectionReset,
                ))),
                None => None,
            })
        }
    }

    /// Reads the whole request, then answers a trailers-only INTERNAL, as tonic does when a
    /// request cannot be read.
    #[derive(Clone)]
    struct ReadsThenFails;

    impl Service<http::Request<WatchedBody<Request>>> for ReadsThenFails {
        type Response = Response<Empty>;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<WatchedBody<Request>>) -> Self::Future {
            Box::pin(async move {
                let mut body = std::pin::pin!(request.into_body());
                while let Some(Ok(_)) =
                    std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await
                {}
                let (parts, ()) = tonic::Status::internal("cannot read")
                    .into_http::<()>()
                    .into_parts();
                Ok(Response::from_parts(parts, Empty))
            })
        }
    }

    /// An empty response body.
    struct Empty;

    impl Body for Empty {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(None)
        }

        fn is_end_stream(&self) -> bool {
            true
        }
    }

    /// The log line of one call whose request body ends (or fails, if `breaks`).
    async fn logged(breaks: bool) -> String {
        let lines = Arc::new(Mutex::new(Vec::<u8>::new()));
        let writer = {
            let lines = lines.clone();
            move || Sink(lines.clone())
        };
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let mut service = RpcLogLayer::new("test").layer(ReadsThenFails);
        let request = http::Request::builder()
            .uri("/todo.task.v1.TaskService/GetTask")
            .body(Request(Some(Bytes::from_static(b"\0\0\0\0\x07")), breaks))
            .unwrap();
        let response = service.call(request).await.unwrap();
        drop(response);
        String::from_utf8(lines.lock().unwrap().clone()).unwrap()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_call_the_client_broke_off_is_logged_as_cancelled_not_as_a_fault() {
        let line = logged(true).await;
        assert!(line.contains("INFO"), "{line}");
        assert!(line.contains("rpc broken off by the client"), "{line}");
        assert!(line.contains("code=\"Cancelled\""), "{line}");
        assert!(!line.contains("ERROR"), "{line}");
    }

    #[tokio::test]
    async fn a_server_fault_on_a_whole_request_is_still_an_error() {
        let line = logged(false).await;
        assert!(line.contains("ERROR"), "{line}");
        assert!(line.contains("code=\"Internal\""), "{line}");
        assert!(
            line.contains("rpc=\"/todo.task.v1.TaskService/GetTask\""),
            "{line}"
        );
    }

    #[test]
    fn every_code_is_logged_by_its_rust_name() {
        for value in 0..=16 {
            let code = Code::from_i32(value);
            assert_eq!(code_name(code), format!("{code:?}"), "code {value}");
        }
    }
}
