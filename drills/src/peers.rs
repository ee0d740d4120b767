//! Peer outage drills: the auth service stopped (the task service keeps accepting valid
//! tokens with the keys it holds), a backend restarted behind the gateway (used again within
//! 2 seconds), and `SIGTERM` to each server in the middle of calls (they finish; new ones are
//! refused at once, with a proper status).

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use todo_proto::{
    auth::v1::{LoginRequest, auth_service_client::AuthServiceClient},
    task::v1::{CreateTaskRequest, ListTasksRequest, Task, task_service_client::TaskServiceClient},
};
use tonic::{Code, transport::Channel};

use todo_bench::servers::{Server, Stack};

use crate::{
    Ctx,
    net::{self, authed},
};

/// A backend restarted behind the gateway must be used again this soon.
const BACK_WITHIN: Duration = Duration::from_secs(2);
/// Calls refused after SIGTERM must be answered this soon.
const REFUSED_WITHIN: Duration = Duration::from_secs(1);

pub async fn run(ctx: &mut Ctx) {
    let storage = ctx.storage("peers").await;
    let mut stack = ctx.start(&storage, &ctx.settings()).await;
    let account = net::sign_up(stack.auth.addr, "peers@example.com").await;
    auth_down(ctx, &mut stack, &account.token).await;
    backend_restart(ctx, &mut stack, &account.token).await;
    drain_auth(ctx, &mut stack).await;
    for through_gateway in [false, true] {
        drain_tasks(ctx, &mut stack, &account.token, through_gateway).await;
    }
    ctx.check_no_panics(&stack);
    drop(stack);
    ctx.clean(storage).await;
}

fn list() -> ListTasksRequest {
    ListTasksRequest {
        parent: "users/me".into(),
        page_size: 10,
        ..ListTasksRequest::default()
    }
}

fn create(title: String, request_id: String) -> CreateTaskRequest {
    CreateTaskRequest {
        parent: "users/me".into(),
        task: Some(Task {
            title,
            ..Task::default()
        }),
        request_id,
    }
}

async fn login(auth: &mut AuthServiceClient<Channel>, deadline: Duration) -> Code {
    let mut request = tonic::Request::new(LoginRequest {
        email: "peers@example.com".into(),
        password: net::PASSWORD.into(),
    });
    request.set_timeout(deadline);
    auth.login(request)
        .await
        .map_or_else(|s| s.code(), |_| Code::Ok)
}

async fn auth_down(ctx: &mut Ctx, stack: &mut Stack, token: &str) {
    stack.auth.terminate();
    let exited = stack.auth.exited(Duration::from_secs(15)).await;
    let mut answers = Vec::new();
    for addr in [stack.task.addr, stack.gateway.addr] {
        let mut tasks = TaskServiceClient::new(net::channel(addr).await);
        for n in 0..100u32 {
            let title = format!("while auth is down {n}");
            let code = if n.is_multiple_of(2) {
                tasks
                    .create_task(authed(create(title, String::new()), token, None))
                    .await
                    .map_or_else(|s| s.code(), |_| Code::Ok)
            } else {
                tasks
                    .list_tasks(authed(list(), token, None))
                    .await
                    .map_or_else(|s| s.code(), |_| Code::Ok)
            };
            answers.push(code);
        }
    }
    ctx.check(
        "with the auth service stopped, valid tokens keep working",
        exited.is_some() && answers.iter().all(|c| *c == Code::Ok),
        format!(
            "auth service exited: {}; 100 calls direct and 100 through the gateway: {}",
            exited.is_some(),
            net::codes(answers)
        ),
    );

    let mut auth = AuthServiceClient::new(net::lazy_channel(stack.gateway.addr));
    let sent = Instant::now();
    let code = login(&mut auth, Duration::from_secs(5)).await;
    let took = sent.elapsed();
    ctx.check(
        "a call to the stopped auth service fails fast through the gateway",
        code == Code::Unavailable && took < REFUSED_WITHIN,
        format!("Login: {code:?} in {}", net::ms(took)),
    );
    let restarted = Instant::now();
    stack.auth.restart("todo.auth.v1.AuthService").await;
    let serving = restarted.elapsed();
    let back = until_ok(|| {
        let mut auth = auth.clone();
        async move { login(&mut auth, Duration::from_secs(5)).await }
    })
    .await;
    ctx.check(
        "the restarted auth service is used again through the gateway",
        back.is_some_and(|t| t <= BACK_WITHIN),
        format!(
            "serving {} after the start; Login OK through the gateway {} later (target <= {BACK_WITHIN:?})",
            net::ms(serving),
            back.map_or("never".into(), net::ms)
        ),
    );
}

