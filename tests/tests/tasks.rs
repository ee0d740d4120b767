//! `todo.task.v1.TaskService` through real servers and real clients, on every back-end: the
//! seed's acceptance scenarios (stories 2-4) in gRPC form, isolation, pagination, idempotent
//! creates, etags, live updates and token handling.

use std::{collections::HashSet, time::Duration};

use prost_types::FieldMask;
use todo_proto::task::v1::{
    CreateTaskRequest, DeleteTaskRequest, GetTaskRequest, ListTasksRequest, ListTasksResponse,
    SetTaskCompletedRequest, Task, TaskEventType, UpdateTaskRequest, WatchTasksRequest,
};
use todo_tests::{Backend, SignedIn, Stack, TaskClient, channel, for_each_backend, task_client};
use tokio_stream::StreamExt;
use tonic::{Code, Status};
use tonic_types::StatusExt;

fn draft(title: &str, description: &str) -> Task {
    Task {
        title: title.to_owned(),
        description: description.to_owned(),
        ..Task::default()
    }
}

async fn create(client: &mut TaskClient, title: &str) -> Task {
    client
        .create_task(CreateTaskRequest {
            parent: "users/me".into(),
            task: Some(draft(title, "")),
            request_id: String::new(),
        })
        .await
        .unwrap_or_else(|s| panic!("create {title}: {s:?}"))
        .into_inner()
        .task
        .unwrap()
}

async fn list(
    client: &mut TaskClient,
    request: ListTasksRequest,
) -> Result<ListTasksResponse, Status> {
    client
        .list_tasks(request)
        .await
        .map(tonic::Response::into_inner)
}

fn mine(page_size: i32) -> ListTasksRequest {
    ListTasksRequest {
        parent: "users/me".into(),
        page_size,
        ..ListTasksRequest::default()
    }
}

fn titles(tasks: &[Task]) -> Vec<&str> {
    tasks.iter().map(|t| t.title.as_str()).collect()
}

fn reason(status: &Status) -> String {
    let info = status.get_error_details().error_info().cloned();
    let info = info.unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "task.todo");
    info.reason
}

fn bad_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut fields: Vec<String> = status
        .get_error_details()
        .bad_request()
        .expect("BadRequest")
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    fields.sort();
    fields
}

/// The name of `user`'s task with `id`.
fn name_under(user: &str, task: &Task) -> String {
    let id = task.name.rsplit('/').next().unwrap();
    format!("users/{user}/tasks/{id}")
}

