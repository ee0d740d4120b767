//! The tasks store.
//!
//! [`TaskStore`] is what the service needs; [`SqlTaskStore`] implements it on SQLite (in
//! [`sqlite`], on rusqlite: reads on the calling thread, writes committed in groups by one
//! writing thread) and on PostgreSQL (here, on sqlx). Every method takes the owner
//! first and every statement filters on it: the owner comes only from a verified token.
//! Writes keep the per-owner counts in the same transaction and, on PostgreSQL, record their
//! event, which a trigger announces with `NOTIFY task_events` (its id and owner), so that every
//! instance can stream it. An update or a delete is one statement.

use std::future::Future;

mod postgres;
mod sqlite;

use todo_common::{Database, db::WriteError, time::Micros};

/// A task as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRecord {
    /// UUIDv7 string.
    pub id: String,
    /// The owner's user id.
    pub owner_id: String,
    /// 1-200 characters.
    pub title: String,
    /// 0-2000 characters.
    pub description: String,
    /// Done or not.
    pub completed: bool,
    /// Creation time.
    pub create_time: Micros,
    /// Last change; strictly increases with every change.
    pub update_time: Micros,
    /// 1 on creation, +1 per change: the etag.
    pub version: i64,
}

/// The fields of a new task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTask {
    /// Checked title.
    pub title: String,
    /// Checked description.
    pub description: String,
    /// Initial state.
    pub completed: bool,
}

/// The fields an update sets; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskChanges {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New state.
    pub completed: Option<bool>,
}

/// What happened to a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// It was created.
    Created = 1,
    /// Its fields changed.
    Updated = 2,
    /// It was deleted.
    Deleted = 3,
}

impl EventKind {
    fn from_code(code: i16) -> Option<Self> {
        match code {
            1 => Some(Self::Created),
            2 => Some(Self::Updated),
            3 => Some(Self::Deleted),
            _ => None,
        }
    }
}

/// A committed change, as streamed by `WatchTasks`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskEvent {
    /// What happened.
    pub kind: EventKind,
    /// The task after the change (as it was, for a deletion).
    pub task: TaskRecord,
    /// When it was committed.
    pub event_time: Micros,
}

/// The outcome of a write to an existing task.
// Returned once per write and matched at once: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Done: the task after the write, and its event (`None` when nothing changed).
    Done(TaskRecord, Option<TaskEvent>),
    /// The owner has no such task.
    NotFound,
    /// The task's version is not the expected one.
    VersionMismatch,
}

/// The sort key of a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// `create_time`.
    CreateTime,
    /// `update_time`.
    UpdateTime,
    /// `title`, by code point.
    Title,
}

/// A listing order: a key and a direction; ties are broken by id in the same direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Order {
    /// Sort key.
    pub key: SortKey,
    /// Largest first.
    pub descending: bool,
}

impl Order {
    /// How `a` compares with `b` in this order.
    pub fn compare(self, a: &TaskRecord, b: &TaskRecord) -> std::cmp::Ordering {
        let ascending = match self.key {
            SortKey::CreateTime => a.create_time.cmp(&b.create_time),
            SortKey::UpdateTime => a.update_time.cmp(&b.update_time),
            SortKey::Title => a.title.cmp(&b.title),
        }
        .then_with(|| a.id.cmp(&b.id));
        if self.descending {
            ascending.reverse()
        } else {
            ascending
        }
    }
}

/// The value of the sort key at a page boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CursorKey {
    /// A time (`create_time`, `update_time`).
    Time(Micros),
    /// A title.
    Text(String),
}

/// Where the previous page ended: the last task's sort key and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// Its sort key.
    pub key: CursorKey,
    /// Its id.
    pub id: String,
}

impl Cursor {
    /// The cursor just after `task` in `order`.
    pub fn after(task: &TaskRecord, order: Order) -> Self {
        let key = match order.key {
            SortKey::CreateTime => CursorKey::Time(task.create_time),
            SortKey::UpdateTime => CursorKey::Time(task.update_time),
            SortKey::Title => CursorKey::Text(task.title.clone()),
        };
        Self {
            key,
            id: task.id.clone(),
        }
    }
}

/// One page request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    /// Only tasks with this state, if set.
    pub completed: Option<bool>,
    /// The order.
    pub order: Order,
    /// Start after this task.
    pub after: Option<Cursor>,
    /// At most this many tasks.
    pub limit: i64,
}

/// A page of an owner's tasks, and how many there are on all pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The tasks, in the query's order.
    pub tasks: Vec<TaskRecord>,
    /// How many tasks the owner has with the query's state, if it sets one.
    pub total: i64,
}

impl Page {
    /// The total of an owner with `total` tasks, `done` of them completed, with `completed`.
    fn total_of((total, done): (i64, i64), completed: Option<bool>) -> i64 {
        match completed {
            None => total,
            Some(true) => done,
            Some(false) => total - done,
        }
    }
}

