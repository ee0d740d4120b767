//! The gateway: the public front door of the backend.
//!
//! This version serves its own health (`grpc.health.v1`) and reflection (v1 and v1alpha) on
//! the public address and answers every other path with `UNIMPLEMENTED`. Forwarding gRPC and
//! gRPC-web calls to the auth and task services is the next step (see DESIGN.md, section 7).
//!
//! # Layout
//! - [`config`]: flags and environment variables (`--gateway-…`, `GATEWAY_…`).

pub mod config;

use todo_common::{CommonArgs, GrpcServer, RunError, Shutdown};
use tokio::net::TcpListener;

pub use config::Config;

/// Runs the gateway on `listener` until `shutdown` fires.
pub async fn run(
    common: &CommonArgs,
    _config: &Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    GrpcServer::new(
        "gateway",
        common.request_timeout,
        common.shutdown_grace_period,
    )
    .serve(listener, shutdown)
    .await?;
    Ok(())
}
