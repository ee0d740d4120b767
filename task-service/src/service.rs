//! The gRPC implementation of `todo.task.v1.TaskService`.
//!
//! Every call arrives with a verified [`Caller`] (see [`crate::auth`]). Handlers destructure
//! the request, resolve names against the caller (another user's name is `PERMISSION_DENIED`
//! before any lookup), validate, call the store with the caller as owner, and convert with the
//! named functions at the bottom.

use std::{pin::Pin, sync::Arc};

use todo_common::{
    Shutdown,
    rpc_error::FieldViolation,
    time::{now_micros, to_timestamp},
};
use todo_proto::task::v1::{
    CreateTaskRequest, CreateTaskResponse, DeleteTaskRequest, DeleteTaskResponse, GetTaskRequest,
    GetTaskResponse, ListTasksRequest, ListTasksResponse, SetTaskCompletedRequest,
    SetTaskCompletedResponse, Task, TaskEvent as ProtoTaskEvent, TaskEventType, UpdateTaskRequest,
    UpdateTaskResponse, WatchTasksRequest, WatchTasksResponse, task_service_server::TaskService,
};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use crate::{
    auth::Caller,
    error::TaskError,
    feed::Feed,
    names::{parse_parent, parse_task_name, task_name},
    query::{decode_token, encode_token, fingerprint, page_size, parse_filter, parse_order},
    store::{
        Cursor, EventKind, ListQuery, NewTask, Page, TaskChanges, TaskEvent, TaskRecord, TaskStore,
        WriteOutcome,
    },
    validate::{description_problem, title_problem},
};

/// The stream `WatchTasks` answers with.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchTasksResponse, Status>> + Send>>;

/// Messages a watch stream may hold for a slow connection before its feed buffer takes over.
const WATCH_CHANNEL: usize = 16;
/// How long the last message of a stream (why it ends) may wait for room.
const FINAL_MESSAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The service: shared by every call.
#[derive(Debug)]
pub struct TaskApi<S> {
    store: Arc<S>,
    feed: Arc<Feed>,
    shutdown: Shutdown,
}

impl<S: TaskStore> TaskApi<S> {
    /// Assembles the service; `shutdown` ends open watch streams.
    pub fn new(store: Arc<S>, feed: Arc<Feed>, shutdown: Shutdown) -> Self {
        Self {
            store,
            feed,
            shutdown,
        }
    }
}

/// The verified caller's user id.
fn caller<T>(request: &Request<T>) -> Result<String, TaskError> {
    request
        .extensions()
        .get::<Caller>()
        .map(|caller| caller.0.user_id.clone())
        .ok_or_else(|| {
            TaskError::Internal("a call reached the service without a verified caller".into())
        })
}

/// The version an etag stands for; `None` for an empty etag. Only the exact spelling this
/// service issues is taken: `v+7` or `v07` never came from us, so they are refused rather than
/// read as `v7`.
fn parse_etag(given: &str, field: &str) -> Result<Option<i64>, TaskError> {
    if given.is_empty() {
        return Ok(None);
    }
    given
        .strip_prefix('v')
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v > 0 && etag(*v) == given)
        .map(Some)
        .ok_or_else(|| TaskError::invalid(field, "is not an etag of this service"))
}

fn etag(version: i64) -> String {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(version);
    let mut etag = String::with_capacity(1 + digits.len());
    etag.push('v');
    etag.push_str(digits);
    etag
}

/// The outcome of a write, as the caller sees it; publishes its event.
fn finish_write(feed: &Feed, outcome: WriteOutcome) -> Result<TaskRecord, TaskError> {
    match outcome {
        WriteOutcome::Done(task, event) => {
            if let Some(event) = event {
                feed.committed(event);
            }
            Ok(task)
        }
        WriteOutcome::NotFound => Err(TaskError::NotFound),
        WriteOutcome::VersionMismatch => Err(TaskError::EtagMismatch),
    }
}

