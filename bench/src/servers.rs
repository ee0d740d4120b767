//! The servers under test: the release binaries, each its own process, on free loopback ports,
//! and what `/proc` says about each of them.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// One server process.
#[derive(Debug)]
pub struct Server {
    /// `auth-service`, `task-service` or `gateway`.
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    program: PathBuf,
    args: Vec<String>,
    log: Option<PathBuf>,
    child: Child,
}

/// Memory and CPU of one process, from `/proc`.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ProcStats {
    /// Resident set size now, KiB.
    pub rss_kib: u64,
    /// Highest resident set size so far, KiB.
    pub peak_rss_kib: u64,
    /// CPU time used so far (user + system), seconds.
    pub cpu_seconds: f64,
}

impl Server {
    /// Memory and CPU so far.
    pub fn stats(&self) -> ProcStats {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find(|line| line.starts_with(key))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|value| value.parse().ok())
                .unwrap_or(0)
        };
        ProcStats {
            rss_kib: kib("VmRSS:"),
            peak_rss_kib: kib("VmHWM:"),
            cpu_seconds: cpu_seconds(pid),
        }
    }

    /// CPU time used so far by the process and its children, seconds: nginx serves from
    /// worker processes under its master.
    pub fn tree_cpu_seconds(&self) -> f64 {
        let pid = self.child.id();
        let children: f64 = pids()
            .filter_map(|child| {
                let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
                let fields = stat_fields(&stat);
                // The parent's pid is the second field after the command name.
                (fields.get(1)?.parse::<u32>().ok()? == pid).then(|| stat_cpu_seconds(&fields))
            })
            .sum();
        cpu_seconds(pid) + children
    }
}

/// Clock ticks per second in which Linux reports CPU time, in `/proc/stat` and in a process's
/// `stat` alike (USER_HZ).
const USER_HZ: f64 = 100.0;

/// CPU time the machine's cores have spent at work so far, summed over the cores, seconds:
/// user, nice, system, irq and softirq time, not idle time, waiting for I/O or time taken by
/// the hypervisor. Everything on the machine is in it: the servers, the load tool, the kernel's
/// network work.
pub fn machine_busy_seconds() -> f64 {
    busy_seconds(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
}

/// The busy time in the `cpu` line (all cores) of `/proc/stat`'s text, seconds.
fn busy_seconds(stat: &str) -> f64 {
    let Some(line) = stat.lines().find(|line| line.starts_with("cpu ")) else {
        return 0.0;
    };
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user, nice, system, idle, iowait, irq, softirq, steal, ...: the 1st to 3rd, 6th and 7th.
    let busy: u64 = [0, 1, 2, 5, 6]
        .iter()
        .filter_map(|&index| ticks.get(index))
        .sum();
    busy as f64 / USER_HZ
}

/// The processes on this machine, by pid.
fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
}

/// The fields of a `/proc/<pid>/stat` after the command name (which may hold spaces): the
/// state first, then the parent's pid.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect()
}

/// CPU time (user + system) of the process `pid`, seconds; 0 if it cannot be read.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat_cpu_seconds(&stat_fields(&stat))
}

/// CPU time (user + system) in a process's [`stat_fields`], seconds; 0 where missing.
fn stat_cpu_seconds(fields: &[&str]) -> f64 {
    // utime and stime are the 14th and 15th fields overall.
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / USER_HZ
}

/// CPU time used so far by each process of a PostgreSQL server on this machine (named
/// `postgres`: the postmaster and the backend of each connection), seconds by pid.
#[derive(Clone, Debug, Default)]
pub struct PostgresCpu(std::collections::HashMap<u32, f64>);

impl PostgresCpu {
    /// The readings now.
    pub fn now() -> Self {
        Self(
            pids()
                .filter_map(|pid| {
                    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                    (comm.trim() == "postgres").then(|| (pid, cpu_seconds(pid)))
                })
                .collect(),
        )
    }

    /// CPU seconds used between `before` and these readings: by the processes alive now (a
    /// backend that ended meanwhile takes its share with it, a lower bound; the pools keep
    /// their connections across a scenario).
    pub fn since(&self, before: &Self) -> f64 {
        self.0
            .iter()
            .map(|(pid, now)| now - before.0.get(pid).copied().unwrap_or(0.0))
            .filter(|used| *used > 0.0)
            .sum()
    }
}

