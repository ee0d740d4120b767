//! Independent load generators, each sending one prepared call over and over: `h2load`
//! (nghttp2) for gRPC over HTTP/2 and `wrk` for gRPC-web over HTTP/1.1.
//!
//! Both count an HTTP 200 as a success, while gRPC reports its errors in the trailers of an
//! HTTP 200. So the call is first sent once with a real gRPC client, which must answer OK,
//! and then every answer is checked as well as each tool allows: h2load's DATA byte count
//! must be one whole response message per success (a gRPC error is a trailers-only answer, with
//! no DATA), and wrk's script looks for `grpc-status:0` in every gRPC-web body.

use std::{
    net::SocketAddr,
    path::{Path as FsPath, PathBuf},
    process::Command,
    time::Duration,
};

use bytes::Bytes;
use http_body_util::BodyExt;
use tower::ServiceExt;

use todo_bench::load::Measured;

/// One gRPC call, ready to send.
#[derive(Clone, Debug)]
pub struct Call {
    /// `/package.Service/Method`.
    pub path: &'static str,
    /// The request message with its 5-byte gRPC prefix.
    pub frame: Vec<u8>,
    /// The access token, if the call needs one.
    pub token: Option<String>,
}

impl Call {
    /// The call of `path` with `message`.
    pub fn new(path: &'static str, message: &impl prost::Message, token: Option<&str>) -> Self {
        let body = message.encode_to_vec();
        let mut frame = Vec::with_capacity(5 + body.len());
        frame.push(0);
        frame.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes());
        frame.extend_from_slice(&body);
        Self {
            path,
            frame,
            token: token.map(str::to_owned),
        }
    }
}

/// Where the tools are, if installed.
#[derive(Clone, Debug, Default)]
pub struct Tools {
    /// `h2load`.
    pub h2load: Option<PathBuf>,
    /// `wrk`.
    pub wrk: Option<PathBuf>,
    /// `nginx`, the gateway's reference proxy (on `PATH`, or where Debian puts it).
    pub nginx: Option<PathBuf>,
}

impl Tools {
    /// Looks the tools up on `PATH` (nginx also in `/usr/sbin`, which is not on every
    /// user's).
    pub fn find() -> Self {
        let on_path = |name: &str| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|candidate| candidate.is_file())
            })
        };
        Self {
            h2load: on_path("h2load"),
            wrk: on_path("wrk"),
            nginx: on_path("nginx")
                .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|path| path.is_file())),
        }
    }
}

/// Sends `call` once over gRPC and returns the length of its response body (the response
/// message with its prefix), or why it did not answer OK.
pub async fn check(addr: SocketAddr, call: &Call) -> Result<usize, String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{}", call.path))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = &call.token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(tonic::body::Body::new(http_body_util::Full::new(
            Bytes::from(call.frame.clone()),
        )))
        .map_err(|e| e.to_string())?;
    let response = channel.oneshot(request).await.map_err(|e| e.to_string())?;
    let status = |headers: &http::HeaderMap| {
        headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if let Some(code) = status(response.headers()) {
        return Err(format!("trailers-only answer, grpc-status {code}"));
    }
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let code = collected.trailers().and_then(status);
    let body = collected.to_bytes();
    match code.as_deref() {
        Some("0") => Ok(body.len()),
        other => Err(format!("grpc-status {other:?}")),
    }
}

fn execute(command: &mut Command) -> Result<String, String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `measured` (after `first`, when warming up) off the runtime; its standard output.
async fn run_measured(
    mut first: Command,
    mut measured: Command,
    warm_up: bool,
) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        if warm_up {
            execute(&mut first)?;
        }
        execute(&mut measured)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A number in `text` right before `suffix` on the line starting with `line`.
fn number_before(text: &str, line: &str, suffix: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.trim_start().starts_with(line))?;
    let end = line.find(suffix)?;
    let digits: String = line[..end]
        .chars()
        .rev()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().ok()
}

/// How one tool run goes.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// Clients (connections), one call in flight each.
    pub connections: usize,
    /// How long it is measured (whole seconds, at least one).
    pub duration: Duration,
    /// Whether a separate, unmeasured run of a second comes first.
    pub warm_up: bool,
}

