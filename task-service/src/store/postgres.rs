//! PostgreSQL creates in groups.
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

use todo_common::db::Postgres;
use tokio::sync::{mpsc, oneshot};

use super::{EventKind, StoreError, TaskRecord};

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
        let written = insert(&pg, &group).await;
        for job in group.drain(..) {
            let outcome = match &written {
                Ok(()) => Ok(()),
                Err(error) if todo_common::db::is_unavailable(error) => {
                    Err(StoreError::Busy(error.to_string()))
                }
                Err(error) => Err(StoreError::Internal(error.to_string())),
            };
            // The caller may have given up (its deadline): the create stands regardless.
            let _ = job.done.send(outcome);
        }
    }
}

/// One statement for the whole group: the tasks, their events, and a notification for each.
async fn insert(pg: &Postgres, group: &[Job]) -> Result<(), sqlx::Error> {
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
         ), event AS ( \
             INSERT INTO task_events (kind, owner_id, task_id, title, description, completed, \
             create_time, update_time, version, event_time) \
             SELECT $8, owner_id, id, title, description, completed, create_time, create_time, \
             version, create_time FROM new \
             RETURNING id, owner_id \
         ) \
         SELECT pg_notify('task_events', id::text || ' ' || owner_id) FROM event",
    )
    .bind(ids)
    .bind(owners)
    .bind(titles)
    .bind(descriptions)
    .bind(completed)
    .bind(times)
    .bind(versions)
    .bind(EventKind::Created as i16)
    .execute(pg.pool()?)
    .await
    .map(drop)
}