impl Server {
    fn spawn(
        program: PathBuf,
        name: &'static str,
        addr: SocketAddr,
        args: Vec<String>,
        log: Option<PathBuf>,
    ) -> Self {
        let child = launch(&program, &args, log.as_deref());
        Self {
            name,
            addr,
            program,
            args,
            log,
            child,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process outright (`SIGKILL`: no chance to flush or answer) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `SIGTERM` and returns at once.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits up to `timeout` for the process to exit; its status, or `None` if it still runs.
    pub async fn exited(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts the server again, with the same settings on the same address, once the previous
    /// process has exited (it is killed if it has not), and waits until it serves `service`.
    pub async fn restart(&mut self, service: &str) {
        if self.exited(Duration::ZERO).await.is_none() {
            self.kill();
        }
        self.child = launch(&self.program, &self.args, self.log.as_deref());
        wait_serving(self, service).await;
    }

    /// Lines of the server's log (when it has one) that report a panic.
    pub fn logged_panics(&self) -> Vec<String> {
        self.log
            .as_deref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("panic"))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
    }
}

/// A free loopback port (bound, then released for the server to take).
fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address")
}

/// The stack: auth, task and gateway, each its own process.
#[derive(Debug)]
pub struct Stack {
    /// The auth service.
    pub auth: Server,
    /// The task service.
    pub task: Server,
    /// The gateway.
    pub gateway: Server,
    /// `todo-passthrough` in front of the task service, once started
    /// ([`Stack::start_passthrough`]): the floor the gateway is measured against.
    pub passthrough: Option<Server>,
    /// `todo-passthrough --h2` in front of the task service, started with the other: calls
    /// relayed with `h2` alone, below hyper.
    pub h2_relay: Option<Server>,
    /// `todo-passthrough --tcp` in front of the task service, started with the other: the
    /// cost of the hop alone, with no HTTP/2 read.
    pub relay: Option<Server>,
    /// nginx's `grpc_pass` in front of the task service, once started
    /// ([`Stack::start_nginx`]): a mature proxy from outside the project.
    pub nginx: Option<Server>,
}

/// Where the services keep their data.
#[derive(Clone, Debug)]
pub enum Storage {
    /// SQLite files in this directory.
    Sqlite(PathBuf),
    /// These PostgreSQL databases (auth, tasks).
    Postgres(String, String),
}

fn launch(program: &Path, args: &[String], log: Option<&Path>) -> Child {
    let stderr = match log {
        Some(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_or_else(|e| panic!("log file {}: {e}", path.display()), Stdio::from),
        None => Stdio::inherit(),
    };
    Command::new(program)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); run `cargo build --release --bins` first",
                program.display()
            )
        })
}

/// Waits until `server` reports `service` as serving.
pub async fn wait_serving(server: &Server, service: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
            .expect("URI");
        if let Ok(channel) = endpoint.connect().await {
            let answer = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await;
            if answer.is_ok_and(|a| a.into_inner().status() == ServingStatus::Serving) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{} did not start", server.name);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Settings of a stack beyond its addresses and databases: extra arguments for each server
/// and where their logs go.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Extra arguments of the auth service.
    pub auth: Vec<String>,
    /// Extra arguments of the task service.
    pub task: Vec<String>,
    /// Extra arguments of the gateway.
    pub gateway: Vec<String>,
    /// A directory for the servers' logs (`<name>.log`, appended); without it they go to this
    /// process's stderr.
    pub logs: Option<PathBuf>,
}

/// Arguments as owned strings.
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| (*a).to_owned()).collect()
}

/// The directory of the running executable, where cargo puts the servers' binaries too.
pub fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .expect("the executable's directory")
}

