//! Databases: an embedded SQLite file (the default) or PostgreSQL, chosen by URL, with the
//! service's migrations embedded in its binary and applied at start.
//!
//! Each service owns its database; services never share one. Stores hold the concrete pool of
//! their back-end ([`Database::Sqlite`] or [`Database::Postgres`]) and run plain runtime
//! queries, so each back-end keeps its own SQL dialect.

use std::{
    fmt,
    path::Path,
    str::FromStr,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::Semaphore;

pub use crate::sqlite::{SqliteReader, SqliteWriter, WriteError, is_sqlite_unavailable};

use sqlx::{
    PgConnection, PgPool, SqlSafeStr, SqlitePool,
    migrate::{Migration, MigrationType, Migrator},
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

/// How long a query waits for a free pooled connection before failing as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long SQLite waits on a lock held by another writer before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite reading connections: readers run in parallel under WAL (writers have one of their own).
const SQLITE_MAX_CONNECTIONS: u32 = 8;
/// PostgreSQL connections per service instance.
const POSTGRES_MAX_CONNECTIONS: u32 = 16;

/// A database URL: `sqlite://PATH` (the file is created if missing) or
/// `postgres://USER@HOST:PORT/DB`. Its `Display` and `Debug` never show a password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
    backend: Backend,
}

/// The database engine behind a [`DatabaseUrl`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL (or a PostgreSQL-compatible engine).
    Postgres,
}

impl DatabaseUrl {
    /// The SQLite database `file_name` inside `data_dir`.
    pub fn sqlite_in(data_dir: &Path, file_name: &str) -> Self {
        Self {
            url: format!("sqlite://{}", data_dir.join(file_name).display()),
            backend: Backend::Sqlite,
        }
    }

    /// Which engine the URL names.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The full URL, password included. Never log it.
    pub fn expose(&self) -> &str {
        &self.url
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let backend = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url).map_err(|e| format!("bad SQLite URL: {e}"))?;
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            PgConnectOptions::from_str(url).map_err(|e| format!("bad PostgreSQL URL: {e}"))?;
            Backend::Postgres
        } else {
            return Err("expected a sqlite:// or postgres:// URL".to_owned());
        };
        Ok(Self {
            url: url.to_owned(),
            backend,
        })
    }
}

