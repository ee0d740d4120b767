//! The tasks store on SQLite: reads run on the calling thread ([`SqliteReader`]), writes on the
//! writing thread, which commits every write waiting in one transaction ([`SqliteWriter`]).
//! The writing thread runs one write at a time, so a retried create cannot race its first
//! attempt, and the read-then-write of an update needs no lock. Per-owner counts are kept by
//! the triggers of the migrations; WatchTasks events are published in process by the service.

use rusqlite::{Connection, OptionalExtension, Row};
use todo_common::{
    db::{SqliteReader, SqliteWriter},
    time::Micros,
};

use super::{
    COLUMNS, CursorKey, EventKind, ListQuery, NewTask, Page, StoreResult, TaskChanges, TaskEvent,
    TaskRecord, Values, WriteOutcome, list_sql,
};

/// A task from a row of [`COLUMNS`].
fn task(row: &Row<'_>) -> rusqlite::Result<TaskRecord> {
    Ok(TaskRecord {
        id: row.get(0)?,
        owner_id: row.get(1)?,
        title: row.get(2)?,
        description: row.get(3)?,
        completed: row.get(4)?,
        create_time: row.get(5)?,
        update_time: row.get(6)?,
        version: row.get(7)?,
    })
}

fn get_task(
    connection: &Connection,
    owner: &str,
    id: &str,
) -> rusqlite::Result<Option<TaskRecord>> {
    connection
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tasks WHERE owner_id = ?1 AND id = ?2"
        ))?
        .query_row((owner, id), task)
        .optional()
}

/// One of the owner's tasks.
pub fn get(reader: &SqliteReader, owner: &str, id: &str) -> StoreResult<Option<TaskRecord>> {
    Ok(reader.read(|connection| get_task(connection, owner, id))?)
}

/// The owner's counts (total, completed) beside each row of a page: subqueries of bound
/// parameters only, so SQLite runs them once per statement.
const PAGE_COUNTS: &str = ", (SELECT total FROM task_counts WHERE owner_id = ?1), \
     (SELECT completed FROM task_counts WHERE owner_id = ?1)";