#[tonic::async_trait]
impl<S: TaskStore> TaskService for TaskApi<S> {
    async fn create_task(
        &self,
        request: Request<CreateTaskRequest>,
    ) -> Result<Response<CreateTaskResponse>, Status> {
        let owner = caller(&request)?;
        let CreateTaskRequest {
            parent,
            task,
            request_id,
        } = request.into_inner();
        parse_parent(&parent, &owner).map_err(|e| TaskError::name("parent", e))?;
        let mut violations = Vec::new();
        let Some(Task {
            title,
            description,
            completed,
            // Output only: ignored on create.
            name: _,
            create_time: _,
            update_time: _,
            etag: _,
        }) = task
        else {
            return Err(TaskError::invalid("task", "is required").into());
        };
        if let Some(problem) = title_problem(&title) {
            violations.push(FieldViolation::new("task.title", problem));
        }
        if let Some(problem) = description_problem(&description) {
            violations.push(FieldViolation::new("task.description", problem));
        }
        let request_id = if request_id.is_empty() {
            None
        } else {
            match uuid::Uuid::try_parse(&request_id) {
                Ok(id) => Some(id.hyphenated().to_string()),
                Err(_) => {
                    violations.push(FieldViolation::new("request_id", "must be a UUID"));
                    None
                }
            }
        };
        if !violations.is_empty() {
            return Err(TaskError::Invalid(violations).into());
        }

        let new = NewTask {
            title,
            description,
            completed,
        };
        let id = uuid::Uuid::now_v7().to_string();
        let (task, event) = self
            .store
            .create(&owner, &id, &new, request_id.as_deref(), now_micros())
            .await
            .map_err(TaskError::from)?;
        if let Some(event) = event {
            self.feed.committed(event);
        }
        // A retried create whose task has been deleted since.
        let task = task.ok_or(TaskError::NotFound)?;
        Ok(Response::new(CreateTaskResponse {
            task: Some(task_into_proto(task)),
        }))
    }

