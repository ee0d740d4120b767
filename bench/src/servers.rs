//! The servers under test: the release binaries, each its own process, on free loopback ports,
//! and what `/proc` says about each of them.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
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
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime is the 14th field overall.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |index: usize| {
            fields
                .get(index)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ).
        let cpu_seconds = (ticks(11) + ticks(12)) as f64 / 100.0;
        ProcStats {
            rss_kib: kib("VmRSS:"),
            peak_rss_kib: kib("VmHWM:"),
            cpu_seconds,
        }
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
}

/// Where the services keep their data.
#[derive(Clone, Debug)]
pub enum Storage {
    /// SQLite files in this directory.
    Sqlite(PathBuf),
    /// These PostgreSQL databases (auth, tasks).
    Postgres(String, String),
}

fn spawn(bin_dir: &Path, name: &'static str, addr: SocketAddr, args: &[String]) -> Server {
    let path = bin_dir.join(name);
    let child = Command::new(&path)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); run `cargo build --release --bins` first",
                path.display()
            )
        });
    Server { name, addr, child }
}

async fn wait_serving(server: &Server, service: &str) {
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

impl Stack {
    /// Starts the three release binaries from `bin_dir` on `storage`.
    pub async fn start(bin_dir: &Path, storage: &Storage) -> Self {
        let (auth_addr, task_addr, gateway_addr) = (free_addr(), free_addr(), free_addr());
        let (data_dir, auth_db, task_db) = match storage {
            Storage::Sqlite(dir) => (dir.clone(), None, None),
            Storage::Postgres(auth, task) => {
                (std::env::temp_dir(), Some(auth.clone()), Some(task.clone()))
            }
        };
        let data = data_dir.display().to_string();
        let mut auth_args = vec![
            "--data-dir".into(),
            data.clone(),
            "--auth-listen-addr".into(),
            auth_addr.to_string(),
        ];
        if let Some(url) = auth_db {
            auth_args.extend(["--auth-database-url".into(), url]);
        }
        let mut task_args = vec![
            "--data-dir".into(),
            data,
            "--task-listen-addr".into(),
            task_addr.to_string(),
            "--task-auth-url".into(),
            format!("http://{auth_addr}"),
        ];
        if let Some(url) = task_db {
            task_args.extend(["--task-database-url".into(), url]);
        }
        let gateway_args = vec![
            "--gateway-listen-addr".into(),
            gateway_addr.to_string(),
            "--gateway-auth-backends".into(),
            format!("http://{auth_addr}"),
            "--gateway-task-backends".into(),
            format!("http://{task_addr}"),
            // The load comes from one address and is meant to be served.
            "--gateway-auth-calls-per-minute".into(),
            "100000000".into(),
            "--gateway-max-concurrent-calls".into(),
            "100000".into(),
        ];
        let stack = Self {
            auth: spawn(bin_dir, "auth-service", auth_addr, &auth_args),
            task: spawn(bin_dir, "task-service", task_addr, &task_args),
            gateway: spawn(bin_dir, "gateway", gateway_addr, &gateway_args),
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
}
