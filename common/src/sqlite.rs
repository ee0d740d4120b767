//! The hot paths of embedded SQLite, on rusqlite: reads on the calling thread, and writes on
//! one writing thread that commits them in groups.
//!
//! sqlx runs each SQLite statement on a worker thread of its connection: a short indexed read
//! costs two thread switches and their wake-ups, more than the read itself, and a write
//! transaction of four statements costs eight. Here a read runs where it is asked for, and a
//! write is one hand-off to the writing thread, which runs every write waiting when it comes
//! round in one transaction (each in a savepoint of its own) and commits once.
//!
//! Both open the database file that [`crate::Database::connect`] created and migrated; sqlx
//! still does that and the rest (migrations, the auth service's store).

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rusqlite::{Connection, ErrorCode, OpenFlags, config::DbConfig};

/// How long SQLite waits on a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle reading connections kept for the next call.
const MAX_IDLE_READERS: usize = 8;
/// Most writes committed by one transaction.
const MAX_GROUP: usize = 256;
/// Writes allowed to wait for the writing thread; more wait to be queued.
const QUEUE: usize = 4 * MAX_GROUP;
/// Passive checkpoints run in a row once the log is long, before the writing thread restarts it.
const CATCH_UP_PASSES: u32 = 3;

/// How the write-ahead log is kept short.
#[derive(Clone, Copy, Debug)]
struct Checkpoints {
    /// How often the checkpointing thread copies the log into the database file.
    interval: Duration,
    /// Frames (pages written) in the log past which the writing thread starts it over.
    restart_after: i64,
}

impl Checkpoints {
    /// A restart after 4,096 frames (16 MiB of 4 KiB pages) keeps the log at tens of MiB
    /// under the heaviest write load. Each restart pauses the writes for the copy of what the
    /// last pass let in and two syncs: a few milliseconds on a fast disk, about 20 ms where
    /// syncing the database file takes 11-16 ms. At 30,000 writes a second that happens about
    /// four times a second, so the syncs set the tail of writes that never pause.
    const DEFAULT: Self = Self {
        interval: Duration::from_millis(200),
        restart_after: 4_096,
    };
}

/// Settings every connection of ours gets.
fn configure(connection: &Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // The query planner's stability guarantee: a statement keeps its plan whatever values are
    // bound. Without it, SQLite recompiles a cached statement at every execution once a bound
    // value was looked at while planning (a bound `LIMIT` is).
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // A page cache of 8 MiB (SQLite's default is 2 MiB, which a listing of a large table
    // outgrows: its pages were read again from the file at every call). Only as many
    // connections as threads working at once fill theirs.
    connection.pragma_update(None, "cache_size", -8192)?;
    Ok(())
}

/// Read-only SQLite connections used on the calling thread.
///
/// Under WAL a reader never waits for the writer, and a read bounded by an index and a page
/// size takes microseconds from the page cache, less than a hand-off to another thread would.
/// Connections are checked out one call at a time and kept for the next call.
#[derive(Clone)]
pub struct SqliteReader {
    inner: Arc<ReaderInner>,
}

struct ReaderInner {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl fmt::Debug for SqliteReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteReader")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteReader {
    /// Reads the database file at `path`, which must exist (in WAL mode) already.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let reader = Self {
            inner: Arc::new(ReaderInner {
                path: path.to_path_buf(),
                idle: Mutex::new(Vec::new()),
            }),
        };
        // Fail at start, not at the first call, when the file cannot be read.
        let first = reader.connect()?;
        reader.give_back(first);
        Ok(reader)
    }

    fn connect(&self) -> rusqlite::Result<Connection> {
        let connection = Connection::open_with_flags(
            &self.inner.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&connection)?;
        Ok(connection)
    }

    fn give_back(&self, connection: Connection) {
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(connection);
        }
    }

    /// Runs `read` on a read-only connection, on this thread. Keep it short: one indexed
    /// statement or a few, bounded in rows.
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let connection = match idle {
            Some(connection) => connection,
            None => self.connect()?,
        };
        let outcome = read(&connection);
        self.give_back(connection);
        outcome
    }
}