/// One page of the owner's tasks, and their count. A page with tasks comes with the counts in
/// the same statement (one snapshot and one read lock, as the list is the hottest read); an
/// empty one reads the counts after it.
pub fn list(reader: &SqliteReader, owner: &str, query: &ListQuery) -> StoreResult<Page> {
    let sql = list_sql(query, Values::Numbered, PAGE_COUNTS);
    Ok(reader.read(|connection| {
        let mut statement = connection.prepare_cached(&sql)?;
        let mut index = 1;
        statement.raw_bind_parameter(index, owner)?;
        if let Some(completed) = query.completed {
            index += 1;
            statement.raw_bind_parameter(index, completed)?;
        }
        if let Some(cursor) = &query.after {
            index += 1;
            match &cursor.key {
                CursorKey::Time(time) => statement.raw_bind_parameter(index, time)?,
                CursorKey::Text(text) => statement.raw_bind_parameter(index, text.as_str())?,
            }
            index += 1;
            statement.raw_bind_parameter(index, cursor.id.as_str())?;
        }
        statement.raw_bind_parameter(index + 1, query.limit)?;
        let mut rows = statement.raw_query();
        let mut tasks = Vec::with_capacity(usize::try_from(query.limit).unwrap_or(0));
        let mut counts = None;
        while let Some(row) = rows.next()? {
            tasks.push(task(row)?);
            if counts.is_none() {
                counts = Some((row.get(8)?, row.get(9)?));
            }
        }
        let counts = match counts {
            Some(counts) => counts,
            None => connection
                .prepare_cached("SELECT total, completed FROM task_counts WHERE owner_id = ?1")?
                .query_row([owner], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?
                .unwrap_or((0, 0)),
        };
        Ok(Page {
            tasks,
            total: Page::total_of(counts, query.completed),
        })
    })?)
}

/// Creates a task; with a `request_id` the owner used before, returns that request's task
/// (or `None` if it has been deleted since) and no event.
pub async fn create(
    writer: &SqliteWriter,
    owner: &str,
    id: &str,
    new: &NewTask,
    request_id: Option<&str>,
    now: Micros,
) -> StoreResult<(Option<TaskRecord>, Option<TaskEvent>)> {
    let record = TaskRecord {
        id: id.to_owned(),
        owner_id: owner.to_owned(),
        title: new.title.clone(),
        description: new.description.clone(),
        completed: new.completed,
        create_time: now,
        update_time: now,
        version: 1,
    };
    let request_id = request_id.map(str::to_owned);
    Ok(writer
        .write(move |connection| {
            if let Some(request_id) = &request_id {
                let earlier: Option<String> = connection
                    .prepare_cached(
                        "SELECT task_id FROM create_requests WHERE owner_id = ?1 AND request_id = ?2",
                    )?
                    .query_row((&record.owner_id, request_id), |row| row.get(0))
                    .optional()?;
                if let Some(task_id) = earlier {
                    return Ok((get_task(connection, &record.owner_id, &task_id)?, None));
                }
            }
            connection
                .prepare_cached(
                    "INSERT INTO tasks (id, owner_id, title, description, completed, create_time, \
                     update_time, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute((
                    &record.id,
                    &record.owner_id,
                    &record.title,
                    &record.description,
                    record.completed,
                    record.create_time,
                    record.update_time,
                    record.version,
                ))?;
            if let Some(request_id) = &request_id {
                connection
                    .prepare_cached(
                        "INSERT INTO create_requests (owner_id, request_id, task_id, create_time) \
                         VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute((&record.owner_id, request_id, &record.id, now))?;
            }
            let event = TaskEvent {
                kind: EventKind::Created,
                task: record.clone(),
                event_time: now,
            };
            Ok((Some(record), Some(event)))
        })
        .await?)
}

/// Reads the task a write is about: `Err` with the outcome when it does not exist or is not at
/// the expected version.
fn current(
    connection: &Connection,
    owner: &str,
    id: &str,
    expected_version: Option<i64>,
) -> rusqlite::Result<Result<TaskRecord, WriteOutcome>> {
    Ok(match get_task(connection, owner, id)? {
        None => Err(WriteOutcome::NotFound),
        Some(current) if expected_version.is_some_and(|v| v != current.version) => {
            Err(WriteOutcome::VersionMismatch)
        }
        Some(current) => Ok(current),
    })
}

/// Changes a task, if its version is `expected_version` (when set).
pub async fn update(
    writer: &SqliteWriter,
    owner: &str,
    id: &str,
    changes: &TaskChanges,
    expected_version: Option<i64>,
    now: Micros,
) -> StoreResult<WriteOutcome> {
    let (owner, id, changes) = (owner.to_owned(), id.to_owned(), changes.clone());
    Ok(writer
        .write(move |connection| {
            let current = match current(connection, &owner, &id, expected_version)? {
                Ok(current) => current,
                Err(outcome) => return Ok(outcome),
            };
            let Some(next) = super::apply(&current, changes, now) else {
                return Ok(WriteOutcome::Done(current, None));
            };
            connection
                .prepare_cached(
                    "UPDATE tasks SET title = ?1, description = ?2, completed = ?3, \
                     update_time = ?4, version = ?5 WHERE owner_id = ?6 AND id = ?7",
                )?
                .execute((
                    &next.title,
                    &next.description,
                    next.completed,
                    next.update_time,
                    next.version,
                    &owner,
                    &id,
                ))?;
            let event = TaskEvent {
                kind: EventKind::Updated,
                task: next.clone(),
                event_time: next.update_time,
            };
            Ok(WriteOutcome::Done(next, Some(event)))
        })
        .await?)
}

/// Deletes a task, if its version is `expected_version` (when set).
pub async fn delete(
    writer: &SqliteWriter,
    owner: &str,
    id: &str,
    expected_version: Option<i64>,
    now: Micros,
) -> StoreResult<WriteOutcome> {
    let (owner, id) = (owner.to_owned(), id.to_owned());
    Ok(writer
        .write(move |connection| {
            let current = match current(connection, &owner, &id, expected_version)? {
                Ok(current) => current,
                Err(outcome) => return Ok(outcome),
            };
            connection
                .prepare_cached("DELETE FROM tasks WHERE owner_id = ?1 AND id = ?2")?
                .execute((&owner, &id))?;
            let event = TaskEvent {
                kind: EventKind::Deleted,
                task: current.clone(),
                event_time: now,
            };
            Ok(WriteOutcome::Done(current, Some(event)))
        })
        .await?)
}

/// Forgets request ids older than `before`.
pub async fn prune(writer: &SqliteWriter, before: Micros) -> StoreResult<u64> {
    Ok(writer
        .write(move |connection| {
            connection
                .prepare_cached("DELETE FROM create_requests WHERE create_time < ?1")?
                .execute([before])
        })
        .await
        .map(|rows| rows as u64)?)
}
