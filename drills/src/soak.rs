//! Soak: a mixed load (40% GetTask, 40% ListTasks, 10% CreateTask, 10% DeleteTask) through
//! the gateway at half the capacity measured just before, for `--soak-duration`. No call may
//! fail, and each server's RSS and open file descriptors must stay flat: the last sample
//! within 10% (RSS) and 4 descriptors of the first one taken after a warm-up tenth.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use todo_proto::task::v1::{
    CreateTaskRequest, DeleteTaskRequest, GetTaskRequest, ListTasksRequest, Task,
    task_service_client::TaskServiceClient,
};
use tonic::transport::Channel;

use todo_bench::servers::{Server, Stack};

use crate::{
    Ctx,
    net::{self, authed},
};

/// Closed-loop workers measuring the capacity, and paced workers of the soak.
const WORKERS: usize = 32;
const CAPACITY_RUN: Duration = Duration::from_secs(5);
/// Tasks the user has from the start.
const SEEDED: usize = 200;

/// What the workers share.
struct Load {
    clients: Vec<TaskServiceClient<Channel>>,
    token: String,
    seeded: Vec<String>,
    ok: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Load {
    /// One call of the mix, chosen by `n`; a create is followed by the delete of its task on
    /// the worker's next write, so the data stays the same size.
    async fn call(&self, worker: usize, n: u64, created: &mut Option<String>) {
        let mut client = self.clients[worker % self.clients.len()].clone();
        let token = &self.token;
        let deadline = Some(Duration::from_secs(5));
        let answer = match n % 10 {
            0..4 => {
                let name = &self.seeded[(n as usize * 7 + worker) % self.seeded.len()];
                let request = GetTaskRequest { name: name.clone() };
                client
                    .get_task(authed(request, token, deadline))
                    .await
                    .map(drop)
            }
            4..8 => {
                let request = ListTasksRequest {
                    parent: "users/me".into(),
                    page_size: 20,
                    ..ListTasksRequest::default()
                };
                client
                    .list_tasks(authed(request, token, deadline))
                    .await
                    .map(drop)
            }
            _ => match created.take() {
                Some(name) => {
                    let request = DeleteTaskRequest {
                        name,
                        etag: String::new(),
                    };
                    client
                        .delete_task(authed(request, token, deadline))
                        .await
                        .map(drop)
                }
                None => {
                    let request = CreateTaskRequest {
                        parent: "users/me".into(),
                        task: Some(Task {
                            title: format!("soak {worker} {n}"),
                            ..Task::default()
                        }),
                        request_id: String::new(),
                    };
                    client
                        .create_task(authed(request, token, deadline))
                        .await
                        .map(|r| {
                            *created = r.into_inner().task.map(|t| t.name);
                        })
                }
            },
        };
        match answer {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(status) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().expect("lock");
                if first.is_none() {
                    *first = Some(format!("{:?}: {}", status.code(), status.message()));
                }
            }
        }
    }
}

/// Runs `WORKERS` workers until `end`, each pacing its calls `period` apart (`None`: as fast
/// as answers come).
async fn drive(load: &Arc<Load>, end: Instant, period: Option<Duration>) {
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let load = load.clone();
        workers.push(tokio::spawn(async move {
            let mut created = None;
            let mut ticks = period.map(|period| {
                // Spread the workers' ticks over the period.
                let start = tokio::time::Instant::now() + period * worker as u32 / WORKERS as u32;
                let mut ticks = tokio::time::interval_at(start, period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                ticks
            });
            let mut n = 0u64;
            loop {
                if let Some(ticks) = &mut ticks {
                    ticks.tick().await;
                }
                if Instant::now() >= end {
                    break;
                }
                load.call(worker, n, &mut created).await;
                n += 1;
            }
            // Leave the data as it was.
            if created.is_some() {
                load.call(worker, 9, &mut created).await;
            }
        }));
    }
    for worker in workers {
        worker.await.expect("a soak worker panicked");
    }
}

