//! The short ways through the gateway for calls to the backends.
//!
//! Most of the gateway's layers and its router are there for requests that are not calls to a
//! forwarded service: the pages (`GET /docs`), CORS preflights, and the gateway's own health and
//! reflection. A call to a forwarded service needs none of that, so it is sent along a shorter
//! stack of its own, with the same layers it would meet on the long way and nothing else:
//!
//! - **plain gRPC** (HTTP/2, a gRPC content type, no `Origin` header): its log line and the
//!   [`Forwarder`](crate::forward::Forwarder), no browser layer at all. Skipping them cut the
//!   gateway's CPU per forwarded ListTasks from 35.5 to 34.2 us (h2load, alternating rounds
//!   against one task service).
//! - **gRPC-web** (any HTTP version): the origin allow-list, CORS, the HTTP/1.1 drain, the
//!   gRPC-web translation and the log line, then the forwarder, without the pages layer and the
//!   router. That cut the gateway's CPU per forwarded GetTask over gRPC-web from 32.5-34.4 to
//!   29.5-32.1 us (wrk, 3 alternating rounds of both gateways against one task service).
//!
//! On either short way a call meets only layers that it would meet on the long way, and the
//! ones it skips pass such a call through unchanged, so the answers are the same either way.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Method, Request, Response, Version, header};
use tonic::body::Body;
use tower::{Layer, Service};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The answer of a way, boxed: the three ways answer with different types.
type Answer<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

/// Sends calls to forwarded services along `grpc` (plain gRPC) or `web` (gRPC-web), everything
/// else on.
#[derive(Clone, Debug)]
pub struct FastPathLayer<G, W> {
    grpc: G,
    web: W,
    services: Arc<[&'static str]>,
}

impl<G, W> FastPathLayer<G, W> {
    /// Calls to `services` (gRPC service names) go to `grpc` or `web`.
    pub fn new(grpc: G, web: W, services: impl IntoIterator<Item = &'static str>) -> Self {
        Self {
            grpc,
            web,
            services: services.into_iter().collect(),
        }
    }
}

impl<S, G: Clone, W: Clone> Layer<S> for FastPathLayer<G, W> {
    type Service = FastPath<S, G, W>;

    fn layer(&self, rest: S) -> Self::Service {
        FastPath {
            ways: Arc::new(Ways {
                rest,
                grpc: self.grpc.clone(),
                web: self.web.clone(),
                services: self.services.clone(),
            }),
        }
    }
}

/// The service made by [`FastPathLayer`].
///
/// hyper clones the server's service for every request. The three ways sit behind one `Arc`,
/// so that a request clones only the way it takes (readied, then called, as tower asks), not
/// all three stacks.
#[derive(Debug)]
pub struct FastPath<S, G, W> {
    ways: Arc<Ways<S, G, W>>,
}

impl<S, G, W> Clone for FastPath<S, G, W> {
    fn clone(&self) -> Self {
        Self {
            ways: self.ways.clone(),
        }
    }
}

#[derive(Debug)]
struct Ways<S, G, W> {
    rest: S,
    grpc: G,
    web: W,
    services: Arc<[&'static str]>,
}

/// Which way a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Grpc,
    Web,
    Rest,
}

impl<S, G, W> Ways<S, G, W> {
    fn way(&self, request: &Request<Body>) -> Way {
        let forwarded = request
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|path| path.split_once('/'))
            .is_some_and(|(service, _)| self.services.contains(&service));
        if request.method() != Method::POST || !forwarded {
            return Way::Rest;
        }
        let headers = request.headers();
        let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
            return Way::Rest;
        };
        let content_type = content_type.as_bytes();
        if content_type.starts_with(b"application/grpc-web") {
            Way::Web
        } else if is_grpc(content_type)
            && request.version() == Version::HTTP_2
            && !headers.contains_key(header::ORIGIN)
        {
            Way::Grpc
        } else {
            Way::Rest
        }
    }
}

/// `application/grpc` and `application/grpc+<format>`, not gRPC-web.
fn is_grpc(content_type: &[u8]) -> bool {
    content_type
        .strip_prefix(b"application/grpc")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"+"))
}

impl<S, G, W, SBody, GBody, WBody> Service<Request<Body>> for FastPath<S, G, W>
where
    S: Service<Request<Body>, Response = Response<SBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    G: Service<Request<Body>, Response = Response<GBody>, Error = S::Error>
        + Clone
        + Send
        + 'static,
    G::Future: Send + 'static,
    W: Service<Request<Body>, Response = Response<WBody>, Error = S::Error>
        + Clone
        + Send
        + 'static,
    W::Future: Send + 'static,
    S::Error: Send + 'static,
    SBody: http_body::Body<Data = Bytes> + Send + 'static,
    SBody::Error: Into<BoxError>,
    GBody: http_body::Body<Data = Bytes> + Send + 'static,
    GBody::Error: Into<BoxError>,
    WBody: http_body::Body<Data = Bytes> + Send + 'static,
    WBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Answer<S::Error>;

    /// Always ready: each request readies the way it takes (see [`FastPath`]).
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let ways = &self.ways;
        match ways.way(&request) {
            Way::Grpc => ready_and_call(ways.grpc.clone(), request),
            Way::Web => ready_and_call(ways.web.clone(), request),
            Way::Rest => ready_and_call(ways.rest.clone(), request),
        }
    }
}

