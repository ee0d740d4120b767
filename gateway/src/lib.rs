//! The gateway: the one public address of the backend, for gRPC clients (HTTP/2) and browsers
//! (gRPC-web, HTTP/1.1 or HTTP/2, with CORS).
//!
//! # Layout
//! - [`config`]: flags and environment variables (`--gateway-…`, `GATEWAY_…`).
//! - [`connection`]: the HTTP/2 connections to the backends.
//! - [`forward`]: generic forwarding by service path, load balancing and the limits.
//! - [`body`]: request and response body adapters.
//! - [`drain`]: the rest of a refused HTTP/1.1 request is read before the answer.
//! - [`fast`]: the short way for plain gRPC calls to the backends.
//! - [`health`]: per-service health that follows the backends.
//! - [`origin`]: the origin allow-list and CORS.
//! - [`pages`]: `GET /docs`, the API reference.
//!
//! # Request flow (outermost first)
//! panic guard, then one of three ways ([`fast`]):
//! - plain gRPC calls to the backends (HTTP/2, gRPC content type, no `Origin`): one log line
//!   per call → [`forward::Forwarder`];
//! - gRPC-web calls to the backends: origin allow-list (403 for other origins) → CORS → the
//!   rest of refused HTTP/1.1 bodies read → gRPC-web translated to gRPC → one log line per
//!   call → [`forward::Forwarder`];
//! - everything else: origin allow-list → CORS (preflights answered) → pages (`GET /docs`) →
//!   the rest of refused HTTP/1.1 bodies read → gRPC-web translated to gRPC → one log line per
//!   call → routes: the gateway's own health and reflection (both services' descriptors), and
//!   for everything else the [`forward::Forwarder`].

pub mod body;
pub mod config;
pub mod connection;
pub mod drain;
pub mod fast;
pub mod forward;
pub mod health;
pub mod origin;
pub mod pages;

use std::sync::Arc;

use todo_common::{
    CommonArgs, GrpcServer, RunError, Shutdown, rpc_log::RpcLogLayer, server::panic_response,
};
use todo_proto::service_names::{AUTH, TASK};
use tokio::net::TcpListener;
use tonic::{service::Routes, transport::Server};
use tower::{Layer, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;

pub use config::Config;

use crate::forward::{Backend, Forwarder, Limits};

/// Runs the gateway on `listener` until `shutdown` fires.
pub async fn run(
    common: &CommonArgs,
    config: &Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    let backends = vec![
        Arc::new(
            Backend::new(AUTH, &config.auth_backends, config.connect_timeout)
                .map_err(RunError::Setup)?,
        ),
        Arc::new(
            Backend::new(TASK, &config.task_backends, config.connect_timeout)
                .map_err(RunError::Setup)?,
        ),
    ];
    let limits = Limits::new(
        config.max_message_bytes,
        config.default_deadline,
        common.request_timeout,
        config.max_concurrent_calls,
        config.auth_calls_per_minute,
    );
    let forwarded: Vec<&'static str> = backends.iter().map(|backend| backend.service).collect();
    let forwarder = Forwarder::new(backends.clone(), limits);
    let housekeeping = tokio::spawn({
        let (forwarder, shutdown) = (forwarder.clone(), shutdown.clone());
        async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(60)) => forwarder.forget_quiet_clients(),
                    () = shutdown.wait() => return,
                }
            }
        }
    });

    let assembled = GrpcServer::new(
        "gateway",
        common.request_timeout,
        common.shutdown_grace_period,
    )
    .advertise(AUTH)
    .advertise(TASK)
    .assemble(&shutdown)
    .await?;
    let health_watch = tokio::spawn(health::watch_backends(
        backends,
        assembled.health.clone(),
        config.health_interval,
        shutdown.clone(),
    ));

    let router = assembled
        .routes
        .clone()
        .into_axum_router()
        .fallback_service(forwarder.clone());
    let origins = origin::Origins::new(&config.allowed_origins);
    // The layers of browser requests, in two parts: on the long way the pages layer sits
    // between them.
    let browsers = ServiceBuilder::new()
        .layer(origin::OriginGuardLayer::new(origins.clone()))
        .layer(origins.cors());
    // The log sits inside the gRPC-web translation, so that it reads the status of gRPC-web
    // calls too.
    let calls = ServiceBuilder::new()
        .layer(drain::DrainLayer::new(2 * config.max_message_bytes))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(RpcLogLayer::new("gateway"));
    let short_ways = fast::FastPathLayer::new(
        RpcLogLayer::new("gateway").layer(forwarder.clone()),
        browsers.clone().layer(calls.clone()).service(forwarder),
        forwarded,
    );
    // Layer order, outermost first, as in the crate documentation. No server timeout: the
    // forwarder bounds its wait for the backends by the request timeout itself, and the
    // gateway's own services answer at once.
    let server = Server::builder()
        .accept_http1(true)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(short_ways)
        .layer(browsers)
        .layer(pages::PagesLayer)
        .layer(calls)
        .add_routes(Routes::from(router));
    let result = assembled
        .serve_with(listener, shutdown, |incoming, drained| {
            server.serve_with_incoming_shutdown(incoming, drained)
        })
        .await;
    health_watch.abort();
    housekeeping.abort();
    Ok(result?)
}
