//! The task service: `todo.task.v1.TaskService`, owner of every user's tasks in its own
//! database.
//!
//! # Layout
//! - [`config`]: flags and environment variables (`--task-…`, `TASK_…`).
//! - [`service`]: the gRPC implementation.
//! - `migrations/{sqlite,postgres}`: the tasks schema, embedded and applied at start.
//!
//! [`run`] is what the binary and the tests call: it opens the tasks database, applies its
//! migrations and serves until the shutdown signal, then drains.

pub mod config;
pub mod service;

use todo_common::{
    CommonArgs, Database, EmbeddedMigration, GrpcServer, Migrations, RunError, Shutdown,
};
use todo_proto::task::v1::task_service_server::TaskServiceServer;
use tokio::net::TcpListener;

pub use config::Config;

/// The tasks schema, per back-end.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[EmbeddedMigration {
        version: 1,
        description: "tasks",
        sql: include_str!("../migrations/sqlite/0001_tasks.sql"),
    }],
    postgres: &[EmbeddedMigration {
        version: 1,
        description: "tasks",
        sql: include_str!("../migrations/postgres/0001_tasks.sql"),
    }],
};

/// Runs the task service on `listener` until `shutdown` fires.
pub async fn run(
    common: &CommonArgs,
    config: &Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    let url = config.database_url(common);
    let db = Database::connect(&url, &MIGRATIONS).await?;
    tracing::info!(database = %url, "tasks database ready");

    let result = GrpcServer::new(
        "task-service",
        common.request_timeout,
        common.shutdown_grace_period,
    )
    .add_service(TaskServiceServer::new(service::TaskApi::default()))
    .watch_database(db.clone())
    .serve(listener, shutdown)
    .await;
    db.close().await;
    Ok(result?)
}
