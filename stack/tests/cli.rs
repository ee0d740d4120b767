//! The `todo-stack` binary as a user runs it: settings errors, help, start-up and SIGTERM.

use std::{
    io::{BufRead, BufReader},
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

#[test]
fn starts_prints_its_addresses_and_stops_cleanly_on_sigterm() {
    let data_dir = std::env::temp_dir().join(format!("todo-stack-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut child = stack()
        .args(["--auth-listen-addr", "127.0.0.1:0"])
        .args(["--task-listen-addr", "127.0.0.1:0"])
        .args(["--gateway-listen-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // The banner names a real, bound port for each server.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addresses = Vec::new();
    for _ in 0..4 {
        let line = lines.next().unwrap().unwrap();
        if let Some(addr) = line.split_whitespace().nth(1).and_then(|a| a.parse().ok()) {
            addresses.push((line.clone(), addr));
        }
    }
    assert_eq!(addresses.len(), 3, "{addresses:?}");
    for (line, addr) in &addresses {
        let addr: &std::net::SocketAddr = addr;
        assert_ne!(addr.port(), 0, "{line}");
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{line}: {e}"));
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
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(&data_dir).unwrap();
}
