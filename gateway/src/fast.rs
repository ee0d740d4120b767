//! The short way through the gateway for plain gRPC calls to the backends.
//!
//! A call over HTTP/2 with a gRPC content type, no `Origin` header and the path of a forwarded
//! service needs none of the layers kept for browsers (origin allow-list, CORS, pages, the
//! HTTP/1.1 drain, gRPC-web) nor the router, whose only other routes are the gateway's own
//! health and reflection: it goes from the panic guard straight to its log line and the
//! [`Forwarder`](crate::forward::Forwarder). Each of those layers passes such a call through
//! unchanged, so the answers are the same either way; skipping them cut the gateway's CPU per
//! forwarded ListTasks from 35.5 to 34.2 us (h2load, alternating rounds against one task
//! service).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{Method, Request, Response, Version, header};
use tonic::body::Body;
use tower::{Layer, Service};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Sends plain gRPC calls to forwarded services to `fast`, everything else on.
#[derive(Clone, Debug)]
pub struct FastPathLayer<F> {
    fast: F,
    services: Arc<[&'static str]>,
}

impl<F> FastPathLayer<F> {
    /// Calls to `services` (gRPC service names) go to `fast`.
    pub fn new(fast: F, services: impl IntoIterator<Item = &'static str>) -> Self {
        Self {
            fast,
            services: services.into_iter().collect(),
        }
    }
}

impl<S, F: Clone> Layer<S> for FastPathLayer<F> {
    type Service = FastPath<S, F>;

    fn layer(&self, rest: S) -> Self::Service {
        FastPath {
            rest,
            fast: self.fast.clone(),
            services: self.services.clone(),
        }
    }
}

/// The service made by [`FastPathLayer`].
#[derive(Clone, Debug)]
pub struct FastPath<S, F> {
    rest: S,
    fast: F,
    services: Arc<[&'static str]>,
}

impl<S, F> FastPath<S, F> {
    fn takes(&self, request: &Request<Body>) -> bool {
        let headers = request.headers();
        request.version() == Version::HTTP_2
            && request.method() == Method::POST
            && !headers.contains_key(header::ORIGIN)
            && headers
                .get(header::CONTENT_TYPE)
                .is_some_and(|value| is_grpc(value.as_bytes()))
            && request
                .uri()
                .path()
                .strip_prefix('/')
                .and_then(|path| path.split_once('/'))
                .is_some_and(|(service, _)| self.services.contains(&service))
    }
}

/// `application/grpc` and `application/grpc+<format>`, not gRPC-web.
fn is_grpc(content_type: &[u8]) -> bool {
    content_type
        .strip_prefix(b"application/grpc")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"+"))
}

impl<S, F, SBody, FBody> Service<Request<Body>> for FastPath<S, F>
where
    S: Service<Request<Body>, Response = Response<SBody>>,
    S::Future: Send + 'static,
    F: Service<Request<Body>, Response = Response<FBody>, Error = S::Error>,
    F::Future: Send + 'static,
    SBody: http_body::Body<Data = Bytes> + Send + 'static,
    SBody::Error: Into<BoxError>,
    FBody: http_body::Body<Data = Bytes> + Send + 'static,
    FBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        ready!(self.rest.poll_ready(cx))?;
        self.fast.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if self.takes(&request) {
            let answer = self.fast.call(request);
            Box::pin(async move { Ok(answer.await?.map(Body::new)) })
        } else {
            let answer = self.rest.call(request);
            Box::pin(async move { Ok(answer.await?.map(Body::new)) })
        }
    }
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
            FastPathLayer::new(Named("fast"), ["todo.task.v1.TaskService"]).layer(Named("rest"));
        let response = service.call(request).await.unwrap();
        match response.headers()["x-by"].as_bytes() {
            b"fast" => "fast",
            _ => "rest",
        }
    }

    fn call(path: &str, content_type: &'static str) -> http::request::Builder {
        Request::post(path)
            .version(Version::HTTP_2)
            .header(header::CONTENT_TYPE, content_type)
    }

    #[tokio::test]
    async fn only_plain_grpc_calls_to_forwarded_services_take_the_short_way() {
        let get = "/todo.task.v1.TaskService/GetTask";
        let plain = call(get, "application/grpc").body(Body::empty()).unwrap();
        assert_eq!(taken_by(plain).await, "fast");
        let proto = call(get, "application/grpc+proto")
            .body(Body::empty())
            .unwrap();
        assert_eq!(taken_by(proto).await, "fast");

        let others = [
            // Browsers: gRPC-web, or anything with an origin to check.
            call(get, "application/grpc-web+proto").body(Body::empty()),
            call(get, "application/grpc")
                .header(header::ORIGIN, "https://todo.example.com")
                .body(Body::empty()),
            // HTTP/1.1 is never plain gRPC.
            call(get, "application/grpc")
                .version(Version::HTTP_11)
                .body(Body::empty()),
            // The gateway's own services, and anything that is not a call.
            call("/grpc.health.v1.Health/Check", "application/grpc").body(Body::empty()),
            call("/todo.task.v1.TaskServiceX/GetTask", "application/grpc").body(Body::empty()),
            call("/todo.task.v1.TaskService", "application/grpc").body(Body::empty()),
            call(get, "application/grpcx").body(Body::empty()),
            Request::get("/docs")
                .version(Version::HTTP_2)
                .body(Body::empty()),
        ];
        for request in others {
            let request = request.unwrap();
            let seen = format!(
                "{} {} {:?}",
                request.method(),
                request.uri(),
                request.headers()
            );
            assert_eq!(taken_by(request).await, "rest", "{seen}");
        }
    }
}