/// Why a write was not committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteError {
    /// The database is busy, full or cannot be written for now: worth retrying.
    pub unavailable: bool,
    /// What SQLite said (for the log, never for the caller).
    pub message: String,
}

impl From<rusqlite::Error> for WriteError {
    fn from(error: rusqlite::Error) -> Self {
        Self {
            unavailable: is_sqlite_unavailable(&error),
            message: error.to_string(),
        }
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WriteError {}

/// What a write left to do once its transaction has ended: tell its caller.
type Answer = Box<dyn FnOnce(Result<(), WriteError>) + Send>;
/// A write: runs on the writing connection, says whether it failed (its savepoint is then
/// rolled back), and leaves its answer. Given an error instead of the connection, it only
/// leaves that error as its answer.
type Job = Box<dyn FnOnce(Result<&Connection, WriteError>) -> (bool, Answer) + Send>;

/// The one writing connection of a SQLite database, on a thread of its own.
///
/// Every write waiting when the thread comes round (up to [`MAX_GROUP`]) runs in one
/// `BEGIN IMMEDIATE` transaction, each in a savepoint of its own so that one failing write
/// undoes only itself, and the group is committed once. Callers are answered after the commit:
/// an acknowledged write is in the WAL, which survives the process being killed. Alone, a write
/// waits for nothing. The thread ends when every handle is dropped.
///
/// A second thread copies the log into the database file (a passive checkpoint, which never
/// blocks a write). Under a steady stream of writes that copy never catches up with the log's
/// end, so the log would never start over and would grow without bound (gigabytes in a few
/// minutes of benchmark), and every commit appending to a growing file waits on the file
/// system. So once the log is long, the writing thread itself, between two groups, copies the
/// little the other thread has not, waits for the readers of the log to finish (new readers
/// then read the database file), and the next commit writes the log from its start again.
#[derive(Clone)]
pub struct SqliteWriter {
    jobs: tokio::sync::mpsc::Sender<Job>,
}

impl fmt::Debug for SqliteWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteWriter").finish_non_exhaustive()
    }
}

impl SqliteWriter {
    /// Starts the writing thread on the database file at `path`, which must exist (in WAL
    /// mode) already.
    pub fn open(path: &Path) -> Result<Self, WriteError> {
        Self::open_with(path, Checkpoints::DEFAULT)
    }

    fn open_with(path: &Path, checkpoints: Checkpoints) -> Result<Self, WriteError> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&connection)?;
        // Under WAL, NORMAL keeps every committed transaction across a crash of the process;
        // only a power loss can drop the last commits.
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "foreign_keys", true)?;
        // Each write of a group runs in a savepoint, whose undo journal SQLite otherwise spills
        // to a temporary file past 64 KiB: a file created, written and deleted per group. A
        // group's journal is bounded by its writes ([`MAX_GROUP`]).
        connection.pragma_update(None, "temp_store", "MEMORY")?;
        // Checkpoints are the checkpointing thread's, and restarts of the log this thread's
        // between groups: SQLite would otherwise run one in the commit that fills the log past
        // 1,000 pages, with its copying and syncing, and every write of that group would wait
        // for it.
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&checkpointer)?;
        let cannot_start = |e: std::io::Error| WriteError {
            unavailable: false,
            message: format!("cannot start the writing threads: {e}"),
        };
        // The checkpointing thread ends when the writing thread does (its sender is dropped).
        let (running, stopped) = std::sync::mpsc::channel::<()>();
        let restart = Arc::new(AtomicBool::new(false));
        let wanted = restart.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".to_owned())
            .spawn(move || checkpoint_while(&checkpointer, checkpoints, &wanted, &stopped))
            .map_err(cannot_start)?;
        let (jobs, queue) = tokio::sync::mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || {
                let _running = running;
                write_groups(&connection, queue, &restart);
            })
            .map_err(cannot_start)?;
        Ok(Self { jobs })
    }

    /// Runs `write` on the writing connection inside a transaction and answers once that has
    /// been committed. When `write` fails, its changes are rolled back and its error returned.
    pub async fn write<T, F>(&self, write: F) -> Result<T, WriteError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (done, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |connection| {
            let outcome = connection.and_then(|c| write(c).map_err(WriteError::from));
            let failed = outcome.is_err();
            let answer: Answer = Box::new(move |committed| {
                let _ = done.send(committed.and(outcome));
            });
            (failed, answer)
        });
        let stopped = || WriteError {
            unavailable: true,
            message: "the SQLite writing thread has stopped".to_owned(),
        };
        self.jobs.send(job).await.map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// The checkpointing thread: a passive checkpoint (it never blocks the writer or a reader) at