impl fmt::Display for DatabaseUrl {
    /// Shows the engine and where it is, without credentials or query parameters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rest = self.url.split_once("://").map_or("", |(_, rest)| rest);
        let rest = rest.split('?').next().unwrap_or_default();
        match self.backend {
            Backend::Sqlite => write!(f, "sqlite://{rest}"),
            Backend::Postgres => {
                let host_and_db = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                write!(f, "postgres://{host_and_db}")
            }
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// One migration compiled into the binary.
#[derive(Clone, Copy, Debug)]
pub struct EmbeddedMigration {
    /// Applied in increasing order; never reuse or renumber one that has shipped.
    pub version: i64,
    /// A short description, stored in the migrations table.
    pub description: &'static str,
    /// The SQL, usually `include_str!` of a file under `migrations/`.
    pub sql: &'static str,
}

/// A service's migrations for each back-end.
#[derive(Clone, Copy, Debug)]
pub struct Migrations {
    /// SQLite dialect.
    pub sqlite: &'static [EmbeddedMigration],
    /// PostgreSQL dialect.
    pub postgres: &'static [EmbeddedMigration],
}

fn migrator(migrations: &[EmbeddedMigration]) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|m| {
                Migration::new(
                    m.version,
                    m.description.into(),
                    MigrationType::Simple,
                    sqlx::AssertSqlSafe(m.sql).into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Runs the same sqlx code on whichever pool `$db` holds, for reads (see [`on_write_pool!`] for
/// writes).
///
/// Stores write their SQL once, in the dialect both engines share (`$1` parameters,
/// `RETURNING`, `ON CONFLICT`); the body is compiled once per back-end, so every query is type
/// checked against both. `$begin` is bound to the statement that opens a write transaction:
/// `BEGIN IMMEDIATE` on SQLite (take the write lock up front, so two read-then-write
/// transactions cannot deadlock upgrading their locks), plain `BEGIN` on PostgreSQL.
///
/// A third name, `|pool, begin, postgres|`, is bound to a `bool` that is true on PostgreSQL,
/// for the few statements only one engine has (`FOR UPDATE`, `pg_notify`).
///
/// ```ignore
/// on_pool!(&self.db, |pool, begin| sqlx::query("SELECT 1").execute(pool).await)
/// ```
#[macro_export]
macro_rules! on_pool {
    ($db:expr, |$pool:ident, $begin:ident| $body:expr) => {
        $crate::on_pool!($db, |$pool, $begin, _postgres| $body)
    };
    ($db:expr, |$pool:ident, $begin:ident, $postgres:ident| $body:expr) => {
        $crate::__on_pool!($db, read, |$pool, $begin, $postgres| $body)
    };
}

/// [`on_pool!`] for statements that write. On SQLite they go through the one connection of the
/// write pool: writers queue there, in order, instead of meeting SQLite's lock and sleeping in
/// its busy handler (which costs throughput and puts tens of milliseconds into the tail).
#[macro_export]
macro_rules! on_write_pool {
    ($db:expr, |$pool:ident, $begin:ident| $body:expr) => {
        $crate::on_write_pool!($db, |$pool, $begin, _postgres| $body)
    };
    ($db:expr, |$pool:ident, $begin:ident, $postgres:ident| $body:expr) => {
        $crate::__on_pool!($db, write, |$pool, $begin, $postgres| $body)
    };
}

/// The expansion of [`on_pool!`] and [`on_write_pool!`]: `$sqlite` names the SQLite pool.
#[doc(hidden)]
#[macro_export]
macro_rules! __on_pool {
    ($db:expr, $sqlite:ident, |$pool:ident, $begin:ident, $postgres:ident| $body:expr) => {
        match $db {
            $crate::db::Database::Sqlite(pools) => {
                let $pool = &pools.$sqlite;
                let $begin = "BEGIN IMMEDIATE";
                let $postgres = false;
                let _ = ($begin, $postgres);
                $body
            }
            $crate::db::Database::Postgres(pg) => {
                let $pool = pg.pool()?;
                let $begin = "BEGIN";
                let $postgres = true;
                let _ = ($begin, $postgres);
                $body
            }
        }
    };
}

/// SQLite's pools: many readers, one writer.
#[derive(Clone, Debug)]
pub struct SqlitePools {
    /// Readers run in parallel under WAL.
    pub read: SqlitePool,
    /// The one writing connection.
    pub write: SqlitePool,
    /// Reads on the caller's thread, for the hot paths.
    pub reader: SqliteReader,
    /// The writing thread, for the hot paths' writes.
    pub writer: SqliteWriter,
}

/// A connected, migrated database.
#[derive(Clone, Debug)]
pub enum Database {
    /// Embedded SQLite in WAL mode.
    Sqlite(SqlitePools),
    /// PostgreSQL.
    Postgres(Postgres),
}

/// A PostgreSQL pool behind an availability gate, with connections kept between statements.
///
/// A database server can go away (stopped, failed over, cut off). sqlx would then have every
/// query wait for a connection, retrying to connect until its acquire timeout, so every call
/// would hang until its deadline and the retries would storm the server as it comes back. A
/// probe (its own connection, a `SELECT 1` every [`PROBE_INTERVAL`]) watches the server
/// instead: while it cannot reach it, [`Postgres::pool`] and [`Postgres::run`] fail at once
/// with [`sqlx::Error::PoolTimedOut`] (which callers answer as `UNAVAILABLE`), and once it
/// can, the pool is used again.
///
/// sqlx's pool checks a connection with a round trip to the server (a `Sync`) both when it
/// hands it out and when it takes it back, so a query through the pool costs three round
/// trips where the query itself needs one; on a machine whose cores the server shares, each
/// is two wake-ups. [`Postgres::run`] runs at most [`KEPT_CONNECTIONS`] works at once (the
/// others wait their turn, as long as they would wait for the pool) and keeps their
/// connections out of the pool between works, reusing them as they are: only a connection
/// whose work failed or was dropped half-way (the caller gave up) goes back to the pool to be
/// checked, and none kept from before an outage is used after it.
#[derive(Clone, Debug)]
pub struct Postgres {
    pool: PgPool,
    shared: Arc<Shared>,
}

/// What the probe and the callers of one [`Postgres`] share.
struct Shared {
    /// Whether the probe last reached the server.
    up: AtomicBool,
    /// How many times the probe has found the server gone.
    outages: AtomicU64,
    /// One per work running: never more connections out than can be kept, so that a work
    /// waiting for its turn always finds a kept connection (or room to take one) when it
    /// comes.
    turns: Semaphore,
    /// Connections that finished their last work cleanly, with the outage count they were
    /// taken out under.
    kept: std::sync::Mutex<Vec<(PoolConnection<sqlx::Postgres>, u64)>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("up", &self.up)
            .field("outages", &self.outages)
            .finish_non_exhaustive()
    }
}

/// How often the probe checks the server, and how long it waits for it.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a query waits for a pooled PostgreSQL connection: a busy pool beyond this is
/// overloaded, and the caller is better told so (`UNAVAILABLE`) than kept waiting.
const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// Most works [`Postgres::run`] runs at once, each on a connection kept out of the pool: three
/// quarters of it, the rest for its other users (the change feed's listener, pruning).
pub const KEPT_CONNECTIONS: usize = POSTGRES_MAX_CONNECTIONS as usize * 3 / 4;

impl Postgres {
    /// The pool, unless the server is known to be unreachable.
    pub fn pool(&self) -> Result<&PgPool, sqlx::Error> {
        if self.shared.up.load(Ordering::Relaxed) {
            Ok(&self.pool)
        } else {
            Err(sqlx::Error::PoolTimedOut)
        }
    }

    /// The pool whatever the gate says, for the few callers that wait for the server
    /// themselves (the change-feed listener).
    pub fn pool_unchecked(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `work` on a connection, a kept one when there is one, unless the server is known
    /// to be unreachable. A transaction `work` begins must end in it: a connection is kept
    /// only when `work` succeeded.
    pub async fn run<T>(
        &self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let pool = self.pool()?;
        let _turn = tokio::time::timeout(POSTGRES_ACQUIRE_TIMEOUT, self.shared.turns.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let outages = self.shared.outages.load(Ordering::Relaxed);
        let mut connection = match self.take_kept(outages) {
            Some(connection) => connection,
            None => pool.acquire().await?,
        };
        // Dropped here (work failed, or this future was dropped half-way), the connection
        // goes back to the pool, which checks it or closes it.
        let done = work(&mut connection).await?;
        self.keep(connection, outages);
        Ok(done)
    }

    fn take_kept(&self, outages: u64) -> Option<PoolConnection<sqlx::Postgres>> {
        let mut kept = self.shared.kept.lock().unwrap_or_else(|e| e.into_inner());
        let (connection, taken_under) = kept.pop()?;
        if taken_under == outages {
            return Some(connection);
        }
        // Kept from before an outage, as every other one is: the pool checks them (a dropped
        // connection goes back to it from a task of its own, so this does not wait).
        kept.clear();
        None
    }

    /// Keeps `connection` for the next work: there is room, since only works holding a turn
    /// take connections out.
    fn keep(&self, connection: PoolConnection<sqlx::Postgres>, outages: u64) {
        let mut kept = self.shared.kept.lock().unwrap_or_else(|e| e.into_inner());
        // Closing shuts the turns before it empties `kept`: nothing is kept after that.
        if !self.shared.turns.is_closed() {
            kept.push((connection, outages));
        }
    }

    /// Gives the kept connections back and closes the pool, waiting for queries in progress.
    async fn close(&self) {
        self.shared.turns.close();
        self.shared
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.pool.close().await;
    }

    #[cfg(test)]
    fn kept_len(&self) -> usize {
        self.shared.kept.lock().unwrap().len()
    }

    fn new(pool: PgPool, options: PgConnectOptions) -> Self {
        let shared = Arc::new(Shared {
            up: AtomicBool::new(true),
            outages: AtomicU64::new(0),
            turns: Semaphore::new(KEPT_CONNECTIONS),
            kept: std::sync::Mutex::default(),
        });
        tokio::spawn(probe(options, Arc::downgrade(&shared), pool.clone()));
        Self { pool, shared }
    }
}

/// Keeps `up` telling whether the server answers (and counts the times it did not), until the
/// pool closes or the gate is gone.
async fn probe(options: PgConnectOptions, shared: Weak<Shared>, pool: PgPool) {
    use sqlx::Connection;
    let mut connection: Option<sqlx::PgConnection> = None;
    let mut interval = tokio::time::interval(PROBE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if pool.is_closed() {
            return;
        }
        let answered = tokio::time::timeout(PROBE_TIMEOUT, async {
            let mut open = match connection.take() {
                Some(open) => open,
                None => sqlx::PgConnection::connect_with(&options).await?,
            };
            sqlx::query("SELECT 1").execute(&mut open).await?;
            connection = Some(open);
            Ok::<_, sqlx::Error>(())
        })
        .await;
        let reachable = matches!(answered, Ok(Ok(())));
        if shared.up.swap(reachable, Ordering::Relaxed) != reachable {
            if reachable {
                tracing::info!("database reachable again");
            } else {
                shared.outages.fetch_add(1, Ordering::Relaxed);
                let cause = match answered {
                    Ok(Err(error)) => error.to_string(),
                    _ => "no answer in time".to_owned(),
                };
                tracing::warn!(%cause, "database unreachable: calls fail at once until it is back");
            }
        }
    }
}

/// Why a database could not be opened.
#[derive(Debug)]
pub enum DbError {
    /// The data directory could not be created.
    DataDir(std::io::Error),
    /// The database refused or could not be reached.
    Connect(sqlx::Error),
    /// A migration failed.
    Migrate(sqlx::migrate::MigrateError),
    /// The SQLite file could not be opened by its reading or writing connections.
    Open(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DataDir(e) => write!(f, "cannot create the data directory: {e}"),
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
            Self::Migrate(e) => write!(f, "cannot apply migrations: {e}"),
            Self::Open(e) => write!(f, "cannot open: {e}"),
        }
    }
}

impl std::error::Error for DbError {}

impl Database {
    /// Opens the database at `url` (creating a SQLite file and its directory if missing) and
    /// applies the pending `migrations` of its back-end.
    pub async fn connect(url: &DatabaseUrl, migrations: &Migrations) -> Result<Self, DbError> {
        let database = match url.backend() {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url.expose())
                    .map_err(DbError::Connect)?
                    .create_if_missing(true)
                    // WAL: readers never block the writer. NORMAL sync under WAL keeps every
                    // committed transaction across a crash of the process (kill -9); only a
                    // power loss can drop the last commits.
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    // A whole page (up to 101 rows) without the worker thread waiting on the
                    // reader half-way.
                    .row_buffer_size(128)
                    .foreign_keys(true);
                if let Some(dir) = options.get_filename().parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).map_err(DbError::DataDir)?;
                }
                let write = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options.clone())
                    .await
                    .map_err(DbError::Connect)?;
                migrator(migrations.sqlite)
                    .run(&write)
                    .await
                    .map_err(DbError::Migrate)?;
                let path = options.get_filename();
                let reader = SqliteReader::open(path).map_err(|e| DbError::Open(e.to_string()))?;
                let writer = SqliteWriter::open(path).map_err(|e| DbError::Open(e.message))?;
                let read = SqlitePoolOptions::new()
                    .max_connections(SQLITE_MAX_CONNECTIONS)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(DbError::Connect)?;
                Self::Sqlite(SqlitePools {
                    read,
                    write,
                    reader,
                    writer,
                })
            }
            Backend::Postgres => {
                // Every connection plans each prepared statement once, for any parameters
                // (`plan_cache_mode = force_generic_plan`). Left to choose, PostgreSQL plans
                // the first five executions of a statement afresh, and every later one too
                // while its generic plan looks the costlier: with a `LIMIT $n` it does not
                // know, it costs that plan as if a tenth of the rows were read, and the task
                // store's list stayed planned afresh for good. The services' statements find
                // rows by key through an index whatever the parameters, and planning a page
                // of 50 took twice as long as running it.
                //
                // And none is compiled (`jit = off`): the same unknown limit costs a group of
                // pages over a million tasks above `jit_above_cost`, and compiling it took 9 to
                // 18 ms a statement, for a statement that runs in a tenth of a millisecond.
                let options = PgConnectOptions::from_str(url.expose())
                    .map_err(DbError::Connect)?
                    .options([("plan_cache_mode", "force_generic_plan"), ("jit", "off")]);
                let pool = PgPoolOptions::new()
                    .max_connections(POSTGRES_MAX_CONNECTIONS)
                    .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
                    .connect_with(options.clone())
                    .await
                    .map_err(DbError::Connect)?;
                // Concurrent instances serialise on PostgreSQL's advisory lock here.
                migrator(migrations.postgres)
                    .run(&pool)
                    .await
                    .map_err(DbError::Migrate)?;
                Self::Postgres(Postgres::new(pool, options))
            }
        };
        Ok(database)
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs a trivial query: succeeds when the database answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(pools) => sqlx::query("SELECT 1").execute(&pools.read).await.map(drop),
            Self::Postgres(pg) => sqlx::query("SELECT 1").execute(pg.pool()?).await.map(drop),
        }
    }

    /// Closes every connection, waiting for queries in progress.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pools) => {
                pools.write.close().await;
                pools.read.close().await;
            }
            Self::Postgres(pg) => pg.close().await,
        }
    }
}