/// RSS (KiB) and open file descriptors of `server`.
fn sample(server: &Server) -> (u64, usize) {
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid())).map_or(0, |dir| dir.count());
    (server.stats().rss_kib, fds)
}

pub async fn run(ctx: &mut Ctx) {
    let storage = ctx.storage("soak").await;
    let stack: Stack = ctx.start(&storage, &ctx.settings()).await;
    let account = net::sign_up(stack.auth.addr, "soak@example.com").await;
    let mut direct = TaskServiceClient::new(net::channel(stack.task.addr).await);
    let mut seeded = Vec::new();
    for n in 0..SEEDED {
        let request = CreateTaskRequest {
            parent: "users/me".into(),
            task: Some(Task {
                title: format!("seeded {n}"),
                ..Task::default()
            }),
            request_id: String::new(),
        };
        let task = direct
            .create_task(authed(request, &account.token, None))
            .await
            .unwrap_or_else(|s| panic!("seed: {s:?}"))
            .into_inner()
            .task
            .expect("a task");
        seeded.push(task.name);
    }
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(TaskServiceClient::new(
            net::channel(stack.gateway.addr).await,
        ));
    }
    let load = Arc::new(Load {
        clients,
        token: account.token.clone(),
        seeded,
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });

    drive(&load, Instant::now() + CAPACITY_RUN, None).await;
    let capacity = load.ok.load(Ordering::Relaxed) as f64 / CAPACITY_RUN.as_secs_f64();
    let rate = capacity / 2.0;
    load.ok.store(0, Ordering::Relaxed);
    load.errors.store(0, Ordering::Relaxed);

    let duration = ctx.soak_duration;
    let period = Duration::from_secs_f64(WORKERS as f64 / rate.max(1.0));
    let started = Instant::now();
    let end = started + duration;
    let sampler = (duration / 20).max(Duration::from_secs(1));
    let soak = {
        let load = load.clone();
        tokio::spawn(async move { drive(&load, end, Some(period)).await })
    };
    let mut samples: Vec<Vec<(u64, usize)>> = Vec::new();
    let mut next = started + sampler;
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        samples.push(stack.servers().iter().map(|s| sample(s)).collect());
        next += sampler;
    }
    soak.await.expect("the soak panicked");
    let elapsed = started.elapsed().as_secs_f64();
    samples.push(stack.servers().iter().map(|s| sample(s)).collect());

    let ok = load.ok.load(Ordering::Relaxed);
    let errors = load.errors.load(Ordering::Relaxed);
    ctx.check(
        "half the capacity through the gateway for the whole soak: zero errors",
        errors == 0 && ok > 0,
        format!(
            "capacity {capacity:.0} calls/s (closed loop, {WORKERS} workers); soak at {:.0}/s for {duration:?}: {ok} OK, {errors} errors{}",
            ok as f64 / elapsed,
            load.first_error
                .lock()
                .expect("lock")
                .as_ref()
                .map_or(String::new(), |e| format!(" (first: {e})"))
        ),
    );
    // The baseline: the first sample after a tenth of the soak (caches warm).
    let baseline = &samples[(samples.len() / 10).min(samples.len() - 1)];
    let last = samples.last().expect("a sample");
    let mut figures = Vec::new();
    let mut flat = true;
    for ((server, (base_rss, base_fds)), (rss, fds)) in
        stack.servers().iter().zip(baseline).zip(last)
    {
        let growth = (*rss as f64 - *base_rss as f64) / (*base_rss).max(1) as f64;
        flat &= growth.abs() <= 0.10 && *fds <= base_fds + 4;
        figures.push(format!(
            "{} RSS {:.1} -> {:.1} MiB ({:+.1}%), fds {base_fds} -> {fds}",
            server.name,
            *base_rss as f64 / 1024.0,
            *rss as f64 / 1024.0,
            growth * 100.0
        ));
    }
    ctx.check(
        "RSS flat (within 10%) and no file-descriptor growth",
        flat,
        format!("{} samples; {}", samples.len(), figures.join("; ")),
    );
    ctx.check_no_panics(&stack);
    drop(stack);
    ctx.clean(storage).await;
}
