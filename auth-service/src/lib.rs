//! The auth service: `todo.auth.v1.AuthService`, owner of accounts, passwords and tokens.
//!
//! # Layout
//! - [`config`]: flags and environment variables (`--auth-…`, `AUTH_…`).
//! - [`service`]: the gRPC implementation; [`error`]: its errors and their statuses.
//! - [`validate`]: email and display-name rules; [`password`]: password rules and Argon2id
//!   hashing on a bounded blocking pool; [`throttle`]: failed-login delays.
//! - [`keys`]: Ed25519 signing keys (persisted, rotated, published); [`store`]: the users
//!   database behind a trait, on SQLite or PostgreSQL.
//! - `migrations/{sqlite,postgres}`: the schema, embedded and applied at start.
//!
//! # Request flow
//! `SignUp`/`Login` validate, hash or verify the password off the async workers, then sign an
//! access token with the active key and store a new refresh-token family. `Refresh` spends a
//! refresh token and adds its successor to the family in one transaction. `VerifyToken`,
//! `GetCurrentUser` and `ChangePassword` verify access tokens against the published keys.
//!
//! [`run`] is what the binary and the tests call.

pub mod config;
pub mod error;
pub mod keys;
pub mod password;
pub mod service;
pub mod store;
pub mod throttle;
pub mod validate;

use std::{sync::Arc, time::Duration};

use todo_common::{
    CommonArgs, Database, EmbeddedMigration, GrpcServer, Migrations, RunError, Shutdown,
    time::now_micros,
};
use todo_proto::auth::v1::auth_service_server::AuthServiceServer;
use tokio::net::TcpListener;

pub use config::Config;

use crate::{
    keys::{KeyPolicy, Keys},
    password::PasswordHasher,
    service::{AuthApi, Lifetimes},
    store::{SqlUserStore, UserStore},
    throttle::ThrottlePolicy,
};

/// The users schema, per back-end.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        EmbeddedMigration {
            version: 1,
            description: "users",
            sql: include_str!("../migrations/sqlite/0001_users.sql"),
        },
        EmbeddedMigration {
            version: 2,
            description: "sessions keys throttle",
            sql: include_str!("../migrations/sqlite/0002_sessions_keys_throttle.sql"),
        },
    ],
    postgres: &[
        EmbeddedMigration {
            version: 1,
            description: "users",
            sql: include_str!("../migrations/postgres/0001_users.sql"),
        },
        EmbeddedMigration {
            version: 2,
            description: "sessions keys throttle",
            sql: include_str!("../migrations/postgres/0002_sessions_keys_throttle.sql"),
        },
    ],
};

/// How often expired refresh tokens and stale failure records are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// The key policy of a configuration.
pub fn key_policy(common: &CommonArgs, config: &Config) -> KeyPolicy {
    KeyPolicy {
        access_token_ttl: config.access_token_ttl,
        reload_interval: config.key_reload_interval,
        max_key_age: config.signing_key_max_age,
        issuer: common.token_issuer.clone(),
        audience: common.token_audience.clone(),
    }
}

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
    let store = Arc::new(SqlUserStore::new(db.clone()));

    let keys = Keys::load(store.clone(), key_policy(common, config))
        .await
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let keys = Arc::new(keys);
    let concurrency = config.hash_concurrency.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    let hasher = PasswordHasher::new(
        config.hash_cost(),
        concurrency,
        usize::from(config.hash_queue),
    )
    .map_err(RunError::Setup)?;
    let throttle = ThrottlePolicy {
        free_failures: config.login_free_attempts,
        base_delay: config.login_base_delay,
        max_delay: config.login_max_delay,
        window: Duration::from_secs(15 * 60).max(config.login_max_delay * 4),
    };
    let api = AuthApi::new(
        store.clone(),
        keys.clone(),
        hasher,
        throttle,
        Lifetimes {
            access_token: config.access_token_ttl,
            refresh_token: config.refresh_token_ttl,
        },
        common.token_issuer.clone(),
        common.token_audience.clone(),
    );

    let maintenance = tokio::spawn(maintain(
        store,
        keys,
        config.key_reload_interval,
        throttle,
        shutdown.clone(),
    ));
    let result = GrpcServer::new(
        "auth-service",
        common.request_timeout,
        common.shutdown_grace_period,
    )
    .add_service(AuthServiceServer::new(api))
    .watch_database(db.clone())
    .serve(listener, shutdown)
    .await;
    maintenance.abort();
    db.close().await;
    Ok(result?)
}

/// Background upkeep until shutdown: re-reads the signing keys every `reload_interval`
/// (picking up rotations, rotating when the active key is too old), and prunes expired
/// sessions and stale failure records every hour.
async fn maintain<S: UserStore>(
    store: Arc<S>,
    keys: Arc<Keys<S>>,
    reload_interval: Duration,
    throttle: ThrottlePolicy,
    shutdown: Shutdown,
) {
    let mut reload = tokio::time::interval(reload_interval);
    let mut prune = tokio::time::interval(PRUNE_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = reload.tick() => {
                if let Err(error) = keys.reload().await {
                    tracing::warn!(%error, "cannot reload signing keys");
                }
            }
            _ = prune.tick() => {
                let now = now_micros();
                match store.prune(now, throttle.forget_before(now)).await {
                    Ok(0) => {}
                    Ok(rows) => tracing::info!(rows, "pruned expired sessions and failure records"),
                    Err(error) => tracing::warn!(%error, "cannot prune"),
                }
            }
        }
    }
}
