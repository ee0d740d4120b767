//! Hostile input: random bytes as the message of every RPC (gRPC through the gateway and
//! straight to each service, gRPC-web binary and text through the gateway), random bodies
//! without framing, malformed framing (zero-length, truncated, a partial prefix, a compressed
//! flag without an encoding, a 4 GiB length, two messages to a unary RPC), wrong content
//! types and methods, huge metadata and oversized messages.
//!
//! Every request must get an answer within [`ANSWER_WITHIN`]; an answer is proper when it is a
//! gRPC status (in the headers, the trailers or a gRPC-web trailer frame) or, for a request
//! that is not gRPC at all, an HTTP error status. Afterwards every server must still serve and
//! none may have panicked.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower::ServiceExt as _;

use todo_bench::servers::{Server, Stack};

use crate::{Ctx, net};

/// Longest a hostile request may wait for its answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// Random messages per RPC and kind of body.
const RANDOM_PER_RPC: usize = 25;

/// Every RPC of both services.
const RPCS: [&str; 16] = [
    "/todo.auth.v1.AuthService/SignUp",
    "/todo.auth.v1.AuthService/Login",
    "/todo.auth.v1.AuthService/Refresh",
    "/todo.auth.v1.AuthService/Logout",
    "/todo.auth.v1.AuthService/GetCurrentUser",
    "/todo.auth.v1.AuthService/ChangePassword",
    "/todo.auth.v1.AuthService/VerifyToken",
    "/todo.auth.v1.AuthService/GetJwks",
    "/todo.task.v1.TaskService/CreateTask",
    "/todo.task.v1.TaskService/GetTask",
    "/todo.task.v1.TaskService/ListTasks",
    "/todo.task.v1.TaskService/UpdateTask",
    "/todo.task.v1.TaskService/SetTaskCompleted",
    "/todo.task.v1.TaskService/DeleteTask",
    "/todo.task.v1.TaskService/WatchTasks",
    "/grpc.health.v1.Health/Check",
];

fn random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("randomness");
    bytes
}

fn random_len(max: usize) -> usize {
    let bytes = random(4);
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize % (max + 1)
}

