//! The task service: `todo.task.v1.TaskService`, owner of every user's tasks in its own
//! database.
//!
//! # Layout
//! - [`config`]: flags and environment variables (`--task-…`, `TASK_…`).
//! - [`auth`]: bearer tokens verified locally with the auth service's cached public keys.
//! - [`service`]: the gRPC implementation; [`error`]: its errors and their statuses.
//! - [`names`], [`validate`], [`query`]: resource names, field rules, filters, orders and page
//!   tokens.
//! - [`store`]: the tasks database behind a trait, on SQLite or PostgreSQL.
//! - [`feed`]: committed changes fanned out to `WatchTasks` streams (in process on SQLite,
//!   through `LISTEN/NOTIFY` across instances on PostgreSQL).
//! - `migrations/{sqlite,postgres}`: the schema, embedded and applied at start.
//!
//! # Request flow
//! `AuthLayer` (token → `Caller`) → handler (names resolved against the caller; another user's
//! is `PERMISSION_DENIED` before any lookup) → store (every statement filters on the owner) →
//! feed (after commit).

pub mod auth;
pub mod config;
pub mod error;
pub mod feed;
pub mod names;
pub mod query;
pub mod service;
pub mod store;
pub mod validate;

use std::{sync::Arc, time::Duration};

use todo_common::{
    CommonArgs, Database, EmbeddedMigration, GrpcServer, Migrations, RunError, Shutdown,
    time::{micros, now_micros},
};
use todo_proto::task::v1::task_service_server::TaskServiceServer;
use tokio::net::TcpListener;
use tonic::transport::Endpoint;
use tower::Layer;

pub use config::Config;

use crate::{
    auth::{AuthKeys, AuthLayer},
    feed::Feed,
    service::TaskApi,
    store::{SqlTaskStore, TaskStore},
};

/// The tasks schema, per back-end.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        EmbeddedMigration {
            version: 1,
            description: "tasks",
            sql: include_str!("../migrations/sqlite/0001_tasks.sql"),
        },
        EmbeddedMigration {
            version: 2,
            description: "listing counts requests",
            sql: include_str!("../migrations/sqlite/0002_listing_counts_requests.sql"),
        },
        EmbeddedMigration {
            version: 3,
            description: "count triggers",
            sql: include_str!("../migrations/sqlite/0003_count_triggers.sql"),
        },
    ],
    postgres: &[
        EmbeddedMigration {
            version: 1,
            description: "tasks",
            sql: include_str!("../migrations/postgres/0001_tasks.sql"),
        },
        EmbeddedMigration {
            version: 2,
            description: "listing counts requests events",
            sql: include_str!("../migrations/postgres/0002_listing_counts_requests.sql"),
        },
        EmbeddedMigration {
            version: 3,
            description: "count triggers",
            sql: include_str!("../migrations/postgres/0003_count_triggers.sql"),
        },
        EmbeddedMigration {
            version: 4,
            description: "events announced",
            sql: include_str!("../migrations/postgres/0004_events_announced.sql"),
        },
        EmbeddedMigration {
            version: 5,
            description: "ids by code point",
            sql: include_str!("../migrations/postgres/0005_ids_by_code_point.sql"),
        },
    ],
};

/// How long create request ids (and recorded events) are kept.
pub const REQUEST_ID_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How often old request ids and events are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(600);
/// How long start-up waits for the change-feed listener before serving anyway.
const LISTENER_START_TIMEOUT: Duration = Duration::from_secs(10);

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
    let store = Arc::new(SqlTaskStore::new(db.clone()));

    let channel = Endpoint::from_shared(config.auth_url.clone())
        .map_err(|e| RunError::Setup(format!("auth service URL: {e}")))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let keys = Arc::new(AuthKeys::new(
        channel,
        &common.token_issuer,
        &common.token_audience,
    ));
    let background = vec![
        tokio::spawn(
            keys.clone()
                .maintain(config.keys_refresh_interval, shutdown.clone()),
        ),
        tokio::spawn(prune(store.clone(), shutdown.clone())),
    ];

    let buffer = usize::try_from(config.watch_buffer).unwrap_or(256);
    let feed = match &db {
        Database::Sqlite(_) => Arc::new(Feed::new(buffer, true)),
        Database::Postgres(pg) => {
            let feed = Arc::new(Feed::new(buffer, false));
            let (ready, listening) = tokio::sync::oneshot::channel();
            tokio::spawn(feed::listen_postgres(
                pg.pool_unchecked().clone(),
                store.clone(),
                feed.clone(),
                ready,
                shutdown.clone(),
            ));
            if tokio::time::timeout(LISTENER_START_TIMEOUT, listening)
                .await
                .is_err()
            {
                tracing::warn!("change-feed listener not ready; serving anyway");
            }
            feed
        }
    };

    let api = TaskApi::new(store, feed, shutdown.clone());
    let service = AuthLayer::new(keys).layer(TaskServiceServer::new(api));
    let result = GrpcServer::new(
        "task-service",
        common.request_timeout,
        common.shutdown_grace_period,
    )
    .add_service(service)
    .watch_database(db.clone())
    .serve(listener, shutdown)
    .await;
    for task in background {
        task.abort();
    }
    db.close().await;
    Ok(result?)
}

/// Deletes expired request ids and events every [`PRUNE_INTERVAL`] until shutdown.
async fn prune<S: TaskStore>(store: Arc<S>, shutdown: Shutdown) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(PRUNE_INTERVAL) => {}
            () = shutdown.wait() => return,
        }
        match store
            .prune(now_micros() - micros(REQUEST_ID_RETENTION))
            .await
        {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "pruned old request ids and events"),
            Err(error) => tracing::warn!(%error, "cannot prune"),
        }
    }
}