    async fn get_task(
        &self,
        request: Request<GetTaskRequest>,
    ) -> Result<Response<GetTaskResponse>, Status> {
        let owner = caller(&request)?;
        let GetTaskRequest { name } = request.into_inner();
        let id = parse_task_name(&name, &owner).map_err(|e| TaskError::name("name", e))?;
        let task = self
            .store
            .get(&owner, &id)
            .await
            .map_err(TaskError::from)?
            .ok_or(TaskError::NotFound)?;
        Ok(Response::new(GetTaskResponse {
            task: Some(task_into_proto(task)),
        }))
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let owner = caller(&request)?;
        let ListTasksRequest {
            parent,
            page_size: requested_size,
            page_token,
            filter,
            order_by,
        } = request.into_inner();
        parse_parent(&parent, &owner).map_err(|e| TaskError::name("parent", e))?;
        let mut violations = Vec::new();
        let limit = page_size(requested_size)
            .map_err(|problem| violations.push(FieldViolation::new("page_size", problem)))
            .ok();
        let completed = parse_filter(&filter)
            .map_err(|problem| violations.push(FieldViolation::new("filter", problem)))
            .ok();
        let order = parse_order(&order_by)
            .map_err(|problem| violations.push(FieldViolation::new("order_by", problem)))
            .ok();
        let (Some(limit), Some(completed), Some(order)) = (limit, completed, order) else {
            return Err(TaskError::Invalid(violations).into());
        };
        let print = fingerprint(&owner, completed, order);
        let after = if page_token.is_empty() {
            None
        } else {
            Some(
                decode_token(&page_token, &print, order)
                    .map_err(|problem| TaskError::invalid("page_token", problem))?,
            )
        };

        // One more than the page: whether it exists says whether a next page does.
        let query = ListQuery {
            completed,
            order,
            after,
            limit: limit + 1,
        };
        let Page { mut tasks, total } = self
            .store
            .list(&owner, &query)
            .await
            .map_err(TaskError::from)?;
        let next_page_token = if tasks.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
            tasks.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            tasks
                .last()
                .map(|last| encode_token(&print, &Cursor::after(last, order)))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListTasksResponse {
            tasks: tasks.into_iter().map(task_into_proto).collect(),
            next_page_token,
            total_size: i32::try_from(total).unwrap_or(i32::MAX),
        }))
    }

    async fn update_task(
        &self,
        request: Request<UpdateTaskRequest>,
    ) -> Result<Response<UpdateTaskResponse>, Status> {
        let owner = caller(&request)?;
        let UpdateTaskRequest { task, update_mask } = request.into_inner();
        let Some(Task {
            name,
            title,
            description,
            completed,
            etag: given_etag,
            create_time: _,
            update_time: _,
        }) = task
        else {
            return Err(TaskError::invalid("task", "is required").into());
        };
        let id = parse_task_name(&name, &owner).map_err(|e| TaskError::name("task.name", e))?;
        let expected_version = parse_etag(&given_etag, "task.etag")?;

        // AIP-134: the mask names the fields to change; without one, the populated fields.
        let (mut set_title, mut set_description, mut set_completed) = (false, false, false);
        let mut violations = Vec::new();
        match update_mask
            .map(|mask| mask.paths)
            .filter(|paths| !paths.is_empty())
        {
            None => {
                set_title = !title.is_empty();
                set_description = !description.is_empty();
                set_completed = completed;
            }
            Some(paths) => {
                for path in paths {
                    match path.as_str() {
                        "*" => (set_title, set_description, set_completed) = (true, true, true),
                        "title" => set_title = true,
                        "description" => set_description = true,
                        "completed" => set_completed = true,
                        "name" | "create_time" | "update_time" | "etag" => {
                            violations.push(FieldViolation::new(
                                "update_mask",
                                format!("`{path}` is output only and cannot be updated"),
                            ))
                        }
                        _ => violations.push(FieldViolation::new(
                            "update_mask",
                            format!(
                                "unknown field `{path}`; updatable: title, description, completed"
                            ),
                        )),
                    }
                }
            }
        }
        if set_title && let Some(problem) = title_problem(&title) {
            violations.push(FieldViolation::new("task.title", problem));
        }
        if set_description && let Some(problem) = description_problem(&description) {
            violations.push(FieldViolation::new("task.description", problem));
        }
        if !violations.is_empty() {
            return Err(TaskError::Invalid(violations).into());
        }

        let changes = TaskChanges {
            title: set_title.then_some(title),
            description: set_description.then_some(description),
            completed: set_completed.then_some(completed),
        };
        let outcome = self
            .store
            .update(&owner, &id, &changes, expected_version, now_micros())
            .await
            .map_err(TaskError::from)?;
        let task = finish_write(&self.feed, outcome)?;
        Ok(Response::new(UpdateTaskResponse {
            task: Some(task_into_proto(task)),
        }))
    }

    async fn set_task_completed(
        &self,
        request: Request<SetTaskCompletedRequest>,
    ) -> Result<Response<SetTaskCompletedResponse>, Status> {
        let owner = caller(&request)?;
        let SetTaskCompletedRequest {
            name,
            completed,
            etag: given_etag,
        } = request.into_inner();
        let id = parse_task_name(&name, &owner).map_err(|e| TaskError::name("name", e))?;
        let expected_version = parse_etag(&given_etag, "etag")?;
        let changes = TaskChanges {
            completed: Some(completed),
            ..TaskChanges::default()
        };
        let outcome = self
            .store
            .update(&owner, &id, &changes, expected_version, now_micros())
            .await
            .map_err(TaskError::from)?;
        let task = finish_write(&self.feed, outcome)?;
        Ok(Response::new(SetTaskCompletedResponse {
            task: Some(task_into_proto(task)),
        }))
    }

    async fn delete_task(
        &self,
        request: Request<DeleteTaskRequest>,
    ) -> Result<Response<DeleteTaskResponse>, Status> {
        let owner = caller(&request)?;
        let DeleteTaskRequest {
            name,
            etag: given_etag,
        } = request.into_inner();
        let id = parse_task_name(&name, &owner).map_err(|e| TaskError::name("name", e))?;
        let expected_version = parse_etag(&given_etag, "etag")?;
        let outcome = self
            .store
            .delete(&owner, &id, expected_version, now_micros())
            .await
            .map_err(TaskError::from)?;
        finish_write(&self.feed, outcome)?;
        Ok(Response::new(DeleteTaskResponse {}))
    }

    type WatchTasksStream = WatchStream;

    async fn watch_tasks(
        &self,
        request: Request<WatchTasksRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let owner = caller(&request)?;
        let WatchTasksRequest { parent } = request.into_inner();
        parse_parent(&parent, &owner).map_err(|e| TaskError::name("parent", e))?;
        let mut events = self.feed.subscribe(&owner);
        let (sender, receiver) = tokio::sync::mpsc::channel(WATCH_CHANNEL);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let last_word = |status: TaskError, sender: tokio::sync::mpsc::Sender<_>| async move {
                // Say why the stream ends; a client too slow to take even that is cut off.
                let _ = tokio::time::timeout(
                    FINAL_MESSAGE_TIMEOUT,
                    sender.send(Err(Status::from(status))),
                )
                .await;
            };
            loop {
                let event = tokio::select! {
                    event = events.recv() => event,
                    () = sender.closed() => return,
                    () = shutdown.wait() => return last_word(TaskError::ShuttingDown, sender).await,
                };
                // An error means the watcher fell behind, or the feed was interrupted: events
                // may be missing, so the client must list again.
                let Ok(event) = event else {
                    return last_word(TaskError::WatchLagged, sender).await;
                };
                let message = Ok(WatchTasksResponse {
                    event: Some(event_to_proto(&event)),
                });
                tokio::select! {
                    sent = sender.send(message) => if sent.is_err() { return },
                    () = shutdown.wait() => return last_word(TaskError::ShuttingDown, sender).await,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

fn task_into_proto(task: TaskRecord) -> Task {
    Task {
        name: task_name(&task.owner_id, &task.id),
        title: task.title,
        description: task.description,
        completed: task.completed,
        create_time: Some(to_timestamp(task.create_time)),
        update_time: Some(to_timestamp(task.update_time)),
        etag: etag(task.version),
    }
}

fn event_to_proto(event: &TaskEvent) -> ProtoTaskEvent {
    let kind = match event.kind {
        EventKind::Created => TaskEventType::Created,
        EventKind::Updated => TaskEventType::Updated,
        EventKind::Deleted => TaskEventType::Deleted,
    };
    ProtoTaskEvent {
        r#type: kind.into(),
        task: Some(task_into_proto(event.task.clone())),
        event_time: Some(to_timestamp(event.event_time)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_round_trip_and_garbage_is_refused() {
        assert_eq!(parse_etag(&etag(7), "etag").unwrap(), Some(7));
        assert_eq!(parse_etag("", "etag").unwrap(), None);
        for bad in ["7", "v", "v-1", "v0", "W/\"7\"", "vx", "v07", "v+7", "v7 "] {
            assert!(parse_etag(bad, "etag").is_err(), "{bad}");
        }
    }
}

/// Property tests: every etag we issue parses back, and no other string is taken for one.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_issued_etag_parses_back_to_its_version(version in 1..=i64::MAX) {
            prop_assert_eq!(parse_etag(&etag(version), "etag").ok(), Some(Some(version)));
        }

        #[test]
        fn only_issued_etags_are_taken(
            given in prop_oneof![
                any::<String>(),
                "v[-+0]?[0-9]{0,20}",
                any::<i64>().prop_map(|v| format!("v{v}")),
                any::<String>().prop_map(|s| format!("v{s}")),
            ],
        ) {
            // What we issue: `v`, then a positive i64 in decimal without sign or leading zero.
            let issued = given.strip_prefix('v').is_some_and(|digits| {
                digits.bytes().all(|b| b.is_ascii_digit())
                    && !digits.starts_with('0')
                    && digits.parse::<i64>().is_ok()
            });
            match parse_etag(&given, "etag") {
                Ok(None) => prop_assert!(given.is_empty()),
                Ok(Some(version)) => {
                    prop_assert!(issued && version > 0, "{:?}", given);
                    prop_assert_eq!(etag(version), given);
                }
                Err(_) => prop_assert!(!issued && !given.is_empty(), "{:?}", given),
            }
        }
    }
}
