//! The gateway: both services through one address, over gRPC and gRPC-web, with statuses,
//! streams, metadata, backend failures, CORS and limits.

use std::time::{Duration, Instant};

use bytes::Bytes;
use todo_proto::{
    auth::v1::{LoginRequest, SignUpRequest, auth_service_client::AuthServiceClient},
    task::v1::{
        CreateTaskRequest, DeleteTaskRequest, GetTaskRequest, ListTasksRequest, Task,
        TaskEventType, UpdateTaskRequest, WatchTasksRequest,
    },
};
use todo_tests::{
    Backend, Stack, channel, for_each_backend, grpc_web, grpc_web_task_client, task_client,
};
use tokio_stream::StreamExt;
use tonic::{Code, Status};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

const PASSWORD: &str = "correct horse battery";

fn new_task(title: &str) -> CreateTaskRequest {
    CreateTaskRequest {
        parent: "users/me".into(),
        task: Some(Task {
            title: title.into(),
            ..Task::default()
        }),
        request_id: String::new(),
    }
}

/// A status's code, message and details, to compare answers.
fn shape(status: &Status) -> (Code, String, Bytes) {
    (
        status.code(),
        status.message().to_owned(),
        Bytes::copy_from_slice(status.details()),
    )
}

async fn sign_up_via(addr: std::net::SocketAddr, email: &str) -> String {
    AuthServiceClient::new(channel(addr).await)
        .sign_up(SignUpRequest {
            email: email.into(),
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap()
        .access_token
}

#[tokio::test]
async fn both_services_answer_through_the_gateway_over_grpc_and_grpc_web() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let token = sign_up_via(stack.gateway, "ada@example.com").await;
        let mut tasks = task_client(channel(stack.gateway).await, &token);
        let created = tasks
            .create_task(new_task("Through the gateway 🚪"))
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();

        // gRPC-web over HTTP/1.1, as browsers call: the auth service, then the task service.
        let (transport, origin) = grpc_web(stack.gateway);
        let login = AuthServiceClient::with_origin(transport, origin)
            .login(LoginRequest {
                email: "ada@example.com".into(),
                password: PASSWORD.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut web = grpc_web_task_client(stack.gateway, &login.tokens.unwrap().access_token);
        let fetched = web
            .get_task(GetTaskRequest {
                name: created.name.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .task;
        assert_eq!(fetched, Some(created));
        let page = web
            .list_tasks(ListTasksRequest {
                parent: "users/me".into(),
                ..ListTasksRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.total_size, 1);
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn every_status_passes_through_unchanged_with_its_details() {
    let stack = Stack::start(&Backend::Sqlite).await;
    let token = sign_up_via(stack.auth, "ada@example.com").await;
    let other = sign_up_via(stack.auth, "bob@example.com").await;
    let mut bobs = task_client(channel(stack.task).await, &other);
    let bobs_task = bobs
        .create_task(new_task("Bob's"))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let mut direct = task_client(channel(stack.task).await, &token);
    let mine = direct
        .create_task(new_task("Mine"))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let mut via_grpc = task_client(channel(stack.gateway).await, &token);
    let mut via_web = grpc_web_task_client(stack.gateway, &token);

    macro_rules! same_everywhere {
        ($call:ident, $request:expr, $code:expr) => {{
            let direct = direct.$call($request).await.unwrap_err();
            assert_eq!(direct.code(), $code, "{}", stringify!($call));
            let grpc = via_grpc.$call($request).await.unwrap_err();
            let web = via_web.$call($request).await.unwrap_err();
            assert_eq!(shape(&grpc), shape(&direct), "gRPC {}", stringify!($call));
            assert_eq!(
                shape(&web),
                shape(&direct),
                "gRPC-web {}",
                stringify!($call)
            );
            assert!(web.get_error_details().error_info().is_some());
        }};
    }
    same_everywhere!(create_task, new_task(""), Code::InvalidArgument);
    same_everywhere!(
        get_task,
        GetTaskRequest {
            name: bobs_task.name.clone()
        },
        Code::PermissionDenied
    );
    let missing = format!("users/me/tasks/{}", "0190f0e4-6b1c-7c3a-9d4e-0a1b2c3d4e5f");
    same_everywhere!(
        get_task,
        GetTaskRequest {
            name: missing.clone()
        },
        Code::NotFound
    );
    same_everywhere!(
        delete_task,
        DeleteTaskRequest {
            name: mine.name.clone(),
            etag: "v9".into()
        },
        Code::Aborted
    );
    same_everywhere!(
        update_task,
        UpdateTaskRequest {
            task: None,
            update_mask: None
        },
        Code::InvalidArgument
    );
    // The bad field survives the trip in the details.
    let web = via_web.create_task(new_task("")).await.unwrap_err();
    let violations = web
        .get_error_details()
        .bad_request()
        .unwrap()
        .field_violations
        .clone();
    assert_eq!(violations[0].field, "task.title");

    // Without a token: UNAUTHENTICATED everywhere; the gateway adds no identity.
    let mut anonymous = todo_proto::task::v1::task_service_client::TaskServiceClient::new(
        channel(stack.gateway).await,
    );
    let status = anonymous
        .list_tasks(ListTasksRequest {
            parent: "users/me".into(),
            ..ListTasksRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // ALREADY_EXISTS from the auth service.
    let mut auth = AuthServiceClient::new(channel(stack.gateway).await);
    let status = auth
        .sign_up(SignUpRequest {
            email: "ada@example.com".into(),
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    stack.stop().await;
}

#[tokio::test]
async fn watch_streams_pass_through_over_grpc_and_grpc_web() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let token = sign_up_via(stack.gateway, "ada@example.com").await;
        let mut grpc = task_client(channel(stack.gateway).await, &token);
        let mut web = grpc_web_task_client(stack.gateway, &token);
        let mut grpc_stream = grpc
            .watch_tasks(WatchTasksRequest {
                parent: "users/me".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut web_stream = web
            .watch_tasks(WatchTasksRequest {
                parent: "users/me".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut writer = task_client(channel(stack.task).await, &token);
        let created = writer
            .create_task(new_task("Live"))
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        for (name, stream) in [("gRPC", &mut grpc_stream), ("gRPC-web", &mut web_stream)] {
            let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .unwrap_or_else(|_| panic!("{name}: no event"))
                .unwrap()
                .unwrap()
                .event
                .unwrap();
            assert_eq!(event.r#type(), TaskEventType::Created, "{name}");
            assert_eq!(event.task.unwrap().name, created.name, "{name}");
        }
        drop((grpc_stream, web_stream));
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_backend_that_is_down_fails_fast_and_is_used_again_when_it_returns() {
    let mut stack = Stack::start_with(&Backend::Sqlite, |configs| {
        configs.gateway.health_interval = Duration::from_millis(200);
    })
    .await;
    let token = sign_up_via(stack.gateway, "ada@example.com").await;
    let mut tasks = task_client(channel(stack.gateway).await, &token);
    tasks.create_task(new_task("before")).await.unwrap();
    let mut health = HealthClient::new(channel(stack.gateway).await);
    let check = |service: &str| HealthCheckRequest {
        service: service.into(),
    };

    stack.stop_task().await;
    let started = Instant::now();
    let status = tasks.create_task(new_task("while down")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "failed in {:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while health
        .check(check("todo.task.v1.TaskService"))
        .await
        .unwrap()
        .into_inner()
        .status()
        != ServingStatus::NotServing
    {
        assert!(
            Instant::now() < deadline,
            "health never followed the backend down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The other service and the gateway itself are fine.
    assert_eq!(
        health
            .check(check("todo.auth.v1.AuthService"))
            .await
            .unwrap()
            .into_inner()
            .status(),
        ServingStatus::Serving
    );
    assert_eq!(
        health.check(check("")).await.unwrap().into_inner().status(),
        ServingStatus::Serving
    );

    stack.start_task().await;
    let restarted = Instant::now();
    loop {
        match tasks.create_task(new_task("after")).await {
            Ok(_) => break,
            Err(status) => assert_eq!(status.code(), Code::Unavailable),
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(2),
            "backend not used again within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_gateway_with_two_backends_keeps_serving_when_one_stops() {
    let mut stack = Stack::start(&Backend::Sqlite).await;
    let token = sign_up_via(stack.auth, "ada@example.com").await;
    // A second task-service instance on the same database, and a gateway that lists both.
    let second = stack.start_extra_task_service().await;
    let mut gateway_config = gateway::Config::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![format!("http://{}", stack.auth)],
        vec![format!("http://{}", stack.task), format!("http://{second}")],
    );
    gateway_config.health_interval = Duration::from_millis(200);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = todo_common::Shutdown::new();
    let common = todo_tests::test_common_args(std::env::temp_dir());
    let gateway = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { gateway::run(&common, &gateway_config, listener, shutdown).await }
    });

    let mut tasks = task_client(channel(addr).await, &token);
    for n in 0..10 {
        tasks
            .create_task(new_task(&format!("spread {n}")))
            .await
            .unwrap();
    }
    stack.stop_task().await;
    // Once health has noticed, every call goes to the instance that is left.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for n in 0..10 {
        tasks
            .create_task(new_task(&format!("one left {n}")))
            .await
            .unwrap();
    }
    shutdown.trigger();
    gateway.await.unwrap().unwrap();
    stack.stop().await;
}

#[tokio::test]
async fn unknown_services_are_unimplemented() {
    let stack = Stack::start(&Backend::Sqlite).await;
    let mut grpc = tonic::client::Grpc::new(channel(stack.gateway).await);
    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<(), (), _>(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static("/todo.nope.v1.NopeService/Nothing"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    stack.stop().await;
}

#[tokio::test]
async fn oversized_messages_are_resource_exhausted() {
    let stack = Stack::start_with(&Backend::Sqlite, |configs| {
        configs.gateway.max_message_bytes = 64 * 1024
    })
    .await;
    let token = sign_up_via(stack.gateway, "ada@example.com").await;
    let mut tasks = task_client(channel(stack.gateway).await, &token);
    let status = tasks
        .create_task(new_task(&"x".repeat(100 * 1024)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "MESSAGE_TOO_LARGE"
    );
    let mut web = grpc_web_task_client(stack.gateway, &token);
    let status = web
        .create_task(new_task(&"x".repeat(100 * 1024)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    // Under the limit, the service's own rules apply.
    let status = tasks
        .create_task(new_task(&"x".repeat(1000)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    stack.stop().await;
}

#[tokio::test]
async fn sign_ups_and_logins_are_rate_limited_per_client_address() {
    let stack = Stack::start_with(&Backend::Sqlite, |configs| {
        configs.gateway.auth_calls_per_minute = 3
    })
    .await;
    let mut auth = AuthServiceClient::new(channel(stack.gateway).await);
    let mut outcomes = Vec::new();
    for n in 0..5 {
        let result = auth
            .sign_up(SignUpRequest {
                email: format!("user{n}@example.com"),
                password: PASSWORD.into(),
                display_name: String::new(),
            })
            .await;
        outcomes.push(result.map(|_| ()));
    }
    assert!(outcomes[..3].iter().all(Result::is_ok), "{outcomes:?}");
    let limited = outcomes[3].as_ref().unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted);
    let details = limited.get_error_details();
    assert_eq!(details.error_info().unwrap().reason, "RATE_LIMITED");
    assert!(details.retry_info().unwrap().retry_delay.unwrap() > Duration::ZERO);
    // Other calls are not limited.
    let token = sign_up_via(stack.auth, "direct@example.com").await;
    let mut tasks = task_client(channel(stack.gateway).await, &token);
    for _ in 0..5 {
        tasks
            .list_tasks(ListTasksRequest {
                parent: "users/me".into(),
                ..ListTasksRequest::default()
            })
            .await
            .unwrap();
    }
    stack.stop().await;
}

/// A raw HTTP/1.1 request.
async fn http1(request: http::Request<String>) -> http::Response<Bytes> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<String>();
    let response = client.request(request).await.unwrap();
    let (parts, mut body) = response.into_parts();
    let mut bytes = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| http_body::Body::poll_frame(std::pin::Pin::new(&mut body), cx))
            .await
    {
        if let Ok(data) = frame.unwrap().into_data() {
            bytes.extend_from_slice(&data);
        }
    }
    http::Response::from_parts(parts, Bytes::from(bytes))
}

#[tokio::test]
async fn cors_allows_listed_and_own_origins_and_refuses_others() {
    let stack = Stack::start_with(&Backend::Sqlite, |configs| {
        configs.gateway.allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let url = format!(
        "http://{}/todo.task.v1.TaskService/ListTasks",
        stack.gateway
    );
    let preflight = |origin: &str| {
        http::Request::builder()
            .method("OPTIONS")
            .uri(&url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,x-grpc-web,x-user-agent",
            )
            .body(String::new())
            .unwrap()
    };
    for origin in [
        "https://app.example.com".to_owned(),
        format!("http://{}", stack.gateway),
    ] {
        let response = http1(preflight(&origin)).await;
        assert_eq!(response.status(), http::StatusCode::OK, "{origin}");
        let headers = response.headers();
        assert_eq!(headers["access-control-allow-origin"], origin.as_str());
        let allowed = headers["access-control-allow-headers"].to_str().unwrap();
        assert!(
            allowed.contains("authorization") && allowed.contains("x-grpc-web"),
            "{allowed}"
        );
    }
    let refused = http1(preflight("https://evil.example")).await;
    assert_eq!(refused.status(), http::StatusCode::FORBIDDEN);
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // An actual gRPC-web call from an allowed origin exposes the status headers.
    let frame: &[u8] = &[
        0, 0, 0, 0, 10, 0x0a, 8, b'u', b's', b'e', b'r', b's', b'/', b'm', b'e',
    ];
    let call = http::Request::builder()
        .method("POST")
        .uri(&url)
        .header("origin", "https://app.example.com")
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(String::from_utf8(frame.to_vec()).unwrap())
        .unwrap();
    let response = http1(call).await;
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    for header in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(exposed.contains(header), "{exposed}");
    }
    // A disallowed origin cannot call at all.
    let call = http::Request::builder()
        .method("POST")
        .uri(&url)
        .header("origin", "https://evil.example")
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(String::new())
        .unwrap();
    assert_eq!(http1(call).await.status(), http::StatusCode::FORBIDDEN);
    stack.stop().await;
}

#[tokio::test]
async fn the_web_client_and_the_docs_page_are_served() {
    let stack = Stack::start(&Backend::Sqlite).await;
    for (path, content_type, expected) in [
        ("/", "text/html", "<script type=\"module\" src=\"/app.js\">"),
        ("/app.js", "text/javascript", "users/me"),
    ] {
        let request = http::Request::builder()
            .uri(format!("http://{}{path}", stack.gateway))
            .body(String::new())
            .unwrap();
        let response = http1(request).await;
        assert_eq!(response.status(), http::StatusCode::OK, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type)
        );
        assert!(response.headers().contains_key("content-security-policy"));
        assert!(
            String::from_utf8_lossy(response.body()).contains(expected),
            "{path}"
        );
    }
    let request = http::Request::builder()
        .uri(format!("http://{}/docs", stack.gateway))
        .body(String::new())
        .unwrap();
    let response = http1(request).await;
    assert_eq!(response.status(), http::StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = String::from_utf8(response.body().to_vec()).unwrap();
    for expected in [
        "service AuthService",
        "service TaskService",
        "rpc ListTasks(",
        "message TokenPair",
        "PERMISSION_DENIED",
    ] {
        assert!(page.contains(expected), "{expected} missing");
    }
    stack.stop().await;
}

#[tokio::test]
async fn deadlines_pass_through_to_the_backend() {
    let stack = Stack::start(&Backend::Sqlite).await;
    let token = sign_up_via(stack.gateway, "ada@example.com").await;
    let mut tasks = task_client(channel(stack.gateway).await, &token);
    // A deadline already too short for any backend work.
    let mut request = tonic::Request::new(new_task("too late"));
    request.set_timeout(Duration::from_micros(1));
    let status = tasks.create_task(request).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn unary_calls_without_a_deadline_get_the_default_one_and_streams_do_not() {
    // A default deadline of (almost) nothing: every unary call runs out of time, which proves
    // the gateway set one; a watch through the same gateway stays open.
    let stack = Stack::start_with(&Backend::Sqlite, |configs| {
        configs.gateway.default_deadline = Duration::from_nanos(1);
    })
    .await;
    let token = sign_up_via(stack.auth, "ada@example.com").await;
    let mut tasks = task_client(channel(stack.gateway).await, &token);
    let status = tasks
        .list_tasks(ListTasksRequest {
            parent: "users/me".into(),
            ..ListTasksRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    // A deadline the client chose wins.
    let mut request = tonic::Request::new(ListTasksRequest {
        parent: "users/me".into(),
        ..ListTasksRequest::default()
    });
    request.set_timeout(Duration::from_secs(10));
    tasks.list_tasks(request).await.unwrap();

    let mut stream = tasks
        .watch_tasks(WatchTasksRequest {
            parent: "users/me".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut writer = task_client(channel(stack.task).await, &token);
    writer.create_task(new_task("seen")).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.event.unwrap().r#type(), TaskEventType::Created);
    drop(stream);
    stack.stop().await;
}

#[tokio::test]
async fn calls_beyond_the_concurrency_limit_are_shed_at_once() {
    let stack = Stack::start_with(&Backend::Sqlite, |configs| {
        configs.gateway.max_concurrent_calls = 1
    })
    .await;
    sign_up_via(stack.auth, "ada@example.com").await;
    // Logins take tens of milliseconds (password hashing): fired together, only some fit.
    let logins: Vec<_> = (0..6)
        .map(|_| {
            let addr = stack.gateway;
            tokio::spawn(async move {
                AuthServiceClient::new(channel(addr).await)
                    .login(LoginRequest {
                        email: "ada@example.com".into(),
                        password: PASSWORD.into(),
                    })
                    .await
            })
        })
        .collect();
    let mut shed = 0;
    let mut served = 0;
    for login in logins {
        match login.await.unwrap() {
            Ok(_) => served += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert_eq!(
                    status.get_error_details().error_info().unwrap().reason,
                    "OVERLOADED"
                );
                shed += 1;
            }
        }
    }
    assert!(served >= 1 && shed >= 1, "served {served}, shed {shed}");
    stack.stop().await;
}
