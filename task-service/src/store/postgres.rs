//! PostgreSQL creates, point reads and listings in groups.
//!
//! # Creates
//!
//! Every create of an owner updates that owner's count row (a trigger) and notifies the change
//! feed, and PostgreSQL serialises notifying commits under one lock held until the commit is
//! flushed: concurrent creates commit one after another, one WAL flush each, whatever the
//! number of connections (1.7k/s and a p99 of 63 ms at 50 in flight, measured). So plain
//! creates (without a `request_id`) go to one task that writes every create waiting when it
//! comes round as one statement (`UNNEST` of the new rows: the tasks, their events and the
//! notifications), committed once; each create is acknowledged after that commit. A failing
//! statement fails its whole group, with the same error for each (every row is a new id, so
//! only the database itself can make it fail).
//!
//! # Point reads
//!
//! Each `GetTask` alone is a round trip to a PostgreSQL backend process for one index lookup,
//! and on a machine whose cores the database shares, waking that process and being woken by
//! it costs more than the lookup (6.7k/s at 50 in flight, 149 µs of the task service's CPU
//! per call, measured; 21.5k/s and 46 µs grouped). So point reads (a task by owner and id) go
//! to a task of their own that takes every read waiting when it comes round and answers them
//! all with one statement, with at most [`READ_GROUPS_IN_FLIGHT`] statements at once: alone, a
//! read is still one statement; under load, reads share them. Each read sees the table as of
//! a moment after it was asked, as a statement of its own would.
//!
//! # Listings
//!
//! Pages (`ListTasks`) are read in groups the same way, one reader per shape of listing
//! (order, state filter, cursor), since the statement depends on it. A group is one statement
//! with one row per page: the owner's counts (from the same snapshot as the page) and the
//! page's tasks as one array per column. Decoding a row is what a page of 50 cost the task
//! service most (sqlx hands each row through a stream and checks each column's type), so
//! rows of a task each took it 107–138 µs and the database 185–240 µs per page, at 7.1–9.2k
//! pages/s with 50 in flight; arrays take 68–89 µs and 132–162 µs, at 10.1–12.2k/s
//! (measured alternately against the same data).
//! The arrays are then read in place ([`arrays`]) rather than through sqlx's `Vec<T>`
//! decoding: the task service's CPU per page went from 89.4 to 77.0 µs, and pages from 10.7k
//! to 11.2k/s (medians of 10 alternating rounds of 3 s, h2load with 50 in flight).

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, OnceLock},
};

use sqlx::{PgConnection, Row, error::BoxDynError, postgres::PgRow};
use todo_common::db::Postgres;
use tokio::sync::{Semaphore, mpsc, oneshot};

use self::arrays::{Element, Elements};
use super::{
    COLUMNS, CursorKey, EventKind, ListQuery, Page, SortKey, StoreError, TaskRecord, TaskRow,
    Values, from_row, list_sql,
};

mod arrays;

/// Most creates in one statement.
const MAX_GROUP: usize = 128;
/// Creates waiting for the writer; beyond, callers wait to hand theirs over.
const QUEUE: usize = 1024;

/// What a create is answered: done, or why not.
type Outcome = Result<(), StoreError>;

struct Job {
    record: TaskRecord,
    done: oneshot::Sender<Outcome>,
}

/// The handle of the writing task; it ends when every handle is gone.
#[derive(Clone, Debug)]
pub struct Creates {
    jobs: mpsc::Sender<Job>,
}

