//! Database outage drill (PostgreSQL): the database goes away under load and comes back.
//!
//! The services reach PostgreSQL through a TCP proxy in this process. Stopping the database
//! is the proxy closing every connection and its listening port (new connections are refused,
//! as by a stopped server); bringing it back is listening again on the same port. Meanwhile
//! workers create and list tasks and sign in, each call with a deadline. Calls must fail fast
//! with `UNAVAILABLE`, never run past their deadline, succeed again once the database is back
//! without any restart, and no acknowledged create may be missing at the end.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use todo_proto::{
    auth::v1::{LoginRequest, auth_service_client::AuthServiceClient},
    task::v1::{CreateTaskRequest, ListTasksRequest, Task, task_service_client::TaskServiceClient},
};
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    sync::watch,
};
use tonic::Code;

use todo_bench::servers::Storage;

use crate::{
    Ctx,
    net::{self, authed},
};

/// Deadline of every call.
const DEADLINE: Duration = Duration::from_secs(2);
/// Task workers (each alternates a create and a list) and login workers.
const TASK_WORKERS: usize = 16;
const LOGIN_WORKERS: usize = 1;
/// Phases: database up, down, up again.
const BEFORE: Duration = Duration::from_secs(2);
const OUTAGE: Duration = Duration::from_secs(5);
const AFTER: Duration = Duration::from_secs(5);
/// Calls must fail at least this fast while the database is down.
const FAIL_FAST_P99: Duration = Duration::from_millis(500);
/// And succeed again this soon after it is back.
const RECOVERY: Duration = Duration::from_secs(5);

/// A TCP proxy that can play a stopped database.
struct Proxy {
    addr: SocketAddr,
    /// `true` while the database is up; every connection and the listener follow it.
    up: watch::Sender<bool>,
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = listen("127.0.0.1:0".parse().expect("address")).expect("proxy port");
        let addr = listener.local_addr().expect("proxy address");
        let (up, _) = watch::channel(true);
        let state = up.subscribe();
        tokio::spawn(serve(listener, addr, target, state));
        Self { addr, up }
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// Accepts and pipes connections while up; closes everything while down.
async fn serve(
    mut listener: TcpListener,
    addr: SocketAddr,
    target: SocketAddr,
    mut up: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                tokio::spawn(pipe(client, target, up.clone()));
            }
            changed = up.changed() => {
                if changed.is_err() {
                    return;
                }
                if !*up.borrow_and_update() {
                    // Down: stop listening until up again.
                    drop(listener);
                    while !*up.borrow_and_update() {
                        if up.changed().await.is_err() {
                            return;
                        }
                    }
                    listener = listen(addr).expect("the proxy's port again");
                }
            }
        }
    }
}

async fn pipe(mut client: TcpStream, target: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = up.wait_for(|up| !*up) => {}
    }
}

/// `url` with its host and port replaced by `addr`.
fn through(url: &str, addr: SocketAddr) -> String {
    let (scheme_user, rest) = url.split_once('@').expect("postgres://USER@HOST:PORT/DB");
    let (_, db) = rest.split_once('/').expect("a database name");
    format!("{scheme_user}@{addr}/{db}")
}

/// One call: when it was sent (from the start), how long it took, its code.
#[derive(Clone, Copy, Debug)]
struct Call {
    sent: Duration,
    took: Duration,
    code: Code,
}

