//! Clients for each way in: straight to a service (gRPC), through the gateway (gRPC), and
//! through the gateway as a browser calls (gRPC-web over HTTP/1.1).

use std::net::SocketAddr;

use todo_proto::{
    auth::v1::{LoginRequest, VerifyTokenRequest, auth_service_client::AuthServiceClient},
    task::v1::{
        CreateTaskRequest, GetTaskRequest, ListTasksRequest, ListTasksResponse, Task,
        UpdateTaskRequest, task_service_client::TaskServiceClient,
    },
};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

/// How calls reach the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Path {
    /// gRPC to the service's own port.
    Direct,
    /// gRPC through the gateway.
    Gateway,
    /// gRPC-web (HTTP/1.1) through the gateway.
    GatewayWeb,
    /// gRPC through `todo-passthrough`, the floor of forwarding (measuring only).
    Passthrough,
    /// gRPC-web (HTTP/1.1) through `todo-passthrough` (measuring only).
    PassthroughWeb,
    /// gRPC through `todo-passthrough --h2`, which relays each call with `h2` alone, below
    /// hyper: the least protocol work of a proxy that ends HTTP/2 (measuring only).
    H2Relay,
    /// gRPC through `todo-passthrough --tcp`, which relays bytes without reading HTTP/2: what
    /// the extra hop alone costs (measuring only).
    Relay,
    /// gRPC through nginx's `grpc_pass`, a widely deployed gRPC proxy written in C: what a
    /// mature proxy outside this project achieves on the same machine (measuring only; when
    /// nginx is installed).
    Nginx,
}

impl Path {
    /// All three.
    pub const ALL: [Path; 3] = [Path::Direct, Path::Gateway, Path::GatewayWeb];

    /// The ways through `todo-passthrough` and nginx, the references the gateway is measured
    /// against.
    pub const REFERENCES: [Path; 5] = [
        Path::Passthrough,
        Path::PassthroughWeb,
        Path::H2Relay,
        Path::Relay,
        Path::Nginx,
    ];

    /// Whether this path goes through a reference proxy rather than a server of the stack.
    pub fn is_reference(self) -> bool {
        Self::REFERENCES.contains(&self)
    }

    /// A short label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Gateway => "gateway gRPC",
            Self::GatewayWeb => "gateway gRPC-web",
            Self::Passthrough => "pass-through gRPC",
            Self::PassthroughWeb => "pass-through web",
            Self::H2Relay => "h2 relay gRPC",
            Self::Relay => "byte relay gRPC",
            Self::Nginx => "nginx gRPC",
        }
    }

    /// Whether calls on this path are gRPC-web over HTTP/1.1.
    pub fn is_web(self) -> bool {
        matches!(self, Self::GatewayWeb | Self::PassthroughWeb)
    }
}

/// Adds the bearer token.
#[derive(Clone, Debug)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

fn bearer(token: Option<&str>) -> Bearer {
    Bearer(token.map(|t| format!("Bearer {t}").parse().expect("ASCII token")))
}

type Web = tonic_web::GrpcWebClientService<
    hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        tonic_web::GrpcWebCall<tonic::body::Body>,
    >,
>;

async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("URI")
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

fn web(addr: SocketAddr) -> (Web, http::Uri) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    (
        tonic_web::GrpcWebClientService::new(client),
        format!("http://{addr}").parse().expect("URI"),
    )
}

/// A task-service client over one of the paths.
// One per load worker, cloned per call: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Tasks {
    /// gRPC.
    Grpc(TaskServiceClient<InterceptedService<Channel, Bearer>>),
    /// gRPC-web.
    Web(TaskServiceClient<InterceptedService<Web, Bearer>>),
}

/// The same code on either kind of client.
macro_rules! either {
    ($client:expr, $c:ident => $body:expr) => {
        match $client {
            Tasks::Grpc($c) => $body,
            Tasks::Web($c) => $body,
        }
    };
}

