//! Reading the rest of a refused HTTP/1.1 request.
//!
//! A server that answers before it has read the whole request (an oversized message, a rate
//! limit, a call it cannot decode) and then closes the connection under a client that is still
//! sending makes that client fail on its write and lose the answer: HTTP/1.1 has no way to end
//! one request early but closing. So for HTTP/1.x requests, when the request body is dropped
//! unfinished before the answer goes out, [`DrainLayer`] reads and drops the rest first, up to
//! a limit of bytes and of time; beyond them the connection closes as before. HTTP/2 ends just
//! the stream and needs none of this.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::oneshot;
use tonic::body::Body;
use tower::{Layer, Service};

/// Longest the rest of a refused body is read.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Adds [`Drain`] to a service.
#[derive(Clone, Copy, Debug)]
pub struct DrainLayer {
    limit: usize,
}

impl DrainLayer {
    /// Reads at most `limit` bytes of what is left of a refused request.
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for DrainLayer {
    type Service = Drain<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Drain {
            inner,
            limit: self.limit,
        }
    }
}

/// See the [module](self).
#[derive(Clone, Debug)]
pub struct Drain<S> {
    inner: S,
    limit: usize,
}

impl<S, ResBody> Service<Request<Body>> for Drain<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if request.version() >= http::Version::HTTP_2 {
            return Box::pin(self.inner.call(request));
        }
        let (left_over, unfinished) = oneshot::channel();
        let request = request.map(|body| {
            Body::new(Tracked {
                inner: Some(body),
                left_over: Some(left_over),
            })
        });
        let answer = self.inner.call(request);
        let limit = self.limit;
        let mut unfinished = unfinished;
        Box::pin(async move {
            let response = answer.await?;
            // The service dropped the body before reading it all: read the rest first. (A
            // body still held, by a call in progress, is none of this layer's business.)
            if let Ok(rest) = unfinished.try_recv() {
                drain(rest, limit).await;
            }
            Ok(response)
        })
    }
}

/// A request body that, dropped unfinished, hands itself back through `left_over`.
struct Tracked {
    inner: Option<Body>,
    left_over: Option<oneshot::Sender<Body>>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // Dropping the sender without a body tells the layer there is nothing to read.
        if let (Some(inner), Some(left_over)) = (self.inner.take(), self.left_over.take())
            && !inner.is_end_stream()
        {
            let _ = left_over.send(inner);
        }
    }
}

/// Reads and drops `body` up to `limit` bytes and [`DRAIN_TIME`].
async fn drain(mut body: Body, limit: usize) {
    let reading = async {
        let mut drained = 0;
        while drained <= limit {
            match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                Some(Ok(frame)) => drained += frame.data_ref().map_or(0, Bytes::len),
                Some(Err(_)) | None => return,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, reading).await;
}