/// Drives `call` at `addr` with h2load as `run` says. `response_len` is the length of one OK
/// response body (from [`check`]); `len_slack` how many bytes shorter one may be (the varint
/// lengths of a timestamp vary).
pub async fn h2load(
    h2load: &FsPath,
    addr: SocketAddr,
    call: &Call,
    run: Run,
    response_len: usize,
    len_slack: usize,
) -> Result<Measured, String> {
    let Run {
        connections,
        duration,
        warm_up,
    } = run;
    let dir = std::env::temp_dir().join(format!("todo-bench-h2load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let body = dir.join("request.bin");
    let log = dir.join("requests.log");
    std::fs::write(&body, &call.frame).map_err(|e| e.to_string())?;
    let command = |seconds: u64, log: Option<&FsPath>| {
        let mut command = Command::new(h2load);
        command
            .arg(format!("--clients={connections}"))
            .args(["--max-concurrent-streams=1", "--threads=1"])
            .arg(format!("--duration={seconds}"))
            .arg(format!("--data={}", body.display()))
            .args([
                "--header=content-type: application/grpc",
                "--header=te: trailers",
            ]);
        if let Some(token) = &call.token {
            command.arg(format!("--header=authorization: Bearer {token}"));
        }
        if let Some(log) = log {
            command.arg(format!("--log-file={}", log.display()));
        }
        command.arg(format!("http://{addr}{}", call.path));
        command
    };
    let seconds = duration.as_secs().max(1);
    let (first, measured) = (command(1, None), command(seconds, Some(&log)));
    let output = run_measured(first, measured, warm_up).await?;
    let succeeded = number_before(&output, "requests:", " succeeded").ok_or("no request count")?;
    let failed = number_before(&output, "requests:", " failed").unwrap_or(0)
        + number_before(&output, "requests:", " errored").unwrap_or(0)
        + number_before(&output, "requests:", " timeout").unwrap_or(0);
    let data = number_before(&output, "traffic:", ") data").ok_or("no data count")?;
    // Each OK call brought one whole response message; an error brings none.
    let min_len = u64::try_from(response_len.saturating_sub(len_slack).max(1)).expect("len");
    let grpc_ok = (data / min_len).min(succeeded);
    let mut latencies_us: Vec<u32> = std::fs::read_to_string(&log)
        .map_err(|e| e.to_string())?
        .lines()
        .filter_map(|line| line.split('\t').nth(2)?.trim().parse().ok())
        .collect();
    latencies_us.sort_unstable();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Measured {
        ok: grpc_ok,
        errors: failed + (succeeded - grpc_ok),
        seconds: seconds as f64,
        latencies_us,
        summary_us: None,
    })
}

/// A Lua string literal of `bytes`.
fn lua_string(bytes: &[u8]) -> String {
    let mut literal = String::from("\"");
    for byte in bytes {
        literal.push_str(&format!("\\{byte}"));
    }
    literal.push('"');
    literal
}

/// Drives `call` at `addr` as gRPC-web (binary, HTTP/1.1) with wrk as `run` says. Every
/// answer counts as OK only if its body carries `grpc-status:0`.
pub async fn wrk(
    wrk: &FsPath,
    addr: SocketAddr,
    call: &Call,
    run: Run,
) -> Result<Measured, String> {
    let Run {
        connections,
        duration,
        warm_up,
    } = run;
    let dir = std::env::temp_dir().join(format!("todo-bench-wrk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let script = dir.join("grpc-web.lua");
    let authorization = call
        .token
        .as_ref()
        .map(|token| format!("wrk.headers[\"authorization\"] = \"Bearer {token}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        &script,
        format!(
            r#"wrk.method = "POST"
wrk.body = {body}
wrk.headers["content-type"] = "application/grpc-web+proto"
wrk.headers["x-grpc-web"] = "1"
{authorization}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; failed = 0 end
function response(status, headers, body)
  if status == 200 and string.find(body, "grpc-status:0\r\n", 1, true) then
    ok = ok + 1
  else
    failed = failed + 1
  end
end
function done(summary, latency, requests)
  local ok, failed = 0, 0
  for _, thread in ipairs(threads) do
    ok = ok + thread:get("ok")
    failed = failed + thread:get("failed")
  end
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d\n", ok, failed,
    e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"#,
            body = lua_string(&call.frame),
        ),
    )
    .map_err(|e| e.to_string())?;
    let command = |seconds: u64| {
        let mut command = Command::new(wrk);
        command
            .args(["--threads=1", "--timeout=10s"])
            .arg(format!("--connections={connections}"))
            .arg(format!("--duration={seconds}s"))
            .arg(format!("--script={}", script.display()))
            .arg(format!("http://{addr}{}", call.path));
        command
    };
    let seconds = duration.as_secs().max(1);
    let (first, measured) = (command(1), command(seconds));
    let output = run_measured(first, measured, warm_up).await?;
    let _ = std::fs::remove_dir_all(&dir);
    let result: Vec<f64> = output
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .ok_or("no result from the wrk script")?
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let [ok, failed, socket_errors, micros, p50, p90, p99, max, _mean] = result[..] else {
        return Err(format!("unexpected wrk result {result:?}"));
    };
    // wrk keeps a histogram, not every latency: these stand in for the distribution.
    let as_us = |v: f64| v as u32;
    Ok(Measured {
        ok: ok as u64,
        errors: (failed + socket_errors) as u64,
        seconds: micros / 1e6,
        latencies_us: Vec::new(),
        summary_us: None,
    }
    .with_percentiles(as_us(p50), as_us(p90), as_us(p99), as_us(max)))
}
