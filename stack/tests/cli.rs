//! The `todo-stack` binary as a user runs it: settings errors, help, start-up and SIGTERM.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_todo-stack");

fn stack() -> Command {
    let mut command = Command::new(BIN);
    // Settings come only from the flags of each test.
    for (key, _) in std::env::vars() {
        if key.ends_with("_LISTEN_ADDR") || key.ends_with("_DATABASE_URL") || key == "TODO_DATA_DIR"
        {
            command.env_remove(key);
        }
    }
    command
}

#[test]
fn a_bad_value_prints_one_line_and_exits_64() {
    for args in [
        &["--auth-listen-addr", "nowhere"][..],
        &["--task-database-url", "mysql://root@localhost/tasks"][..],
        &["--shutdown-grace-period", "forever"][..],
        &["--log-format", "xml"][..],
        &["--no-such-flag"][..],
    ] {
        let output = stack().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn a_bad_value_from_the_environment_is_refused_too() {
    let output = stack()
        .env("TASK_LISTEN_ADDR", "localhost")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("task-listen-addr"), "{stderr}");
}

#[test]
fn help_documents_every_setting_with_its_variable() {
    let output = stack().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for name in [
        "AUTH_LISTEN_ADDR",
        "AUTH_DATABASE_URL",
        "TASK_LISTEN_ADDR",
        "TASK_DATABASE_URL",
        "GATEWAY_LISTEN_ADDR",
        "TODO_DATA_DIR",
        "LOG_FORMAT",
        "SHUTDOWN_GRACE_PERIOD",
        "REQUEST_TIMEOUT",
    ] {
        assert!(help.contains(name), "{name} missing from --help");
    }
}

/// The stack as a child process on free ports, with its addresses from the banner.
struct Running {
    child: std::process::Child,
    /// The rest of stdout, kept open.
    _stdout: std::io::Lines<BufReader<std::process::ChildStdout>>,
    auth: SocketAddr,
    task: SocketAddr,
    gateway: SocketAddr,
}

fn spawn(data_dir: &std::path::Path) -> Running {
    let mut child = stack()
        .args(["--auth-listen-addr", "127.0.0.1:0"])
        .args(["--task-listen-addr", "127.0.0.1:0"])
        .args(["--gateway-listen-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The banner names a real, bound port for each server.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut address = |name: &str| loop {
        let line = lines.next().expect("banner line").unwrap();
        if line.trim_start().starts_with(name) {
            let addr: SocketAddr = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            assert_ne!(addr.port(), 0, "{line}");
            break addr;
        }
    };
    let (gateway, auth, task) = (
        address("gateway"),
        address("auth-service"),
        address("task-service"),
    );
    Running {
        child,
        _stdout: lines,
        auth,
        task,
        gateway,
    }
}

fn wait_for_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &std::process::Child, name: &str) {
    let sent = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("todo-stack-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn starts_prints_its_addresses_and_stops_cleanly_on_sigterm() {
    let data_dir = temp_dir("sigterm");
    let mut running = spawn(&data_dir);
    for addr in [running.auth, running.task, running.gateway] {
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    }
    // Wait until the databases exist, then stop the stack as a supervisor would.
    let started = Instant::now();
    while !(data_dir.join("auth.db").exists() && data_dir.join("tasks.db").exists()) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "databases not created"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&running.child, "-TERM");
    let status = wait_for_exit(&mut running.child);
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(&data_dir).unwrap();
}

fn with<T>(
    bearer: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    message: T,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    request
}

async fn channel(addr: SocketAddr) -> tonic::transport::Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    // The servers start listening before they accept: retry briefly.
    for _ in 0..100 {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot reach {addr}")
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    use todo_proto::{
        auth::v1::{SignUpRequest, auth_service_client::AuthServiceClient},
        task::v1::{
            CreateTaskRequest, ListTasksRequest, Task, task_service_client::TaskServiceClient,
        },
    };

    let data_dir = temp_dir("kill9");
    let mut running = spawn(&data_dir);
    let mut auth = AuthServiceClient::new(channel(running.auth).await);
    let token = auth
        .sign_up(SignUpRequest {
            email: "ada@example.com".into(),
            password: "correct horse battery".into(),
            display_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap()
        .access_token;
    let bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
        format!("Bearer {token}").parse().unwrap();
    let mut tasks = TaskServiceClient::new(channel(running.task).await);
    for n in 0..50 {
        let task = Task {
            title: format!("acknowledged {n}"),
            ..Task::default()
        };
        tasks
            .create_task(with(
                &bearer,
                CreateTaskRequest {
                    parent: "users/me".into(),
                    task: Some(task),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap();
    }

    // No chance to flush anything: the process is killed outright.
    signal(&running.child, "-KILL");
    wait_for_exit(&mut running.child);

    let mut restarted = spawn(&data_dir);
    let mut tasks = TaskServiceClient::new(channel(restarted.task).await);
    // The same token still works: the signing keys survived too.
    let listed = tasks
        .list_tasks(with(
            &bearer,
            ListTasksRequest {
                parent: "users/me".into(),
                page_size: 100,
                ..ListTasksRequest::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((listed.tasks.len(), listed.total_size), (50, 50));
    // Stop while the client is still connected: it sees the GOAWAY, and the stack exits at
    // once rather than after its grace period. (Wait without blocking this runtime, which
    // runs the client's connection.)
    let started = Instant::now();
    signal(&restarted.child, "-TERM");
    let status = loop {
        if let Some(status) = restarted.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drained in {:?}",
        started.elapsed()
    );
    drop(tasks);
    std::fs::remove_dir_all(&data_dir).unwrap();
}
