//! One log line per RPC: method, status code, latency and peer, written when the response ends
//! (trailers included, so streaming calls are logged once, with their final status).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Instant,
};

use http::{HeaderMap, Request, Response};
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
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
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
        let record = CallRecord {
            server: self.server,
            method: request.uri().path().to_owned(),
            started: Instant::now(),
            code: None,
        };
        let response = self.inner.call(request);
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
    method: String,
    started: Instant,
    code: Option<Code>,
}

impl CallRecord {
    fn emit(self, outcome: Outcome) {
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let (server, rpc) = (self.server, self.method.as_str());
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
    let code = format!("{code:?}");
    match code.as_str() {
        // Server faults: a bug, or data at risk.
        "Internal" | "Unknown" | "DataLoss" => {
            tracing::error!(server, rpc, code, latency_ms, "rpc");
        }
        // A dependency down or too slow, or a client calling what is not there.
        "Unavailable" | "DeadlineExceeded" | "Unimplemented" => {
            tracing::warn!(server, rpc, code, latency_ms, "rpc");
        }
        _ => tracing::info!(server, rpc, code, latency_ms, "rpc"),
    }
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Finished,
    BodyError,
    Dropped,
}

fn grpc_code(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    value.parse::<i32>().ok().map(Code::from_i32)
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
