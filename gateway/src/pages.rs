//! Plain-HTTP pages of the gateway, answered before gRPC-web translation (which refuses any
//! HTTP/1.1 request that is not gRPC-web): `GET /`, the Todo web client (`web/index.html` and
//! the bundle `web/dist/app.js`, built by `web/build.sh` and embedded here, so building the
//! gateway needs no npm), and `GET /docs`, the API reference made from the proto comments at
//! build time.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use tonic::body::Body;
use tower::{Layer, Service};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A page: its content type and body.
fn page(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/index.html" => Some((
            "text/html; charset=utf-8",
            include_str!("../web/index.html"),
        )),
        "/app.js" => Some((
            "text/javascript; charset=utf-8",
            include_str!("../web/dist/app.js"),
        )),
        "/docs" | "/docs/" => Some(("text/html; charset=utf-8", todo_proto::DOCS_HTML)),
        _ => None,
    }
}

/// Answers `GET` for the gateway's pages; passes everything else on.
#[derive(Clone, Copy, Debug, Default)]
pub struct PagesLayer;

impl<S> Layer<S> for PagesLayer {
    type Service = Pages<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Pages { inner }
    }
}

/// The service made by [`PagesLayer`].
#[derive(Clone, Debug)]
pub struct Pages<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Pages<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let is_read = request.method() == Method::GET || request.method() == Method::HEAD;
        if is_read && let Some((content_type, content)) = page(request.uri().path()) {
            let body = if request.method() == Method::HEAD {
                Body::empty()
            } else {
                Body::new(http_body_full(content))
            };
            let mut response = Response::new(body);
            *response.status_mut() = StatusCode::OK;
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            // The pages load only their own script and styles, and call only this origin.
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
                ),
            );
            return Box::pin(async move { Ok(response) });
        }
        let response = self.inner.call(request);
        Box::pin(async move { Ok(response.await?.map(Body::new)) })
    }
}

/// A complete body of static bytes.
fn http_body_full(content: &'static str) -> StaticBody {
    StaticBody(Some(bytes::Bytes::from_static(content.as_bytes())))
}

/// One static chunk.
struct StaticBody(Option<bytes::Bytes>);

impl http_body::Body for StaticBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|data| Ok(http_body::Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.as_ref().map_or_else(
            || http_body::SizeHint::with_exact(0),
            |data| http_body::SizeHint::with_exact(data.len() as u64),
        )
    }
}