pub async fn run(ctx: &mut Ctx) {
    let storage = ctx.storage("outage").await;
    let Storage::Postgres(auth_url, task_url) = &storage else {
        unreachable!("the outage drill runs on PostgreSQL only");
    };
    let target = {
        let rest = auth_url.split_once('@').map_or("", |(_, rest)| rest);
        let host_port = rest.split_once('/').map_or(rest, |(hp, _)| hp);
        tokio::net::lookup_host(host_port)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| panic!("PostgreSQL address in {auth_url}"))
    };
    let proxy = Proxy::start(target).await;
    let proxied = Storage::Postgres(through(auth_url, proxy.addr), through(task_url, proxy.addr));
    let stack = ctx.start(&proxied, &ctx.settings()).await;
    let account = net::sign_up(stack.auth.addr, "outage@example.com").await;
    let token = Arc::new(account.token);

    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let created: Arc<Mutex<Vec<String>>> = Arc::default();
    let started = Instant::now();
    let end = started + BEFORE + OUTAGE + AFTER;
    let mut workers = Vec::new();
    for worker in 0..TASK_WORKERS + LOGIN_WORKERS {
        let (calls, created, token) = (calls.clone(), created.clone(), token.clone());
        let (task_addr, auth_addr) = (stack.task.addr, stack.auth.addr);
        workers.push(tokio::spawn(async move {
            let mut tasks = TaskServiceClient::new(net::lazy_channel(task_addr));
            let mut auth = AuthServiceClient::new(net::lazy_channel(auth_addr));
            let mut n = 0u64;
            while Instant::now() < end {
                let sent = Instant::now();
                let code = if worker >= TASK_WORKERS {
                    let mut request = tonic::Request::new(LoginRequest {
                        email: "outage@example.com".into(),
                        password: net::PASSWORD.into(),
                    });
                    request.set_timeout(DEADLINE);
                    auth.login(request)
                        .await
                        .map_or_else(|s| s.code(), |_| Code::Ok)
                } else if n.is_multiple_of(2) {
                    let title = format!("outage {worker} {n}");
                    let request = CreateTaskRequest {
                        parent: "users/me".into(),
                        task: Some(Task {
                            title: title.clone(),
                            ..Task::default()
                        }),
                        request_id: String::new(),
                    };
                    match tasks
                        .create_task(authed(request, &token, Some(DEADLINE)))
                        .await
                    {
                        Ok(_) => {
                            created.lock().expect("lock").push(title);
                            Code::Ok
                        }
                        Err(status) => status.code(),
                    }
                } else {
                    let request = ListTasksRequest {
                        parent: "users/me".into(),
                        page_size: 10,
                        ..ListTasksRequest::default()
                    };
                    tasks
                        .list_tasks(authed(request, &token, Some(DEADLINE)))
                        .await
                        .map_or_else(|s| s.code(), |_| Code::Ok)
                };
                calls.lock().expect("lock").push(Call {
                    sent: sent - started,
                    took: sent.elapsed(),
                    code,
                });
                n += 1;
                if code != Code::Ok {
                    // A client backs off a little after an error rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    tokio::time::sleep_until((started + BEFORE).into()).await;
    proxy.set_up(false);
    tokio::time::sleep_until((started + BEFORE + OUTAGE).into()).await;
    proxy.set_up(true);
    for worker in workers {
        worker.await.expect("a worker panicked");
    }

    let calls = calls.lock().expect("lock").clone();
    let before: Vec<Call> = calls
        .iter()
        .copied()
        .filter(|c| c.sent + c.took < BEFORE)
        .collect();
    // Calls sent during the outage, after the first 100 ms (those in flight at the cut may
    // have been answered from a connection still open).
    let during: Vec<Call> = calls
        .iter()
        .copied()
        .filter(|c| c.sent >= BEFORE + Duration::from_millis(100) && c.sent < BEFORE + OUTAGE)
        .collect();
    let back = BEFORE + OUTAGE;
    let first_ok_after = calls
        .iter()
        .filter(|c| c.sent >= back && c.code == Code::Ok)
        .map(|c| c.sent + c.took - back)
        .min();
    let recovered_at = first_ok_after.unwrap_or(AFTER);
    let settled: Vec<Call> = calls
        .iter()
        .copied()
        .filter(|c| c.sent >= back + recovered_at + Duration::from_secs(1))
        .collect();

    ctx.check(
        "calls succeed before the outage",
        !before.is_empty() && before.iter().all(|c| c.code == Code::Ok),
        net::codes(before.iter().map(|c| c.code)),
    );
    let mut failed_in: Vec<Duration> = during.iter().map(|c| c.took).collect();
    let p99 = net::percentile(&mut failed_in, 99.0);
    let max = failed_in.last().copied().unwrap_or_default();
    ctx.check(
        "while the database is down every call fails fast with UNAVAILABLE",
        !during.is_empty()
            && during.iter().all(|c| c.code == Code::Unavailable)
            && p99 <= FAIL_FAST_P99
            && max < DEADLINE,
        format!(
            "{} over {OUTAGE:?}; p50 {}, p99 {} (target <= {}), max {} (deadline {DEADLINE:?})",
            net::codes(during.iter().map(|c| c.code)),
            net::ms(net::percentile(&mut failed_in, 50.0)),
            net::ms(p99),
            net::ms(FAIL_FAST_P99),
            net::ms(max),
        ),
    );
    ctx.check(
        "the services recover by themselves when it is back",
        first_ok_after.is_some_and(|t| t <= RECOVERY)
            && !settled.is_empty()
            && settled.iter().all(|c| c.code == Code::Ok),
        format!(
            "first success {} after the database was back (target <= {RECOVERY:?}); from 1 s later: {}",
            first_ok_after.map_or("never".into(), net::ms),
            net::codes(settled.iter().map(|c| c.code))
        ),
    );

    let mut client = TaskServiceClient::new(net::channel(stack.task.addr).await);
    let listed = net::list_all(&mut client, &token).await;
    let stored: std::collections::HashSet<&str> = listed.iter().map(|t| t.title.as_str()).collect();
    let created = created.lock().expect("lock").clone();
    let lost = created
        .iter()
        .filter(|t| !stored.contains(t.as_str()))
        .count();
    ctx.check(
        "no acknowledged write is lost",
        lost == 0,
        format!("{} creates acknowledged, {lost} missing", created.len()),
    );
    ctx.check_no_panics(&stack);
    drop(stack);
    ctx.clean(storage).await;
}
