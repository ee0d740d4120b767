//! Browser origins: calls from pages of a configured origin, or of the gateway's own origin,
//! are allowed (CORS, preflights included); a request naming any other origin is refused with
//! HTTP 403 before anything else happens. Requests without an `Origin` (grpcurl, services) are
//! not browser calls and pass.

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{
    HeaderName, HeaderValue, Method, Request, Response, StatusCode, header, request::Parts,
};
use tonic::body::Body;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, CorsLayer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The origins allowed to call.
#[derive(Clone, Debug)]
pub struct Origins {
    allowed: Arc<HashSet<String>>,
}

impl Origins {
    /// The configured origins (`scheme://host[:port]`), besides the gateway's own.
    pub fn new(allowed: &[String]) -> Self {
        Self {
            allowed: Arc::new(
                allowed
                    .iter()
                    .map(|origin| origin.trim().trim_end_matches('/').to_owned())
                    .filter(|origin| !origin.is_empty())
                    .collect(),
            ),
        }
    }

    /// Whether `origin` may call a request with these `parts`.
    pub fn allows(&self, origin: &HeaderValue, parts_host: Option<&str>) -> bool {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        if self.allowed.contains(origin) {
            return true;
        }
        // The gateway's own pages.
        parts_host.is_some_and(|host| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(host)
        })
    }

    /// CORS for allowed origins: the headers gRPC-web and Connect clients send, and the status
    /// headers they must read.
    pub fn cors(&self) -> CorsLayer {
        let origins = self.clone();
        CorsLayer::new()
            .allow_origin(AllowOrigin::predicate(
                move |origin: &HeaderValue, parts: &Parts| origins.allows(origin, host(parts)),
            ))
            .allow_methods([Method::POST, Method::GET, Method::OPTIONS])
            // Listed, not `*`: a wildcard does not cover `authorization` (Fetch standard).
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-grpc-web"),
                HeaderName::from_static("x-user-agent"),
                HeaderName::from_static("grpc-timeout"),
                HeaderName::from_static("connect-protocol-version"),
                HeaderName::from_static("connect-timeout-ms"),
            ])
            .expose_headers([
                HeaderName::from_static("grpc-status"),
                HeaderName::from_static("grpc-message"),
                HeaderName::from_static("grpc-status-details-bin"),
            ])
            .max_age(Duration::from_secs(3600))
    }
}

/// The host a request was sent to.
fn host(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(http::uri::Authority::as_str))
}

/// Refuses requests from origins that are not allowed.
#[derive(Clone, Debug)]
pub struct OriginGuardLayer {
    origins: Origins,
}

impl OriginGuardLayer {
    /// A guard for `origins`.
    pub fn new(origins: Origins) -> Self {
        Self { origins }
    }
}

impl<S> Layer<S> for OriginGuardLayer {
    type Service = OriginGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OriginGuard {
            inner,
            origins: self.origins.clone(),
        }
    }
}

/// The service made by [`OriginGuardLayer`].
#[derive(Clone, Debug)]
pub struct OriginGuard<S> {
    inner: S,
    origins: Origins,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for OriginGuard<S>
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
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| request.uri().authority().map(http::uri::Authority::as_str));
            if !self.origins.allows(origin, host) {
                tracing::info!(origin = ?origin, "refused a call from an origin not allowed");
                let mut refused = Response::new(Body::empty());
                *refused.status_mut() = StatusCode::FORBIDDEN;
                return Box::pin(async move { Ok(refused) });
            }
        }
        let response = self.inner.call(request);
        Box::pin(async move { Ok(response.await?.map(Body::new)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_and_own_origins_are_allowed_others_not() {
        let origins = Origins::new(&["https://todo.example.com/".to_owned()]);
        let value = |s: &'static str| HeaderValue::from_static(s);
        assert!(origins.allows(&value("https://todo.example.com"), Some("gw:8080")));
        assert!(origins.allows(&value("http://gw:8080"), Some("gw:8080")));
        assert!(!origins.allows(&value("https://evil.example"), Some("gw:8080")));
        assert!(!origins.allows(&value("http://gw:8081"), Some("gw:8080")));
        assert!(!origins.allows(&value("null"), None));
    }
}