/// Whether `error` means the database is unreachable, overloaded or busy (worth retrying:
/// `UNAVAILABLE`), rather than a bug in a query.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            // PostgreSQL: connection exceptions (08), insufficient resources (53), operator
            // intervention such as a shutdown (57), serialization failure / deadlock (40001,
            // 40P01). SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6), with extended codes.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57")
                || code == "40001"
                || code == "40P01"
                || code
                    .parse::<i32>()
                    .is_ok_and(|sqlite| matches!(sqlite & 0xff, 5 | 6))
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_backend_and_refuse_others() {
        let sqlite: DatabaseUrl = "sqlite://data/tasks.db".parse().unwrap();
        assert_eq!(sqlite.backend(), Backend::Sqlite);
        let pg: DatabaseUrl = "postgres://postgres@127.0.0.1:5432/test".parse().unwrap();
        assert_eq!(pg.backend(), Backend::Postgres);
        let pg: DatabaseUrl = "postgresql://u@h/d".parse().unwrap();
        assert_eq!(pg.backend(), Backend::Postgres);
        assert!("mysql://root@localhost/x".parse::<DatabaseUrl>().is_err());
        assert!("data/tasks.db".parse::<DatabaseUrl>().is_err());
    }

    #[test]
    fn display_never_shows_a_password() {
        let url: DatabaseUrl = "postgres://app:s3cret@db.internal:5432/tasks?sslmode=require"
            .parse()
            .unwrap();
        let shown = format!("{url} {url:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("app:"), "{shown}");
        assert!(shown.contains("db.internal:5432/tasks"), "{shown}");
    }

    const TEST_MIGRATIONS: Migrations = Migrations {
        sqlite: &[EmbeddedMigration {
            version: 1,
            description: "notes",
            sql: "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
        }],
        postgres: &[],
    };

    #[tokio::test]
    async fn sqlite_file_and_directory_are_created_and_migrations_rerun_cleanly() {
        let dir = std::env::temp_dir().join(format!("todo-db-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let url = DatabaseUrl::sqlite_in(&dir.join("nested"), "notes.db");

        let db = Database::connect(&url, &TEST_MIGRATIONS).await.unwrap();
        let Database::Sqlite(pools) = &db else {
            panic!("expected SQLite")
        };
        let pool = &pools.write;
        sqlx::query("INSERT INTO notes (body) VALUES ('kept')")
            .execute(pool)
            .await
            .unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        db.close().await;

        // A restart applies nothing twice and keeps the data.
        let db = Database::connect(&url, &TEST_MIGRATIONS).await.unwrap();
        let Database::Sqlite(pools) = &db else {
            panic!("expected SQLite")
        };
        let pool = &pools.read;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(count, 1);
        db.ping().await.unwrap();
        db.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Has the server refuse connections to the database `name` and drop those it has, as a
    /// stopped server would (`allow` false), or take them again.
    async fn allow_connections(admin: &mut sqlx::PgConnection, name: &str, allow: bool) {
        let mut statements = vec![format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}")];
        if !allow {
            statements.push(format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ));
        }
        for sql in statements {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *admin)
                .await
                .unwrap();
        }
    }

    /// A new test database on `backend`, connected with no migrations.
    async fn connect_empty(
        backend: &crate::testing::Backend,
    ) -> (crate::testing::TestDatabase, Database) {
        let database = crate::testing::TestDatabase::create(backend).await;
        let none = Migrations {
            sqlite: &[],
            postgres: &[],
        };
        let db = database.connect(&none).await;
        (database, db)
    }

    /// Waits (5 s at most) for the probe to find the server reachable (`open`) or not.
    async fn wait_for_gate(pg: &Postgres, open: bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while pg.pool().is_ok() != open {
            assert!(
                std::time::Instant::now() < deadline,
                "the gate never became {}",
                if open { "open" } else { "closed" }
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn an_unreachable_postgres_fails_at_once_and_is_used_again_when_back() {
        use crate::testing::{Backend as TestBackend, backends};
        use sqlx::Connection;
        for backend in backends() {
            let TestBackend::Postgres(admin_url) = &backend else {
                continue;
            };
            let (database, db) = connect_empty(&backend).await;
            db.ping().await.unwrap();
            let name = database.url.expose().rsplit('/').next().unwrap().to_owned();
            let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();

            // The database stops taking connections and drops those it has, as a stopped
            // server would.
            allow_connections(&mut admin, &name, false).await;
            let Database::Postgres(pg) = &db else {
                unreachable!("a PostgreSQL test database")
            };
            wait_for_gate(pg, false).await;
            let started = std::time::Instant::now();
            let error = db.ping().await.unwrap_err();
            assert!(is_unavailable(&error), "{error:?}");
            assert!(
                started.elapsed() < Duration::from_millis(50),
                "waited {:?}",
                started.elapsed()
            );

            allow_connections(&mut admin, &name, true).await;
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while db.ping().await.is_err() {
                assert!(std::time::Instant::now() < deadline, "never used again");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            db.close().await;
            admin.close().await.unwrap();
            database.remove().await;
        }
    }

    #[tokio::test]
    async fn postgres_work_reuses_kept_connections_but_none_that_failed_or_outlived_an_outage() {
        use crate::testing::{Backend as TestBackend, backends};
        use sqlx::Connection;
        for backend in backends() {
            let TestBackend::Postgres(admin_url) = &backend else {
                continue;
            };
            let (database, db) = connect_empty(&backend).await;
            let Database::Postgres(pg) = &db else {
                unreachable!("a PostgreSQL test database")
            };
            let backend_pid = async || {
                pg.run(async |c| {
                    sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                        .fetch_one(c)
                        .await
                })
                .await
            };

            // Work that succeeds leaves its connection kept, and the next work gets it back.
            let first = backend_pid().await.unwrap();
            assert_eq!(pg.kept_len(), 1);
            assert_eq!(backend_pid().await.unwrap(), first);
            assert_eq!(pg.kept_len(), 1);

            // Work that fails, or that is dropped half-way, gives its connection to the pool.
            let failed = pg
                .run(async |c| sqlx::query("SELECT 1 / 0").execute(c).await)
                .await;
            assert!(failed.is_err());
            assert_eq!(pg.kept_len(), 0);
            backend_pid().await.unwrap();
            let cut_short = tokio::time::timeout(
                Duration::from_millis(50),
                pg.run(async |c| {
                    let mut tx = c.begin().await?;
                    sqlx::query("SET LOCAL application_name = 'cut short'")
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("SELECT pg_sleep(1)").execute(&mut *tx).await?;
                    tx.commit().await
                }),
            )
            .await;
            assert!(cut_short.is_err(), "the sleep should have been cut short");
            assert_eq!(pg.kept_len(), 0);
            // Whatever connection comes next is in no transaction of the work cut short.
            let name: String = pg
                .run(async |c| {
                    sqlx::query_scalar("SELECT current_setting('application_name')")
                        .fetch_one(c)
                        .await
                })
                .await
                .unwrap();
            assert_ne!(name, "cut short");
            assert_eq!(pg.kept_len(), 1);

            // An outage: the server drops every connection, the kept one included, and
            // refuses new ones until it is back.
            let name = database.url.expose().rsplit('/').next().unwrap().to_owned();
            let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
            allow_connections(&mut admin, &name, false).await;
            wait_for_gate(pg, false).await;
            let refused = backend_pid().await.unwrap_err();
            assert!(is_unavailable(&refused), "{refused:?}");
            allow_connections(&mut admin, &name, true).await;
            wait_for_gate(pg, true).await;
            // The first work after the outage does not get the dead kept connection.
            let after = backend_pid().await.unwrap();
            assert_ne!(after, first);

            // More works at once than there are turns: each waits for one, and all run on
            // the connections kept, never more of them.
            let works: Vec<_> = (0..100)
                .map(|_| {
                    let pg = pg.clone();
                    tokio::spawn(async move {
                        pg.run(async |c| {
                            sqlx::query_scalar::<_, i32>(
                                "SELECT pg_backend_pid() FROM pg_sleep(0.005)",
                            )
                            .fetch_one(c)
                            .await
                        })
                        .await
                    })
                })
                .collect();
            let mut backends = std::collections::HashSet::new();
            for work in works {
                backends.insert(work.await.unwrap().unwrap());
            }
            assert!(
                backends.len() <= KEPT_CONNECTIONS,
                "{} connections",
                backends.len()
            );
            assert!(pg.kept_len() <= KEPT_CONNECTIONS);

            db.close().await;
            admin.close().await.unwrap();
            database.remove().await;
        }
    }

    #[tokio::test]
    async fn postgres_statements_are_planned_once_for_any_parameters_and_never_compiled() {
        use crate::testing::{Backend as TestBackend, backends};
        for backend in backends() {
            if !matches!(backend, TestBackend::Postgres(_)) {
                continue;
            }
            let (database, db) = connect_empty(&backend).await;
            let Database::Postgres(pg) = &db else {
                unreachable!("a PostgreSQL test database")
            };
            // A page by owner with the limit a parameter, as the task store's lists are: left to
            // choose, PostgreSQL plans at least its first five executions afresh.
            let plans: (i64, i64) = pg
                .run(async |c| {
                    for statement in [
                        "CREATE TABLE pages (owner INT, at BIGINT, PRIMARY KEY (owner, at))",
                        "INSERT INTO pages SELECT o, a FROM generate_series(1, 20) o, \
                         generate_series(1, 500) a",
                        "ANALYZE pages",
                    ] {
                        sqlx::query(statement).execute(&mut *c).await?;
                    }
                    for owner in 1..=8 {
                        sqlx::query(
                            "SELECT at FROM pages WHERE owner = $1 ORDER BY at DESC LIMIT $2",
                        )
                        .bind(owner)
                        .bind(50_i64)
                        .fetch_all(&mut *c)
                        .await?;
                    }
                    sqlx::query_as(
                        "SELECT generic_plans, custom_plans FROM pg_prepared_statements \
                         WHERE statement LIKE 'SELECT at FROM pages%'",
                    )
                    .fetch_one(&mut *c)
                    .await
                })
                .await
                .unwrap();
            assert_eq!(plans, (8, 0), "(generic plans, custom plans)");
            let jit: String = pg
                .run(async |c| {
                    sqlx::query_scalar("SELECT current_setting('jit')")
                        .fetch_one(&mut *c)
                        .await
                })
                .await
                .unwrap();
            assert_eq!(jit, "off");
            db.close().await;
            database.remove().await;
        }
    }
}