/// A gRPC frame: the flag, the length, the message.
fn frame(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(flag);
    framed.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

/// One hostile request.
#[derive(Clone, Debug)]
struct Hostile {
    kind: &'static str,
    path: String,
    method: http::Method,
    content_type: Option<&'static str>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Hostile {
    fn new(kind: &'static str, path: &str, content_type: &'static str, body: Vec<u8>) -> Self {
        Self {
            kind,
            path: path.to_owned(),
            method: http::Method::POST,
            content_type: Some(content_type),
            headers: Vec::new(),
            body,
        }
    }

    fn is_grpc_web(&self) -> bool {
        self.content_type
            .is_some_and(|t| t.starts_with("application/grpc-web"))
    }

    fn is_grpc(&self) -> bool {
        self.method == http::Method::POST
            && self
                .content_type
                .is_some_and(|t| t == "application/grpc" || t.starts_with("application/grpc+"))
    }

    fn request<B>(&self, addr: SocketAddr, body: B) -> Option<http::Request<B>> {
        let mut request = http::Request::builder()
            .method(self.method.clone())
            .uri(format!("http://{addr}{}", self.path));
        if let Some(content_type) = self.content_type {
            request = request.header("content-type", content_type);
        }
        if !self.is_grpc_web() {
            request = request.header("te", "trailers");
        }
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request.body(body).ok()
    }
}

/// What came back.
#[derive(Debug)]
enum Answer {
    /// A gRPC status code.
    Status(i32),
    /// An HTTP error status without a gRPC status.
    Http(u16),
    /// The connection or stream was refused or reset (HTTP/2 `RST_STREAM`, `GOAWAY`).
    Reset(#[allow(dead_code, reason = "shown in reports through Debug")] String),
    /// HTTP 200 without any gRPC status: not proper.
    NoStatus,
    /// Nothing within [`ANSWER_WITHIN`]: not proper.
    Hung,
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The status in a gRPC-web body's trailer frame (flag 0x80), binary or base64 text.
fn web_trailer_status(body: &[u8], text: bool) -> Option<i32> {
    let decoded;
    let mut rest: &[u8] = if text {
        // Each frame may be base64 of its own: decode chunk by chunk on padding boundaries.
        let mut all = Vec::new();
        for chunk in body.split_inclusive(|b| *b == b'=') {
            let trimmed: Vec<u8> = chunk.iter().copied().filter(|b| *b != b'=').collect();
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(&trimmed) {
                all.extend(bytes);
            }
        }
        decoded = all;
        &decoded
    } else {
        body
    };
    while rest.len() >= 5 {
        let flag = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let end = (5 + len).min(rest.len());
        if flag & 0x80 != 0 {
            let trailers = String::from_utf8_lossy(&rest[5..end]);
            return trailers
                .lines()
                .find_map(|line| line.trim().strip_prefix("grpc-status:"))
                .and_then(|v| v.trim().parse().ok());
        }
        rest = &rest[end..];
    }
    None
}

async fn send_h2(
    channel: &tonic::transport::Channel,
    addr: SocketAddr,
    hostile: &Hostile,
) -> Answer {
    let Some(request) = hostile.request(
        addr,
        tonic::body::Body::new(Full::new(Bytes::from(hostile.body.clone()))),
    ) else {
        return Answer::Reset("the request could not be built".into());
    };
    let exchange = async {
        let response = channel
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        if let Some(code) = grpc_status(&parts.headers) {
            return Ok(Answer::Status(code));
        }
        let collected = body.collect().await.map_err(|e| e.to_string())?;
        let code = collected.trailers().and_then(grpc_status);
        Ok(from_body(code, parts.status))
    };
    within(exchange).await
}

/// The answer whose status (if any) was in its body or trailers.
fn from_body(code: Option<i32>, status: http::StatusCode) -> Answer {
    match code {
        Some(code) => Answer::Status(code),
        None if status != http::StatusCode::OK => Answer::Http(status.as_u16()),
        None => Answer::NoStatus,
    }
}

/// The answer of `exchange`, given [`ANSWER_WITHIN`]; an error on the way is a reset.
async fn within(exchange: impl Future<Output = Result<Answer, String>>) -> Answer {
    match tokio::time::timeout(ANSWER_WITHIN, exchange).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => Answer::Reset(error),
        Err(_) => Answer::Hung,
    }
}

type Http1 = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

async fn send_h1(client: &Http1, addr: SocketAddr, hostile: &Hostile) -> Answer {
    let Some(request) = hostile.request(addr, Full::new(Bytes::from(hostile.body.clone()))) else {
        return Answer::Reset("the request could not be built".into());
    };
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        // The answer is text only when the client asked for it (`accept`).
        let text = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/grpc-web-text"));
        if let Some(code) = grpc_status(&parts.headers) {
            return Ok(Answer::Status(code));
        }
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(from_body(web_trailer_status(&body, text), parts.status))
    };
    within(exchange).await
}

/// Whether `answer` is a proper one for `hostile`.
fn proper(hostile: &Hostile, answer: &Answer) -> bool {
    match answer {
        Answer::Status(code) => (0..=16).contains(code),
        // Not gRPC at all (another content type or method), or headers beyond what HTTP
        // allows: an HTTP refusal is the answer.
        Answer::Http(status) => {
            (400..600).contains(status)
                && (!hostile.is_grpc() && !hostile.is_grpc_web() || hostile.kind == "huge metadata")
        }
        // A stream refused at the HTTP/2 level is a proper answer only to headers larger than
        // the server takes.
        Answer::Reset(_) => hostile.kind == "huge metadata",
        Answer::NoStatus | Answer::Hung => false,
    }
}

/// What gRPC and gRPC-web bodies of `content_type` to `rpc` share: random messages and bodies,
/// malformed framing, an oversized message and huge metadata.
fn framing_cases(rpc: &str, content_type: &'static str) -> Vec<Hostile> {
    let mut cases = Vec::new();
    for _ in 0..RANDOM_PER_RPC {
        cases.push(Hostile::new(
            "random message",
            rpc,
            content_type,
            frame(0, &random(random_len(512))),
        ));
        cases.push(Hostile::new(
            "random body",
            rpc,
            content_type,
            random(random_len(512)),
        ));
    }
    let truncated = {
        let mut f = frame(0, &random(100));
        f.truncate(40);
        f
    };
    let four_gib = {
        let mut f = vec![0, 0xff, 0xff, 0xff, 0xff];
        f.extend(random(64));
        f
    };
    cases.extend([
        Hostile::new("zero-length frame", rpc, content_type, frame(0, &[])),
        Hostile::new("empty body", rpc, content_type, Vec::new()),
        Hostile::new("truncated frame", rpc, content_type, truncated),
        Hostile::new("partial prefix", rpc, content_type, vec![0, 0, 0]),
        Hostile::new("4 GiB length", rpc, content_type, four_gib),
        // Over HTTP/1.1 the client is still sending when the answer comes.
        Hostile::new(
            "oversized message (5 MiB)",
            rpc,
            content_type,
            frame(0, &vec![0x0a; 5 << 20]),
        ),
        Hostile {
            headers: vec![(
                "authorization".into(),
                format!("Bearer {}", "A".repeat(1 << 20)),
            )],
            ..Hostile::new("huge metadata", rpc, content_type, frame(0, &[]))
        },
    ]);
    cases
}

/// The hostile requests for gRPC (HTTP/2).
fn grpc_cases() -> Vec<Hostile> {
    let grpc = "application/grpc";
    let mut cases = Vec::new();
    for rpc in RPCS {
        cases.extend(framing_cases(rpc, grpc));
        cases.extend([
            Hostile::new(
                "compressed flag without an encoding",
                rpc,
                grpc,
                frame(1, &random(20)),
            ),
            Hostile::new("two messages", rpc, grpc, {
                let mut f = frame(0, &[]);
                f.extend(frame(0, &[]));
                f
            }),
            Hostile::new(
                "wrong content type (text/plain)",
                rpc,
                "text/plain",
                frame(0, &[]),
            ),
            Hostile::new(
                "unsupported codec (application/grpc+json)",
                rpc,
                "application/grpc+json",
                b"{}".to_vec(),
            ),
            Hostile {
                method: http::Method::GET,
                ..Hostile::new("GET", rpc, grpc, Vec::new())
            },
            Hostile {
                content_type: None,
                ..Hostile::new("no content type", rpc, grpc, frame(0, &[]))
            },
            Hostile {
                headers: (0..2000)
                    .map(|n| (format!("x-junk-{n}"), "x".repeat(32)))
                    .collect(),
                ..Hostile::new("huge metadata", rpc, grpc, frame(0, &[]))
            },
            Hostile {
                headers: vec![("grpc-timeout".into(), "99999999999H".into())],
                ..Hostile::new("malformed grpc-timeout", rpc, grpc, frame(0, &[]))
            },
            Hostile {
                headers: vec![("grpc-encoding".into(), "zstd-9000".into())],
                ..Hostile::new("unknown grpc-encoding", rpc, grpc, frame(1, &random(16)))
            },
        ]);
    }
    cases.push(Hostile::new(
        "unknown method",
        "/todo.task.v1.TaskService/DropEverything",
        grpc,
        frame(0, &[]),
    ));
    cases.push(Hostile::new(
        "unknown service",
        "/evil.Service/Run",
        grpc,
        frame(0, &[]),
    ));
    cases
}

/// The hostile requests for gRPC-web (HTTP/1.1, through the gateway).
fn web_cases() -> Vec<Hostile> {
    let web = "application/grpc-web+proto";
    let text = "application/grpc-web-text";
    let mut cases = Vec::new();
    for rpc in RPCS {
        cases.extend(framing_cases(rpc, web));
        for _ in 0..RANDOM_PER_RPC {
            cases.push(Hostile {
                // As grpc-web's text mode asks, so that the answer is text too.
                headers: vec![("accept".into(), text.into())],
                ..Hostile::new(
                    "random message (text)",
                    rpc,
                    text,
                    STANDARD
                        .encode(frame(0, &random(random_len(512))))
                        .into_bytes(),
                )
            });
        }
        cases.extend([
            Hostile::new(
                "trailer flag from the client",
                rpc,
                web,
                frame(0x80, b"grpc-status:0\r\n"),
            ),
            Hostile::new(
                "invalid base64 (text)",
                rpc,
                text,
                b"%%%not base64%%%".to_vec(),
            ),
            Hostile::new(
                "wrong content type (application/json)",
                rpc,
                "application/json",
                b"{}".to_vec(),
            ),
        ]);
    }
    cases
}

/// Runs `cases` and reports: no improper answer, per kind.
fn report(ctx: &mut Ctx, label: &str, results: &[(Hostile, Answer, Duration)]) {
    let mut kinds: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    let mut improper = Vec::new();
    let mut slowest = Duration::ZERO;
    for (hostile, answer, took) in results {
        slowest = slowest.max(*took);
        let entry = kinds.entry(hostile.kind).or_default();
        entry.0 += 1;
        let name = match answer {
            Answer::Status(code) => format!("{:?}", tonic::Code::from(*code)),
            Answer::Http(status) => format!("HTTP {status}"),
            Answer::Reset(_) => "reset".into(),
            Answer::NoStatus => "no status".into(),
            Answer::Hung => "no answer".into(),
        };
        *codes.entry(name).or_default() += 1;
        if !proper(hostile, answer) {
            entry.1 += 1;
            improper.push(format!("{} {}: {answer:?}", hostile.kind, hostile.path));
        }
    }
    ctx.check(
        &format!("{label}: every hostile request gets a proper answer in time"),
        improper.is_empty(),
        format!(
            "{} requests of {} kinds; answers: {}; slowest {}; improper: {}{}",
            results.len(),
            kinds.len(),
            codes
                .iter()
                .map(|(code, n)| format!("{code} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            net::ms(slowest),
            improper.len(),
            if improper.is_empty() {
                String::new()
            } else {
                format!(" ({})", improper.join("; "))
            }
        ),
    );
}

async fn serving(server: &Server) -> bool {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut health = HealthClient::new(net::lazy_channel(server.addr));
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request.set_timeout(Duration::from_secs(2));
    health
        .check(request)
        .await
        .is_ok_and(|r| r.into_inner().status == 1)
}

async fn run_h2(addr: SocketAddr, cases: &[Hostile]) -> Vec<(Hostile, Answer, Duration)> {
    let mut results = Vec::with_capacity(cases.len());
    let mut channel = net::channel(addr).await;
    for hostile in cases {
        let sent = Instant::now();
        let answer = send_h2(&channel, addr, hostile).await;
        if matches!(answer, Answer::Reset(_)) {
            // The server may have closed the connection on a protocol error: a new one.
            channel = net::channel(addr).await;
        }
        results.push((hostile.clone(), answer, sent.elapsed()));
    }
    results
}

pub async fn run(ctx: &mut Ctx) {
    let storage = ctx.storage("hostile").await;
    let stack: Stack = ctx.start(&storage, &ctx.settings()).await;

    let grpc = grpc_cases();
    let results = run_h2(stack.gateway.addr, &grpc).await;
    report(ctx, "gateway gRPC", &results);
    for server in [&stack.auth, &stack.task] {
        let own: Vec<Hostile> = grpc
            .iter()
            .filter(|h| {
                let auth = h.path.starts_with("/todo.auth.");
                let task = h.path.starts_with("/todo.task.");
                (server.name == "auth-service" && !task) || (server.name == "task-service" && !auth)
            })
            .cloned()
            .collect();
        let results = run_h2(server.addr, &own).await;
        report(ctx, &format!("{} gRPC", server.name), &results);
    }

    let client: Http1 =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let mut results = Vec::new();
    for hostile in web_cases() {
        let sent = Instant::now();
        let answer = send_h1(&client, stack.gateway.addr, &hostile).await;
        results.push((hostile, answer, sent.elapsed()));
    }
    report(ctx, "gateway gRPC-web", &results);

    let mut alive = Vec::new();
    for server in stack.servers() {
        alive.push(format!(
            "{} {}",
            server.name,
            if serving(server).await {
                "serving"
            } else {
                "NOT serving"
            }
        ));
    }
    ctx.check(
        "every server still serves afterwards",
        alive.iter().all(|a| a.ends_with(" serving")),
        alive.join(", "),
    );
    ctx.check_no_panics(&stack);
    drop(stack);
    ctx.clean(storage).await;
}