/// How long until `call` answers OK (tried every 10 ms for 10 s).
async fn until_ok<F, Fut>(call: F) -> Option<Duration>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Code>,
{
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if call().await == Code::Ok {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

async fn backend_restart(ctx: &mut Ctx, stack: &mut Stack, token: &str) {
    let tasks = TaskServiceClient::new(net::lazy_channel(stack.gateway.addr));
    let call = |tasks: &TaskServiceClient<Channel>| {
        let mut tasks = tasks.clone();
        let token = token.to_owned();
        async move {
            tasks
                .list_tasks(authed(list(), &token, Some(Duration::from_secs(5))))
                .await
                .map_or_else(|s| s.code(), |_| Code::Ok)
        }
    };
    let warm = call(&tasks).await;
    stack.task.kill();
    let sent = Instant::now();
    let down = call(&tasks).await;
    let took = sent.elapsed();
    ctx.check(
        "a killed backend fails fast through the gateway",
        warm == Code::Ok && down == Code::Unavailable && took < REFUSED_WITHIN,
        format!("ListTasks: {down:?} in {}", net::ms(took)),
    );
    stack.task.restart("todo.task.v1.TaskService").await;
    let back = until_ok(|| call(&tasks)).await;
    ctx.check(
        "a backend restarted behind the gateway is used again within 2 s",
        back.is_some_and(|t| t <= BACK_WITHIN),
        format!(
            "first OK through the gateway {} after the backend served again",
            back.map_or("never".into(), net::ms)
        ),
    );
}

/// How long a server may take to stop accepting after SIGTERM.
const STOPS_ACCEPTING_WITHIN: Duration = Duration::from_millis(100);

/// A call on a new connection to `server`, [`STOPS_ACCEPTING_WITHIN`] after it got SIGTERM:
/// its code and how fast it came.
async fn refused_after_sigterm(server: &Server) -> (Code, Duration) {
    tokio::time::sleep(STOPS_ACCEPTING_WITHIN).await;
    let mut client = TaskServiceClient::new(net::lazy_channel(server.addr));
    let sent = Instant::now();
    let mut request = tonic::Request::new(ListTasksRequest::default());
    request.set_timeout(Duration::from_secs(5));
    let code = client
        .list_tasks(request)
        .await
        .map_or_else(|s| s.code(), |_| Code::Ok);
    (code, sent.elapsed())
}

async fn drain_auth(ctx: &mut Ctx, stack: &mut Stack) {
    const LOGINS: usize = 24;
    let channel = net::channel(stack.auth.addr).await;
    let mut calls = Vec::new();
    for _ in 0..LOGINS {
        let mut auth = AuthServiceClient::new(channel.clone());
        calls.push(tokio::spawn(async move {
            login(&mut auth, Duration::from_secs(30)).await
        }));
    }
    // Let the calls reach the server: each hashes a password, so most are still running.
    tokio::time::sleep(Duration::from_millis(50)).await;
    stack.auth.terminate();
    let (refused, refused_in) = refused_after_sigterm(&stack.auth).await;
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.expect("a call panicked"));
    }
    let exited = stack.auth.exited(Duration::from_secs(15)).await;
    ctx.check(
        "SIGTERM to the auth service: calls in flight finish, new ones are refused",
        answers.iter().all(|c| *c == Code::Ok)
            && refused == Code::Unavailable
            && refused_in < REFUSED_WITHIN
            && exited.is_some_and(|s| s.success()),
        format!(
            "{LOGINS} Login in flight: {}; a new call 100 ms later: {refused:?} in {}; exit: {}",
            net::codes(answers),
            net::ms(refused_in),
            exited.map_or("still running".into(), |s| s.to_string())
        ),
    );
    stack.auth.restart("todo.auth.v1.AuthService").await;
}

