//! `todo-bench`: the benchmark harness.
//!
//! Starts the real servers (release binaries, one process each) on loopback, prepares data,
//! drives each scenario for a fixed time from a fixed number of closed-loop workers, and prints
//! a table (requests/s, p50/p90/p99/max latency, errors, CPU and RSS of each server), the scale
//! curve of `ListTasks`, and PASS/MISS lines for the targets, all computed as ratios within the
//! one run. The same figures are written as JSON.
//!
//! ```sh
//! cargo build --release --bins && cargo run --release -p todo-bench -- --database both
//! ```
//!
//! Every figure comes from this harness's own Rust client (tonic for gRPC, tonic-web over
//! hyper's HTTP/1.1 client for gRPC-web), sharing the 2 cores with the servers.

mod scale;
mod tools;

use std::{
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::{Parser, ValueEnum};
use serde::Serialize;

use todo_proto::{
    auth::v1::VerifyTokenRequest,
    task::v1::{CreateTaskRequest, GetTaskRequest, ListTasksRequest, Task},
};

use todo_bench::{
    clients::{Auth, Path, Tasks},
    load::{IdleSpinners, Measured, Turns, drive},
    servers::{self, ProcStats, Server, Settings, Stack, Storage},
};

use crate::tools::{Call, Tools};

const PASSWORD: &str = "correct horse battery";

/// The benchmark harness of the Todo backend.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// How long each scenario is measured (after a 1 s warm-up).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Closed-loop workers (calls in flight) per scenario.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Database back-end(s) to measure.
    #[arg(long, value_enum, default_value_t = Databases::Sqlite)]
    database: Databases,
    /// PostgreSQL server where the harness may create its databases.
    #[arg(
        long,
        env = "BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    postgres_url: String,
    /// Largest task count of the ListTasks scale curve (100, 10,000 and this).
    #[arg(long, default_value_t = 1_000_000)]
    scale_max: u64,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Databases {
    Sqlite,
    Postgres,
    Both,
}

/// One measured row.
#[derive(Debug, Serialize)]
struct Row {
    database: &'static str,
    scenario: String,
    path: &'static str,
    tool: &'static str,
    requests_per_second: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    ok: u64,
    errors: u64,
    /// CPU seconds each server used during the scenario, per second of it.
    cpu_cores: Vec<(&'static str, f64)>,
    /// The same for the PostgreSQL server (all its processes), on PostgreSQL.
    postgres_cpu_cores: Option<f64>,
    /// The same for the reference proxy (`todo-passthrough` in either mode, or nginx with its
    /// workers), in its rows.
    passthrough_cpu_cores: Option<f64>,
    /// The same for the whole machine (every core's busy time, the load tool's and the
    /// kernel's included), from `/proc/stat`.
    machine_cpu_cores: f64,
    /// RSS of each server at the end, MiB.
    rss_mib: Vec<(&'static str, f64)>,
}

/// One PASS/MISS line.
#[derive(Debug, Serialize)]
struct Target {
    database: &'static str,
    target: String,
    measured: String,
    pass: bool,
}

#[derive(Debug, Default, Serialize)]
struct Results {
    rows: Vec<Row>,
    scale: Vec<scale::ScalePoint>,
    idle_rss_mib: Vec<(&'static str, &'static str, f64)>,
    peak_rss_mib: Vec<(&'static str, &'static str, f64)>,
    targets: Vec<Target>,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Runs `call` from the harness's own closed-loop workers as a scenario and records it.
#[allow(clippy::too_many_arguments)]
async fn measure<F, Fut>(
    results: &mut Results,
    stack: &Stack,
    database: &'static str,
    scenario: &str,
    path: Path,
    workers: usize,
    duration: Duration,
    call: F,
) -> Measured
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let run = async move { Ok(drive(workers, Duration::from_secs(1), duration, call).await) };
    record(results, stack, database, scenario, path, RUST_CLIENT, run)
        .await
        .unwrap_or_default()
}

/// The p99 latency (ms) of one call of the login-flood scenarios in one phase, from the
/// harness's client and from h2load where it ran.
struct Tail {
    rust: f64,
    tool: Option<f64>,
}

/// What one phase of the login-flood scenarios measured.
struct Light {
    verify: Tail,
    list: Tail,
}

/// The harness's own client.
const RUST_CLIENT: &str = "todo-bench (Rust)";

/// The task service's place in [`Stack::servers`].
const TASK_SERVER: usize = 1;
/// The gateway's place in [`Stack::servers`].
const GATEWAY_SERVER: usize = 2;

/// What the servers used while a scenario ran: CPU seconds of each, of the PostgreSQL server
/// and of the reference proxies (`todo-passthrough` in both modes and nginx: only the one a
/// scenario goes through is busy), and for how long.
#[derive(Clone, Debug, Default)]
struct Usage {
    /// In the order of [`Stack::servers`]: see [`TASK_SERVER`] and [`GATEWAY_SERVER`].
    cpu_seconds: Vec<f64>,
    postgres_cpu_seconds: f64,
    passthrough_cpu_seconds: f64,
    /// Every core's busy time ([`servers::machine_busy_seconds`]).
    machine_cpu_seconds: f64,
    elapsed: f64,
}

/// CPU microseconds per call of what forwarded the calls on a path (the gateway, or the
/// reference proxy on its paths), and of the whole machine.
#[derive(Clone, Copy, Debug)]
struct PerCall {
    forwarding: f64,
    machine: f64,
}

impl PerCall {
    /// The CPU per call the proxy may spend for its calls to reach `at_least` of `direct`
    /// calls/s on `cores` cores, all of them busy, if everything else (the load tool, the
    /// backend, the kernel) costs per call what it did through the proxy.
    fn forwarding_budget(&self, cores: f64, direct: f64, at_least: f64) -> f64 {
        1e6 * cores / (at_least * direct) - (self.machine - self.forwarding)
    }
}

/// CPU microseconds per call spent serving the calls sent direct to the task service.
#[derive(Clone, Copy, Debug)]
struct Serving {
    task: f64,
    postgres: f64,
}

/// CPU readings at one moment: of each server, of the PostgreSQL server and of the reference
/// proxies.
struct Reading {
    servers: [ProcStats; 3],
    postgres: servers::PostgresCpu,
    passthrough: f64,
    machine: f64,
    at: Instant,
}

impl Reading {
    fn now(stack: &Stack) -> Self {
        Self {
            servers: stack.servers().map(|s| s.stats()),
            postgres: servers::PostgresCpu::now(),
            passthrough: stack
                .reference_proxies()
                .map(Server::tree_cpu_seconds)
                .sum(),
            machine: servers::machine_busy_seconds(),
            at: Instant::now(),
        }
    }
}

impl Usage {
    /// Adds what the servers used between `before` and now.
    fn add_since(&mut self, stack: &Stack, before: &Reading) {
        let after = Reading::now(stack);
        self.cpu_seconds.resize(after.servers.len(), 0.0);
        for (total, (b, a)) in self
            .cpu_seconds
            .iter_mut()
            .zip(before.servers.iter().zip(&after.servers))
        {
            *total += a.cpu_seconds - b.cpu_seconds;
        }
        self.postgres_cpu_seconds += after.postgres.since(&before.postgres);
        self.passthrough_cpu_seconds += after.passthrough - before.passthrough;
        self.machine_cpu_seconds += after.machine - before.machine;
        self.elapsed += (after.at - before.at).as_secs_f64();
    }

    /// CPU microseconds server `index` spent per call at `rate` calls per second.
    fn micros_per_call(&self, index: usize, rate: f64) -> f64 {
        Self::per_call(
            self.cpu_seconds.get(index).copied().unwrap_or(0.0),
            self.elapsed,
            rate,
        )
    }

    /// CPU microseconds per call at `rate` of what forwarded the calls on `path` (the
    /// gateway, or the reference proxy on its paths), and of the whole machine.
    fn forwarding_micros(&self, path: Path, rate: f64) -> PerCall {
        PerCall {
            forwarding: if path.is_reference() {
                Self::per_call(self.passthrough_cpu_seconds, self.elapsed, rate)
            } else {
                self.micros_per_call(GATEWAY_SERVER, rate)
            },
            machine: Self::per_call(self.machine_cpu_seconds, self.elapsed, rate),
        }
    }

    /// CPU microseconds per call at `rate` of what served the calls sent direct: the task
    /// service, and the PostgreSQL server (on SQLite, whatever its idle processes used).
    fn serving_micros(&self, rate: f64) -> Serving {
        Serving {
            task: self.micros_per_call(TASK_SERVER, rate),
            postgres: Self::per_call(self.postgres_cpu_seconds, self.elapsed, rate),
        }
    }

    fn per_call(cpu_seconds: f64, elapsed: f64, rate: f64) -> f64 {
        let cores = cpu_seconds / elapsed.max(1e-9);
        if rate > 0.0 { 1e6 * cores / rate } else { 0.0 }
    }
}

/// Runs a scenario (`run`, measured by `tool`) and records it with what the servers used
/// meanwhile; `None` if the tool failed, which is printed.
async fn record(
    results: &mut Results,
    stack: &Stack,
    database: &'static str,
    scenario: &str,
    path: Path,
    tool: &'static str,
    run: impl Future<Output = Result<Measured, String>>,
) -> Option<Measured> {
    let before = Reading::now(stack);
    let measured = run.await;
    let mut usage = Usage::default();
    usage.add_since(stack, &before);
    match measured {
        Ok(measured) => {
            push_row(
                results, stack, database, scenario, path, tool, &measured, &usage,
            );
            Some(measured)
        }
        Err(error) => {
            println!(
                "{database:<8} {scenario:<34} {:<17} {tool}: {error}",
                path.label()
            );
            None
        }
    }
}

/// Adds the row of a measured scenario to the results and prints it.
#[allow(clippy::too_many_arguments)]
fn push_row(
    results: &mut Results,
    stack: &Stack,
    database: &'static str,
    scenario: &str,
    path: Path,
    tool: &'static str,
    measured: &Measured,
    usage: &Usage,
) {
    let names = stack.servers().map(|s| s.name);
    let row = Row {
        database,
        scenario: scenario.to_owned(),
        path: path.label(),
        tool,
        requests_per_second: measured.rate(),
        p50_ms: measured.percentile_ms(50.0),
        p90_ms: measured.percentile_ms(90.0),
        p99_ms: measured.percentile_ms(99.0),
        max_ms: measured.percentile_ms(100.0),
        ok: measured.ok,
        errors: measured.errors,
        cpu_cores: names
            .iter()
            .zip(&usage.cpu_seconds)
            .map(|(name, cpu)| (*name, cpu / usage.elapsed.max(1e-9)))
            .collect(),
        postgres_cpu_cores: (database == "postgres")
            .then(|| usage.postgres_cpu_seconds / usage.elapsed.max(1e-9)),
        passthrough_cpu_cores: path
            .is_reference()
            .then(|| usage.passthrough_cpu_seconds / usage.elapsed.max(1e-9)),
        machine_cpu_cores: usage.machine_cpu_seconds / usage.elapsed.max(1e-9),
        rss_mib: names
            .iter()
            .zip(stack.servers())
            .map(|(name, server)| (*name, mib(server.stats().rss_kib)))
            .collect(),
    };
    println!(
        "{:<8} {:<34} {:<17} {:<7} {:>7.0}/s  p50 {:>6.2}  p90 {:>6.2}  p99 {:>6.2}  max {:>7.2} ms  err {:>4}  cpu {}  rss {}",
        row.database,
        row.scenario,
        row.path,
        row.tool.split_whitespace().next().unwrap_or_default(),
        row.requests_per_second,
        row.p50_ms,
        row.p90_ms,
        row.p99_ms,
        row.max_ms,
        row.errors,
        row.cpu_cores
            .iter()
            .map(|(n, c)| format!("{}={c:.2}", &n[..4]))
            .chain(row.postgres_cpu_cores.map(|c| format!("pg={c:.2}")))
            .chain(row.passthrough_cpu_cores.map(|c| format!("pass={c:.2}")))
            .chain([format!("all={:.2}", row.machine_cpu_cores)])
            .collect::<Vec<_>>()
            .join(" "),
        row.rss_mib
            .iter()
            .map(|(n, r)| format!("{}={r:.0}M", &n[..4]))
            .collect::<Vec<_>>()
            .join(" "),
    );
    results.rows.push(row);
}

/// Rounds of the interleaved scenarios (each runs for its share of the duration in every
/// round).
const ROUNDS: u64 = 5;

/// How many rounds a scenario of `duration` is measured in, and for how long in each.
fn interleaving(duration: Duration) -> (u64, Duration) {
    let rounds = ROUNDS.min(duration.as_secs().max(1));
    (
        rounds,
        Duration::from_secs((duration.as_secs() / rounds).max(1)),
    )
}

/// A call of the harness's client (worker index, its call count; whether it succeeded),
/// boxed so that different calls share one list of scenarios.
type Caller = Arc<dyn Fn(usize, u64) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// UpdateTask: each worker renames tasks of `names` in turn, with its own client of `clients`.
fn renames(clients: Arc<Vec<Tasks>>, names: Arc<Vec<String>>) -> Caller {
    caller(move |w, n| {
        let (mut client, names) = (clients[w].clone(), names.clone());
        async move {
            let name = &names[(w * 31 + n as usize * 7) % names.len()];
            client.rename(name, &format!("renamed {n}")).await
        }
    })
}

fn caller<F, Fut>(call: F) -> Caller
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    Arc::new(move |worker, n| Box::pin(call(worker, n)))
}

/// Checks `call` once, then drives it with h2load.
async fn run_h2load(
    h2load: &std::path::Path,
    addr: std::net::SocketAddr,
    call: &Call,
    slack: usize,
    run: tools::Run,
) -> Result<Measured, String> {
    let response_len = tools::check(addr, call).await?;
    tools::h2load(h2load, addr, call, run, response_len, slack).await
}

/// The address a path reaches the task service at.
fn task_addr(stack: &Stack, path: Path) -> std::net::SocketAddr {
    let proxy = match path {
        Path::Direct => return stack.task.addr,
        Path::Gateway | Path::GatewayWeb => return stack.gateway.addr,
        Path::Passthrough | Path::PassthroughWeb => &stack.passthrough,
        Path::H2Relay => &stack.h2_relay,
        Path::Relay => &stack.relay,
        Path::Nginx => &stack.nginx,
    };
    proxy
        .as_ref()
        .unwrap_or_else(|| panic!("{} is measured only once started", path.label()))
        .addr
}

/// The reference paths this run measures: nginx's only where it started.
fn references(stack: &Stack) -> Vec<Path> {
    Path::REFERENCES
        .into_iter()
        .filter(|path| *path != Path::Nginx || stack.nginx.is_some())
        .collect()
}

fn auth_addr(stack: &Stack, path: Path) -> std::net::SocketAddr {
    if path == Path::Direct {
        stack.auth.addr
    } else {
        stack.gateway.addr
    }
}

/// One client per worker.
async fn task_clients(stack: &Stack, path: Path, token: &str, workers: usize) -> Arc<Vec<Tasks>> {
    let mut clients = Vec::with_capacity(workers);
    for _ in 0..workers {
        clients.push(Tasks::connect(path, task_addr(stack, path), token).await);
    }
    Arc::new(clients)
}

async fn run_database(cli: &Cli, database: &'static str, storage: Storage, results: &mut Results) {
    let settings = Settings {
        // The load comes from one address and is meant to be served.
        gateway: servers::args(&[
            "--gateway-auth-calls-per-minute",
            "100000000",
            "--gateway-max-concurrent-calls",
            "100000",
        ]),
        ..Settings::default()
    };
    let mut stack = Stack::start(&servers::bin_dir(), &storage, &settings).await;
    let names = stack.servers().map(|server| server.name);
    assert_eq!(
        (names[TASK_SERVER], names[GATEWAY_SERVER]),
        ("task-service", "gateway"),
        "the CPU figures read the servers by their places"
    );
    for server in stack.servers() {
        results
            .idle_rss_mib
            .push((database, server.name, mib(server.stats().rss_kib)));
    }
    stack.start_passthrough(&servers::bin_dir()).await;
    let tools = Tools::find();
    let nginx_dir = cli
        .out
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join(format!("nginx-{database}"));
    let nginx = match &tools.nginx {
        Some(nginx) => stack.start_nginx(nginx, &nginx_dir).await,
        None => Err("nginx is not installed (bench/run.sh installs it)".to_owned()),
    };
    if let Err(error) = nginx {
        println!("{database}: not measuring through nginx: {error}");
    }
    let stack = stack;
    let workers = cli.concurrency;
    let duration = cli.duration;

    // Data: a reader with 10,000 tasks, a writer, and the health ceiling.
    let mut auth = Auth::connect(Path::Direct, stack.auth.addr).await;
    let (_, reader) = auth.sign_up("reader@example.com", PASSWORD).await;
    let (_, writer) = auth.sign_up("writer@example.com", PASSWORD).await;
    let started = Instant::now();
    let names = {
        let clients = task_clients(&stack, Path::Direct, &reader, workers).await;
        let made = Arc::new(std::sync::Mutex::new(Vec::new()));
        let per_worker = 10_000 / workers + 1;
        let mut handles = Vec::new();
        for worker in 0..workers {
            let (mut client, made) = (clients[worker].clone(), made.clone());
            handles.push(tokio::spawn(async move {
                for n in 0..per_worker {
                    if worker * per_worker + n >= 10_000 {
                        break;
                    }
                    if let Some(name) = client.create(&format!("task {worker}-{n}")).await {
                        made.lock().expect("lock").push(name);
                    }
                }
            }));
        }
        for handle in handles {
            handle.await.expect("seeding");
        }
        Arc::new(std::mem::take(&mut *made.lock().expect("lock")))
    };
    println!(
        "{database}: seeded {} tasks in {:.1?}",
        names.len(),
        started.elapsed()
    );

    // The ceiling: an empty RPC (health) on the task service's server.
    let health_channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", stack.task.addr))
            .expect("URI")
            .connect()
            .await
            .expect("connect");
    let health = {
        let client = tonic_health::pb::health_client::HealthClient::new(health_channel);
        measure(
            results,
            &stack,
            database,
            "health check (ceiling)",
            Path::Direct,
            workers,
            duration,
            move |_, _| {
                let mut client = client.clone();
                async move {
                    client
                        .check(tonic_health::pb::HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .is_ok()
                }
            },
        )
        .await
    };
    let mut rates = std::collections::HashMap::new();
    rates.insert(("health", Path::Direct), health.rate());
    let mut p99s = std::collections::HashMap::new();
    // CPU microseconds of the gateway (or the reference proxy, on its paths) per call.
    let mut gateway_micros = std::collections::HashMap::new();

    // The harness's own scenarios: every scenario over every path in turn, round after round,
    // each round a share of the duration (as the tool scenarios below), so that the ratios
    // between paths are measured side by side rather than half a minute apart.
    let mut jobs: Vec<(&'static str, &'static str, Path, Caller)> = Vec::new();
    for path in Path::ALL {
        let readers = task_clients(&stack, path, &reader, workers).await;
        let writers = task_clients(&stack, path, &writer, workers).await;
        jobs.push(("get", "GetTask", path, {
            let (readers, names) = (readers.clone(), names.clone());
            caller(move |w, n| {
                let (mut client, names) = (readers[w].clone(), names.clone());
                async move {
                    client
                        .get(&names[(w * 7919 + n as usize * 104_729) % names.len()])
                        .await
                }
            })
        }));
        jobs.push(("list", "ListTasks (50 of 10,000)", path, {
            let readers = readers.clone();
            caller(move |w, _| {
                let mut client = readers[w].clone();
                async move { client.list(50, "").await.is_ok() }
            })
        }));
        jobs.push(("create", "CreateTask", path, {
            let writers = writers.clone();
            caller(move |w, n| {
                let mut client = writers[w].clone();
                async move { client.create(&format!("created {w}-{n}")).await.is_some() }
            })
        }));
        jobs.push((
            "update",
            "UpdateTask",
            path,
            renames(readers.clone(), names.clone()),
        ));
        jobs.push(("mixed", "mixed (80% reads)", path, {
            let (readers, names) = (readers.clone(), names.clone());
            caller(move |w, n| {
                let (mut client, names) = (readers[w].clone(), names.clone());
                async move {
                    let name = &names[(w * 131 + n as usize * 17) % names.len()];
                    match n % 10 {
                        0..=3 => client.get(name).await,
                        4..=7 => client.list(50, "").await.is_ok(),
                        8 => client.create(&format!("mixed {w}-{n}")).await.is_some(),
                        _ => client.rename(name, &format!("mixed {n}")).await,
                    }
                }
            })
        }));
    }
    // UpdateTask is measured by the harness's client alone (a load tool would send the same
    // rename of one task from every connection): it goes through the reference proxies too,
    // for its gateway lines.
    for path in references(&stack) {
        let readers = task_clients(&stack, path, &reader, workers).await;
        jobs.push((
            "update",
            "UpdateTask",
            path,
            renames(readers, names.clone()),
        ));
    }
    let (rounds, slice) = interleaving(duration);
    let mut tallies = vec![(Measured::default(), Usage::default()); jobs.len()];
    for round in 0..rounds {
        for ((_, _, _, call), (measured, usage)) in jobs.iter().zip(&mut tallies) {
            let warm_up = if round == 0 {
                Duration::from_secs(1)
            } else {
                Duration::ZERO
            };
            let before = Reading::now(&stack);
            let call = call.clone();
            measured.merge(drive(workers, warm_up, slice, move |w, n| call(w, n)).await);
            usage.add_since(&stack, &before);
        }
    }
    for ((key, scenario, path, _), (measured, usage)) in jobs.iter().zip(tallies) {
        push_row(
            results,
            &stack,
            database,
            scenario,
            *path,
            RUST_CLIENT,
            &measured,
            &usage,
        );
        rates.insert((*key, *path), measured.rate());
        p99s.insert((*key, *path), measured.percentile_ms(99.0));
        gateway_micros.insert(
            (*key, *path),
            usage.forwarding_micros(*path, measured.rate()),
        );
    }

    // The single-call scenarios again, from independent load tools: h2load for gRPC, wrk for
    // gRPC-web.
    settle(&storage).await;
    if tools.h2load.is_none() || tools.wrk.is_none() {
        println!(
            "{database}: h2load or wrk is not installed: skipping their runs (bench/run.sh installs them)"
        );
    }
    // The first page of the reader's tasks, here and in the login-flood scenarios.
    let list_call = Call::new(
        "/todo.task.v1.TaskService/ListTasks",
        &ListTasksRequest {
            parent: "users/me".into(),
            page_size: 50,
            ..ListTasksRequest::default()
        },
        Some(&reader),
    );
    let task_calls = [
        (
            "get",
            "GetTask",
            Call::new(
                "/todo.task.v1.TaskService/GetTask",
                &GetTaskRequest {
                    name: names[0].clone(),
                },
                Some(&reader),
            ),
            0,
        ),
        ("list", "ListTasks (50 of 10,000)", list_call.clone(), 0),
        (
            "create",
            "CreateTask",
            Call::new(
                "/todo.task.v1.TaskService/CreateTask",
                &CreateTaskRequest {
                    parent: "users/me".into(),
                    task: Some(Task {
                        title: "created by a load tool".into(),
                        ..Task::default()
                    }),
                    request_id: String::new(),
                },
                Some(&writer),
            ),
            // The nanoseconds of its timestamps take 1 to 5 bytes each.
            8,
        ),
    ];
    let health_call = Call::new(
        "/grpc.health.v1.Health/Check",
        &tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        },
        None,
    );
    // Every tool scenario in turn, round after round, each round a share of the duration: the
    // figures compared by a ratio are then measured side by side, and a slow moment of the
    // machine falls on all of them alike.
    let mut jobs: Vec<(&'static str, &str, Path, &Call, usize)> = Vec::new();
    if tools.h2load.is_some() {
        jobs.push((
            "health",
            "health check (ceiling)",
            Path::Direct,
            &health_call,
            0,
        ));
    }
    if tools.h2load.is_some() {
        // The gateway answering an empty call itself, through all its layers: what one
        // exchange with a client costs it, against which a forwarded call (an exchange with
        // the client and one with the backend) is measured.
        jobs.push((
            "gateway-health",
            "health check (the gateway's own)",
            Path::Gateway,
            &health_call,
            0,
        ));
    }
    // The gateway's paths, and the same through the bare pass-through (the floor of
    // forwarding with the gateway's libraries), the h2 relay (the same below hyper), the byte
    // relay (the hop alone) and nginx (a widely deployed proxy), measured side by side with the
    // gateway.
    for path in Path::ALL.into_iter().chain(references(&stack)) {
        let available = if path.is_web() {
            tools.wrk.is_some()
        } else {
            tools.h2load.is_some()
        };
        if available {
            for (key, scenario, call, slack) in &task_calls {
                jobs.push((key, scenario, path, call, *slack));
            }
        }
    }
    let (rounds, slice) = interleaving(duration);
    let mut tallies: Vec<Option<(Measured, Usage)>> = vec![Some(Default::default()); jobs.len()];
    for round in 0..rounds {
        for ((key, scenario, path, call, slack), tally) in jobs.iter().zip(&mut tallies) {
            let Some((measured, usage)) = tally else {
                continue;
            };
            let addr = if *key == "health" {
                stack.task.addr
            } else {
                task_addr(&stack, *path)
            };
            let run = tools::Run {
                connections: workers,
                duration: slice,
                warm_up: round == 0,
            };
            let before = Reading::now(&stack);
            let outcome = match (path, &tools.h2load, &tools.wrk) {
                (path, _, Some(wrk)) if path.is_web() => match tools::check(addr, call).await {
                    Ok(_) => tools::wrk(wrk, addr, call, run).await,
                    Err(error) => Err(error),
                },
                (_, Some(h2load), _) => run_h2load(h2load, addr, call, *slack, run).await,
                _ => Err("no tool".to_owned()),
            };
            match outcome {
                Ok(part) => {
                    measured.merge(part);
                    usage.add_since(&stack, &before);
                }
                Err(error) => {
                    println!("{database:<8} {scenario:<34} {:<17} {error}", path.label());
                    *tally = None;
                }
            }
        }
    }
    let mut tool_rates = std::collections::HashMap::new();
    let mut tool_p99s = std::collections::HashMap::new();
    // CPU microseconds of the gateway (or the reference proxy, on its paths) per call.
    let mut tool_gateway_micros = std::collections::HashMap::new();
    // CPU microseconds per call of the task service and PostgreSQL, for the calls sent direct.
    let mut tool_serving_micros = std::collections::HashMap::new();
    for ((key, scenario, path, _, _), tally) in jobs.iter().zip(tallies) {
        let Some((measured, usage)) = tally else {
            continue;
        };
        let tool = if path.is_web() { "wrk" } else { "h2load" };
        push_row(
            results, &stack, database, scenario, *path, tool, &measured, &usage,
        );
        tool_rates.insert((*key, *path), measured.rate());
        tool_p99s.insert((*key, *path), measured.percentile_ms(99.0));
        tool_gateway_micros.insert(
            (*key, *path),
            usage.forwarding_micros(*path, measured.rate()),
        );
        if *path == Path::Direct {
            tool_serving_micros.insert(*key, usage.serving_micros(measured.rate()));
        }
    }

    // Login, and reads during a login flood.
    settle(&storage).await;
    let mut login = Measured::default();
    for path in Path::ALL {
        let client = Auth::connect(path, auth_addr(&stack, path)).await;
        let measured = measure(
            results,
            &stack,
            database,
            "Login",
            path,
            workers,
            duration,
            move |_, _| {
                let mut client = client.clone();
                async move { client.login("reader@example.com", PASSWORD).await.is_some() }
            },
        )
        .await;
        if path == Path::Direct {
            login = measured;
        }
    }
    // VerifyToken and ListTasks from a light load (4 calls in flight), idle, during a login
    // flood, and beside idle-priority busy loops, each from the harness's client and from
    // h2load (where installed). Each phase is one `Light` set of four runs.
    let light = 4;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let verify_client = Auth::connect(Path::Direct, stack.auth.addr).await;
    let list_light = task_clients(&stack, Path::Direct, &reader, light).await;
    let verify_call = Call::new(
        "/todo.auth.v1.AuthService/VerifyToken",
        &VerifyTokenRequest {
            access_token: reader.clone(),
        },
        None,
    );
    let phase = async |results: &mut Results, label: &str| {
        let scenario = |call: &str| format!("{call} (4 workers, {label})");
        let verify = {
            let client = verify_client.clone();
            let token = reader.clone();
            move |_, _| {
                let (mut client, token) = (client.clone(), token.clone());
                async move { client.verify(&token).await }
            }
        };
        let list = {
            let clients = list_light.clone();
            move |w: usize, _| {
                let mut client = clients[w].clone();
                async move { client.list(50, "").await.is_ok() }
            }
        };
        let verify_rust = measure(
            results,
            &stack,
            database,
            &scenario("VerifyToken"),
            Path::Direct,
            light,
            duration,
            verify,
        )
        .await;
        let list_rust = measure(
            results,
            &stack,
            database,
            &scenario("ListTasks"),
            Path::Direct,
            light,
            duration,
            list,
        )
        .await;
        let mut tool_p99 = async |call: &Call, name: &str, addr| {
            let h2load = tools.h2load.as_ref()?;
            let run = tools::Run {
                connections: light,
                duration,
                warm_up: true,
            };
            let measured = record(
                results,
                &stack,
                database,
                &scenario(name),
                Path::Direct,
                "h2load",
                run_h2load(h2load, addr, call, 0, run),
            )
            .await?;
            Some(measured.percentile_ms(99.0))
        };
        let verify_tool = tool_p99(&verify_call, "VerifyToken", stack.auth.addr).await;
        let list_tool = tool_p99(&list_call, "ListTasks", stack.task.addr).await;
        Light {
            verify: Tail {
                rust: verify_rust.percentile_ms(99.0),
                tool: verify_tool,
            },
            list: Tail {
                rust: list_rust.percentile_ms(99.0),
                tool: list_tool,
            },
        }
    };
    let idle = phase(results, "idle").await;
    // The flood runs until every run of its phase is over: the phase's runs, each a warm-up
    // second and the duration, and a margin.
    let runs = if tools.h2load.is_some() { 4 } else { 2 };
    let flood = {
        let client = Auth::connect(Path::Direct, stack.auth.addr).await;
        tokio::spawn(drive(
            workers,
            Duration::ZERO,
            (duration + Duration::from_secs(1)) * runs + Duration::from_secs(3),
            move |_, _| {
                let mut client = client.clone();
                async move { client.login("reader@example.com", PASSWORD).await.is_some() }
            },
        ))
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = phase(results, "login flood").await;
    let flood = flood.await.expect("flood");
    println!(
        "{database}: login flood meanwhile: {:.0} logins/s, {} errors",
        flood.rate(),
        flood.errors
    );
    // The controls: no logins, but as many busy loops as there are hashing threads (one per
    // core), at their priority. What the first costs the calls' tail is what the machine
    // charges for cores kept busy by work of the lowest priority, whatever that work is. The
    // second's loops yield their core at every turn, as a hash cannot: if its tail is the idle
    // one, the first's extra is the wait of woken threads for a busy loop's time slice.
    let control = {
        let _spinners = IdleSpinners::start(cores, Turns::Spin);
        tokio::time::sleep(Duration::from_millis(500)).await;
        phase(results, "idle-priority busy loops").await
    };
    let yielding = {
        let _spinners = IdleSpinners::start(cores, Turns::Yield);
        tokio::time::sleep(Duration::from_millis(500)).await;
        phase(results, "idle-priority busy loops that yield").await
    };
    // The third control's loops work through a hash's memory as a hash does: if its tail is
    // the flood's and the first's is not, the flood's extra is the hashes' use of the caches
    // and the memory bus, which the other threads share whatever their priority.
    let sweeping = {
        let _spinners = IdleSpinners::start(cores, Turns::Sweep);
        tokio::time::sleep(Duration::from_millis(500)).await;
        phase(results, "idle-priority loops sweeping 19 MiB").await
    };

    // The scale curve.
    let points = scale::curve(&stack, database, &storage, cli.scale_max).await;
    for server in stack.servers() {
        results
            .peak_rss_mib
            .push((database, server.name, mib(server.stats().peak_rss_kib)));
    }

    // Targets.
    let cores = cores as f64;
    let mut target = |name: String, measured: String, pass: bool| {
        results.targets.push(Target {
            database,
            target: name,
            measured,
            pass,
        });
    };
    // Each figure from the independent tools where they ran (h2load for gRPC, wrk for
    // gRPC-web: lighter clients than ours, so the servers get more of the cores), else from
    // the harness's own client.
    let rate = |call: &'static str, path: Path| match tool_rates.get(&(call, path)) {
        Some(rate) => (*rate, if path.is_web() { "wrk" } else { "h2load" }),
        None => (rates[&(call, path)], "todo-bench"),
    };
    let p99 = |call: &'static str, path: Path| match tool_p99s.get(&(call, path)) {
        Some(p99) => (*p99, "h2load"),
        None => (p99s[&(call, path)], "todo-bench"),
    };
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    // What a forwarding line allows the proxy per call: see `PerCall::forwarding_budget`.
    let allows = |spent: PerCall, direct: f64, at_least: f64| {
        if direct <= 0.0 || spent.machine <= 0.0 {
            return String::new();
        }
        let budget = spent.forwarding_budget(cores, direct, at_least);
        format!(
            " ({:.0}% allows {} with all {cores:.0} cores busy)",
            100.0 * at_least,
            if budget > 0.0 {
                format!("{budget:.0}")
            } else {
                "none".to_owned()
            }
        )
    };
    // The rate and the forwarding CPU per call of a call on a path, from the same source as
    // `rate`.
    let measured_by = |call: &'static str, path: Path| {
        let (rates, micros) = if tool_rates.contains_key(&(call, Path::Direct)) {
            (&tool_rates, &tool_gateway_micros)
        } else {
            (&rates, &gateway_micros)
        };
        Some((*rates.get(&(call, path))?, *micros.get(&(call, path))?))
    };
    let (ceiling, ceiling_by) = rate("health", Path::Direct);
    for (call, label, at_least) in [("get", "GetTask", 0.5), ("list", "ListTasks", 0.25)] {
        let (direct, by) = rate(call, Path::Direct);
        let share = ratio(direct, ceiling);
        // Where a call's CPU goes, against the empty call of the ceiling (both measured by
        // the tool): what the ratio is made of on this machine.
        let cost = match (
            tool_serving_micros.get(call),
            tool_serving_micros.get("health"),
        ) {
            (Some(served), Some(empty)) if empty.task > 0.0 => format!(
                "; task service CPU {:.0} us per call, {:.1}x the {:.0} us of the empty call{}",
                served.task,
                served.task / empty.task,
                empty.task,
                if database == "postgres" {
                    format!(", and PostgreSQL {:.0} us per call", served.postgres)
                } else {
                    String::new()
                }
            ),
            _ => String::new(),
        };
        target(
            format!(
                "{label} direct >= {:.0}% of the health ceiling",
                100.0 * at_least
            ),
            format!(
                "{:.0}% ({direct:.0}/s vs {ceiling:.0}/s; {by}, {ceiling_by}){cost}",
                100.0 * share
            ),
            share >= at_least,
        );
    }
    if database == "sqlite" {
        let (creates, by) = rate("create", Path::Direct);
        target(
            "CreateTask on SQLite >= 5,000/s".into(),
            format!("{creates:.0}/s ({by})"),
            creates >= 5000.0,
        );
    }
    for (call, label) in [
        ("get", "GetTask"),
        ("list", "ListTasks"),
        ("create", "CreateTask"),
        ("update", "UpdateTask"),
    ] {
        let (direct, direct_by) = rate(call, Path::Direct);
        for (path, floors, way, at_least) in [
            (
                Path::Gateway,
                &[Path::Passthrough, Path::H2Relay, Path::Relay, Path::Nginx][..],
                "gRPC",
                0.75,
            ),
            (
                Path::GatewayWeb,
                &[Path::PassthroughWeb][..],
                "gRPC-web",
                0.60,
            ),
        ] {
            let (through, by) = rate(call, path);
            let share = ratio(through, direct);
            // The same call through the bare pass-through, the h2 relay, the byte relay and
            // nginx, measured as the line is (by the tools where they measured it): how close
            // forwarding with these libraries, with `h2` alone, a hop that reads no HTTP/2 at
            // all, and a mature proxy come on this machine.
            let floor: String = floors
                .iter()
                .filter_map(|floor| {
                    let (rate, spent) = measured_by(call, *floor)?;
                    let name = match floor {
                        Path::H2Relay => "the h2 relay",
                        Path::Relay => "the byte relay",
                        Path::Nginx => "nginx grpc_pass",
                        _ => "the bare pass-through",
                    };
                    Some(format!(
                        "; {name}: {:.0}%, {:.0} us per call{}",
                        100.0 * ratio(rate, direct),
                        spent.forwarding,
                        allows(spent, direct, at_least)
                    ))
                })
                .collect();
            // What the gateway spent per forwarded call, against what the line allows it and
            // against answering an empty call itself (one exchange with a client where
            // forwarding is two).
            let cost = match (
                measured_by(call, path).map(|(_, spent)| spent),
                tool_gateway_micros.get(&("gateway-health", Path::Gateway)),
            ) {
                (Some(spent), Some(own)) if own.forwarding > 0.0 => format!(
                    "; gateway CPU {:.0} us per call{}, {:.1}x the {:.0} us of answering an empty call itself",
                    spent.forwarding,
                    allows(spent, direct, at_least),
                    spent.forwarding / own.forwarding,
                    own.forwarding,
                ),
                _ => String::new(),
            };
            target(
                format!(
                    "{label} through the gateway ({way}) >= {:.0}% of direct",
                    100.0 * at_least
                ),
                format!(
                    "{:.0}% ({through:.0}/s vs {direct:.0}/s; {by}, {direct_by}){cost}{floor}",
                    100.0 * share
                ),
                share >= at_least,
            );
        }
    }
    for (call, label) in [
        ("get", "GetTask"),
        ("list", "ListTasks"),
        ("create", "CreateTask"),
    ] {
        let (p99, by) = p99(call, Path::Direct);
        target(
            format!("{label} direct p99 <= 10 ms at {workers} in flight"),
            format!("{p99:.2} ms ({by})"),
            p99 <= 10.0,
        );
    }
    for (label, idle, busy, control, yielding, sweeping) in [
        (
            "VerifyToken",
            &idle.verify,
            &busy.verify,
            &control.verify,
            &yielding.verify,
            &sweeping.verify,
        ),
        (
            "ListTasks",
            &idle.list,
            &busy.list,
            &control.list,
            &yielding.list,
            &sweeping.list,
        ),
    ] {
        let (idle_rust, busy_rust) = (idle.rust, busy.rust);
        let (control_rust, yielding_rust, sweeping_rust) =
            (control.rust, yielding.rust, sweeping.rust);
        let mut measured = format!(
            "todo-bench: {busy_rust:.2} ms vs {idle_rust:.2} ms idle, {control_rust:.2} ms beside idle-priority busy loops and no logins, {yielding_rust:.2} ms beside loops that yield, {sweeping_rust:.2} ms beside loops sweeping a hash's memory"
        );
        // As everywhere, h2load's figures where it measured: a single-threaded client, not
        // itself slowed by waiting for the cores, so that the tail is the servers'.
        let tools = (
            idle.tool,
            busy.tool,
            control.tool,
            yielding.tool,
            sweeping.tool,
        );
        let (idle, busy) = match tools {
            (Some(idle), Some(busy), Some(control), Some(yielding), Some(sweeping)) => {
                measured = format!(
                    "h2load: {busy:.2} ms vs {idle:.2} ms idle, {control:.2} ms beside busy loops, {yielding:.2} ms beside loops that yield, {sweeping:.2} ms beside loops sweeping a hash's memory; {measured}"
                );
                (idle, busy)
            }
            _ => (idle_rust, busy_rust),
        };
        target(
            format!("{label} p99 during a login flood <= 2x idle"),
            measured,
            busy <= 2.0 * idle.max(0.05),
        );
    }
    let per_core = login.rate() / cores;
    target(
        "Login >= 30/s per core".into(),
        format!("{per_core:.0}/s per core"),
        per_core >= 30.0,
    );
    // The baseline of both layouts is one user with 100 tasks, in a small table.
    if let Some(base) = points
        .iter()
        .find(|p| p.tasks == 100 && p.layout == "one user")
    {
        let largest = points.iter().map(|p| p.tasks).max().unwrap_or(0);
        for point in points
            .iter()
            .filter(|p| p.tasks == largest && p.tasks > 100)
        {
            for (page, at, base_at) in [
                ("first", point.first_page_ms, base.first_page_ms),
                ("deep", point.deep_page_ms, base.deep_page_ms),
            ] {
                target(
                    format!(
                        "ListTasks {page} page at {} tasks ({}) <= 1.5x at 100",
                        point.tasks, point.layout
                    ),
                    format!("{at:.2} ms vs {base_at:.2} ms"),
                    at <= 1.5 * base_at.max(0.05),
                );
            }
        }
    }
    for (_, name, idle) in results
        .idle_rss_mib
        .iter()
        .filter(|(d, _, _)| *d == database)
    {
        results.targets.push(Target {
            database,
            target: format!("{name} idle RSS <= 20 MiB"),
            measured: format!("{idle:.1} MiB"),
            pass: *idle <= 20.0,
        });
    }
    for (_, name, peak) in results
        .peak_rss_mib
        .iter()
        .filter(|(d, _, _)| *d == database)
    {
        results.targets.push(Target {
            database,
            target: format!("{name} peak RSS <= 100 MiB"),
            measured: format!("{peak:.1} MiB"),
            pass: *peak <= 100.0,
        });
    }
    results.scale.extend(points);
}

/// Lets the database catch up after write scenarios, so that the maintenance they call for
/// does not land in the next scenario: on PostgreSQL, the vacuum and analyze that autovacuum
/// would otherwise run during the next minutes (it took half the CPU the login scenarios had),
/// and a checkpoint.
async fn settle(storage: &Storage) {
    use sqlx::Connection;
    if let Storage::Postgres(auth, tasks) = storage {
        for url in [auth, tasks] {
            if let Ok(mut connection) = sqlx::PgConnection::connect(url).await {
                for statement in ["VACUUM (ANALYZE)", "CHECKPOINT"] {
                    if let Err(error) = sqlx::query(statement).execute(&mut connection).await {
                        println!("cannot {statement} before the next scenarios: {error}");
                    }
                }
                let _ = connection.close().await;
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let mut results = Results::default();
    println!(
        "{} workers, {:?} per scenario after a 1 s warm-up",
        cli.concurrency, cli.duration
    );
    if matches!(cli.database, Databases::Sqlite | Databases::Both) {
        let dir = std::env::temp_dir().join(format!("todo-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let storage = Storage::Sqlite(dir);
        run_database(&cli, "sqlite", storage.clone(), &mut results).await;
        storage.remove(&cli.postgres_url).await;
    }
    if matches!(cli.database, Databases::Postgres | Databases::Both) {
        // Its databases go when it is done: with the scale curve they hold gigabytes.
        let storage = Storage::postgres(&cli.postgres_url, "bench").await;
        run_database(&cli, "postgres", storage.clone(), &mut results).await;
        storage.remove(&cli.postgres_url).await;
    }

    println!("\nListTasks scale curve (page of 50, one call at a time):");
    for point in &results.scale {
        println!(
            "  {:<8} {:>9} tasks ({:<28}) first page {:>6.2} ms p50 {:>6.2} ms p99   deep page {:>6.2} ms p50 {:>6.2} ms p99",
            point.database,
            point.tasks,
            point.layout,
            point.first_page_ms,
            point.first_page_p99_ms,
            point.deep_page_ms,
            point.deep_page_p99_ms
        );
    }
    println!("\nTargets:");
    for target in &results.targets {
        println!(
            "  {} {:<8} {:<62} {}",
            if target.pass { "PASS" } else { "MISS" },
            target.database,
            target.target,
            target.measured
        );
    }
    if let Some(dir) = cli.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(
        &cli.out,
        serde_json::to_string_pretty(&results).expect("JSON"),
    )
    .expect("write the results");
    println!("\nwritten to {}", cli.out.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_call_is_each_process_s_share_of_the_calls() {
        // Over 2 s at 10,000 calls/s: auth 0.1 s, task service 1.0 s, gateway 0.6 s,
        // PostgreSQL 0.4 s, the pass-through 0.8 s of CPU.
        let usage = Usage {
            cpu_seconds: vec![0.1, 1.0, 0.6],
            postgres_cpu_seconds: 0.4,
            passthrough_cpu_seconds: 0.8,
            machine_cpu_seconds: 3.6,
            elapsed: 2.0,
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        let served = usage.serving_micros(10_000.0);
        assert!(close(served.task, 50.0), "{served:?}");
        assert!(close(served.postgres, 20.0), "{served:?}");
        let gateway = usage.forwarding_micros(Path::Gateway, 10_000.0);
        assert!(close(gateway.forwarding, 30.0), "{gateway:?}");
        assert!(close(gateway.machine, 180.0), "{gateway:?}");
        let passthrough = usage.forwarding_micros(Path::Passthrough, 10_000.0);
        assert!(close(passthrough.forwarding, 40.0), "{passthrough:?}");
        assert!(close(passthrough.machine, 180.0), "{passthrough:?}");
        // No calls: no figure rather than a division by zero.
        assert_eq!(usage.serving_micros(0.0).task, 0.0);
    }

    #[test]
    fn forwarding_budget_is_what_the_cores_leave_after_everything_else() {
        // 20,000 calls/s direct; through a proxy, 180 us of the machine per call, 60 of them
        // the proxy's own. 75% of direct is 15,000/s: 2 cores give each of those calls
        // 133.3 us, and the rest (120 us) leaves the proxy 13.3 us.
        let spent = PerCall {
            forwarding: 60.0,
            machine: 180.0,
        };
        let budget = spent.forwarding_budget(2.0, 20_000.0, 0.75);
        assert!((budget - (2e6 / 15_000.0 - 120.0)).abs() < 1e-9, "{budget}");
        // At 50%, 10,000/s: 200 us per call, 80 of them the proxy's.
        assert!((spent.forwarding_budget(2.0, 20_000.0, 0.5) - 80.0).abs() < 1e-9);
        // A proxy's cost already within the budget is one that reaches the share with every
        // core busy: the same figures at 40% (8,000/s) allow 130 us, more than the 60 spent.
        assert!(spent.forwarding_budget(2.0, 20_000.0, 0.4) > spent.forwarding);
    }
}