/// Waits for `service` to be ready, then calls it with `request`.
fn ready_and_call<T, TBody>(mut service: T, request: Request<Body>) -> Answer<T::Error>
where
    T: Service<Request<Body>, Response = Response<TBody>> + Send + 'static,
    T::Future: Send + 'static,
    T::Error: Send + 'static,
    TBody: http_body::Body<Data = Bytes> + Send + 'static,
    TBody::Error: Into<BoxError>,
{
    Box::pin(async move {
        std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
        Ok(service.call(request).await?.map(Body::new))
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// Answers with a header naming itself.
    #[derive(Clone)]
    struct Named(&'static str);

    impl Service<Request<Body>> for Named {
        type Response = Response<Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<Body>) -> Self::Future {
            let mut response = Response::new(Body::empty());
            response
                .headers_mut()
                .insert("x-by", http::HeaderValue::from_static(self.0));
            std::future::ready(Ok(response))
        }
    }

    async fn taken_by(request: Request<Body>) -> &'static str {
        let mut service =
            FastPathLayer::new(Named("grpc"), Named("web"), ["todo.task.v1.TaskService"])
                .layer(Named("rest"));
        let response = service.call(request).await.unwrap();
        match response.headers()["x-by"].as_bytes() {
            b"grpc" => "grpc",
            b"web" => "web",
            _ => "rest",
        }
    }

    fn call(path: &str, content_type: &'static str) -> http::request::Builder {
        Request::post(path)
            .version(Version::HTTP_2)
            .header(header::CONTENT_TYPE, content_type)
    }

    #[tokio::test]
    async fn calls_to_forwarded_services_take_the_short_way_of_their_protocol() {
        let get = "/todo.task.v1.TaskService/GetTask";
        let expected = [
            (call(get, "application/grpc").body(Body::empty()), "grpc"),
            (
                call(get, "application/grpc+proto").body(Body::empty()),
                "grpc",
            ),
            // gRPC-web over either version, with or without an origin (its way checks it).
            (call(get, "application/grpc-web").body(Body::empty()), "web"),
            (
                call(get, "application/grpc-web+proto")
                    .version(Version::HTTP_11)
                    .header(header::ORIGIN, "https://todo.example.com")
                    .body(Body::empty()),
                "web",
            ),
            (
                call(get, "application/grpc-web-text")
                    .version(Version::HTTP_11)
                    .body(Body::empty()),
                "web",
            ),
            // Plain gRPC with an origin to check: the long way, through the browser layers.
            (
                call(get, "application/grpc")
                    .header(header::ORIGIN, "https://todo.example.com")
                    .body(Body::empty()),
                "rest",
            ),
            // HTTP/1.1 is never plain gRPC.
            (
                call(get, "application/grpc")
                    .version(Version::HTTP_11)
                    .body(Body::empty()),
                "rest",
            ),
            // CORS preflights, the gateway's own services, and anything that is not a call.
            (
                Request::options(get)
                    .version(Version::HTTP_11)
                    .header(header::ORIGIN, "https://todo.example.com")
                    .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
                    .body(Body::empty()),
                "rest",
            ),
            (
                call("/grpc.health.v1.Health/Check", "application/grpc").body(Body::empty()),
                "rest",
            ),
            (
                call("/grpc.health.v1.Health/Check", "application/grpc-web").body(Body::empty()),
                "rest",
            ),
            (
                call("/todo.task.v1.TaskServiceX/GetTask", "application/grpc").body(Body::empty()),
                "rest",
            ),
            (
                call("/todo.task.v1.TaskService", "application/grpc").body(Body::empty()),
                "rest",
            ),
            (call(get, "application/grpcx").body(Body::empty()), "rest"),
            (call(get, "text/plain").body(Body::empty()), "rest"),
            (
                Request::post(get)
                    .version(Version::HTTP_2)
                    .body(Body::empty()),
                "rest",
            ),
            (
                Request::get("/docs")
                    .version(Version::HTTP_2)
                    .body(Body::empty()),
                "rest",
            ),
        ];
        for (request, way) in expected {
            let request = request.unwrap();
            let seen = format!(
                "{} {} {:?} {:?}",
                request.method(),
                request.uri(),
                request.version(),
                request.headers()
            );
            assert_eq!(taken_by(request).await, way, "{seen}");
        }
    }
}