/// every interval until `stopped` says the writer is gone, and a last one then. When one finds
/// the log long, it runs [`CATCH_UP_PASSES`] in a row, each copying what the writes added
/// during the one before, and then asks the writing thread to start the log over (`restart`):
/// what is left for that thread to copy, while the writes wait, is what a short pass let in.
fn checkpoint_while(
    connection: &Connection,
    checkpoints: Checkpoints,
    restart: &AtomicBool,
    stopped: &std::sync::mpsc::Receiver<()>,
) {
    loop {
        let gone = !matches!(
            stopped.recv_timeout(checkpoints.interval),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        );
        for pass in 1..=CATCH_UP_PASSES {
            match checkpoint(connection, "PASSIVE") {
                Ok(done) if done.frames < checkpoints.restart_after => break,
                Ok(_) if pass == CATCH_UP_PASSES => restart.store(true, Ordering::Relaxed),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "a SQLite checkpoint failed");
                    break;
                }
            }
        }
        if gone {
            return;
        }
    }
}

/// On the writing connection, between groups: copies what is left of the log into the
/// database file and waits for the log's readers to finish, so that the next commit writes
/// the log from its start. No write is appended meanwhile, so the copy catches up.
fn restart_log(connection: &Connection) {
    match checkpoint(connection, "RESTART") {
        Ok(done) if !done.blocked => {}
        Ok(done) => tracing::warn!(
            frames = done.frames,
            "readers kept the SQLite log from restarting"
        ),
        Err(error) => tracing::warn!(%error, "the SQLite log could not be restarted"),
    }
}

/// What a checkpoint reported.
struct Checkpointed {
    /// Whether it was kept from finishing (a RESTART, by a reader still busy after the busy
    /// timeout).
    blocked: bool,
    /// Frames in the log.
    frames: i64,
}

/// Runs a checkpoint of `mode` (`PASSIVE` or `RESTART`) on `connection`.
fn checkpoint(connection: &Connection, mode: &str) -> rusqlite::Result<Checkpointed> {
    connection.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok(Checkpointed {
            blocked: row.get::<_, i64>(0)? != 0,
            frames: row.get(1)?,
        })
    })
}

/// The writing thread: one transaction per group of waiting writes.
fn write_groups(
    connection: &Connection,
    mut queue: tokio::sync::mpsc::Receiver<Job>,
    restart: &AtomicBool,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut answers = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = queue.blocking_recv() {
        if restart.swap(false, Ordering::Relaxed) {
            restart_log(connection);
        }
        group.push(first);
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
            // Nothing ran: every write of the group fails alike (busy, most likely).
            let error = WriteError::from(error);
            tracing::warn!(%error, writes = group.len(), "cannot begin a SQLite write");
            for job in group.drain(..) {
                let (_, answer) = job(Err(error.clone()));
                answer(Err(error.clone()));
            }
            continue;
        }
        for job in group.drain(..) {
            answers.push(run_in_savepoint(connection, job));
        }
        let committed = connection.execute_batch("COMMIT").map_err(WriteError::from);
        if let Err(error) = &committed {
            tracing::warn!(%error, writes = answers.len(), "a SQLite commit failed");
            let _ = connection.execute_batch("ROLLBACK");
        }
        for answer in answers.drain(..) {
            answer(committed.clone());
        }
    }
}