async fn drain_tasks(ctx: &mut Ctx, stack: &mut Stack, token: &str, through_gateway: bool) {
    const CREATES: usize = 1000;
    let addr = if through_gateway {
        stack.gateway.addr
    } else {
        stack.task.addr
    };
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(net::channel(addr).await);
    }
    let label = if through_gateway { "gateway" } else { "task" };
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let token = Arc::new(token.to_owned());
    let mut calls = Vec::new();
    for n in 0..CREATES {
        let mut tasks = TaskServiceClient::new(channels[n % channels.len()].clone());
        let (token, acknowledged) = (token.clone(), acknowledged.clone());
        calls.push(tokio::spawn(async move {
            let title = format!("drain {label} {n}");
            let request = create(title.clone(), uuid::Uuid::new_v4().to_string());
            let ended = match tasks.create_task(authed(request, &token, None)).await {
                Ok(_) => {
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                    Drained::Acknowledged
                }
                Err(status) if status.code() == Code::Unavailable => {
                    Drained::Refused("Unavailable")
                }
                Err(status) => net::never_taken(&status)
                    .map_or(Drained::Failed(status.code()), Drained::Refused),
            };
            (title, ended)
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.load(Ordering::Relaxed) < CREATES / 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let server = if through_gateway {
        &mut stack.gateway
    } else {
        &mut stack.task
    };
    server.terminate();
    let (refused, refused_in) = refused_after_sigterm(server).await;
    let mut answers = Vec::new();
    let (mut acknowledged_titles, mut refused_titles) = (Vec::new(), Vec::new());
    for call in calls {
        let (title, ended) = call.await.expect("a call panicked");
        match ended {
            Drained::Acknowledged => acknowledged_titles.push(title),
            Drained::Refused(_) => refused_titles.push(title),
            Drained::Failed(_) => {}
        }
        answers.push(ended);
    }
    let exited = server.exited(Duration::from_secs(15)).await;
    // The gateway reports the task service as serving once its backend is.
    server.restart("todo.task.v1.TaskService").await;
    let mut tasks = TaskServiceClient::new(net::channel(stack.task.addr).await);
    let stored: HashSet<String> = net::list_all(&mut tasks, &token)
        .await
        .into_iter()
        .map(|t| t.title)
        .collect();
    let lost = acknowledged_titles
        .iter()
        .filter(|t| !stored.contains(*t))
        .count();
    // A refusal is clean only if the call really was not carried out.
    let refused_but_stored = refused_titles
        .iter()
        .filter(|t| stored.contains(*t))
        .count();
    let name = if through_gateway {
        "SIGTERM to the gateway"
    } else {
        "SIGTERM to the task service"
    };
    ctx.check(
        &format!("{name}: calls finish or are refused cleanly, new ones refused, none lost"),
        !answers.iter().any(|a| matches!(a, Drained::Failed(_)))
            && answers.contains(&Drained::Acknowledged)
            && refused == Code::Unavailable
            && refused_in < REFUSED_WITHIN
            && exited.is_some_and(|s| s.success())
            && lost == 0
            && refused_but_stored == 0,
        format!(
            "{CREATES} concurrent CreateTask: {}; a new call 100 ms later: {refused:?} in {}; exit: {}; {} acknowledged, {lost} missing; {} refused, {refused_but_stored} of them stored",
            net::tally(answers.iter().map(Drained::label)),
            net::ms(refused_in),
            exited.map_or("still running".into(), |s| s.to_string()),
            acknowledged_titles.len(),
            refused_titles.len(),
        ),
    );
}

/// How a call ended when its server was told to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drained {
    Acknowledged,
    /// Refused before the server took it: `UNAVAILABLE`, or refused by the transport
    /// ([`net::never_taken`]), which a client may retry as it is.
    Refused(&'static str),
    /// Anything else: not a clean end.
    Failed(Code),
}

impl Drained {
    fn label(&self) -> String {
        match self {
            Self::Acknowledged => "Ok".to_owned(),
            Self::Refused(how) => (*how).to_owned(),
            Self::Failed(code) => format!("{code:?}"),
        }
    }
}