/// What went wrong in the store.
#[derive(Debug)]
pub enum StoreError {
    /// The database cannot be reached or is overloaded: retry later.
    Unavailable(sqlx::Error),
    /// Like `Unavailable`, as reported by the batch writer of creates.
    Busy(String),
    /// Anything else: a bug or a broken database.
    Internal(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if todo_common::db::is_unavailable(&error) {
            Self::Unavailable(error)
        } else {
            Self::Internal(error.to_string())
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        if todo_common::db::is_sqlite_unavailable(&error) {
            Self::Busy(error.to_string())
        } else {
            Self::Internal(error.to_string())
        }
    }
}

impl From<WriteError> for StoreError {
    fn from(error: WriteError) -> Self {
        if error.unavailable {
            Self::Busy(error.message)
        } else {
            Self::Internal(error.message)
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(e) => write!(f, "database unavailable: {e}"),
            Self::Busy(e) => write!(f, "database unavailable: {e}"),
            Self::Internal(e) => write!(f, "database error: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything the task service keeps.
pub trait TaskStore: Send + Sync + 'static {
    /// Creates a task. With a `request_id` the owner used before, returns the task that
    /// request created (or `None` if it has been deleted since) and no event.
    fn create(
        &self,
        owner: &str,
        id: &str,
        task: &NewTask,
        request_id: Option<&str>,
        now: Micros,
    ) -> impl Future<Output = StoreResult<(Option<TaskRecord>, Option<TaskEvent>)>> + Send;
    /// One of the owner's tasks.
    fn get(
        &self,
        owner: &str,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<TaskRecord>>> + Send;
    /// One page of the owner's tasks, with their count (as of the same moment, unless the page
    /// is empty on SQLite).
    fn list(
        &self,
        owner: &str,
        query: &ListQuery,
    ) -> impl Future<Output = StoreResult<Page>> + Send;
    /// Changes a task, if its version is `expected_version` (when set).
    fn update(
        &self,
        owner: &str,
        id: &str,
        changes: &TaskChanges,
        expected_version: Option<i64>,
        now: Micros,
    ) -> impl Future<Output = StoreResult<WriteOutcome>> + Send;
    /// Deletes a task, if its version is `expected_version` (when set).
    fn delete(
        &self,
        owner: &str,
        id: &str,
        expected_version: Option<i64>,
        now: Micros,
    ) -> impl Future<Output = StoreResult<WriteOutcome>> + Send;
    /// A recorded event (PostgreSQL's change feed).
    fn event(&self, id: i64) -> impl Future<Output = StoreResult<Option<TaskEvent>>> + Send;
    /// Forgets request ids and recorded events older than `before`; returns how many rows went.
    fn prune(&self, before: Micros) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// [`TaskStore`] on SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub struct SqlTaskStore {
    db: Database,
    /// PostgreSQL's writer of plain creates, in groups (started at the first; shared by
    /// clones).
    creates: std::sync::Arc<std::sync::OnceLock<postgres::Creates>>,
    /// PostgreSQL's reader of single tasks, in groups (likewise).
    gets: std::sync::Arc<std::sync::OnceLock<postgres::Gets>>,
    /// PostgreSQL's readers of pages, in groups (likewise).
    pages: std::sync::Arc<postgres::Pages>,
}

impl SqlTaskStore {
    /// A store over `db`, already migrated with [`crate::MIGRATIONS`].
    pub fn new(db: Database) -> Self {
        Self {
            db,
            creates: std::sync::Arc::default(),
            gets: std::sync::Arc::default(),
            pages: std::sync::Arc::default(),
        }
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

const COLUMNS: &str =
    "id, owner_id, title, description, completed, create_time, update_time, version";

type TaskRow = (String, String, String, String, bool, i64, i64, i64);

fn from_row(row: TaskRow) -> TaskRecord {
    let (id, owner_id, title, description, completed, create_time, update_time, version) = row;
    TaskRecord {
        id,
        owner_id,
        title,
        description,
        completed,
        create_time,
        update_time,
        version,
    }
}

/// The ORDER BY clause, the sort column and the keyset comparison of an order.
fn order_sql(order: Order) -> (&'static str, &'static str, &'static str) {
    match (order.key, order.descending) {
        (SortKey::CreateTime, true) => ("create_time DESC, id DESC", "create_time", "<"),
        (SortKey::CreateTime, false) => ("create_time ASC, id ASC", "create_time", ">"),
        (SortKey::UpdateTime, true) => ("update_time DESC, id DESC", "update_time", "<"),
        (SortKey::UpdateTime, false) => ("update_time ASC, id ASC", "update_time", ">"),
        (SortKey::Title, true) => ("title DESC, id DESC", "title", "<"),
        (SortKey::Title, false) => ("title ASC, id ASC", "title", ">"),
    }
}

/// Where the statement of a page takes its values from.
#[derive(Clone, Copy, Debug)]
enum Values {
    /// SQLite's numbered parameters: `?1` the owner, then the state when filtered, the
    /// cursor's key and id when there is one, and the limit.
    Numbered,
    /// The columns of the row `k` of a group of pages (PostgreSQL): `owner_id`, `state`,
    /// `after_time` or `after_text`, `after_id` and `lim`.
    Columns,
}

/// The statement of one page, selecting [`COLUMNS`] and then `extra` (a list of expressions
/// starting with a comma, or nothing), with its values from `values`.
fn list_sql(query: &ListQuery, values: Values, extra: &str) -> String {
    let (order_by, column, after) = order_sql(query.order);
    let mut numbered = 0;
    let mut value = |name: &str| match values {
        Values::Numbered => {
            numbered += 1;
            format!("?{numbered}")
        }
        Values::Columns => format!("k.{name}"),
    };
    let mut sql = format!(
        "SELECT {COLUMNS}{extra} FROM tasks WHERE owner_id = {}",
        value("owner_id")
    );
    if query.completed.is_some() {
        sql.push_str(&format!(" AND completed = {}", value("state")));
    }
    if query.after.is_some() {
        let key = value(match query.order.key {
            SortKey::Title => "after_text",
            SortKey::CreateTime | SortKey::UpdateTime => "after_time",
        });
        let id = value("after_id");
        sql.push_str(&format!(" AND ({column}, id) {after} ({key}, {id})"));
    }
    sql.push_str(&format!(" ORDER BY {order_by} LIMIT {}", value("lim")));
    sql
}

/// `current` with `changes` applied, its update time moved on (strictly, even within one
/// microsecond) and its version bumped; `None` when nothing changes.
fn apply(current: &TaskRecord, changes: TaskChanges, now: Micros) -> Option<TaskRecord> {
    let mut next = current.clone();
    if let Some(title) = changes.title {
        next.title = title;
    }
    if let Some(description) = changes.description {
        next.description = description;
    }
    if let Some(completed) = changes.completed {
        next.completed = completed;
    }
    if next == *current {
        return None;
    }
    next.update_time = now.max(current.update_time + 1);
    next.version = current.version + 1;
    Some(next)
}

/// A row of a PostgreSQL update or delete: whether it is the task as written (or deleted),
/// then the task's columns; the other row is the task as found, locked.
type WriteRow = (bool, String, String, String, String, bool, i64, i64, i64);

/// An update on PostgreSQL, in one statement: the task is read locked, written when it is at
/// the expected version and something changes (its update time moved on strictly, its version
/// bumped) and its event recorded with it. The rows are the task as found and, when written,
/// as written; none when the owner has no such task.
const PG_UPDATE: &str = "\
    WITH found AS ( \
        SELECT id, owner_id, title, description, completed, create_time, update_time, version \
        FROM tasks WHERE owner_id = $1 AND id = $2 FOR UPDATE \
    ), written AS ( \
        UPDATE tasks t SET title = COALESCE($3, f.title), \
            description = COALESCE($4, f.description), completed = COALESCE($5, f.completed), \
            update_time = GREATEST($7, f.update_time + 1), version = f.version + 1 \
        FROM found f \
        WHERE t.owner_id = $1 AND t.id = $2 AND ($6::bigint IS NULL OR f.version = $6) \
          AND (COALESCE($3, f.title), COALESCE($4, f.description), COALESCE($5, f.completed)) \
              IS DISTINCT FROM (f.title, f.description, f.completed) \
        RETURNING t.id, t.owner_id, t.title, t.description, t.completed, t.create_time, \
            t.update_time, t.version \
    ), event AS ( \
        INSERT INTO task_events (kind, owner_id, task_id, title, description, completed, \
            create_time, update_time, version, event_time) \
        SELECT $8, owner_id, id, title, description, completed, create_time, update_time, \
            version, update_time FROM written \
    ) \
    SELECT false, * FROM found UNION ALL SELECT true, * FROM written";

/// A delete on PostgreSQL, in one statement, as [`PG_UPDATE`]: the task is read locked,
/// deleted when it is at the expected version, and its event recorded with it.
const PG_DELETE: &str = "\
    WITH found AS ( \
        SELECT id, owner_id, title, description, completed, create_time, update_time, version \
        FROM tasks WHERE owner_id = $1 AND id = $2 FOR UPDATE \
    ), deleted AS ( \
        DELETE FROM tasks t USING found f \
        WHERE t.owner_id = $1 AND t.id = $2 AND ($3::bigint IS NULL OR f.version = $3) \
        RETURNING t.id, t.owner_id, t.title, t.description, t.completed, t.create_time, \
            t.update_time, t.version \
    ), event AS ( \
        INSERT INTO task_events (kind, owner_id, task_id, title, description, completed, \
            create_time, update_time, version, event_time) \
        SELECT $4, owner_id, id, title, description, completed, create_time, update_time, \
            version, $5 FROM deleted \
    ) \
    SELECT false, * FROM found UNION ALL SELECT true, * FROM deleted";

/// The outcome of a PostgreSQL update or delete from the rows of its statement.
fn write_outcome(
    rows: Vec<WriteRow>,
    kind: EventKind,
    expected_version: Option<i64>,
    now: Micros,
) -> WriteOutcome {
    let (mut found, mut written) = (None, None);
    for (is_written, id, owner_id, title, description, completed, create, update, version) in rows {
        let task = from_row((
            id,
            owner_id,
            title,
            description,
            completed,
            create,
            update,
            version,
        ));
        if is_written {
            written = Some(task);
        } else {
            found = Some(task);
        }
    }
    match (found, written) {
        (None, _) => WriteOutcome::NotFound,
        (Some(_), Some(task)) => {
            let event_time = match kind {
                EventKind::Deleted => now,
                _ => task.update_time,
            };
            let event = TaskEvent {
                kind,
                task: task.clone(),
                event_time,
            };
            WriteOutcome::Done(task, Some(event))
        }
        (Some(found), None) if expected_version.is_some_and(|v| v != found.version) => {
            WriteOutcome::VersionMismatch
        }
        // At the expected version and not written: an update that changes nothing.
        (Some(found), None) => WriteOutcome::Done(found, None),
    }
}

/// Records `event`; the insert announces it to every instance (PostgreSQL's change feed, a
/// trigger of `task_events`).
async fn pg_record_event(
    tx: &mut sqlx::PgConnection,
    event: &TaskEvent,
) -> Result<(), sqlx::Error> {
    let task = &event.task;
    sqlx::query(
        "INSERT INTO task_events (kind, owner_id, task_id, title, description, completed, \
         create_time, update_time, version, event_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(event.kind as i16)
    .bind(&task.owner_id)
    .bind(&task.id)
    .bind(&task.title)
    .bind(&task.description)
    .bind(task.completed)
    .bind(task.create_time)
    .bind(task.update_time)
    .bind(task.version)
    .bind(event.event_time)
    .execute(&mut *tx)
    .await
    .map(drop)
}

/// One attempt at a create on PostgreSQL; `None` when a concurrent create with the same
/// request id committed first.
async fn pg_create_once(
    connection: &mut sqlx::PgConnection,
    record: &TaskRecord,
    request_id: Option<&str>,
) -> Result<Option<(Option<TaskRecord>, Option<TaskEvent>)>, sqlx::Error> {
    use sqlx::Connection;
    let owner = record.owner_id.as_str();
    let mut tx = connection.begin().await?;
    if let Some(request_id) = request_id {
        let earlier: Option<(String,)> = sqlx::query_as(
            "SELECT task_id FROM create_requests WHERE owner_id = $1 AND request_id = $2",
        )
        .bind(owner)
        .bind(request_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((task_id,)) = earlier {
            let row: Option<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM tasks WHERE owner_id = $1 AND id = $2"
            )))
            .bind(owner)
            .bind(task_id)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Some((row.map(from_row), None)));
        }
    }
    sqlx::query(
        "INSERT INTO tasks (id, owner_id, title, description, completed, create_time, \
         update_time, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&record.id)
    .bind(owner)
    .bind(&record.title)
    .bind(&record.description)
    .bind(record.completed)
    .bind(record.create_time)
    .bind(record.update_time)
    .bind(record.version)
    .execute(&mut *tx)
    .await?;
    if let Some(request_id) = request_id {
        let remembered = sqlx::query(
            "INSERT INTO create_requests (owner_id, request_id, task_id, create_time) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(owner)
        .bind(request_id)
        .bind(&record.id)
        .bind(record.create_time)
        .execute(&mut *tx)
        .await;
        if let Err(sqlx::Error::Database(e)) = &remembered
            && e.is_unique_violation()
        {
            // A concurrent retry of the same request won: use its task.
            return Ok(None);
        }
        remembered?;
    }
    let event = TaskEvent {
        kind: EventKind::Created,
        task: record.clone(),
        event_time: record.create_time,
    };
    pg_record_event(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(Some((Some(record.clone()), Some(event))))
}

impl TaskStore for SqlTaskStore {
    async fn create(
        &self,
        owner: &str,
        id: &str,
        task: &NewTask,
        request_id: Option<&str>,
        now: Micros,
    ) -> StoreResult<(Option<TaskRecord>, Option<TaskEvent>)> {
        let pg = match &self.db {
            Database::Sqlite(pools) => {
                return sqlite::create(&pools.writer, owner, id, task, request_id, now).await;
            }
            Database::Postgres(pg) => pg,
        };
        pg.pool()?;
        let record = TaskRecord {
            id: id.to_owned(),
            owner_id: owner.to_owned(),
            title: task.title.clone(),
            description: task.description.clone(),
            completed: task.completed,
            create_time: now,
            update_time: now,
            version: 1,
        };
        let Some(request_id) = request_id else {
            let creates = self
                .creates
                .get_or_init(|| postgres::Creates::start(pg.clone()));
            creates.create(record.clone()).await?;
            let event = TaskEvent {
                kind: EventKind::Created,
                task: record.clone(),
                event_time: record.create_time,
            };
            return Ok((Some(record), Some(event)));
        };
        // A second attempt happens only after losing a race with a concurrent retry of the
        // same request, and then finds the winner's task.
        for _ in 0..2 {
            let once = pg
                .run(async |connection| pg_create_once(connection, &record, Some(request_id)).await)
                .await?;
            if let Some(done) = once {
                return Ok(done);
            }
        }
        Err(StoreError::Internal(
            "create request id raced twice".to_owned(),
        ))
    }

    async fn get(&self, owner: &str, id: &str) -> StoreResult<Option<TaskRecord>> {
        match &self.db {
            Database::Sqlite(pools) => sqlite::get(&pools.reader, owner, id),
            Database::Postgres(pg) => {
                // Fail at once while the database is down, as every other call does.
                pg.pool()?;
                let gets = self.gets.get_or_init(|| postgres::gets(pg.clone()));
                gets.get((owner.to_owned(), id.to_owned())).await
            }
        }
    }

    async fn list(&self, owner: &str, query: &ListQuery) -> StoreResult<Page> {
        let pg = match &self.db {
            Database::Sqlite(pools) => return sqlite::list(&pools.reader, owner, query),
            Database::Postgres(pg) => pg,
        };
        // Fail at once while the database is down, as every other call does.
        pg.pool()?;
        self.pages.list(pg, owner, query).await
    }

    async fn update(
        &self,
        owner: &str,
        id: &str,
        changes: &TaskChanges,
        expected_version: Option<i64>,
        now: Micros,
    ) -> StoreResult<WriteOutcome> {
        let pg = match &self.db {
            Database::Sqlite(pools) => {
                return sqlite::update(&pools.writer, owner, id, changes, expected_version, now)
                    .await;
            }
            Database::Postgres(pg) => pg,
        };
        let rows: Vec<WriteRow> = pg
            .run(async |connection| {
                sqlx::query_as(PG_UPDATE)
                    .bind(owner)
                    .bind(id)
                    .bind(changes.title.as_deref())
                    .bind(changes.description.as_deref())
                    .bind(changes.completed)
                    .bind(expected_version)
                    .bind(now)
                    .bind(EventKind::Updated as i16)
                    .fetch_all(connection)
                    .await
            })
            .await?;
        Ok(write_outcome(
            rows,
            EventKind::Updated,
            expected_version,
            now,
        ))
    }

    async fn delete(
        &self,
        owner: &str,
        id: &str,
        expected_version: Option<i64>,
        now: Micros,
    ) -> StoreResult<WriteOutcome> {
        let pg = match &self.db {
            Database::Sqlite(pools) => {
                return sqlite::delete(&pools.writer, owner, id, expected_version, now).await;
            }
            Database::Postgres(pg) => pg,
        };
        let rows: Vec<WriteRow> = pg
            .run(async |connection| {
                sqlx::query_as(PG_DELETE)
                    .bind(owner)
                    .bind(id)
                    .bind(expected_version)
                    .bind(EventKind::Deleted as i16)
                    .bind(now)
                    .fetch_all(connection)
                    .await
            })
            .await?;
        Ok(write_outcome(
            rows,
            EventKind::Deleted,
            expected_version,
            now,
        ))
    }

    async fn event(&self, id: i64) -> StoreResult<Option<TaskEvent>> {
        type EventRow = (
            i16,
            String,
            String,
            String,
            String,
            bool,
            i64,
            i64,
            i64,
            i64,
        );
        // SQLite's feed is in process: it records no events.
        let Database::Postgres(pg) = &self.db else {
            return Ok(None);
        };
        let row: Option<EventRow> = pg
            .run(async |connection| {
                sqlx::query_as(
                    "SELECT kind, owner_id, task_id, title, description, completed, \
                     create_time, update_time, version, event_time FROM task_events WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(connection)
                .await
            })
            .await?;
        let Some((
            kind,
            owner_id,
            id,
            title,
            description,
            completed,
            create_time,
            update_time,
            version,
            event_time,
        )) = row
        else {
            return Ok(None);
        };
        let kind = EventKind::from_code(kind)
            .ok_or_else(|| StoreError::Internal(format!("unknown event kind {kind}")))?;
        Ok(Some(TaskEvent {
            kind,
            task: TaskRecord {
                id,
                owner_id,
                title,
                description,
                completed,
                create_time,
                update_time,
                version,
            },
            event_time,
        }))
    }

    async fn prune(&self, before: Micros) -> StoreResult<u64> {
        let pool = match &self.db {
            Database::Sqlite(pools) => return sqlite::prune(&pools.writer, before).await,
            Database::Postgres(pg) => pg.pool()?,
        };
        let mut removed = sqlx::query("DELETE FROM create_requests WHERE create_time < $1")
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected();
        removed += sqlx::query("DELETE FROM task_events WHERE event_time < $1")
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected();
        Ok(removed)
    }
}

/// The contract every back-end must meet, run against SQLite and (with `TEST_POSTGRES_URL`)
/// PostgreSQL.
#[cfg(test)]
mod contract {
    use super::*;

    /// Runs `test` on a fresh store of every back-end.
    async fn on_every_backend<F, Fut>(test: F)
    where
        F: Fn(SqlTaskStore) -> Fut,
        Fut: Future<Output = ()>,
    {
        todo_common::testing::on_every_backend(&crate::MIGRATIONS, |db| {
            test(SqlTaskStore::new(db))
        })
        .await;
    }

    fn new(title: &str) -> NewTask {
        NewTask {
            title: title.to_owned(),
            description: String::new(),
            completed: false,
        }
    }

    /// How many tasks `owner` has, with `completed` if set: the total of a page.
    async fn count(store: &SqlTaskStore, owner: &str, completed: Option<bool>) -> i64 {
        let query = ListQuery {
            completed,
            order: DESC,
            after: None,
            limit: 1,
        };
        store.list(owner, &query).await.unwrap().total
    }

    fn id(n: u32) -> String {
        format!("00000000-0000-7000-8000-{n:012}")
    }

    async fn create(
        store: &SqlTaskStore,
        owner: &str,
        n: u32,
        title: &str,
        now: Micros,
    ) -> TaskRecord {
        let (task, event) = store
            .create(owner, &id(n), &new(title), None, now)
            .await
            .unwrap();
        assert_eq!(event.as_ref().map(|e| e.kind), Some(EventKind::Created));
        task.unwrap()
    }

    /// Marks the owner's task `n` completed, as of `now`.
    async fn complete(store: &SqlTaskStore, owner: &str, n: u32, now: Micros) {
        let done = TaskChanges {
            completed: Some(true),
            ..TaskChanges::default()
        };
        store.update(owner, &id(n), &done, None, now).await.unwrap();
    }

    const DESC: Order = Order {
        key: SortKey::CreateTime,
        descending: true,
    };

    #[tokio::test]
    async fn tasks_round_trip_exactly_and_belong_to_their_owner() {
        on_every_backend(|store| async move {
            let task = NewTask {
                title: "Café ☕ — naïve 🧪".to_owned(),
                description: "line one\nline two 🌍".to_owned(),
                completed: true,
            };
            let (created, _) = store
                .create("ada", &id(1), &task, None, 1_000)
                .await
                .unwrap();
            let created = created.unwrap();
            assert_eq!(
                (created.version, created.create_time, created.update_time),
                (1, 1_000, 1_000)
            );
            assert_eq!(
                store.get("ada", &id(1)).await.unwrap(),
                Some(created.clone())
            );
            assert_eq!(created.title, task.title);
            assert_eq!(created.description, task.description);
            // Nobody else sees it, reads it, changes it or deletes it.
            assert_eq!(store.get("bob", &id(1)).await.unwrap(), None);
            let changes = TaskChanges {
                title: Some("mine".into()),
                ..TaskChanges::default()
            };
            assert_eq!(
                store
                    .update("bob", &id(1), &changes, None, 2_000)
                    .await
                    .unwrap(),
                WriteOutcome::NotFound
            );
            assert_eq!(
                store.delete("bob", &id(1), None, 2_000).await.unwrap(),
                WriteOutcome::NotFound
            );
            let query = ListQuery {
                completed: None,
                order: DESC,
                after: None,
                limit: 10,
            };
            assert_eq!(store.list("bob", &query).await.unwrap(), Page::default());
            assert_eq!(count(&store, "bob", None).await, 0);
            assert_eq!(store.get("ada", &id(1)).await.unwrap(), Some(created));
        })
        .await;
    }

    #[tokio::test]
    async fn a_repeated_request_id_returns_the_first_task() {
        on_every_backend(|store| async move {
            let (first, event) = store
                .create("ada", &id(1), &new("once"), Some("r1"), 1_000)
                .await
                .unwrap();
            assert!(event.is_some());
            let (again, event) = store
                .create("ada", &id(2), &new("twice?"), Some("r1"), 2_000)
                .await
                .unwrap();
            assert_eq!(again, first);
            assert!(event.is_none(), "a retry is not a new event");
            assert_eq!(count(&store, "ada", None).await, 1);
            // Request ids are per owner.
            let (other, _) = store
                .create("bob", &id(3), &new("bob's"), Some("r1"), 2_000)
                .await
                .unwrap();
            assert_eq!(other.unwrap().owner_id, "bob");
            // Once the task is deleted, the retry finds nothing rather than recreating it.
            store.delete("ada", &id(1), None, 3_000).await.unwrap();
            let (gone, _) = store
                .create("ada", &id(4), &new("once"), Some("r1"), 4_000)
                .await
                .unwrap();
            assert_eq!(gone, None);
            // Pruned request ids are forgotten.
            assert!(store.prune(5_000).await.unwrap() >= 2);
            let (fresh, _) = store
                .create("ada", &id(5), &new("again"), Some("r1"), 6_000)
                .await
                .unwrap();
            assert_eq!(fresh.unwrap().id, id(5));
        })
        .await;
    }

    #[tokio::test]
    async fn concurrent_creates_of_several_owners_are_each_stored_counted_and_recorded() {
        on_every_backend(|store| async move {
            let owners = ["ada", "bob", "cy"];
            let creates: Vec<_> = (0..300u32)
                .map(|n| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let owner = owners[n as usize % owners.len()];
                        let title = format!("task {n}");
                        let (task, event) = store
                            .create(owner, &id(n), &new(&title), None, 1_000 + i64::from(n))
                            .await
                            .unwrap();
                        let task = task.unwrap();
                        assert_eq!(
                            (task.owner_id.as_str(), task.title.as_str()),
                            (owner, title.as_str())
                        );
                        assert_eq!(event.map(|e| e.task), Some(task.clone()));
                        task
                    })
                })
                .collect();
            let mut created = Vec::new();
            for create in creates {
                created.push(create.await.unwrap());
            }
            for owner in owners {
                assert_eq!(count(&store, owner, None).await, 100, "{owner}");
            }
            for task in &created {
                assert_eq!(
                    store.get(&task.owner_id, &task.id).await.unwrap().as_ref(),
                    Some(task)
                );
            }
            if let Database::Postgres(_) = store.database() {
                // Every create recorded its event for the change feed, once.
                for n in 1..=300 {
                    assert!(store.event(n).await.unwrap().is_some(), "event {n}");
                }
                assert_eq!(store.event(301).await.unwrap(), None);
            }
        })
        .await;
    }

    #[tokio::test]
    async fn concurrent_reads_each_get_their_own_owners_task_or_count() {
        on_every_backend(|store| async move {
            let owners = ["ada", "bob"];
            let mut created = Vec::new();
            for n in 0..40u32 {
                let owner = owners[n as usize % owners.len()];
                created.push(create(&store, owner, n, &format!("task {n}"), 1_000).await);
            }
            // Many reads at once (PostgreSQL answers them in shared statements): each of
            // its owner's tasks, each task asked by the other owner, ids nobody has, and the
            // counts of both owners and of one without tasks.
            let reads: Vec<_> = (0..600u32)
                .map(|n| {
                    let (store, task) = (store.clone(), created[n as usize % 40].clone());
                    tokio::spawn(async move {
                        match n % 5 {
                            0 => {
                                let got = store.get(&task.owner_id, &task.id).await.unwrap();
                                assert_eq!(got, Some(task));
                            }
                            1 => {
                                let stranger = if task.owner_id == "ada" { "bob" } else { "ada" };
                                assert_eq!(store.get(stranger, &task.id).await.unwrap(), None);
                            }
                            2 => {
                                let missing = id(1_000 + n);
                                assert_eq!(
                                    store.get(&task.owner_id, &missing).await.unwrap(),
                                    None
                                );
                            }
                            3 => {
                                assert_eq!(count(&store, &task.owner_id, None).await, 20);
                            }
                            _ => assert_eq!(count(&store, "cy", None).await, 0),
                        }
                    })
                })
                .collect();
            for read in reads {
                read.await.unwrap();
            }
        })
        .await;
    }

    #[tokio::test]
    async fn concurrent_creates_with_one_request_id_make_one_task() {
        on_every_backend(|store| async move {
            let attempts: Vec<_> = (0..6)
                .map(|n| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        store
                            .create("ada", &id(n), &new("once"), Some("r1"), 1_000)
                            .await
                            .unwrap()
                            .0
                            .unwrap()
                            .id
                    })
                })
                .collect();
            let mut ids = Vec::new();
            for attempt in attempts {
                ids.push(attempt.await.unwrap());
            }
            ids.dedup();
            assert_eq!(ids.len(), 1, "{ids:?}");
            assert_eq!(count(&store, "ada", None).await, 1);
        })
        .await;
    }

    #[tokio::test]
    async fn updates_bump_version_and_time_and_check_the_expected_version() {
        on_every_backend(|store| async move {
            let task = create(&store, "ada", 1, "draft", 1_000).await;
            let changes = TaskChanges {
                title: Some("final".into()),
                description: Some("text".into()),
                completed: Some(true),
            };
            let WriteOutcome::Done(updated, Some(event)) = store
                .update("ada", &id(1), &changes, Some(1), 1_000)
                .await
                .unwrap()
            else {
                panic!("expected an update")
            };
            assert_eq!(
                (updated.version, updated.title.as_str(), updated.completed),
                (2, "final", true)
            );
            assert!(
                updated.update_time > task.update_time,
                "moves even within the same microsecond"
            );
            assert_eq!(updated.create_time, task.create_time);
            assert_eq!(
                (event.kind, event.task.clone()),
                (EventKind::Updated, updated.clone())
            );

            assert_eq!(
                store
                    .update("ada", &id(1), &changes, Some(1), 2_000)
                    .await
                    .unwrap(),
                WriteOutcome::VersionMismatch
            );
            // Setting what is already there changes nothing and is no event.
            let same = store
                .update("ada", &id(1), &changes, None, 3_000)
                .await
                .unwrap();
            assert_eq!(same, WriteOutcome::Done(updated.clone(), None));
            assert_eq!(count(&store, "ada", Some(true)).await, 1);

            let reopen = TaskChanges {
                completed: Some(false),
                ..TaskChanges::default()
            };
            store
                .update("ada", &id(1), &reopen, Some(2), 4_000)
                .await
                .unwrap();
            assert_eq!(count(&store, "ada", Some(true)).await, 0);
            assert_eq!(count(&store, "ada", Some(false)).await, 1);
            assert_eq!(
                store
                    .update("ada", &id(9), &reopen, None, 4_000)
                    .await
                    .unwrap(),
                WriteOutcome::NotFound
            );
        })
        .await;
    }

    #[tokio::test]
    async fn deletes_check_the_version_keep_counts_and_happen_once() {
        on_every_backend(|store| async move {
            create(&store, "ada", 1, "a", 1_000).await;
            complete(&store, "ada", 1, 2_000).await;
            create(&store, "ada", 2, "b", 3_000).await;
            assert_eq!(
                store.delete("ada", &id(1), Some(1), 4_000).await.unwrap(),
                WriteOutcome::VersionMismatch
            );
            let WriteOutcome::Done(deleted, Some(event)) =
                store.delete("ada", &id(1), Some(2), 4_000).await.unwrap()
            else {
                panic!("expected a deletion")
            };
            assert_eq!(
                (event.kind, deleted.title.as_str()),
                (EventKind::Deleted, "a")
            );
            assert_eq!(
                store.delete("ada", &id(1), None, 5_000).await.unwrap(),
                WriteOutcome::NotFound
            );
            assert_eq!(store.get("ada", &id(1)).await.unwrap(), None);
            assert_eq!(count(&store, "ada", None).await, 1);
            assert_eq!(count(&store, "ada", Some(true)).await, 0);
        })
        .await;
    }

    /// Pages through everything with `page` tasks per page.
    async fn all_pages(
        store: &SqlTaskStore,
        owner: &str,
        completed: Option<bool>,
        order: Order,
        page: i64,
    ) -> Vec<String> {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let query = ListQuery {
                completed,
                order,
                after: after.clone(),
                limit: page,
            };
            let Page { tasks, total } = store.list(owner, &query).await.unwrap();
            seen.extend(tasks.iter().map(|t| t.title.clone()));
            match tasks.last() {
                Some(last) if tasks.len() as i64 == page => {
                    after = Some(Cursor::after(last, order))
                }
                _ => {
                    // Every page counts all the pages' tasks.
                    assert_eq!(total, seen.len() as i64, "{owner} {completed:?}");
                    return seen;
                }
            }
        }
    }

    #[tokio::test]
    async fn a_page_past_the_end_is_empty_and_still_counts_the_owners_tasks() {
        on_every_backend(|store| async move {
            for n in 0..3 {
                create(&store, "ada", n, "t", 1_000 + i64::from(n)).await;
            }
            complete(&store, "ada", 0, 2_000).await;
            let oldest = store.get("ada", &id(0)).await.unwrap().unwrap();
            for (completed, total) in [(None, 3), (Some(true), 1), (Some(false), 2)] {
                let query = ListQuery {
                    completed,
                    order: DESC,
                    after: Some(Cursor::after(&oldest, DESC)),
                    limit: 10,
                };
                let page = store.list("ada", &query).await.unwrap();
                assert_eq!((page.tasks.len(), page.total), (0, total), "{completed:?}");
                let first = store
                    .list(
                        "ada",
                        &ListQuery {
                            after: None,
                            ..query
                        },
                    )
                    .await
                    .unwrap();
                assert_eq!(first.total, total, "{completed:?}");
                assert_eq!(first.tasks.len() as i64, total, "{completed:?}");
            }
            // An owner who never had a task.
            assert_eq!(count(&store, "bob", None).await, 0);
        })
        .await;
    }

    #[tokio::test]
    async fn concurrent_pages_of_several_owners_and_shapes_are_each_the_page_asked() {
        on_every_backend(|store| async move {
            for n in 0..60u32 {
                let owner = ["ada", "bob", "cy"][n as usize % 3];
                create(
                    &store,
                    owner,
                    n,
                    &format!("task {:02}", (n * 7) % 60),
                    1_000 + i64::from(n),
                )
                .await;
                if n % 4 == 0 {
                    complete(&store, owner, n, 9_000).await;
                }
            }
            let title = Order {
                key: SortKey::Title,
                descending: false,
            };
            // Every shape: orders, with and without a filter, first pages and pages after a
            // time or a title cursor, of a size of each owner's own; each asked alone first,
            // which is the expected answer.
            let mut queries = Vec::new();
            for (owner, limit) in [("ada", 4), ("bob", 3), ("cy", 5), ("nobody", 4)] {
                for order in [DESC, title] {
                    for completed in [None, Some(false)] {
                        let first = ListQuery {
                            completed,
                            order,
                            after: None,
                            limit,
                        };
                        let page = store.list(owner, &first).await.unwrap();
                        queries.push((owner, first.clone(), page.clone()));
                        if let Some(last) = page.tasks.last() {
                            let next = ListQuery {
                                after: Some(Cursor::after(last, order)),
                                ..first
                            };
                            let expected = store.list(owner, &next).await.unwrap();
                            queries.push((owner, next, expected));
                        }
                    }
                }
            }
            assert!(
                queries
                    .iter()
                    .any(|(_, q, page)| q.after.is_some() && !page.tasks.is_empty())
            );
            let reads: Vec<_> = (0..400usize)
                .map(|n| {
                    let (store, (owner, query, expected)) =
                        (store.clone(), queries[n % queries.len()].clone());
                    tokio::spawn(async move {
                        assert_eq!(
                            store.list(owner, &query).await.unwrap(),
                            expected,
                            "{owner} {query:?}"
                        );
                    })
                })
                .collect();
            for read in reads {
                read.await.unwrap();
            }
        })
        .await;
    }

    #[tokio::test]
    async fn keyset_pages_cover_every_order_without_gaps_or_repeats() {
        on_every_backend(|store| async move {
            // Equal creation times on purpose: the id breaks the tie.
            for n in 0..25u32 {
                let title = format!("task {:02}", (n * 7) % 25);
                create(&store, "ada", n, &title, 1_000 + i64::from(n / 5)).await;
                if n % 3 == 0 {
                    complete(&store, "ada", n, 5_000 - i64::from(n)).await;
                }
            }
            create(&store, "bob", 100, "not ada's", 1_000).await;

            let by_creation: Vec<String> = (0..25u32)
                .rev()
                .map(|n| format!("task {:02}", (n * 7) % 25))
                .collect();
            assert_eq!(all_pages(&store, "ada", None, DESC, 4).await, by_creation);
            let ascending = Order {
                key: SortKey::CreateTime,
                descending: false,
            };
            let mut reversed = by_creation.clone();
            reversed.reverse();
            assert_eq!(all_pages(&store, "ada", None, ascending, 7).await, reversed);

            let by_title: Vec<String> = (0..25).map(|n| format!("task {n:02}")).collect();
            let title = Order {
                key: SortKey::Title,
                descending: false,
            };
            assert_eq!(all_pages(&store, "ada", None, title, 6).await, by_title);
            let title_desc = Order {
                key: SortKey::Title,
                descending: true,
            };
            let mut titles_desc = by_title.clone();
            titles_desc.reverse();
            assert_eq!(
                all_pages(&store, "ada", None, title_desc, 6).await,
                titles_desc
            );

            // Recently updated first: the completed ones (updated later, in reverse order).
            let updated = Order {
                key: SortKey::UpdateTime,
                descending: true,
            };
            let recent = all_pages(&store, "ada", None, updated, 5).await;
            assert_eq!(recent.len(), 25);
            assert_eq!(recent[0], format!("task {:02}", 0));

            let done = all_pages(&store, "ada", Some(true), DESC, 3).await;
            let open = all_pages(&store, "ada", Some(false), DESC, 3).await;
            assert_eq!((done.len(), open.len()), (9, 16));
            assert_eq!(count(&store, "ada", Some(true)).await, 9);
            assert_eq!(count(&store, "ada", None).await, 25);
        })
        .await;
    }

    #[tokio::test]
    async fn postgres_records_each_event_for_the_feed() {
        on_every_backend(|store| async move {
            let task = create(&store, "ada", 1, "watched", 1_000).await;
            let renamed = TaskChanges {
                title: Some("renamed".into()),
                ..TaskChanges::default()
            };
            let WriteOutcome::Done(updated, Some(_)) = store
                .update("ada", &id(1), &renamed, None, 2_000)
                .await
                .unwrap()
            else {
                panic!("expected an update")
            };
            let WriteOutcome::Done(deleted, Some(_)) =
                store.delete("ada", &id(1), None, 3_000).await.unwrap()
            else {
                panic!("expected a deletion")
            };
            assert_eq!(deleted, updated, "a deletion's task is the task as it was");
            let mut recorded = Vec::new();
            for event in 1..=3 {
                recorded.push(store.event(event).await.unwrap());
            }
            match store.database() {
                Database::Postgres(_) => {
                    let recorded: Vec<_> = recorded
                        .into_iter()
                        .map(|e| {
                            let e = e.expect("an event per write");
                            (e.kind, e.task, e.event_time)
                        })
                        .collect();
                    assert_eq!(
                        recorded,
                        [
                            (EventKind::Created, task, 1_000),
                            (EventKind::Updated, updated.clone(), 2_000),
                            (EventKind::Deleted, updated, 3_000),
                        ]
                    );
                }
                Database::Sqlite(_) => {
                    assert_eq!(recorded, [None, None, None], "SQLite's feed is in-process")
                }
            }
        })
        .await;
    }

    /// The outcomes of spawned writes, in order.
    async fn all<T>(writes: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut outcomes = Vec::new();
        for write in writes.collect::<Vec<_>>() {
            outcomes.push(write.await.unwrap());
        }
        outcomes
    }

    #[tokio::test]
    async fn concurrent_writes_to_one_task_each_see_the_last_and_none_is_lost() {
        on_every_backend(|store| async move {
            create(&store, "ada", 1, "first", 1_000).await;
            const WRITERS: i64 = 20;
            // Unconditional updates: each applies on top of the one before it.
            let updates = (0..WRITERS).map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let changes = TaskChanges {
                        title: Some(format!("title {n}")),
                        ..TaskChanges::default()
                    };
                    store.update("ada", &id(1), &changes, None, 2_000).await
                })
            });
            let mut versions: Vec<i64> = all(updates)
                .await
                .into_iter()
                .map(|outcome| match outcome.unwrap() {
                    WriteOutcome::Done(task, Some(event)) => {
                        assert_eq!(event.task, task);
                        task.version
                    }
                    other => panic!("expected an update, got {other:?}"),
                })
                .collect();
            versions.sort_unstable();
            assert_eq!(versions, (2..=WRITERS + 1).collect::<Vec<_>>());
            let last = store.get("ada", &id(1)).await.unwrap().unwrap();
            assert_eq!(last.version, WRITERS + 1);
            assert!(
                last.update_time >= 2_000 + WRITERS - 1,
                "strictly moving times"
            );

