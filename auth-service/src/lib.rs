//! The auth service: `todo.auth.v1.AuthService`, owner of accounts, passwords and tokens.
//!
//! # Layout
//! - [`config`]: flags and environment variables (`--auth-…`, `AUTH_…`).
//! - [`service`]: the gRPC implementation.
//! - `migrations/{sqlite,postgres}`: the users schema, embedded and applied at start.
//!
//! [`run`] is what the binary and the tests call: it opens the users database, applies its
//! migrations and serves until the shutdown signal, then drains.

pub mod config;
pub mod service;

use todo_common::{
    CommonArgs, Database, EmbeddedMigration, GrpcServer, Migrations, RunError, Shutdown,
};
use todo_proto::auth::v1::auth_service_server::AuthServiceServer;
use tokio::net::TcpListener;

pub use config::Config;

/// The users schema, per back-end.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[EmbeddedMigration {
        version: 1,
        description: "users",
        sql: include_str!("../migrations/sqlite/0001_users.sql"),
    }],
    postgres: &[EmbeddedMigration {
        version: 1,
        description: "users",
        sql: include_str!("../migrations/postgres/0001_users.sql"),
    }],
};

/// Runs the auth service on `listener` until `shutdown` fires.
pub async fn run(
    common: &CommonArgs,
    config: &Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    let url = config.database_url(common);
    let db = Database::connect(&url, &MIGRATIONS).await?;
    tracing::info!(database = %url, "users database ready");

    let result = GrpcServer::new(
        "auth-service",
        common.request_timeout,
        common.shutdown_grace_period,
    )
    .add_service(AuthServiceServer::new(service::AuthApi::default()))
    .watch_database(db.clone())
    .serve(listener, shutdown)
    .await;
    db.close().await;
    Ok(result?)
}
