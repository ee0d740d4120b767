//! Crash drill: `kill -9` of the task service in the middle of 1,000 concurrent CreateTask
//! calls, and of the auth service in the middle of concurrent SignUp calls. After the restart
//! every acknowledged write is there, and retrying every call (same `request_id`, same email)
//! creates nothing twice.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use todo_proto::{
    auth::v1::{LoginRequest, SignUpRequest, auth_service_client::AuthServiceClient},
    task::v1::{CreateTaskRequest, Task, task_service_client::TaskServiceClient},
};
use tonic::{Code, transport::Channel};

use crate::{
    Ctx,
    net::{self, authed},
};

/// Concurrent CreateTask calls.
const CREATES: usize = 1000;
/// SignUp calls, and how many run at once (each hashes a password: more would only queue).
const SIGN_UPS: usize = 200;
const SIGN_UP_CONCURRENCY: usize = 32;

pub async fn run(ctx: &mut Ctx) {
    tasks(ctx).await;
    sign_ups(ctx).await;
}

/// Waits until `acknowledged` reaches `count` (or 30 s pass).
async fn until(acknowledged: &AtomicUsize, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.load(Ordering::Relaxed) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn create(request_id: &str, title: &str) -> CreateTaskRequest {
    CreateTaskRequest {
        parent: "users/me".into(),
        task: Some(Task {
            title: title.to_owned(),
            ..Task::default()
        }),
        request_id: request_id.to_owned(),
    }
}

async fn tasks(ctx: &mut Ctx) {
    let storage = ctx.storage("tasks").await;
    let mut stack = ctx.start(&storage, &ctx.settings()).await;
    let account = net::sign_up(stack.auth.addr, "crash@example.com").await;
    let token = Arc::new(account.token);
    let calls: Arc<Vec<(String, String)>> = Arc::new(
        (0..CREATES)
            .map(|n| (uuid::Uuid::new_v4().to_string(), format!("crash {n}")))
            .collect(),
    );
    // Several connections, as several clients would have.
    let mut channels: Vec<Channel> = Vec::new();
    for _ in 0..8 {
        channels.push(net::channel(stack.task.addr).await);
    }

    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut calls_in_flight = Vec::with_capacity(CREATES);
    for n in 0..CREATES {
        let mut client = TaskServiceClient::new(channels[n % channels.len()].clone());
        let (calls, token, acknowledged) = (calls.clone(), token.clone(), acknowledged.clone());
        calls_in_flight.push(tokio::spawn(async move {
            let (request_id, title) = &calls[n];
            let answer = client
                .create_task(authed(create(request_id, title), &token, None))
                .await;
            match answer {
                Ok(response) => {
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                    Ok(response
                        .into_inner()
                        .task
                        .map(|t| t.name)
                        .unwrap_or_default())
                }
                Err(status) => Err(status.code()),
            }
        }));
    }
    until(&acknowledged, CREATES / 4).await;
    stack.task.kill();
    let at_kill = acknowledged.load(Ordering::Relaxed);

    let mut first: HashMap<usize, String> = HashMap::new();
    let mut failed = Vec::new();
    for (n, call) in calls_in_flight.into_iter().enumerate() {
        match call.await.expect("a call panicked") {
            Ok(name) => {
                first.insert(n, name);
            }
            Err(code) => failed.push(code),
        }
    }
    ctx.check(
        "task service killed in the middle of the calls",
        !failed.is_empty() && !first.is_empty(),
        format!(
            "{CREATES} concurrent CreateTask, {} acknowledged ({at_kill} when the kill was sent), failed: {}",
            first.len(),
            net::codes(failed.iter().copied())
        ),
    );

    let restart = Instant::now();
    stack.task.restart("todo.task.v1.TaskService").await;
    let restarted_in = restart.elapsed();
    let mut client = TaskServiceClient::new(net::channel(stack.task.addr).await);
    let listed = net::list_all(&mut client, &token).await;
    let by_name: HashMap<&str, &Task> = listed.iter().map(|t| (t.name.as_str(), t)).collect();
    let lost: Vec<usize> = first
        .iter()
        .filter(|(n, name)| {
            by_name
                .get(name.as_str())
                .is_none_or(|t| t.title != calls[**n].1)
        })
        .map(|(n, _)| *n)
        .collect();
    ctx.check(
        "every acknowledged task is there after the restart",
        lost.is_empty(),
        format!(
            "{} acknowledged, {} lost, {} stored (the rest were in flight); restarted and serving in {}",
            first.len(),
            lost.len(),
            listed.len(),
            net::ms(restarted_in)
        ),
    );

    // Every call again, as a client that saw no answer (or lost it) would.
    let mut retried_codes = Vec::new();
    let mut changed = 0;
    for (n, (request_id, title)) in calls.iter().enumerate() {
        match client
            .create_task(authed(create(request_id, title), &token, None))
            .await
        {
            Ok(response) => {
                retried_codes.push(Code::Ok);
                let name = response
                    .into_inner()
                    .task
                    .map(|t| t.name)
                    .unwrap_or_default();
                if first.get(&n).is_some_and(|original| *original != name) {
                    changed += 1;
                }
            }
            Err(status) => retried_codes.push(status.code()),
        }
    }
    let listed = net::list_all(&mut client, &token).await;
    let mut per_title: HashMap<&str, usize> = HashMap::new();
    for task in &listed {
        *per_title.entry(task.title.as_str()).or_default() += 1;
    }
    let duplicates = per_title.values().filter(|n| **n > 1).count();
    let all_ok = retried_codes.iter().all(|c| *c == Code::Ok);
    ctx.check(
        "retrying every call with its request_id creates no duplicate",
        all_ok && changed == 0 && duplicates == 0 && listed.len() == CREATES,
        format!(
            "retries: {}; {changed} acknowledged calls answered with another task; {} tasks stored for {CREATES} request ids, {duplicates} titles twice",
            net::codes(retried_codes),
            listed.len()
        ),
    );
    let (rows, distinct) = net::query_pair(
        &storage,
        false,
        "SELECT count(*), count(DISTINCT title) FROM tasks",
    )
    .await;
    ctx.check(
        "the database holds each task once",
        rows == CREATES as i64 && distinct == CREATES as i64,
        format!("{rows} rows, {distinct} distinct titles"),
    );
    ctx.check_no_panics(&stack);
    drop(stack);
    ctx.clean(storage).await;
}

async fn sign_ups(ctx: &mut Ctx) {
    let storage = ctx.storage("auth").await;
    let mut stack = ctx.start(&storage, &ctx.settings()).await;
    let channel = net::channel(stack.auth.addr).await;
    let emails: Arc<Vec<String>> = Arc::new(
        (0..SIGN_UPS)
            .map(|n| format!("crash-{n}@example.com"))
            .collect(),
    );
    let permits = Arc::new(tokio::sync::Semaphore::new(SIGN_UP_CONCURRENCY));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut calls = Vec::with_capacity(SIGN_UPS);
    for n in 0..SIGN_UPS {
        let mut client = AuthServiceClient::new(channel.clone());
        let (emails, permits, acknowledged) =
            (emails.clone(), permits.clone(), acknowledged.clone());
        calls.push(tokio::spawn(async move {
            let _permit = permits.acquire().await.expect("open semaphore");
            let answer = client
                .sign_up(SignUpRequest {
                    email: emails[n].clone(),
                    password: net::PASSWORD.into(),
                    display_name: String::new(),
                })
                .await;
            match answer {
                Ok(_) => {
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                    Code::Ok
                }
                Err(status) => status.code(),
            }
        }));
    }
    until(&acknowledged, SIGN_UPS / 4).await;
    stack.auth.kill();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.expect("a call panicked"));
    }
    let signed_up: Vec<usize> = (0..SIGN_UPS).filter(|n| answers[*n] == Code::Ok).collect();
    ctx.check(
        "auth service killed in the middle of the sign-ups",
        signed_up.len() < SIGN_UPS && !signed_up.is_empty(),
        format!(
            "{SIGN_UPS} SignUp, {SIGN_UP_CONCURRENCY} at a time: {}",
            net::codes(answers.iter().copied())
        ),
    );

    stack.auth.restart("todo.auth.v1.AuthService").await;
    let mut client = AuthServiceClient::new(net::channel(stack.auth.addr).await);
    let mut cannot_log_in = 0;
    for n in &signed_up {
        let login = client
            .login(LoginRequest {
                email: emails[*n].clone(),
                password: net::PASSWORD.into(),
            })
            .await;
        if login.is_err() {
            cannot_log_in += 1;
        }
    }
    ctx.check(
        "every acknowledged account signs in after the restart",
        cannot_log_in == 0,
        format!(
            "{} accounts, {cannot_log_in} cannot sign in",
            signed_up.len()
        ),
    );

    let mut retried = Vec::new();
    let mut acknowledged_then_created = 0;
    for (n, email) in emails.iter().enumerate() {
        let answer = client
            .sign_up(SignUpRequest {
                email: email.clone(),
                password: net::PASSWORD.into(),
                display_name: String::new(),
            })
            .await;
        let code = answer.map_or_else(|s| s.code(), |_| Code::Ok);
        if answers[n] == Code::Ok && code == Code::Ok {
            acknowledged_then_created += 1;
        }
        retried.push(code);
    }
    let (rows, distinct) = net::query_pair(
        &storage,
        true,
        "SELECT count(*), count(DISTINCT email) FROM users",
    )
    .await;
    ctx.check(
        "retrying every sign-up creates no duplicate account",
        acknowledged_then_created == 0
            && retried
                .iter()
                .all(|c| matches!(c, Code::Ok | Code::AlreadyExists))
            && rows == SIGN_UPS as i64
            && distinct == SIGN_UPS as i64,
        format!(
            "retries: {}; {rows} accounts stored for {SIGN_UPS} emails ({distinct} distinct)",
            net::codes(retried)
        ),
    );
    ctx.check_no_panics(&stack);
    drop(stack);
    ctx.clean(storage).await;
}