/// Runs one write of a group in its own savepoint, rolled back if the write failed.
fn run_in_savepoint(connection: &Connection, job: Job) -> Answer {
    let statement = |sql: &str| {
        connection
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute([]))
            .map(drop)
    };
    if let Err(error) = statement("SAVEPOINT write") {
        return job(Err(WriteError::from(error))).1;
    }
    let (failed, answer) = job(Ok(connection));
    let ended = if failed {
        statement("ROLLBACK TO write").and_then(|()| statement("RELEASE write"))
    } else {
        statement("RELEASE write")
    };
    match ended {
        Ok(()) => answer,
        Err(error) => {
            // The transaction is in an unknown state: the commit decides, and this write's
            // caller hears the error rather than a success it cannot be sure of.
            let error = WriteError::from(error);
            Box::new(move |_| answer(Err(error)))
        }
    }
}

/// Whether a rusqlite error means the database is busy or cannot be used for now (worth
/// retrying: `UNAVAILABLE`), rather than a bug in a statement.
pub fn is_sqlite_unavailable(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
                | ErrorCode::SystemIoFailure
                | ErrorCode::OutOfMemory
                | ErrorCode::DiskFull
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn database(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(crate::testing::unique_name(name));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("test.db");
        let connection = Connection::open(&path).unwrap();
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; \
                 CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL UNIQUE);",
            )
            .unwrap();
        path
    }

    fn insert(body: &str) -> impl FnOnce(&Connection) -> rusqlite::Result<usize> + use<> {
        let body = body.to_owned();
        move |c: &Connection| c.execute("INSERT INTO notes (body) VALUES (?1)", [body])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_is_copied_into_the_database_file_by_the_checkpointing_thread() {
        let path = database("sqlite_checkpoint");
        let writer = SqliteWriter::open(&path).unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        // About 2 MiB of writes: without checkpoints they would stay in the log.
        let body = "x".repeat(1_000);
        for n in 0..2_000 {
            writer.write(insert(&format!("{n} {body}"))).await.unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while size() < before + 1_000_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {} bytes",
                size()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_starts_over_under_writes_that_never_pause_and_reads_that_never_stop() {
        let path = database("sqlite_restart");
        // A restart past 64 frames (256 KiB), looked for every 10 ms.
        let checkpoints = Checkpoints {
            interval: Duration::from_millis(10),
            restart_after: 64,
        };
        let writer = SqliteWriter::open_with(&path, checkpoints).unwrap();
        let reader = SqliteReader::open(&path).unwrap();
        let wal = path.with_extension("db-wal");
        let log_len = {
            let wal = wal.clone();
            move || std::fs::metadata(&wal).map_or(0, |m| m.len())
        };

        // Readers that always have a read open on the log, as a busy service's do.
        let done = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for _ in 0..2 {
            let (reader, done) = (reader.clone(), done.clone());
            readers.push(std::thread::spawn(move || {
                let mut reads = 0_u64;
                while !done.load(Ordering::Relaxed) {
                    let last: Option<i64> = reader
                        .read(|c| c.query_row("SELECT max(id) FROM notes", [], |row| row.get(0)))
                        .unwrap();
                    assert!(last.unwrap_or(0) >= 0);
                    reads += 1;
                }
                reads
            }));
        }
        // 8 MB of notes from writers that never let the writing thread idle.
        let body = "x".repeat(2_000);
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..8 {
            let (writer, body) = (writer.clone(), body.clone());
            writers.spawn(async move {
                for n in 0..500 {
                    writer
                        .write(insert(&format!("{w} {n} {body}")))
                        .await
                        .unwrap();
                }
            });
        }
        let mut longest = 0;
        while !writers.is_empty() {
            longest = longest.max(log_len());
            if let Ok(Some(joined)) =
                tokio::time::timeout(Duration::from_millis(5), writers.join_next()).await
            {
                joined.unwrap();
            }
        }
        done.store(true, Ordering::Relaxed);
        for reader in readers {
            assert!(reader.join().unwrap() > 0, "a reader was starved");
        }
        longest = longest.max(log_len());
        // Each time the log starts over, its header is written again with the checkpoint
        // sequence number (bytes 12..16) one higher; it stays 0 when the log never restarts.
        let mut header = [0_u8; 16];
        std::fs::File::open(&wal)
            .and_then(|mut log| log.read_exact(&mut header))
            .unwrap();
        let restarts = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
        assert!(restarts >= 3, "the log started over {restarts} times");
        // Without restarts the log grows to 75-78 MB, about ten times what was written (each
        // group rewrites whole pages). With them it peaks at 3-5 MB here; the peak is what the
        // writes add while the checkpoints' syncs run, so slow syncs raise it (15 MB and 37 MB
        // measured with every sync delayed by 50 and 100 ms).
        assert!(
            longest < 40_000_000,
            "the log grew to {longest} bytes for 8 MB of writes"
        );
        // Nothing written was lost across the restarts.
        let count: i64 = reader
            .read(|c| c.query_row("SELECT count(*) FROM notes", [], |row| row.get(0)))
            .unwrap();
        assert_eq!(count, 8 * 500);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_commit_and_a_failing_one_undoes_only_itself() {
        let path = database("sqlite_writer");
        let writer = SqliteWriter::open(&path).unwrap();
        let reader = SqliteReader::open(&path).unwrap();
        writer.write(insert("taken")).await.unwrap();

        // Many writes at once: they share transactions; the duplicate fails alone.
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..500 {
            let writer = writer.clone();
            calls.spawn(async move { (n, writer.write(insert(&format!("note {n}"))).await) });
        }
        let duplicate = writer.clone();
        calls.spawn(async move { (-1, duplicate.write(insert("taken")).await) });
        let mut failed = Vec::new();
        while let Some(joined) = calls.join_next().await {
            let (n, outcome) = joined.unwrap();
            if let Err(error) = outcome {
                assert!(!error.unavailable, "{error}");
                failed.push(n);
            }
        }
        assert_eq!(failed, [-1]);
        let count: i64 = reader
            .read(|c| c.query_row("SELECT COUNT(*) FROM notes", [], |row| row.get(0)))
            .unwrap();
        assert_eq!(count, 501);

        // A write that fails half-way leaves nothing behind.
        let half = writer
            .write(|c| {
                c.execute("INSERT INTO notes (body) VALUES ('half')", [])?;
                c.execute("INSERT INTO notes (body) VALUES ('taken')", [])
            })
            .await;
        assert!(half.is_err());
        let halves: i64 = reader
            .read(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM notes WHERE body = 'half'",
                    [],
                    |row| row.get(0),
                )
            })
            .unwrap();
        assert_eq!(halves, 0);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn a_locked_database_is_unavailable_not_an_internal_error() {
        let path = database("sqlite_writer_busy");
        let writer = SqliteWriter::open(&path).unwrap();
        // Another process (here, another connection) holds the write lock past our timeout.
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let started = std::time::Instant::now();
        let error = writer.write(insert("late")).await.unwrap_err();
        assert!(error.unavailable, "{error}");
        assert!(started.elapsed() >= BUSY_TIMEOUT);
        other.execute_batch("ROLLBACK").unwrap();
        writer.write(insert("in time")).await.unwrap();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn connection_page_caches_share_no_process_wide_lock() {
        // `.cargo/config.toml` builds the bundled SQLite without this option, under which
        // every connection's page cache sits behind one process-wide mutex.
        let connection = Connection::open_in_memory().unwrap();
        let mut statement = connection.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            options.iter().any(|o| o.starts_with("THREADSAFE=")),
            "{options:?}"
        );
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
    }
}