impl Stack {
    /// Starts the three binaries from `bin_dir` on `storage`, with `settings`.
    pub async fn start(bin_dir: &Path, storage: &Storage, settings: &Settings) -> Self {
        let (auth_addr, task_addr, gateway_addr) = (free_addr(), free_addr(), free_addr());
        let (data_dir, auth_db, task_db) = match storage {
            Storage::Sqlite(dir) => (dir.clone(), None, None),
            Storage::Postgres(auth, task) => {
                (std::env::temp_dir(), Some(auth.clone()), Some(task.clone()))
            }
        };
        let data = data_dir.display().to_string();
        let mut auth_args = args(&["--data-dir", &data, "--auth-listen-addr"]);
        auth_args.push(auth_addr.to_string());
        if let Some(url) = auth_db {
            auth_args.extend(["--auth-database-url".into(), url]);
        }
        auth_args.extend(settings.auth.iter().cloned());
        let mut task_args = args(&["--data-dir", &data, "--task-listen-addr"]);
        task_args.extend([
            task_addr.to_string(),
            "--task-auth-url".into(),
            format!("http://{auth_addr}"),
        ]);
        if let Some(url) = task_db {
            task_args.extend(["--task-database-url".into(), url]);
        }
        task_args.extend(settings.task.iter().cloned());
        let mut gateway_args = args(&["--gateway-listen-addr"]);
        gateway_args.extend([
            gateway_addr.to_string(),
            "--gateway-auth-backends".into(),
            format!("http://{auth_addr}"),
            "--gateway-task-backends".into(),
            format!("http://{task_addr}"),
        ]);
        gateway_args.extend(settings.gateway.iter().cloned());
        if let Some(dir) = &settings.logs {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("log directory {}: {e}", dir.display()));
        }
        let server = |name: &'static str, addr, args| {
            let log = settings
                .logs
                .as_ref()
                .map(|dir| dir.join(format!("{name}.log")));
            Server::spawn(bin_dir.join(name), name, addr, args, log)
        };
        let stack = Self {
            auth: server("auth-service", auth_addr, auth_args),
            task: server("task-service", task_addr, task_args),
            gateway: server("gateway", gateway_addr, gateway_args),
            passthrough: None,
            h2_relay: None,
            relay: None,
            nginx: None,
        };
        wait_serving(&stack.auth, "todo.auth.v1.AuthService").await;
        wait_serving(&stack.task, "todo.task.v1.TaskService").await;
        wait_serving(&stack.gateway, "todo.task.v1.TaskService").await;
        stack
    }

    /// The three servers.
    pub fn servers(&self) -> [&Server; 3] {
        [&self.auth, &self.task, &self.gateway]
    }

    /// The reference proxies started so far: `todo-passthrough` in its modes, and nginx.
    pub fn reference_proxies(&self) -> impl Iterator<Item = &Server> {
        [&self.passthrough, &self.h2_relay, &self.relay, &self.nginx]
            .into_iter()
            .flatten()
    }

    /// Starts `todo-passthrough` from `bin_dir` in front of the task service, as a pass-through,
    /// as an `h2` relay and as a byte relay, and waits until all three accept connections.
    pub async fn start_passthrough(&mut self, bin_dir: &Path) {
        let task = self.task.addr.to_string();
        self.passthrough = Some(spawn_passthrough(bin_dir, "passthrough", &[], &task).await);
        self.h2_relay = Some(spawn_passthrough(bin_dir, "h2-relay", &["--h2"], &task).await);
        self.relay = Some(spawn_passthrough(bin_dir, "relay", &["--tcp"], &task).await);
    }

    /// Starts `nginx` (the binary) in front of the task service with `grpc_pass`, configured
    /// in `dir`, and waits until it accepts connections; why not, if it cannot.
    ///
    /// As many workers as cores (the gateway runs as many threads), kept-alive HTTP/2
    /// connections to the backend, and no request or idle limit on the connections of the
    /// load tools, which do not reconnect. No access log: the gateway's log line is off at the
    /// level the benchmark runs it with.
    pub async fn start_nginx(&mut self, nginx: &Path, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let addr = free_addr();
        let config = format!(
            "worker_processes auto;
daemon off;
pid nginx.pid;
error_log error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 1h;
    upstream task {{
        server {task};
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 1h;
    }}
    server {{
        listen {addr} http2;
        location / {{
            grpc_pass grpc://task;
        }}
    }}
}}
",
            task = self.task.addr,
        );
        let file = dir.join("nginx.conf");
        std::fs::write(&file, config).map_err(|e| format!("{}: {e}", file.display()))?;
        let prefix = format!("{}/", dir.display());
        let args = args(&["-p", &prefix, "-e", "error.log", "-c", "nginx.conf"]);
        let server = Server::spawn(
            nginx.to_path_buf(),
            "nginx",
            addr,
            args,
            Some(dir.join("stderr.log")),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if Instant::now() >= deadline {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                return Err(format!("nginx does not listen on {addr}: {}", log.trim()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.nginx = Some(server);
        Ok(())
    }
}

/// `todo-passthrough` with `flags` in front of `backend`, once it accepts connections.
async fn spawn_passthrough(
    bin_dir: &Path,
    name: &'static str,
    flags: &[&str],
    backend: &str,
) -> Server {
    let addr = free_addr();
    let mut arguments = args(flags);
    arguments.extend([addr.to_string(), backend.to_owned()]);
    let server = Server::spawn(
        bin_dir.join("todo-passthrough"),
        name,
        addr,
        arguments,
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "todo-passthrough ({name}) does not listen on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
}

impl Storage {
    /// Two new, empty PostgreSQL databases (auth, tasks) on the server of `admin_url`, named
    /// `todo_<label>_{auth,tasks}_<pid>` (dropped first if they exist).
    pub async fn postgres(admin_url: &str, label: &str) -> Self {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url}: {e}"));
        let stamp = std::process::id();
        let server = admin_url
            .rsplit_once('/')
            .map_or(admin_url, |(server, _)| server);
        let mut urls = Vec::new();
        for name in [
            format!("todo_{label}_auth_{stamp}"),
            format!("todo_{label}_tasks_{stamp}"),
        ] {
            for statement in [
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                format!("CREATE DATABASE {name}"),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
                    .execute(&mut admin)
                    .await
                    .unwrap_or_else(|e| panic!("{statement}: {e}"));
            }
            urls.push(format!("{server}/{name}"));
        }
        Self::Postgres(urls[0].clone(), urls[1].clone())
    }

    /// Removes what the storage holds: the SQLite directory, or the two PostgreSQL databases
    /// (through the server of `admin_url`; connections still open are ended).
    pub async fn remove(self, admin_url: &str) {
        match self {
            Self::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Self::Postgres(auth, tasks) => {
                use sqlx::Connection;
                // The names only: the URLs may hold a password.
                let names: Vec<&str> = [&auth, &tasks]
                    .into_iter()
                    .filter_map(|url| Some(url.rsplit_once('/')?.1))
                    .collect();
                let mut admin = match sqlx::PgConnection::connect(admin_url).await {
                    Ok(admin) => admin,
                    Err(error) => {
                        println!("cannot drop the databases {names:?}: {error}");
                        return;
                    }
                };
                for name in names {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    if let Err(error) = sqlx::query(sqlx::AssertSqlSafe(drop))
                        .execute(&mut admin)
                        .await
                    {
                        println!("cannot drop the database {name}: {error}");
                    }
                }
                let _ = admin.close().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_s_busy_time_leaves_out_idle_io_waits_and_stolen_time() {
        let stat = "cpu  300 7 60 9000 800 5 20 400 0 0\n\
                    cpu0 150 7 30 4500 400 5 10 200 0 0\n\
                    intr 12345\n";
        // user 300 + nice 7 + system 60 + irq 5 + softirq 20 ticks.
        assert!((busy_seconds(stat) - 3.92).abs() < 1e-9);
        assert_eq!(busy_seconds("intr 1\n"), 0.0);
        // This machine's own figure grows as its cores work.
        let before = machine_busy_seconds();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(100) {
            std::hint::black_box(start.elapsed());
        }
        assert!(machine_busy_seconds() > before);
    }

    /// A process whose work is done by a child of its own, as nginx's is by its workers.
    #[test]
    fn tree_cpu_counts_the_children() {
        let server = Server::spawn(
            PathBuf::from("sh"),
            "parent",
            free_addr(),
            // The child counts on its own for seconds and ends, whatever becomes of its
            // parent; the test ends it sooner.
            args(&[
                "-c",
                "sh -c 'i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done' & wait",
            ]),
            None,
        );
        // Until the child has worked a while: on a loaded machine it may start late.
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut own, mut tree) = (0.0, 0.0);
        while Instant::now() < deadline && tree < own + 0.2 {
            std::thread::sleep(Duration::from_millis(100));
            own = server.stats().cpu_seconds;
            tree = server.tree_cpu_seconds();
        }
        for child in pids().filter(|&pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat_fields(&stat).get(1) == Some(&server.pid().to_string().as_str())
        }) {
            let _ = Command::new("kill")
                .args(["-KILL", &child.to_string()])
                .status();
        }
        assert!(own < 0.1, "the shell itself only waits: {own} s");
        assert!(tree >= own + 0.2, "the child's CPU is counted: {tree} s");
    }
}
