//! Databases for tests: a fresh SQLite file, or a fresh PostgreSQL database when
//! `TEST_POSTGRES_URL` names a server where test databases may be created.
//!
//! [`backends`] always yields SQLite and adds PostgreSQL when `TEST_POSTGRES_URL` is set (CI
//! sets it). When it is set but the server cannot be reached, [`TestDatabase::create`] panics:
//! a PostgreSQL test never passes by skipping.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use sqlx::{Connection, PgConnection};

use crate::{Database, DatabaseUrl, Migrations};

/// A database engine the tests run against.
#[derive(Clone, Debug)]
pub enum Backend {
    /// Embedded SQLite files.
    Sqlite,
    /// PostgreSQL: the URL of a database on the server where test databases may be created.
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

/// SQLite always, PostgreSQL too when `TEST_POSTGRES_URL` is set.
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

/// Runs `test` once per back-end, each time on a fresh database migrated with `migrations`,
/// removed afterwards.
pub async fn on_every_backend<F, Fut>(migrations: &Migrations, test: F)
where
    F: Fn(Database) -> Fut,
    Fut: Future<Output = ()>,
{
    for backend in backends() {
        eprintln!("-- backend: {}", backend.name());
        let database = TestDatabase::create(&backend).await;
        let db = database.connect(migrations).await;
        test(db.clone()).await;
        db.close().await;
        database.remove().await;
    }
}

/// A fresh, empty database, removed by [`TestDatabase::remove`].
#[derive(Debug)]
pub struct TestDatabase {
    /// Where it is.
    pub url: DatabaseUrl,
    admin_url: Option<String>,
    dir: PathBuf,
}

impl TestDatabase {
    /// Makes an empty database on `backend`.
    pub async fn create(backend: &Backend) -> Self {
        let dir = std::env::temp_dir().join(unique_name("todo-test"));
        match backend {
            Backend::Sqlite => Self {
                url: DatabaseUrl::sqlite_in(&dir, "test.db"),
                admin_url: None,
                dir,
            },
            Backend::Postgres(admin_url) => {
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
                    None => (admin_url.as_str(), String::new()),
                };
                let server = base.rsplit_once('/').map_or(base, |(server, _db)| server);
                let url = format!("{server}/{name}{query}")
                    .parse()
                    .expect("valid URL");
                Self {
                    url,
                    admin_url: Some(admin_url.clone()),
                    dir,
                }
            }
        }
    }

    /// Opens it and applies `migrations`.
    pub async fn connect(&self, migrations: &Migrations) -> Database {
        Database::connect(&self.url, migrations)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }

    /// Drops it (PostgreSQL) and removes its directory.
    pub async fn remove(self) {
        if let Some(admin_url) = &self.admin_url {
            let name = self
                .url
                .expose()
                .split('?')
                .next()
                .and_then(|u| u.rsplit('/').next())
                .expect("database name")
                .to_owned();
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