            // Conditional updates of the same version, then deletes: one of each wins.
            let done = TaskChanges {
                completed: Some(true),
                ..TaskChanges::default()
            };
            let conditional = (0..WRITERS).map(|_| {
                let (store, done) = (store.clone(), done.clone());
                tokio::spawn(async move {
                    store
                        .update("ada", &id(1), &done, Some(WRITERS + 1), 3_000)
                        .await
                })
            });
            let outcomes = all(conditional).await;
            let won = outcomes
                .iter()
                .filter(|o| matches!(o, Ok(WriteOutcome::Done(_, Some(_)))))
                .count();
            let lost = outcomes
                .iter()
                .filter(|o| matches!(o, Ok(WriteOutcome::VersionMismatch)))
                .count();
            assert_eq!((won, lost), (1, WRITERS as usize - 1));
            assert_eq!(count(&store, "ada", Some(true)).await, 1);

            assert_eq!(
                store.delete("bob", &id(1), None, 4_000).await.unwrap(),
                WriteOutcome::NotFound,
                "another owner's task"
            );
            let deletes = (0..WRITERS).map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.delete("ada", &id(1), None, 4_000).await })
            });
            let outcomes = all(deletes).await;
            let deleted = outcomes
                .iter()
                .filter(|o| matches!(o, Ok(WriteOutcome::Done(_, Some(_)))))
                .count();
            let gone = outcomes
                .iter()
                .filter(|o| matches!(o, Ok(WriteOutcome::NotFound)))
                .count();
            assert_eq!((deleted, gone), (1, WRITERS as usize - 1));
            assert_eq!(count(&store, "ada", None).await, 0);
        })
        .await;
    }
}
