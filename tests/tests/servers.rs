//! The three servers start, answer health and reflection, refuse what they do not serve yet,
//! and drain on shutdown: on every back-end.

use std::net::SocketAddr;

use prost::Message;
use todo_proto::{service_names, task::v1 as task};
use todo_tests::{Backend, Stack, channel, for_each_backend};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const STANDARD: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

async fn health(addr: SocketAddr, service: &str) -> Result<ServingStatus, tonic::Status> {
    let mut client = HealthClient::new(channel(addr).await);
    let response = client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?;
    Ok(response.into_inner().status())
}

/// Lists services through reflection `$version` (`v1` or `v1alpha`).
macro_rules! list_services {
    ($version:ident, $addr:expr) => {{
        use tonic_reflection::pb::$version::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(channel($addr).await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection call")
            .into_inner();
        let response = responses
            .next()
            .await
            .expect("one answer")
            .expect("no error");
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection answer: {response:?}")
        };
        let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        names.sort();
        names
    }};
}

/// The file that declares `symbol`, fetched through reflection v1.
async fn file_containing(addr: SocketAddr, symbol: &str) -> prost_types::FileDescriptorProto {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut client = ServerReflectionClient::new(channel(addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(symbol.to_owned())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection call")
        .into_inner();
    let response = responses
        .next()
        .await
        .expect("one answer")
        .expect("no error");
    let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}")
    };
    files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
        .find(|file| file.service.iter().any(|s| symbol.ends_with(s.name())))
        .expect("the declaring file is in the answer")
}

fn expected(own: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = own.iter().chain(&STANDARD).map(|s| s.to_string()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn every_server_reports_serving_for_itself_and_each_of_its_services() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        for (addr, services) in [
            (stack.auth, vec!["", service_names::AUTH]),
            (stack.task, vec!["", service_names::TASK]),
            (stack.gateway, vec![""]),
        ] {
            for service in services {
                assert_eq!(
                    health(addr, service).await.unwrap(),
                    ServingStatus::Serving,
                    "{service:?} on {addr}"
                );
            }
        }
        // A service a server does not run is unknown to its health service.
        let unknown = health(stack.auth, service_names::TASK).await.unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_exactly_each_servers_services() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        for (addr, own) in [
            (stack.auth, vec![service_names::AUTH]),
            (stack.task, vec![service_names::TASK]),
            (
                stack.gateway,
                vec![service_names::AUTH, service_names::TASK],
            ),
        ] {
            assert_eq!(list_services!(v1, addr), expected(&own), "v1 on {addr}");
            assert_eq!(
                list_services!(v1alpha, addr),
                expected(&own),
                "v1alpha on {addr}"
            );
        }
        stack.stop().await;
    })
    .await;
}

/// The tables of the database at `url`.
async fn tables(url: &todo_common::DatabaseUrl) -> Vec<String> {
    use sqlx::Connection;
    let query = match url.backend() {
        todo_common::db::Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        }
        todo_common::db::Backend::Postgres => {
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        }
    };
    match url.backend() {
        todo_common::db::Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url.expose()).await.unwrap();
            sqlx::query_scalar(query)
                .fetch_all(&mut conn)
                .await
                .unwrap()
        }
        todo_common::db::Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url.expose()).await.unwrap();
            sqlx::query_scalar(query)
                .fetch_all(&mut conn)
                .await
                .unwrap()
        }
    }
}

#[tokio::test]
async fn each_service_migrates_a_database_of_its_own() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        // Serving means the migrations have run.
        assert_eq!(
            health(stack.auth, "").await.unwrap(),
            ServingStatus::Serving
        );
        assert_eq!(
            health(stack.task, "").await.unwrap(),
            ServingStatus::Serving
        );

        let auth_tables = tables(&stack.auth_database()).await;
        let task_tables = tables(&stack.task_database()).await;
        assert!(auth_tables.contains(&"users".to_owned()), "{auth_tables:?}");
        assert!(task_tables.contains(&"tasks".to_owned()), "{task_tables:?}");
        assert!(
            !auth_tables.contains(&"tasks".to_owned()),
            "services never share a database"
        );
        assert!(
            !task_tables.contains(&"users".to_owned()),
            "services never share a database"
        );
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn reflection_serves_the_contracts_with_their_comments() {
    let stack = Stack::start(&Backend::Sqlite).await;
    for (addr, service, rpc) in [
        (stack.auth, service_names::AUTH, "Login"),
        (stack.task, service_names::TASK, "ListTasks"),
    ] {
        let file = file_containing(addr, service).await;
        let declared = file
            .service
            .iter()
            .find(|s| service.ends_with(s.name()))
            .unwrap();
        assert!(
            declared.method.iter().any(|m| m.name() == rpc),
            "{rpc} in {service}"
        );
        let comments = file.source_code_info.expect("source info kept").location;
        assert!(
            comments
                .iter()
                .any(|l| l.leading_comments().contains("Errors:")),
            "{service} carries its documented errors"
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn services_a_server_does_not_run_answer_unimplemented() {
    let stack = Stack::start(&Backend::Sqlite).await;
    let mut client = task::task_service_client::TaskServiceClient::new(channel(stack.auth).await);
    let status = client
        .get_task(task::GetTaskRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    stack.stop().await;
}

#[tokio::test]
async fn shutdown_reports_not_serving_to_watchers_and_stops_every_server() {
    let stack = Stack::start(&Backend::Sqlite).await;
    let mut client = HealthClient::new(channel(stack.task).await);
    let mut watch = client
        .watch(HealthCheckRequest {
            service: service_names::TASK.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    stack.begin_shutdown();
    let next = watch.next().await.expect("a status change").unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);

    // Once the last call is over, every server stops, and a fresh connection is refused.
    drop(watch);
    let task = stack.task;
    stack.stop().await;
    let refused = tokio::net::TcpStream::connect(task).await;
    assert!(refused.is_err(), "the listener is closed");
}
