//! Isolation sweep: two users with random task titles; for every RPC, straight to the task
//! service and through the gateway, one tries to read, change, delete, list and watch the
//! other's tasks by every spelling of their names (and by guessed ids). Every attempt must be
//! refused, the victim's tasks must be exactly as they were, and the attacker's stream must
//! carry only the attacker's own events.

use std::time::Duration;

use todo_proto::task::v1::{
    CreateTaskRequest, DeleteTaskRequest, GetTaskRequest, ListTasksRequest,
    SetTaskCompletedRequest, Task, UpdateTaskRequest, WatchTasksRequest,
    task_service_client::TaskServiceClient,
};
use tonic::Code;

use crate::{
    Ctx,
    net::{self, authed},
};

/// The victim's tasks.
const TASKS: usize = 50;

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).expect("randomness");
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// What one attempt is allowed to get: a refusal that says nothing about the task.
fn refused(code: Code) -> bool {
    matches!(
        code,
        Code::NotFound | Code::PermissionDenied | Code::InvalidArgument
    )
}

pub async fn run(ctx: &mut Ctx) {
    let storage = ctx.storage("isolation").await;
    let stack = ctx.start(&storage, &ctx.settings()).await;
    let ada = net::sign_up(stack.auth.addr, "ada@example.com").await;
    let bob = net::sign_up(stack.auth.addr, "bob@example.com").await;
    let mut bob_tasks = TaskServiceClient::new(net::channel(stack.task.addr).await);
    for _ in 0..TASKS {
        let request = CreateTaskRequest {
            parent: "users/me".into(),
            task: Some(Task {
                title: format!("bob's secret {}", random_hex(8)),
                description: random_hex(16),
                ..Task::default()
            }),
            request_id: String::new(),
        };
        bob_tasks
            .create_task(authed(request, &bob.token, None))
            .await
            .unwrap_or_else(|s| panic!("create: {s:?}"));
    }
    let before = net::list_all(&mut bob_tasks, &bob.token).await;

    let mut attempts = 0usize;
    let mut let_through = Vec::new();
    let mut leaked_events = 0usize;
    for (path, addr) in [("direct", stack.task.addr), ("gateway", stack.gateway.addr)] {
        let mut ada_tasks = TaskServiceClient::new(net::channel(addr).await);
        // Ada watches her own tasks meanwhile: nothing of Bob's may arrive.
        let mut watch = ada_tasks
            .watch_tasks(authed(
                WatchTasksRequest {
                    parent: "users/me".into(),
                },
                &ada.token,
                None,
            ))
            .await
            .unwrap_or_else(|s| panic!("watch: {s:?}"))
            .into_inner();

        let mut record = |what: String, code: Code| {
            attempts += 1;
            if !refused(code) {
                let_through.push(format!("{path} {what}: {code:?}"));
            }
        };
        for parent in [
            format!("users/{}", bob.id),
            format!("users/{}", bob.id.to_uppercase()),
        ] {
            let list = ListTasksRequest {
                parent: parent.clone(),
                ..ListTasksRequest::default()
            };
            record(
                format!("ListTasks {parent}"),
                net::code(ada_tasks.list_tasks(authed(list, &ada.token, None)).await),
            );
            let create = CreateTaskRequest {
                parent: parent.clone(),
                task: Some(Task {
                    title: "planted".into(),
                    ..Task::default()
                }),
                request_id: String::new(),
            };
            record(
                format!("CreateTask {parent}"),
                net::code(
                    ada_tasks
                        .create_task(authed(create, &ada.token, None))
                        .await,
                ),
            );
            let mut watch_other = ada_tasks.clone();
            let request = authed(
                WatchTasksRequest {
                    parent: parent.clone(),
                },
                &ada.token,
                Some(Duration::from_secs(2)),
            );
            let code = match watch_other.watch_tasks(request).await {
                // A stream that opened must fail at its first message, not deliver one.
                Ok(stream) => match stream.into_inner().message().await {
                    Ok(_) => Code::Ok,
                    Err(status) => status.code(),
                },
                Err(status) => status.code(),
            };
            record(format!("WatchTasks {parent}"), code);
        }

        let guessed: Vec<String> = (0..10).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        let ids = before
            .iter()
            .filter_map(|t| t.name.rsplit('/').next().map(str::to_owned))
            .chain(guessed);
        for id in ids {
            for name in [
                format!("users/me/tasks/{id}"),
                format!("users/{}/tasks/{id}", ada.id),
                format!("users/{}/tasks/{id}", bob.id),
            ] {
                let get = GetTaskRequest { name: name.clone() };
                record(
                    format!("GetTask {name}"),
                    net::code(ada_tasks.get_task(authed(get, &ada.token, None)).await),
                );
                let update = UpdateTaskRequest {
                    task: Some(Task {
                        name: name.clone(),
                        title: "changed by ada".into(),
                        ..Task::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["title".into()],
                    }),
                };
                record(
                    format!("UpdateTask {name}"),
                    net::code(
                        ada_tasks
                            .update_task(authed(update, &ada.token, None))
                            .await,
                    ),
                );
                let complete = SetTaskCompletedRequest {
                    name: name.clone(),
                    completed: true,
                    etag: String::new(),
                };
                record(
                    format!("SetTaskCompleted {name}"),
                    net::code(
                        ada_tasks
                            .set_task_completed(authed(complete, &ada.token, None))
                            .await,
                    ),
                );
                let delete = DeleteTaskRequest {
                    name: name.clone(),
                    etag: String::new(),
                };
                record(
                    format!("DeleteTask {name}"),
                    net::code(
                        ada_tasks
                            .delete_task(authed(delete, &ada.token, None))
                            .await,
                    ),
                );
            }
        }

        // Bob writes while Ada watches; Ada then writes one task of her own, which must be the
        // first (and only) event her stream carries.
        let mut bob_writes = TaskServiceClient::new(net::channel(addr).await);
        for n in 0..5 {
            let request = CreateTaskRequest {
                parent: "users/me".into(),
                task: Some(Task {
                    title: format!("bob during the watch {path} {n}"),
                    ..Task::default()
                }),
                request_id: String::new(),
            };
            let _ = bob_writes
                .create_task(authed(request, &bob.token, None))
                .await;
        }
        let own = CreateTaskRequest {
            parent: "users/me".into(),
            task: Some(Task {
                title: format!("ada's own {path}"),
                ..Task::default()
            }),
            request_id: String::new(),
        };
        let _ = ada_tasks.create_task(authed(own, &ada.token, None)).await;
        let first = tokio::time::timeout(Duration::from_secs(5), watch.message()).await;
        match first {
            Ok(Ok(Some(event))) => {
                let task = event.event.and_then(|e| e.task).unwrap_or_default();
                if task.title != format!("ada's own {path}") {
                    leaked_events += 1;
                }
            }
            _ => leaked_events += 1,
        }
    }

    ctx.check(
        "every attempt on the other user's tasks is refused",
        let_through.is_empty(),
        format!(
            "{attempts} attempts (Get, Update, SetCompleted and Delete by 3 spellings of the name of each of {TASKS} tasks and 10 guessed ids; List, Create and Watch under 2 spellings of the parent; direct and through the gateway): {} let through{}",
            let_through.len(),
            let_through
                .first()
                .map_or(String::new(), |first| format!(", first: {first}"))
        ),
    );
    let after = net::list_all(&mut bob_tasks, &bob.token).await;
    let untouched: Vec<&Task> = before.iter().filter(|t| !after.contains(t)).collect();
    ctx.check(
        "the victim's tasks are exactly as they were",
        untouched.is_empty() && after.len() == before.len() + 10,
        format!(
            "{} tasks before, {} after (10 created by the victim meanwhile), {} changed or gone",
            before.len(),
            after.len(),
            untouched.len()
        ),
    );
    let mut ada_tasks = TaskServiceClient::new(net::channel(stack.task.addr).await);
    let ada_sees = net::list_all(&mut ada_tasks, &ada.token).await;
    ctx.check(
        "the attacker's own list and stream hold only the attacker's tasks",
        leaked_events == 0
            && ada_sees.len() == 2
            && ada_sees
                .iter()
                .all(|t| t.name.contains(&ada.id) && t.title.starts_with("ada's own")),
        format!(
            "list: {} tasks, all own: {}; streams: {leaked_events} foreign events",
            ada_sees.len(),
            ada_sees.iter().all(|t| t.name.contains(&ada.id))
        ),
    );
    ctx.check_no_panics(&stack);
    drop(stack);
    ctx.clean(storage).await;
}