impl Tasks {
    /// A client to `addr` over `path` sending `token`; each call makes its own connection(s).
    pub async fn connect(path: Path, addr: SocketAddr, token: &str) -> Self {
        if path.is_web() {
            let (transport, origin) = web(addr);
            Self::Web(TaskServiceClient::with_origin(
                InterceptedService::new(transport, bearer(Some(token))),
                origin,
            ))
        } else {
            Self::Grpc(TaskServiceClient::with_interceptor(
                channel(addr).await,
                bearer(Some(token)),
            ))
        }
    }

    /// GetTask.
    pub async fn get(&mut self, name: &str) -> bool {
        let request = GetTaskRequest {
            name: name.to_owned(),
        };
        either!(self, c => c.get_task(request).await.is_ok())
    }

    /// ListTasks.
    pub async fn list(
        &mut self,
        page_size: i32,
        page_token: &str,
    ) -> Result<ListTasksResponse, tonic::Status> {
        let request = ListTasksRequest {
            parent: "users/me".into(),
            page_size,
            page_token: page_token.to_owned(),
            ..ListTasksRequest::default()
        };
        either!(self, c => c.list_tasks(request).await.map(tonic::Response::into_inner))
    }

    /// CreateTask; the new task's name.
    pub async fn create(&mut self, title: &str) -> Option<String> {
        let request = CreateTaskRequest {
            parent: "users/me".into(),
            task: Some(Task {
                title: title.to_owned(),
                ..Task::default()
            }),
            request_id: String::new(),
        };
        either!(self, c => c.create_task(request).await.ok().and_then(|r| r.into_inner().task).map(|t| t.name))
    }

    /// UpdateTask of the title.
    pub async fn rename(&mut self, name: &str, title: &str) -> bool {
        let request = UpdateTaskRequest {
            task: Some(Task {
                name: name.to_owned(),
                title: title.to_owned(),
                ..Task::default()
            }),
            update_mask: Some(prost_types_mask(&["title"])),
        };
        either!(self, c => c.update_task(request).await.is_ok())
    }
}

fn prost_types_mask(paths: &[&str]) -> prost_types::FieldMask {
    prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    }
}

/// An auth-service client over one of the paths.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Auth {
    /// gRPC.
    Grpc(AuthServiceClient<Channel>),
    /// gRPC-web.
    Web(AuthServiceClient<Web>),
}

impl Auth {
    /// A client to `addr` over `path`.
    pub async fn connect(path: Path, addr: SocketAddr) -> Self {
        if path.is_web() {
            let (transport, origin) = web(addr);
            Self::Web(AuthServiceClient::with_origin(transport, origin))
        } else {
            Self::Grpc(AuthServiceClient::new(channel(addr).await))
        }
    }

    /// SignUp; the user id and access token.
    pub async fn sign_up(&mut self, email: &str, password: &str) -> (String, String) {
        let request = todo_proto::auth::v1::SignUpRequest {
            email: email.to_owned(),
            password: password.to_owned(),
            display_name: String::new(),
        };
        let response = match self {
            Self::Grpc(c) => c.sign_up(request).await,
            Self::Web(c) => c.sign_up(request).await,
        };
        let response = response
            .unwrap_or_else(|s| panic!("sign up {email}: {s:?}"))
            .into_inner();
        (
            response.user.expect("user").id,
            response.tokens.expect("tokens").access_token,
        )
    }

    /// Login; the access token.
    pub async fn login(&mut self, email: &str, password: &str) -> Option<String> {
        let request = LoginRequest {
            email: email.to_owned(),
            password: password.to_owned(),
        };
        let response = match self {
            Self::Grpc(c) => c.login(request).await,
            Self::Web(c) => c.login(request).await,
        };
        response
            .ok()
            .and_then(|r| r.into_inner().tokens)
            .map(|t| t.access_token)
    }

    /// VerifyToken.
    pub async fn verify(&mut self, token: &str) -> bool {
        let request = VerifyTokenRequest {
            access_token: token.to_owned(),
        };
        match self {
            Self::Grpc(c) => c.verify_token(request).await.is_ok(),
            Self::Web(c) => c.verify_token(request).await.is_ok(),
        }
    }
}
