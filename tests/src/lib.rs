//! Test harness for the black-box tests in `tests/tests/`: starts the real servers, each on a
//! port-0 listener bound before it starts (so no test sleeps or races for a port), against the
//! database back-ends under test.
//!
//! # Back-ends
//! [`backends`] always yields SQLite (files in a fresh temporary directory) and adds PostgreSQL
//! when `TEST_POSTGRES_URL` is set (CI sets it). Each stack gets fresh PostgreSQL databases of
//! its own, one per service, dropped when the stack stops. When `TEST_POSTGRES_URL` is set but
//! the server cannot be reached, the test fails: it never passes by skipping.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use sqlx::{Connection, PgConnection};
use todo_common::{CommonArgs, DatabaseUrl, RunError, Shutdown, config::LogFormat};
use tokio::{net::TcpListener, task::JoinHandle};
use tonic::transport::{Channel, Endpoint};

/// A database engine the tests run against.
#[derive(Clone, Debug)]
pub enum Backend {
    /// Embedded SQLite files.
    Sqlite,
    /// PostgreSQL; the URL of a database on the server where test databases may be created.
    Postgres(String),
}

impl Backend {
    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// The back-ends every storage-touching test runs against: SQLite always, PostgreSQL when
/// `TEST_POSTGRES_URL` is set.
pub fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Sqlite];
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => backends.push(Backend::Postgres(url)),
        _ => eprintln!("TEST_POSTGRES_URL is not set: running on SQLite only"),
    }
    backends
}

static UNIQUE: AtomicU32 = AtomicU32::new(0);

/// A name no other test of any process uses at the same time.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates an empty PostgreSQL database next to `admin_url` and returns its URL. Panics when
/// the server cannot be reached: CI asked for PostgreSQL, so it must be there.
pub async fn create_postgres_database(admin_url: &str) -> String {
    let name = unique_name("todo_test");
    let mut admin = PgConnection::connect(admin_url).await.unwrap_or_else(|e| {
        panic!("TEST_POSTGRES_URL is set but PostgreSQL cannot be reached: {e}")
    });
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    admin.close().await.ok();
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let server = base.rsplit_once('/').map_or(base, |(server, _db)| server);
    format!("{server}/{name}{query}")
}

/// Drops a database made by [`create_postgres_database`].
pub async fn drop_postgres_database(admin_url: &str, database_url: &str) {
    let name = database_url
        .split('?')
        .next()
        .and_then(|u| u.rsplit('/').next())
        .expect("database name");
    let mut admin = PgConnection::connect(admin_url)
        .await
        .expect("reach PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .expect("drop a test database");
    admin.close().await.ok();
}

/// Where a stack keeps its data.
#[derive(Debug)]
struct Storage {
    data_dir: PathBuf,
    auth_url: Option<DatabaseUrl>,
    task_url: Option<DatabaseUrl>,
    admin_url: Option<String>,
}

impl Storage {
    async fn new(backend: &Backend) -> Self {
        let data_dir = std::env::temp_dir().join(unique_name("todo-test"));
        match backend {
            Backend::Sqlite => Self {
                data_dir,
                auth_url: None,
                task_url: None,
                admin_url: None,
            },
            Backend::Postgres(admin_url) => {
                let parse = |url: String| url.parse::<DatabaseUrl>().expect("valid URL");
                Self {
                    data_dir,
                    auth_url: Some(parse(create_postgres_database(admin_url).await)),
                    task_url: Some(parse(create_postgres_database(admin_url).await)),
                    admin_url: Some(admin_url.clone()),
                }
            }
        }
    }

    async fn remove(self) {
        if let Some(admin_url) = &self.admin_url {
            for url in [&self.auth_url, &self.task_url].into_iter().flatten() {
                drop_postgres_database(admin_url, url.expose()).await;
            }
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The three servers, running in this process on loopback port-0 listeners.
#[derive(Debug)]
pub struct Stack {
    /// The auth service's address.
    pub auth: SocketAddr,
    /// The task service's address.
    pub task: SocketAddr,
    /// The gateway's address.
    pub gateway: SocketAddr,
    shutdown: Shutdown,
    servers: Vec<(&'static str, JoinHandle<Result<(), RunError>>)>,
    storage: Storage,
}

/// Settings the tests use: short grace period, the usual request timeout.
pub fn test_common_args(data_dir: PathBuf) -> CommonArgs {
    CommonArgs {
        data_dir,
        log_format: LogFormat::Text,
        shutdown_grace_period: Duration::from_secs(5),
        request_timeout: Duration::from_secs(30),
        token_issuer: todo_common::config::DEFAULT_TOKEN_ISSUER.to_owned(),
        token_audience: todo_common::config::DEFAULT_TOKEN_AUDIENCE.to_owned(),
    }
}

async fn loopback_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    (listener, addr)
}

impl Stack {
    /// Starts auth, task and gateway against `backend`. Returns once every listener is bound
    /// (connections queue until each server accepts them).
    pub async fn start(backend: &Backend) -> Self {
        let storage = Storage::new(backend).await;
        let common = test_common_args(storage.data_dir.clone());
        let shutdown = Shutdown::new();

        let (auth_listener, auth) = loopback_listener().await;
        let (task_listener, task) = loopback_listener().await;
        let (gateway_listener, gateway) = loopback_listener().await;

        let auth_config = auth_service::Config::new(auth, storage.auth_url.clone());
        let task_config = task_service::Config {
            listen_addr: task,
            database_url: storage.task_url.clone(),
        };
        let gateway_config = gateway::Config {
            listen_addr: gateway,
        };

        let servers = vec![
            ("auth-service", {
                let (common, shutdown) = (common.clone(), shutdown.clone());
                tokio::spawn(async move {
                    auth_service::run(&common, &auth_config, auth_listener, shutdown).await
                })
            }),
            ("task-service", {
                let (common, shutdown) = (common.clone(), shutdown.clone());
                tokio::spawn(async move {
                    task_service::run(&common, &task_config, task_listener, shutdown).await
                })
            }),
            ("gateway", {
                let (common, shutdown) = (common.clone(), shutdown.clone());
                tokio::spawn(async move {
                    gateway::run(&common, &gateway_config, gateway_listener, shutdown).await
                })
            }),
        ];

        Self {
            auth,
            task,
            gateway,
            shutdown,
            servers,
            storage,
        }
    }

    /// The auth service's database.
    pub fn auth_database(&self) -> DatabaseUrl {
        self.storage.auth_url.clone().unwrap_or_else(|| {
            DatabaseUrl::sqlite_in(
                &self.storage.data_dir,
                auth_service::config::DEFAULT_DATABASE_FILE,
            )
        })
    }

    /// The task service's database.
    pub fn task_database(&self) -> DatabaseUrl {
        self.storage.task_url.clone().unwrap_or_else(|| {
            DatabaseUrl::sqlite_in(
                &self.storage.data_dir,
                task_service::config::DEFAULT_DATABASE_FILE,
            )
        })
    }

    /// Signals shutdown without waiting, as SIGTERM would.
    pub fn begin_shutdown(&self) {
        self.shutdown.trigger();
    }

    /// Shuts every server down, checks each stopped cleanly, and removes the stack's data.
    pub async fn stop(self) {
        self.shutdown.trigger();
        for (name, server) in self.servers {
            let result = tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .unwrap_or_else(|_| panic!("{name} did not stop within 10 s"));
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("{name} failed: {e}"),
                Err(e) => panic!("{name} panicked: {e}"),
            }
        }
        self.storage.remove().await;
    }
}

/// A channel to `addr` (gRPC over HTTP/2 cleartext).
pub async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid URI")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}