#[tokio::test]
async fn story_2_create_and_read_with_pagination_and_isolation() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let ada = stack.sign_up("ada@example.com").await;
        let mut tasks = stack.tasks(&ada).await;

        // 1. A task with title and description belongs to its creator.
        let groceries = tasks
            .create_task(CreateTaskRequest {
                parent: format!("users/{}", ada.id),
                task: Some(draft("Buy groceries", "Milk, eggs, bread")),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        assert!(
            groceries
                .name
                .starts_with(&format!("users/{}/tasks/", ada.id)),
            "{}",
            groceries.name
        );
        assert_eq!(
            (groceries.title.as_str(), groceries.description.as_str()),
            ("Buy groceries", "Milk, eggs, bread")
        );
        assert!(!groceries.completed);
        assert!(groceries.create_time.is_some());
        assert_eq!(groceries.create_time, groceries.update_time);
        assert!(!groceries.etag.is_empty());
        let fetched = tasks
            .get_task(GetTaskRequest {
                name: groceries.name.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        assert_eq!(fetched, groceries);

        // 5. A title alone gives an empty description.
        let walk = create(&mut tasks, "Walk the dog").await;
        assert_eq!(walk.description, "");

        // 2. Five tasks, newest first.
        for n in 3..=5 {
            create(&mut tasks, &format!("Task {n}")).await;
        }
        let page = list(&mut tasks, mine(0)).await.unwrap();
        assert_eq!(
            titles(&page.tasks),
            [
                "Task 5",
                "Task 4",
                "Task 3",
                "Walk the dog",
                "Buy groceries"
            ]
        );
        assert_eq!((page.total_size, page.next_page_token.as_str()), (5, ""));

        // 3. 25 tasks, pages of 10, with the total.
        for n in 6..=25 {
            create(&mut tasks, &format!("Task {n}")).await;
        }
        let first = list(&mut tasks, mine(10)).await.unwrap();
        assert_eq!(first.tasks.len(), 10);
        assert_eq!(first.total_size, 25);
        assert_eq!(first.tasks[0].title, "Task 25");
        assert!(!first.next_page_token.is_empty());

        // 4. Another user sees none of them, and has their own.
        let bob = stack.sign_up("bob@example.com").await;
        let mut bobs = stack.tasks(&bob).await;
        let empty = list(&mut bobs, mine(0)).await.unwrap();
        assert_eq!((empty.tasks.len(), empty.total_size), (0, 0));
        create(&mut bobs, "Bob's only task").await;
        let page = list(
            &mut bobs,
            ListTasksRequest {
                parent: format!("users/{}", bob.id),
                ..mine(100)
            },
        )
        .await
        .unwrap();
        assert_eq!(titles(&page.tasks), ["Bob's only task"]);
        assert_eq!(list(&mut tasks, mine(1)).await.unwrap().total_size, 25);
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn titles_and_descriptions_are_validated_in_characters_and_round_trip() {
    let stack = Stack::start(&Backend::Sqlite).await;
    let ada = stack.sign_up("ada@example.com").await;
    let mut tasks = stack.tasks(&ada).await;
    let attempt = |title: String, description: String| CreateTaskRequest {
        parent: "users/me".into(),
        task: Some(draft(&title, &description)),
        request_id: String::new(),
    };

    for (title, description, fields) in [
        (String::new(), String::new(), vec!["task.title"]),
        ("   \t ".into(), String::new(), vec!["task.title"]),
        ("x".repeat(201), String::new(), vec!["task.title"]),
        ("ok".into(), "y".repeat(2001), vec!["task.description"]),
        (
            String::new(),
            "🙂".repeat(2001),
            vec!["task.description", "task.title"],
        ),
    ] {
        let status = tasks
            .create_task(attempt(title, description))
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&status), fields);
        assert_eq!(reason(&status), "VALIDATION_FAILED");
    }
    let status = tasks
        .create_task(CreateTaskRequest {
            parent: "users/me".into(),
            task: None,
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&status), ["task"]);
    let status = tasks
        .create_task(CreateTaskRequest {
            request_id: "not-a-uuid".into(),
            ..attempt("ok".into(), String::new())
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&status), ["request_id"]);

    // Limits count characters: 200 emoji (800 bytes) and 2000 accented letters are fine, and
    // come back exactly.
    let title = "🎉".repeat(200);
    let description = "é😀 ñ 中文 ".repeat(250);
    assert_eq!(description.chars().count(), 2000);
    let created = tasks
        .create_task(attempt(title.clone(), description.clone()))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(
        (created.title.as_str(), created.description.as_str()),
        (title.as_str(), description.as_str())
    );
    let fetched = tasks
        .get_task(GetTaskRequest { name: created.name })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!((fetched.title, fetched.description), (title, description));
    stack.stop().await;
}

#[tokio::test]
async fn story_3_update_and_completion() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let ada = stack.sign_up("ada@example.com").await;
        let mut tasks = stack.tasks(&ada).await;
        let task = create(&mut tasks, "Draft").await;

        // 1. New title and description.
        let updated = tasks
            .update_task(UpdateTaskRequest {
                task: Some(Task {
                    name: task.name.clone(),
                    ..draft("Final", "All done soon")
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["title".into(), "description".into()],
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        assert_eq!(
            (updated.title.as_str(), updated.description.as_str()),
            ("Final", "All done soon")
        );
        assert!(micros(&updated.update_time) > micros(&task.update_time));
        assert_eq!(updated.create_time, task.create_time);
        assert_ne!(updated.etag, task.etag);

        // 2. Complete it; 3. and reopen it. Setting a state twice changes nothing.
        let set = |completed| SetTaskCompletedRequest {
            name: task.name.clone(),
            completed,
            etag: String::new(),
        };
        let done = tasks
            .set_task_completed(set(true))
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        assert!(done.completed);
        assert!(micros(&done.update_time) > micros(&updated.update_time));
        let again = tasks
            .set_task_completed(set(true))
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        assert_eq!(again, done, "idempotent");
        let reopened = tasks
            .set_task_completed(set(false))
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        assert!(!reopened.completed);

        // 4. Another user's task; 5. a task that does not exist.
        let bob = stack.sign_up("bob@example.com").await;
        let mut bobs = stack.tasks(&bob).await;
        let bobs_task = create(&mut bobs, "Bob's").await;
        let status = tasks
            .update_task(UpdateTaskRequest {
                task: Some(Task {
                    name: bobs_task.name.clone(),
                    ..draft("Mine now", "")
                }),
                update_mask: None,
            })
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (Code::PermissionDenied, "PERMISSION_DENIED")
        );
        let status = tasks
            .update_task(UpdateTaskRequest {
                task: Some(Task {
                    name: name_under("me", &bobs_task),
                    ..draft("Mine now", "")
                }),
                update_mask: None,
            })
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (Code::NotFound, "TASK_NOT_FOUND")
        );
        let missing = format!("users/me/tasks/{}", uuid_like());
        let status = tasks
            .update_task(UpdateTaskRequest {
                task: Some(Task {
                    name: missing,
                    ..draft("x", "")
                }),
                update_mask: None,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        stack.stop().await;
    })
    .await;
}

/// A timestamp as microseconds, for comparisons.
fn micros(timestamp: &Option<prost_types::Timestamp>) -> i64 {
    let ts = timestamp.as_ref().expect("a timestamp");
    ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1_000
}

fn uuid_like() -> String {
    "0190f0e4-6b1c-7c3a-9d4e-0a1b2c3d4e5f".to_owned()
}

#[tokio::test]
async fn update_masks_and_etags_follow_aip_134_and_154() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let ada = stack.sign_up("ada@example.com").await;
        let mut tasks = stack.tasks(&ada).await;
        let task = tasks
            .create_task(CreateTaskRequest {
                parent: "users/me".into(),
                task: Some(draft("Title", "Keep me")),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        let update = |task: Task, paths: &[&str]| UpdateTaskRequest {
            task: Some(task),
            update_mask: (!paths.is_empty()).then(|| FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
        };

        // Without a mask, only the populated fields change.
        let renamed = tasks
            .update_task(update(
                Task {
                    name: task.name.clone(),
                    title: "Renamed".into(),
                    ..Task::default()
                },
                &[],
            ))
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        assert_eq!(
            (renamed.title.as_str(), renamed.description.as_str()),
            ("Renamed", "Keep me")
        );

        // With a mask, a named field is set even to its empty value.
        let cleared = tasks
            .update_task(update(
                Task {
                    name: task.name.clone(),
                    ..Task::default()
                },
                &["description"],
            ))
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        assert_eq!(
            (cleared.title.as_str(), cleared.description.as_str()),
            ("Renamed", "")
        );

        // A masked title must still be valid; output-only and unknown paths are refused.
        for (paths, fields) in [
            (&["title"][..], vec!["task.title"]),
            (&["create_time"][..], vec!["update_mask"]),
            (&["etag", "title"][..], vec!["task.title", "update_mask"]),
            (&["priority"][..], vec!["update_mask"]),
        ] {
            let status = tasks
                .update_task(update(
                    Task {
                        name: task.name.clone(),
                        ..Task::default()
                    },
                    paths,
                ))
                .await
                .unwrap_err();
            assert_eq!(bad_fields(&status), fields, "{paths:?}");
        }

        // Etags: a stale one is ABORTED, the current one works, garbage is refused.
        let stale = task.etag.clone();
        let status = tasks
            .update_task(update(
                Task {
                    name: task.name.clone(),
                    title: "Lost update".into(),
                    etag: stale.clone(),
                    ..Task::default()
                },
                &["title"],
            ))
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (Code::Aborted, "ETAG_MISMATCH")
        );
        let current = tasks
            .update_task(update(
                Task {
                    name: task.name.clone(),
                    title: "Won".into(),
                    etag: cleared.etag.clone(),
                    ..Task::default()
                },
                &["title"],
            ))
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        assert_eq!(current.title, "Won");
        let status = tasks
            .set_task_completed(SetTaskCompletedRequest {
                name: task.name.clone(),
                completed: true,
                etag: stale.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Aborted);
        let status = tasks
            .delete_task(DeleteTaskRequest {
                name: task.name.clone(),
                etag: stale,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Aborted);
        let status = tasks
            .delete_task(DeleteTaskRequest {
                name: task.name.clone(),
                etag: "W/\"1\"".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&status), ["etag"]);
        tasks
            .delete_task(DeleteTaskRequest {
                name: task.name.clone(),
                etag: current.etag,
            })
            .await
            .unwrap();
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn story_4_delete() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let ada = stack.sign_up("ada@example.com").await;
        let mut tasks = stack.tasks(&ada).await;
        let keep = create(&mut tasks, "Keep").await;
        let doomed = create(&mut tasks, "Doomed").await;

        // 1. Deleting one's own task; 4. it is gone from reads and lists.
        tasks
            .delete_task(DeleteTaskRequest {
                name: doomed.name.clone(),
                etag: String::new(),
            })
            .await
            .unwrap();
        let status = tasks
            .get_task(GetTaskRequest {
                name: doomed.name.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        let page = list(&mut tasks, mine(0)).await.unwrap();
        assert_eq!((titles(&page.tasks), page.total_size), (vec!["Keep"], 1));
        // 3. A second delete, or a task that never existed.
        let status = tasks
            .delete_task(DeleteTaskRequest {
                name: doomed.name.clone(),
                etag: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);

        // 2. Another user's task: refused, and it survives.
        let bob = stack.sign_up("bob@example.com").await;
        let mut bobs = stack.tasks(&bob).await;
        for name in [keep.name.clone(), name_under("me", &keep)] {
            let status = bobs
                .delete_task(DeleteTaskRequest {
                    name,
                    etag: String::new(),
                })
                .await
                .unwrap_err();
            assert!(
                matches!(status.code(), Code::PermissionDenied | Code::NotFound),
                "{status:?}"
            );
        }
        tasks
            .get_task(GetTaskRequest { name: keep.name })
            .await
            .unwrap();
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn nobody_reaches_another_users_tasks_through_any_rpc() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let ada = stack.sign_up("ada@example.com").await;
        let bob = stack.sign_up("bob@example.com").await;
        let mut adas = stack.tasks(&ada).await;
        let mut bobs = stack.tasks(&bob).await;
        let secret = create(&mut adas, "Ada's secret").await;
        let bobs_own = create(&mut bobs, "Bob's").await;
        let other_parent = format!("users/{}", ada.id);
        // Bob names Ada's task by its full name (PERMISSION_DENIED, before any lookup), under
        // his own name (NOT_FOUND, like any id he does not own), and a made-up one under Ada.
        let by_name = [
            (secret.name.clone(), Code::PermissionDenied),
            (name_under("me", &secret), Code::NotFound),
            (name_under(&bob.id, &secret), Code::NotFound),
            (
                format!("users/{}/tasks/{}", ada.id, uuid_like()),
                Code::PermissionDenied,
            ),
        ];
        for (name, code) in by_name {
            let status = bobs
                .get_task(GetTaskRequest { name: name.clone() })
                .await
                .unwrap_err();
            assert_eq!(status.code(), code, "GetTask {name}");
            let status = bobs
                .update_task(UpdateTaskRequest {
                    task: Some(Task {
                        name: name.clone(),
                        ..draft("pwned", "")
                    }),
                    update_mask: None,
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), code, "UpdateTask {name}");
            let status = bobs
                .set_task_completed(SetTaskCompletedRequest {
                    name: name.clone(),
                    completed: true,
                    etag: String::new(),
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), code, "SetTaskCompleted {name}");
            let status = bobs
                .delete_task(DeleteTaskRequest {
                    name: name.clone(),
                    etag: String::new(),
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), code, "DeleteTask {name}");
        }
        let status = bobs
            .create_task(CreateTaskRequest {
                parent: other_parent.clone(),
                task: Some(draft("planted", "")),
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "CreateTask");
        let status = list(
            &mut bobs,
            ListTasksRequest {
                parent: other_parent.clone(),
                ..mine(0)
            },
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "ListTasks");
        let status = bobs
            .watch_tasks(WatchTasksRequest {
                parent: other_parent,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "WatchTasks");

        // Ada's task is untouched, and Bob still has only his own.
        let unchanged = adas
            .get_task(GetTaskRequest {
                name: secret.name.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        assert_eq!(unchanged, secret);
        let page = list(&mut bobs, mine(0)).await.unwrap();
        assert_eq!(page.tasks, vec![bobs_own]);
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn paging_through_1000_tasks_while_others_are_added_has_no_gaps_or_repeats() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let ada = stack.sign_up("ada@example.com").await;
        let mut tasks = stack.tasks(&ada).await;
        // 1,050 tasks, created 10 at a time.
        let mut existing = HashSet::new();
        for batch in 0..105 {
            let creates: Vec<_> = (0..10)
                .map(|n| {
                    let mut client = tasks.clone();
                    tokio::spawn(async move {
                        create(&mut client, &format!("t{}", batch * 10 + n))
                            .await
                            .name
                    })
                })
                .collect();
            for created in creates {
                existing.insert(created.await.unwrap());
            }
        }

        // Another client keeps adding while we page.
        let mut writer = tasks.clone();
        let adding = tokio::spawn(async move {
            for n in 0..60 {
                create(&mut writer, &format!("new {n}")).await;
            }
        });
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = list(
                &mut tasks,
                ListTasksRequest {
                    page_token: token.clone(),
                    ..mine(100)
                },
            )
            .await
            .unwrap();
            pages += 1;
            assert!(page.tasks.len() <= 100);
            seen.extend(page.tasks.into_iter().map(|t| t.name));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        adding.await.unwrap();
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "no task twice");
        let missing: Vec<_> = existing
            .iter()
            .filter(|name| !unique.contains(name))
            .collect();
        assert!(missing.is_empty(), "{} tasks missing", missing.len());
        assert!(pages >= 11);

        // Page sizes: 0 is 50, above 100 is 100, negative is refused.
        assert_eq!(list(&mut tasks, mine(0)).await.unwrap().tasks.len(), 50);
        assert_eq!(list(&mut tasks, mine(1000)).await.unwrap().tasks.len(), 100);
        assert_eq!(
            bad_fields(&list(&mut tasks, mine(-1)).await.unwrap_err()),
            ["page_size"]
        );
        assert_eq!(list(&mut tasks, mine(1)).await.unwrap().total_size, 1110);
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn filters_orders_and_page_tokens_are_checked() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let ada = stack.sign_up("ada@example.com").await;
        let mut tasks = stack.tasks(&ada).await;
        for title in ["banana", "apple", "cherry", "date"] {
            let task = create(&mut tasks, title).await;
            if title == "apple" || title == "date" {
                tasks
                    .set_task_completed(SetTaskCompletedRequest {
                        name: task.name,
                        completed: true,
                        etag: String::new(),
                    })
                    .await
                    .unwrap();
            }
        }
        let query = |filter: &str, order_by: &str| ListTasksRequest {
            filter: filter.into(),
            order_by: order_by.into(),
            ..mine(10)
        };
        let page = list(&mut tasks, query("completed = true", ""))
            .await
            .unwrap();
        assert_eq!(
            (titles(&page.tasks), page.total_size),
            (vec!["date", "apple"], 2)
        );
        let page = list(&mut tasks, query("completed=false", "title"))
            .await
            .unwrap();
        assert_eq!(
            (titles(&page.tasks), page.total_size),
            (vec!["banana", "cherry"], 2)
        );
        let page = list(&mut tasks, query("", "title desc")).await.unwrap();
        assert_eq!(titles(&page.tasks), ["date", "cherry", "banana", "apple"]);
        let page = list(&mut tasks, query("", "create_time")).await.unwrap();
        assert_eq!(titles(&page.tasks), ["banana", "apple", "cherry", "date"]);
        let page = list(&mut tasks, query("", "update_time desc"))
            .await
            .unwrap();
        assert_eq!(titles(&page.tasks), ["date", "cherry", "apple", "banana"]);

        for (filter, order_by, fields) in [
            ("done = yes", "", vec!["filter"]),
            ("", "priority desc", vec!["order_by"]),
            ("title = 'x'", "sideways", vec!["filter", "order_by"]),
        ] {
            let status = list(&mut tasks, query(filter, order_by)).await.unwrap_err();
            assert_eq!(bad_fields(&status), fields, "{filter:?} {order_by:?}");
        }

        // A token works with its own listing only.
        let first = list(
            &mut tasks,
            ListTasksRequest {
                filter: "completed = false".into(),
                ..mine(1)
            },
        )
        .await
        .unwrap();
        let token = first.next_page_token.clone();
        let second = list(
            &mut tasks,
            ListTasksRequest {
                filter: "completed=false".into(),
                page_token: token.clone(),
                ..mine(1)
            },
        )
        .await
        .unwrap();
        assert_ne!(second.tasks, first.tasks);
        for other in [
            ListTasksRequest {
                page_token: token.clone(),
                ..mine(1)
            },
            ListTasksRequest {
                filter: "completed = false".into(),
                order_by: "title".into(),
                page_token: token.clone(),
                ..mine(1)
            },
            ListTasksRequest {
                page_token: "not-a-token".into(),
                ..mine(1)
            },
        ] {
            let status = list(&mut tasks, other).await.unwrap_err();
            assert_eq!(bad_fields(&status), ["page_token"]);
        }
        // Nor with another user's listing.
        let bob = stack.sign_up("bob@example.com").await;
        let mut bobs = stack.tasks(&bob).await;
        let status = list(
            &mut bobs,
            ListTasksRequest {
                filter: "completed = false".into(),
                page_token: token,
                ..mine(1)
            },
        )
        .await
        .unwrap_err();
        assert_eq!(bad_fields(&status), ["page_token"]);
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_retried_create_with_the_same_request_id_returns_the_same_task() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let ada = stack.sign_up("ada@example.com").await;
        let mut tasks = stack.tasks(&ada).await;
        let request = CreateTaskRequest {
            parent: "users/me".into(),
            task: Some(draft("Pay rent", "")),
            request_id: "6f1c2d4e-8a9b-4c3d-9e8f-7a6b5c4d3e2f".into(),
        };
        let first = tasks
            .create_task(request.clone())
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        let retries: Vec<_> = (0..5)
            .map(|_| {
                let (mut client, request) = (tasks.clone(), request.clone());
                tokio::spawn(async move {
                    client
                        .create_task(request)
                        .await
                        .unwrap()
                        .into_inner()
                        .task
                        .unwrap()
                })
            })
            .collect();
        for retry in retries {
            assert_eq!(retry.await.unwrap(), first);
        }
        assert_eq!(list(&mut tasks, mine(0)).await.unwrap().total_size, 1);
        // Another request id is another task.
        let other = tasks
            .create_task(CreateTaskRequest {
                request_id: "0b5c3a2e-1d4f-4e6a-8b7c-9d0e1f2a3b4c".into(),
                ..request
            })
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        assert_ne!(other.name, first.name);
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn watchers_see_their_own_changes_live_from_another_connection() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let ada = stack.sign_up("ada@example.com").await;
        let bob = stack.sign_up("bob@example.com").await;
        let mut watcher = stack.tasks(&ada).await;
        let mut stream = watcher
            .watch_tasks(WatchTasksRequest {
                parent: "users/me".into(),
            })
            .await
            .unwrap()
            .into_inner();

        // Writes from other connections: Bob's first, which Ada must not see.
        let mut bobs = stack.tasks(&bob).await;
        create(&mut bobs, "Bob's private task").await;
        let mut writer = stack.tasks(&ada).await;
        let task = create(&mut writer, "Watched").await;
        writer
            .set_task_completed(SetTaskCompletedRequest {
                name: task.name.clone(),
                completed: true,
                etag: String::new(),
            })
            .await
            .unwrap();
        writer
            .delete_task(DeleteTaskRequest {
                name: task.name.clone(),
                etag: String::new(),
            })
            .await
            .unwrap();

        let mut seen = Vec::new();
        for _ in 0..3 {
            let message = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("an event within 10 s")
                .expect("the stream is open")
                .unwrap();
            let event = message.event.unwrap();
            let changed = event.task.clone().unwrap();
            assert_eq!(changed.name, task.name, "only Ada's task");
            assert!(event.event_time.is_some());
            seen.push((event.r#type(), changed.completed));
        }
        assert_eq!(
            seen,
            [
                (TaskEventType::Created, false),
                (TaskEventType::Updated, true),
                (TaskEventType::Deleted, true),
            ]
        );
        drop(stream);
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn every_watcher_of_a_user_sees_writes_made_on_any_instance() {
    for_each_backend(|backend| async move {
        let mut stack = Stack::start(&backend).await;
        let ada = stack.sign_up("ada@example.com").await;
        // Two watchers on the first instance.
        let mut watchers = Vec::new();
        for _ in 0..2 {
            let mut client = stack.tasks(&ada).await;
            watchers.push(
                client
                    .watch_tasks(WatchTasksRequest {
                        parent: "users/me".into(),
                    })
                    .await
                    .unwrap()
                    .into_inner(),
            );
        }
        // On PostgreSQL, a second instance shares the database: its writes reach the first
        // instance's watchers through LISTEN/NOTIFY. SQLite is one process: writes go through
        // the instance that serves the watchers.
        let writer_addr = match backend {
            Backend::Postgres(_) => stack.start_extra_task_service().await,
            Backend::Sqlite => stack.task,
        };
        let mut writer = task_client(channel(writer_addr).await, &ada.token);
        let task = create(&mut writer, "From anywhere").await;
        for watcher in &mut watchers {
            let message = tokio::time::timeout(Duration::from_secs(10), watcher.next())
                .await
                .expect("an event within 10 s")
                .expect("open")
                .unwrap();
            let event = message.event.unwrap();
            assert_eq!(
                (event.r#type(), event.task.unwrap().name),
                (TaskEventType::Created, task.name.clone())
            );
        }
        drop(watchers);
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_told_so_and_writers_never_wait() {
    let stack = Stack::start_with(&Backend::Sqlite, |configs| configs.task.watch_buffer = 4).await;
    let ada = stack.sign_up("ada@example.com").await;
    // A client with small HTTP/2 windows, so that an unread stream backs up quickly.
    let small_windows = tonic::transport::Endpoint::from_shared(format!("http://{}", stack.task))
        .unwrap()
        .initial_stream_window_size(Some(65_535))
        .initial_connection_window_size(Some(65_535))
        .connect()
        .await
        .unwrap();
    let mut watcher = task_client(small_windows, &ada.token);
    let mut stream = watcher
        .watch_tasks(WatchTasksRequest {
            parent: "users/me".into(),
        })
        .await
        .unwrap()
        .into_inner();
    // Far more events than fit in the buffers between the feed and the unread stream.
    let mut writer = stack.tasks(&ada).await;
    let started = std::time::Instant::now();
    for n in 0..1500 {
        create(&mut writer, &format!("{n} {}", "padding ".repeat(20))).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "writes were not held up"
    );
    let mut received = 0;
    let ended = loop {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
        match next.unwrap_or_else(|_| panic!("no event nor end after {received} events")) {
            Some(Ok(_)) => received += 1,
            Some(Err(status)) => break status,
            None => panic!("the stream ended without saying why after {received} events"),
        }
    };
    assert_eq!(
        (ended.code(), reason(&ended).as_str()),
        (Code::Aborted, "WATCH_LAGGED")
    );
    assert!(received < 1500, "{received}");
    stack.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_watches_cleanly() {
    let stack = Stack::start(&Backend::Sqlite).await;
    let ada = stack.sign_up("ada@example.com").await;
    let mut watcher = stack.tasks(&ada).await;
    let mut stream = watcher
        .watch_tasks(WatchTasksRequest {
            parent: "users/me".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let started = std::time::Instant::now();
    stack.begin_shutdown();
    let status = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the stream ends at once")
        .expect("with a status")
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::Unavailable, "SHUTTING_DOWN")
    );
    stack.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "no wait for the grace period"
    );
}

#[tokio::test]
async fn missing_expired_and_forged_tokens_are_refused() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let ada = stack.sign_up("ada@example.com").await;
        let plain = todo_proto::task::v1::task_service_client::TaskServiceClient::new(
            channel(stack.task).await,
        );
        let status = plain.clone().list_tasks(mine(0)).await.unwrap_err();
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (Code::Unauthenticated, "TOKEN_MISSING")
        );

        // Flip one character of the signature.
        let mut forged = ada.token.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let other_issuer_token = {
            // A well-formed token from some other issuer with an unknown key.
            let key = auth_service::keys::generate_key(0).unwrap();
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
            header.kid = Some(key.kid.clone());
            header.typ = Some("at+jwt".into());
            let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap();
            let claims = todo_common::token::AccessClaims {
                iss: "todo-auth".into(),
                aud: "todo".into(),
                sub: ada.id.clone(),
                email: "ada@example.com".into(),
                iat: now,
                nbf: now,
                exp: now + 600,
                jti: "x".into(),
            };
            jsonwebtoken::encode(
                &header,
                &claims,
                &auth_service::keys::encoding_key(&key).unwrap(),
            )
            .unwrap()
        };
        for token in [forged, other_issuer_token, "garbage".to_owned()] {
            let mut client = task_client(channel(stack.task).await, &token);
            let status = client.list_tasks(mine(0)).await.unwrap_err();
            assert_eq!(
                (status.code(), reason(&status).as_str()),
                (Code::Unauthenticated, "TOKEN_INVALID")
            );
        }
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn valid_tokens_keep_working_while_the_auth_service_is_down() {
    let mut stack = Stack::start(&Backend::Sqlite).await;
    let ada = stack.sign_up("ada@example.com").await;
    let mut tasks = stack.tasks(&ada).await;
    create(&mut tasks, "before").await;
    stack.stop_auth().await;
    let mut fresh = stack.tasks(&ada).await;
    create(&mut fresh, "while auth is down").await;
    assert_eq!(list(&mut fresh, mine(0)).await.unwrap().total_size, 2);
    stack.start_auth().await;
    stack.stop().await;
}

#[tokio::test]
async fn tokens_signed_with_a_rotated_key_are_accepted_at_once() {
    let stack = Stack::start_with(&Backend::Sqlite, |configs| {
        configs.auth.key_reload_interval = Duration::from_millis(100);
    })
    .await;
    let ada = stack.sign_up("ada@example.com").await;
    let mut tasks = stack.tasks(&ada).await;
    create(&mut tasks, "old key").await;

    let db = todo_common::Database::connect(&stack.auth_database(), &auth_service::MIGRATIONS)
        .await
        .unwrap();
    let new_kid = auth_service::keys::rotate(&auth_service::store::SqlUserStore::new(db.clone()))
        .await
        .unwrap();
    db.close().await;
    let mut auth = todo_proto::auth::v1::auth_service_client::AuthServiceClient::new(
        channel(stack.auth).await,
    );
    let token = loop {
        let token = auth
            .login(todo_proto::auth::v1::LoginRequest {
                email: "ada@example.com".into(),
                password: "correct horse battery".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .tokens
            .unwrap()
            .access_token;
        if jsonwebtoken::decode_header(&token).unwrap().kid.as_deref() == Some(new_kid.as_str()) {
            break token;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The task service has never seen this key: it fetches the key set and accepts the token.
    let mut rotated = task_client(channel(stack.task).await, &token);
    create(&mut rotated, "new key").await;
    // The old token is still good.
    assert_eq!(list(&mut tasks, mine(0)).await.unwrap().total_size, 2);
    stack.stop().await;
}

#[tokio::test]
async fn the_users_me_alias_and_the_explicit_id_are_the_same_parent() {
    let stack = Stack::start(&Backend::Sqlite).await;
    let ada: SignedIn = stack.sign_up("ada@example.com").await;
    let mut tasks = stack.tasks(&ada).await;
    let task = create(&mut tasks, "Either way").await;
    let explicit = task.name.clone();
    let aliased = name_under("me", &task);
    for name in [explicit, aliased] {
        let fetched = tasks
            .get_task(GetTaskRequest { name })
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        assert_eq!(fetched, task);
    }
    stack.stop().await;
}