impl Creates {
    /// Starts the writing task on `pg`.
    pub fn start(pg: Postgres) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(write(pg, queue));
        Self { jobs }
    }

    /// Stores `record` (a new task) with its event; returns once committed.
    pub async fn create(&self, record: TaskRecord) -> Outcome {
        let (done, answer) = oneshot::channel();
        let gone = || StoreError::Busy("the writer of creates has stopped".into());
        self.jobs
            .send(Job { record, done })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn write(pg: Postgres, mut queue: mpsc::Receiver<Job>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while queue.recv_many(&mut group, MAX_GROUP).await > 0 {
        let written = pg
            .run(async |connection| insert(connection, &group).await)
            .await;
        for job in group.drain(..) {
            let outcome = written.as_ref().map_err(group_error).copied();
            // The caller may have given up (its deadline): the create stands regardless.
            let _ = job.done.send(outcome);
        }
    }
}

/// One statement for the whole group: the tasks, their events, and a notification for each.
async fn insert(connection: &mut PgConnection, group: &[Job]) -> Result<(), sqlx::Error> {
    let column = |f: fn(&TaskRecord) -> String| -> Vec<String> {
        group.iter().map(|job| f(&job.record)).collect()
    };
    let ids = column(|r| r.id.clone());
    let owners = column(|r| r.owner_id.clone());
    let titles = column(|r| r.title.clone());
    let descriptions = column(|r| r.description.clone());
    let completed: Vec<bool> = group.iter().map(|job| job.record.completed).collect();
    let times: Vec<i64> = group.iter().map(|job| job.record.create_time).collect();
    let versions: Vec<i64> = group.iter().map(|job| job.record.version).collect();
    sqlx::query(
        "WITH new AS ( \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                                  $5::boolean[], $6::bigint[], $7::bigint[]) \
                 AS n (id, owner_id, title, description, completed, create_time, version) \
         ), task AS ( \
             INSERT INTO tasks (id, owner_id, title, description, completed, create_time, \
             update_time, version) \
             SELECT id, owner_id, title, description, completed, create_time, create_time, \
             version FROM new \
         ) \
         INSERT INTO task_events (kind, owner_id, task_id, title, description, completed, \
         create_time, update_time, version, event_time) \
         SELECT $8, owner_id, id, title, description, completed, create_time, create_time, \
         version, create_time FROM new",
    )
    .bind(ids)
    .bind(owners)
    .bind(titles)
    .bind(descriptions)
    .bind(completed)
    .bind(times)
    .bind(versions)
    .bind(EventKind::Created as i16)
    .execute(connection)
    .await
    .map(drop)
}

/// The error of one member of a group whose statement failed.
fn group_error(error: &sqlx::Error) -> StoreError {
    if todo_common::db::is_unavailable(error) {
        StoreError::Busy(error.to_string())
    } else {
        StoreError::Internal(error.to_string())
    }
}

/// Most point reads in one statement.
const MAX_READ_GROUP: usize = 128;
/// Read statements of one kind running at once; while all are, reads gather for the next.
pub const READ_GROUPS_IN_FLIGHT: usize = 4;

/// What a point read is answered.
type Found<V> = Result<V, StoreError>;

struct Ask<K, V> {
    key: K,
    done: oneshot::Sender<Found<V>>,
}

/// Point reads of one kind (by key `K`, answered `V`), looked up in groups by a task of their
/// own; it ends when every handle is gone.
#[derive(Debug)]
pub struct Grouped<K, V> {
    asks: mpsc::Sender<Ask<K, V>>,
}

impl<K, V> Grouped<K, V>
where
    K: Send + 'static,
    V: Send + 'static,
{
    /// Starts the reading task on `pg`: `look_up` answers a group of keys, one answer per key
    /// in their order.
    pub fn start<F, Fut>(pg: Postgres, look_up: F) -> Self
    where
        F: Fn(Postgres, Vec<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<V>, sqlx::Error>> + Send + 'static,
    {
        let (asks, queue) = mpsc::channel(QUEUE);
        tokio::spawn(read(pg, queue, look_up));
        Self { asks }
    }

    /// The answer for `key`.
    pub async fn get(&self, key: K) -> Found<V> {
        let (done, answer) = oneshot::channel();
        let gone = || StoreError::Busy("the reader of tasks has stopped".into());
        self.asks
            .send(Ask { key, done })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn read<K, V, F, Fut>(pg: Postgres, mut queue: mpsc::Receiver<Ask<K, V>>, look_up: F)
where
    K: Send + 'static,
    V: Send + 'static,
    F: Fn(Postgres, Vec<K>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<V>, sqlx::Error>> + Send + 'static,
{
    let in_flight = Arc::new(Semaphore::new(READ_GROUPS_IN_FLIGHT));
    let mut group = Vec::with_capacity(MAX_READ_GROUP);
    loop {
        // Wait for room first: reads arriving meanwhile join the next group.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        if queue.recv_many(&mut group, MAX_READ_GROUP).await == 0 {
            return;
        }
        let (keys, answers): (Vec<K>, Vec<_>) =
            group.drain(..).map(|ask| (ask.key, ask.done)).unzip();
        let found = look_up(pg.clone(), keys);
        tokio::spawn(async move {
            let found = found.await;
            drop(permit);
            match found {
                Ok(values) if values.len() == answers.len() => {
                    for (done, value) in answers.into_iter().zip(values) {
                        // The caller may have given up (its deadline): nothing to undo.
                        let _ = done.send(Ok(value));
                    }
                }
                Ok(values) => {
                    let error = format!("{} answers to {} reads", values.len(), answers.len());
                    for done in answers {
                        let _ = done.send(Err(StoreError::Internal(error.clone())));
                    }
                }
                Err(error) => {
                    for done in answers {
                        let _ = done.send(Err(group_error(&error)));
                    }
                }
            }
        });
    }
}

/// Tasks by (owner, id): the task if that owner has it.
pub type Gets = Grouped<(String, String), Option<TaskRecord>>;

/// The statement of a group of point reads: the task of each (owner, id) that has one.
///
/// Each is a lookup kept from being merged into a join (`OFFSET 0`), so it goes through an
/// index whatever the plan. As a join, the generic plan of a group of unknown size (costed as
/// ten reads) read the whole `tasks` table for every group, matching each row against a hash
/// of the group's keys, while the table held up to a few thousand tasks: 0.23 ms a statement
/// among 1,500 tasks, against 0.04 ms for the lookup that the plan chose from 3,000 tasks on
/// (EXPLAIN ANALYZE, a group of one).
fn gets_sql() -> String {
    format!(
        "SELECT t.* FROM UNNEST($1::text[], $2::text[]) AS k (owner_id, id) \
         CROSS JOIN LATERAL ( \
             SELECT {COLUMNS} FROM tasks WHERE id = k.id AND owner_id = k.owner_id OFFSET 0 \
         ) t"
    )
}

/// Starts the reader of tasks (see [`gets_sql`]).
pub fn gets(pg: Postgres) -> Gets {
    let sql: Arc<str> = gets_sql().into();
    Grouped::start(pg, move |pg, keys: Vec<(String, String)>| {
        let sql = sql.clone();
        async move {
            let owners: Vec<&str> = keys.iter().map(|(owner, _)| owner.as_str()).collect();
            let ids: Vec<&str> = keys.iter().map(|(_, id)| id.as_str()).collect();
            let rows: Vec<TaskRow> = pg
                .run(async |connection| {
                    sqlx::query_as(sqlx::AssertSqlSafe(&*sql))
                        .bind(owners)
                        .bind(ids)
                        .fetch_all(connection)
                        .await
                })
                .await?;
            let by_id: HashMap<String, TaskRecord> = rows
                .into_iter()
                .map(from_row)
                .map(|record| (record.id.clone(), record))
                .collect();
            Ok(keys
                .iter()
                .map(|(owner, id)| {
                    by_id
                        .get(id)
                        .filter(|record| record.owner_id == *owner)
                        .cloned()
                })
                .collect())
        }
    })
}

/// Listings of one shape: pages by (owner, query).
type Lists = Grouped<(String, ListQuery), Page>;

/// Listing shapes: the six orders, filtered by state or not, after a cursor or not.
const SHAPES: usize = 6 * 2 * 2;

/// The shape of `query`, in `0..SHAPES`: queries of one shape share the statement of a group.
fn shape(query: &ListQuery) -> usize {
    let key = match query.order.key {
        SortKey::CreateTime => 0,
        SortKey::UpdateTime => 1,
        SortKey::Title => 2,
    };
    let order = key * 2 + usize::from(query.order.descending);
    (order * 2 + usize::from(query.completed.is_some())) * 2 + usize::from(query.after.is_some())
}

/// The readers of pages, in groups as point reads are: one per shape, started at its first
/// listing.
#[derive(Debug, Default)]
pub struct Pages {
    shapes: [OnceLock<Lists>; SHAPES],
}

impl Pages {
    /// One page of `owner`'s tasks, and their count.
    pub async fn list(&self, pg: &Postgres, owner: &str, query: &ListQuery) -> Found<Page> {
        self.shapes[shape(query)]
            .get_or_init(|| lists(pg.clone(), query))
            .get((owner.to_owned(), query.clone()))
            .await
    }
}

/// The tasks of `owner` in a row of a group of pages (see [`lists`]), in `query`'s order: the
/// row's columns from the fourth on are the tasks' columns (but the owner) as arrays, `NULL`
/// when the page is empty.
fn page_tasks(owner: &str, query: &ListQuery, row: &PgRow) -> Result<Vec<TaskRecord>, BoxDynError> {
    let Some(ids) = Elements::<&str>::of(row, 3)? else {
        return Ok(Vec::new());
    };
    fn column<'r, T: Element<'r>>(
        row: &'r PgRow,
        index: usize,
    ) -> Result<Elements<'r, T>, BoxDynError> {
        Elements::of(row, index)?.ok_or_else(|| "a NULL array beside the ids".into())
    }
    fn next<'r, T: Element<'r>>(elements: &mut Elements<'r, T>) -> Result<T, BoxDynError> {
        elements
            .next()
            .unwrap_or_else(|| Err("a column shorter than the ids".into()))
    }
    let mut titles = column::<&str>(row, 4)?;
    let mut descriptions = column::<&str>(row, 5)?;
    let mut states = column::<bool>(row, 6)?;
    let mut create_times = column::<i64>(row, 7)?;
    let mut update_times = column::<i64>(row, 8)?;
    let mut versions = column::<i64>(row, 9)?;
    let n = ids.len();
    if [
        titles.len(),
        descriptions.len(),
        states.len(),
        create_times.len(),
        update_times.len(),
        versions.len(),
    ] != [n; 6]
    {
        return Err("the columns of a page do not line up".into());
    }
    let mut tasks = Vec::with_capacity(n);
    for id in ids {
        tasks.push(TaskRecord {
            id: id?.to_owned(),
            owner_id: owner.to_owned(),
            title: next(&mut titles)?.to_owned(),
            description: next(&mut descriptions)?.to_owned(),
            completed: next(&mut states)?,
            create_time: next(&mut create_times)?,
            update_time: next(&mut update_times)?,
            version: next(&mut versions)?,
        });
    }
    // The arrays come in the page's order in practice; sorting makes it so (and costs one
    // pass when it already is).
    tasks.sort_by(|a, b| query.order.compare(a, b));
    Ok(tasks)
}

/// The statement of a group of pages of `example`'s shape: one row per listing (a row of `k`)
/// whose owner ever had a task, with its owner's counts and its tasks aggregated into one
/// array per column, so the rows to decode are as many as the listings and not as their
/// tasks. The page and the counts come from one statement, so they agree.
///
/// The counts are a lateral lookup kept from being merged into the join (`OFFSET 0`), so each
/// is an index scan whatever the plan. Merged, the generic plan sees a group of unknown size
/// (costed as ten listings) against `task_counts`, and while that table is small enough (a
/// thousand owners) it reads the whole table for every group, matching each row against a
/// hash of the group's owners, rather than look ten owners up: 0.18-0.26 ms a statement
/// against 0.07 ms for the lookups (EXPLAIN ANALYZE, a page of 50 among a thousand owners),
/// and the more owners up to that size, the slower every page.
fn lists_sql(example: &ListQuery) -> String {
    format!(
        "SELECT k.n, c.total, c.completed, p.* \
         FROM UNNEST($1::text[], $2::bigint[], $3::bool[], $4::bigint[], $5::text[], $6::text[]) \
             WITH ORDINALITY AS k (owner_id, lim, state, after_time, after_text, after_id, n) \
         CROSS JOIN LATERAL ( \
             SELECT total, completed FROM task_counts WHERE owner_id = k.owner_id OFFSET 0 \
         ) c \
         CROSS JOIN LATERAL ( \
             SELECT array_agg(t.id), array_agg(t.title), array_agg(t.description), \
                 array_agg(t.completed), array_agg(t.create_time), array_agg(t.update_time), \
                 array_agg(t.version) \
             FROM ({}) t \
         ) p",
        list_sql(example, Values::Columns, "")
    )
}

/// Starts the reader of pages of `example`'s shape (see [`lists_sql`]).
fn lists(pg: Postgres, example: &ListQuery) -> Lists {
    let sql: Arc<str> = lists_sql(example).into();
    Grouped::start(pg, move |pg, keys: Vec<(String, ListQuery)>| {
        let sql = sql.clone();
        async move {
            let owners: Vec<&str> = keys.iter().map(|(owner, _)| owner.as_str()).collect();
            let limits: Vec<i64> = keys.iter().map(|(_, query)| query.limit).collect();
            let states: Vec<Option<bool>> = keys.iter().map(|(_, query)| query.completed).collect();
            let cursors = || keys.iter().map(|(_, query)| query.after.as_ref());
            let after_times: Vec<Option<i64>> = cursors()
                .map(|cursor| match cursor?.key {
                    CursorKey::Time(time) => Some(time),
                    CursorKey::Text(_) => None,
                })
                .collect();
            let after_texts: Vec<Option<&str>> = cursors()
                .map(|cursor| match &cursor?.key {
                    CursorKey::Text(text) => Some(text.as_str()),
                    CursorKey::Time(_) => None,
                })
                .collect();
            let after_ids: Vec<Option<&str>> = cursors()
                .map(|cursor| cursor.map(|cursor| cursor.id.as_str()))
                .collect();
            let rows: Vec<PgRow> = pg
                .run(async |connection| {
                    sqlx::query(sqlx::AssertSqlSafe(&*sql))
                        .bind(owners)
                        .bind(limits)
                        .bind(states)
                        .bind(after_times)
                        .bind(after_texts)
                        .bind(after_ids)
                        .fetch_all(connection)
                        .await
                })
                .await?;
            let mut pages: Vec<Page> = vec![Page::default(); keys.len()];
            for row in &rows {
                let (number, total, completed): (i64, i64, i64) =
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                let Some(((owner, query), page)) = usize::try_from(number - 1)
                    .ok()
                    .and_then(|n| Some((keys.get(n)?, pages.get_mut(n)?)))
                else {
                    continue;
                };
                page.total = Page::total_of((total, completed), query.completed);
                page.tasks = page_tasks(owner, query, row).map_err(sqlx::Error::Decode)?;
            }
            Ok(pages)
        }
    })
}

#[cfg(test)]
mod tests {
    use todo_common::{
        Database,
        testing::{Backend, TestDatabase, backends},
    };

    use super::*;
    use crate::store::{Cursor, Order};

    /// A listing of every shape, in the order of [`shape`].
    fn every_shape() -> Vec<ListQuery> {
        let mut queries = Vec::new();
        for key in [SortKey::CreateTime, SortKey::UpdateTime, SortKey::Title] {
            for descending in [false, true] {
                for completed in [None, Some(true)] {
                    for after in [false, true] {
                        let key_after = match key {
                            SortKey::Title => CursorKey::Text("t".into()),
                            SortKey::CreateTime | SortKey::UpdateTime => CursorKey::Time(1),
                        };
                        queries.push(ListQuery {
                            completed,
                            order: Order { key, descending },
                            after: after.then(|| Cursor {
                                key: key_after,
                                id: "id".into(),
                            }),
                            limit: 50,
                        });
                    }
                }
            }
        }
        queries
    }

    /// The plan of `sql` run with `arguments`, as EXPLAIN prints it: the generic plan, the
    /// only kind the services' connections make (`plan_cache_mode`, see `todo_common::db`).
    async fn generic_plan(
        connection: &mut PgConnection,
        sql: &str,
        arguments: &str,
    ) -> Result<String, sqlx::Error> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE explained AS {sql}")))
            .execute(&mut *connection)
            .await?;
        let lines: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN EXECUTE explained {arguments}"
        )))
        .fetch_all(&mut *connection)
        .await?;
        sqlx::raw_sql("DEALLOCATE explained")
            .execute(&mut *connection)
            .await?;
        Ok(lines.join("\n"))
    }

    /// Runs `test` on a fresh PostgreSQL task database when `TEST_POSTGRES_URL` is set.
    async fn on_postgres<F>(test: F)
    where
        F: AsyncFn(&mut PgConnection) -> Result<(), sqlx::Error>,
    {
        for backend in backends() {
            let Backend::Postgres(_) = backend else {
                continue;
            };
            let database = TestDatabase::create(&backend).await;
            let db = database.connect(&crate::MIGRATIONS).await;
            let Database::Postgres(pg) = &db else {
                unreachable!("a PostgreSQL test database")
            };
            pg.run(async |c| test(c).await).await.unwrap();
            db.close().await;
            database.remove().await;
        }
    }

    #[test]
    fn every_shape_is_its_own() {
        let shapes: Vec<usize> = every_shape().iter().map(shape).collect();
        assert_eq!(shapes, (0..SHAPES).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_group_of_pages_looks_each_owners_counts_up_by_index_among_many_owners() {
        on_postgres(async |c| {
            // A thousand owners: few enough that reading the whole table looks cheaper than ten
            // lookups to a plan made for a group of unknown size.
            for statement in [
                "INSERT INTO task_counts (owner_id, total, completed) \
                 SELECT 'owner' || o, 3, 1 FROM generate_series(1, 1000) o",
                "ANALYZE task_counts",
            ] {
                sqlx::query(statement).execute(&mut *c).await?;
            }
            for query in every_shape() {
                let arguments = "('{owner7}', '{50}', '{true}', '{1}', '{t}', '{id}')";
                let plan = generic_plan(c, &lists_sql(&query), arguments).await?;
                assert!(
                    plan.contains("Index Scan using task_counts_pkey on task_counts")
                        && !plan.contains("Seq Scan on task_counts"),
                    "{query:?} reads the counts without their index:\n{plan}"
                );
            }
            Ok(())
        })
        .await;
    }

    #[tokio::test]
    async fn a_group_of_point_reads_looks_each_task_up_by_index_among_a_few_thousand() {
        on_postgres(async |c| {
            // 1,500 tasks: few enough that reading the whole table looks cheaper than ten
            // lookups to a plan made for a group of unknown size.
            for statement in [
                "INSERT INTO tasks (id, owner_id, title, create_time, update_time) \
                 SELECT 'task' || n, 'owner' || (n % 100), 'seeded', n, n \
                 FROM generate_series(1, 1500) n",
                "ANALYZE tasks",
            ] {
                sqlx::query(statement).execute(&mut *c).await?;
            }
            let plan = generic_plan(c, &gets_sql(), "('{owner5}', '{task5}')").await?;
            assert!(
                plan.contains("Index Scan") && !plan.contains("Seq Scan on tasks"),
                "a point read reads more than its task:\n{plan}"
            );
            Ok(())
        })
        .await;
    }
}
