//! The change feed behind `WatchTasks`: committed task events, fanned out to the watchers of
//! their owner.
//!
//! Each owner with watchers has a bounded broadcast channel: publishing never waits, and a
//! watcher that falls more than the buffer behind is told so (its stream ends with
//! `ABORTED`, and it lists again). On SQLite (one process) the service publishes each event
//! after its commit. On PostgreSQL every write records its event and sends `NOTIFY task_events`
//! in its transaction; each instance's listener ([`listen_postgres`]) reads back, in commit
//! order, the events of the owners watched there (the notification names the owner) and
//! publishes them, so watchers see the writes of every instance.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use todo_common::Shutdown;
use tokio::sync::broadcast;

use crate::store::{SqlTaskStore, TaskEvent, TaskStore};

/// Committed events by owner.
#[derive(Debug)]
pub struct Feed {
    owners: Mutex<HashMap<String, broadcast::Sender<Arc<TaskEvent>>>>,
    buffer: usize,
    /// Whether writes are published here (SQLite) or come back through the database.
    publish_on_commit: bool,
}

impl Feed {
    /// A feed whose watchers may fall `buffer` events behind; `publish_on_commit` when the
    /// database does not carry events between processes.
    pub fn new(buffer: usize, publish_on_commit: bool) -> Self {
        Self {
            owners: Mutex::new(HashMap::new()),
            buffer: buffer.max(1),
            publish_on_commit,
        }
    }

    /// Starts watching `owner`'s events.
    pub fn subscribe(&self, owner: &str) -> broadcast::Receiver<Arc<TaskEvent>> {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        owners
            .entry(owner.to_owned())
            .or_insert_with(|| broadcast::channel(self.buffer).0)
            .subscribe()
    }

    /// Whether anyone here watches `owner`'s events.
    pub fn is_watched(&self, owner: &str) -> bool {
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(owner)
    }

    /// Called by the service after a write committed.
    pub fn committed(&self, event: TaskEvent) {
        if self.publish_on_commit {
            self.publish(event);
        }
    }

    /// Hands `event` to its owner's watchers, if any.
    pub fn publish(&self, event: TaskEvent) {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let owner = event.task.owner_id.clone();
        if let Some(sender) = owners.get(&owner) {
            // An error means every watcher has gone: forget the owner.
            if sender.send(Arc::new(event)).is_err() {
                owners.remove(&owner);
            }
        }
    }

    /// Ends every watch (events may have been missed: watchers must list again).
    pub fn interrupt_all(&self) {
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Owners with watchers (for tests and metrics).
    pub fn watched_owners(&self) -> usize {
        self.owners.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Delay before reconnecting a lost listener.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Reads PostgreSQL's `task_events` notifications until shutdown and publishes their events.
/// `ready` is told once the first `LISTEN` is in place. A lost connection ends every watch (its
/// notifications are lost) and is re-established.
pub async fn listen_postgres(
    pool: sqlx::PgPool,
    store: Arc<SqlTaskStore>,
    feed: Arc<Feed>,
    ready: tokio::sync::oneshot::Sender<()>,
    shutdown: Shutdown,
) {
    let mut ready = Some(ready);
    while !shutdown.is_triggered() {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot connect the change-feed listener");
                tokio::select! {
                    () = tokio::time::sleep(RECONNECT_DELAY) => continue,
                    () = shutdown.wait() => return,
                }
            }
        };
        if let Err(error) = listener.listen("task_events").await {
            tracing::warn!(%error, "cannot LISTEN task_events");
            tokio::time::sleep(RECONNECT_DELAY).await;
            continue;
        }
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        loop {
            let notification = tokio::select! {
                notification = listener.try_recv() => notification,
                () = shutdown.wait() => return,
            };
            match notification {
                Ok(Some(notification)) => {
                    // `{id} {owner}`: events of owners nobody watches here are not read.
                    let (id, owner) = match notification.payload().split_once(' ') {
                        Some((id, owner)) => (id, Some(owner)),
                        None => (notification.payload(), None),
                    };
                    let Ok(id) = id.parse::<i64>() else {
                        tracing::warn!(payload = notification.payload(), "bad task_events payload");
                        continue;
                    };
                    if owner.is_some_and(|owner| !feed.is_watched(owner)) {
                        continue;
                    }
                    match store.event(id).await {
                        Ok(Some(event)) => feed.publish(event),
                        Ok(None) => tracing::warn!(id, "notified event not found"),
                        Err(error) => {
                            tracing::warn!(%error, "cannot read an event: watchers must re-list");
                            feed.interrupt_all();
                        }
                    }
                }
                Ok(None) => {
                    // The connection dropped; try_recv reconnects on the next call.
                    tracing::warn!("change-feed connection lost: watchers must re-list");
                    feed.interrupt_all();
                }
                Err(error) => {
                    tracing::warn!(%error, "change-feed listener failed: watchers must re-list");
                    feed.interrupt_all();
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EventKind, TaskRecord};

    fn event(owner: &str, title: &str) -> TaskEvent {
        TaskEvent {
            kind: EventKind::Created,
            task: TaskRecord {
                id: "t".into(),
                owner_id: owner.into(),
                title: title.into(),
                description: String::new(),
                completed: false,
                create_time: 1,
                update_time: 1,
                version: 1,
            },
            event_time: 1,
        }
    }

    #[tokio::test]
    async fn watchers_get_only_their_owners_events() {
        let feed = Feed::new(8, true);
        let mut ada = feed.subscribe("ada");
        let mut bob = feed.subscribe("bob");
        feed.committed(event("ada", "a1"));
        feed.committed(event("bob", "b1"));
        feed.committed(event("carol", "c1"));
        assert_eq!(ada.recv().await.unwrap().task.title, "a1");
        assert_eq!(bob.recv().await.unwrap().task.title, "b1");
        assert!(ada.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_slow_watcher_is_told_it_lagged_and_writers_never_wait() {
        let feed = Feed::new(2, true);
        let mut slow = feed.subscribe("ada");
        for n in 0..5 {
            feed.committed(event("ada", &n.to_string()));
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(3))
        ));
    }

    #[tokio::test]
    async fn owners_without_watchers_are_forgotten() {
        let feed = Feed::new(2, true);
        drop(feed.subscribe("ada"));
        assert_eq!(feed.watched_owners(), 1);
        feed.committed(event("ada", "nobody listens"));
        assert_eq!(feed.watched_owners(), 0);
    }

    #[tokio::test]
    async fn postgres_feeds_do_not_publish_on_commit() {
        let feed = Feed::new(2, false);
        let mut ada = feed.subscribe("ada");
        feed.committed(event("ada", "comes back through NOTIFY"));
        assert!(ada.try_recv().is_err());
        feed.publish(event("ada", "from the listener"));
        assert_eq!(ada.recv().await.unwrap().task.title, "from the listener");
    }
}
