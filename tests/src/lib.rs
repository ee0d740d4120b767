//! Test harness for the black-box tests in `tests/tests/`: starts the real servers, each on a
//! port-0 listener bound before it starts (so no test sleeps or races for a port), against the
//! database back-ends under test ([`todo_common::testing`]: SQLite always, PostgreSQL too when
//! `TEST_POSTGRES_URL` is set), and hands out clients.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use todo_common::{
    CommonArgs, DatabaseUrl, RunError, Shutdown,
    config::LogFormat,
    testing::{TestDatabase, unique_name},
};
use todo_proto::{
    auth::v1::{SignUpRequest, auth_service_client::AuthServiceClient},
    task::v1::task_service_client::TaskServiceClient,
};
use tokio::{net::TcpListener, task::JoinHandle};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

pub use todo_common::testing::{Backend, backends};

/// Runs `test` once per back-end under test.
pub async fn for_each_backend<F, Fut>(test: F)
where
    F: Fn(Backend) -> Fut,
    Fut: Future<Output = ()>,
{
    for backend in backends() {
        eprintln!("-- backend: {}", backend.name());
        test(backend).await;
    }
}

/// Settings the tests use: a short grace period, the usual request timeout and token names.
pub fn test_common_args(data_dir: PathBuf) -> CommonArgs {
    CommonArgs {
        data_dir,
        log_format: LogFormat::Text,
        shutdown_grace_period: Duration::from_secs(5),
        request_timeout: Duration::from_secs(30),
        token_issuer: todo_common::config::DEFAULT_TOKEN_ISSUER.to_owned(),
        token_audience: todo_common::config::DEFAULT_TOKEN_AUDIENCE.to_owned(),
    }
}

/// The settings of the three servers, for [`Stack::start_with`].
#[derive(Debug)]
pub struct Configs {
    /// The auth service's.
    pub auth: auth_service::Config,
    /// The task service's.
    pub task: task_service::Config,
    /// The gateway's.
    pub gateway: gateway::Config,
}

/// One server of the stack, running on its own task.
#[derive(Debug)]
struct Running {
    name: &'static str,
    shutdown: Shutdown,
    handle: JoinHandle<Result<(), RunError>>,
}

impl Running {
    fn spawn(
        name: &'static str,
        server: impl FnOnce(Shutdown) -> JoinHandle<Result<(), RunError>>,
    ) -> Self {
        let shutdown = Shutdown::new();
        let handle = server(shutdown.clone());
        Self {
            name,
            shutdown,
            handle,
        }
    }

    async fn stop(self) {
        self.shutdown.trigger();
        let result = tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .unwrap_or_else(|_| panic!("{} did not stop within 10 s", self.name));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{} failed: {e}", self.name),
            Err(e) => panic!("{} panicked: {e}", self.name),
        }
    }
}

/// The three servers, running in this process on loopback listeners.
#[derive(Debug)]
pub struct Stack {
    /// The auth service's address.
    pub auth: SocketAddr,
    /// The task service's address.
    pub task: SocketAddr,
    /// The gateway's address.
    pub gateway: SocketAddr,
    common: CommonArgs,
    auth_config: auth_service::Config,
    task_config: task_service::Config,
    servers: Vec<Running>,
    data_dir: PathBuf,
    databases: Vec<TestDatabase>,
}

async fn loopback_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    (listener, addr)
}

fn spawn_auth(
    common: &CommonArgs,
    config: &auth_service::Config,
    listener: TcpListener,
) -> Running {
    let (common, config) = (common.clone(), config.clone());
    Running::spawn("auth-service", move |shutdown| {
        tokio::spawn(async move { auth_service::run(&common, &config, listener, shutdown).await })
    })
}

impl Stack {
    /// Starts auth, task and gateway against `backend` with default settings.
    pub async fn start(backend: &Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts the stack with the servers' settings adjusted by `adjust`. Returns once every
    /// listener is bound (connections queue until each server accepts them).
    pub async fn start_with(backend: &Backend, adjust: impl FnOnce(&mut Configs)) -> Self {
        let data_dir = std::env::temp_dir().join(unique_name("todo-stack"));
        let common = test_common_args(data_dir.clone());
        let mut databases = Vec::new();
        let (auth_url, task_url) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres(_) => {
                let auth = TestDatabase::create(backend).await;
                let task = TestDatabase::create(backend).await;
                let urls = (Some(auth.url.clone()), Some(task.url.clone()));
                databases.extend([auth, task]);
                urls
            }
        };

        let (auth_listener, auth) = loopback_listener().await;
        let (task_listener, task) = loopback_listener().await;
        let (gateway_listener, gateway) = loopback_listener().await;

        let mut gateway_config = gateway::Config::new(
            gateway,
            vec![format!("http://{auth}")],
            vec![format!("http://{task}")],
        );
        // Tests send many sign-ups from one address.
        gateway_config.auth_calls_per_minute = 10_000;
        let mut configs = Configs {
            auth: auth_service::Config::new(auth, auth_url),
            task: task_service::Config::new(task, task_url, format!("http://{auth}")),
            gateway: gateway_config,
        };
        adjust(&mut configs);
        let Configs {
            auth: auth_config,
            task: task_config,
            gateway: gateway_config,
        } = configs;

        let servers = vec![
            spawn_auth(&common, &auth_config, auth_listener),
            Running::spawn("task-service", {
                let common = common.clone();
                let task_config = task_config.clone();
                move |shutdown| {
                    tokio::spawn(async move {
                        task_service::run(&common, &task_config, task_listener, shutdown).await
                    })
                }
            }),
            Running::spawn("gateway", {
                let common = common.clone();
                move |shutdown| {
                    tokio::spawn(async move {
                        gateway::run(&common, &gateway_config, gateway_listener, shutdown).await
                    })
                }
            }),
        ];

        Self {
            auth,
            task,
            gateway,
            common,
            auth_config,
            task_config,
            servers,
            data_dir,
            databases,
        }
    }

    /// The auth service's database.
    pub fn auth_database(&self) -> DatabaseUrl {
        self.auth_config.database_url(&self.common)
    }

    /// The task service's database.
    pub fn task_database(&self) -> DatabaseUrl {
        self.databases.get(1).map_or_else(
            || DatabaseUrl::sqlite_in(&self.data_dir, task_service::config::DEFAULT_DATABASE_FILE),
            |db| db.url.clone(),
        )
    }

    /// Stops the auth service (draining it) and starts it again on the same address and
    /// database, as a redeploy would.
    pub async fn restart_auth(&mut self) {
        self.restart_auth_with(|_| {}).await;
    }

    /// Restarts the auth service with its settings adjusted by `adjust`.
    pub async fn restart_auth_with(&mut self, adjust: impl FnOnce(&mut auth_service::Config)) {
        adjust(&mut self.auth_config);
        self.stop_auth().await;
        self.start_auth().await;
    }

    /// Starts the auth service again after [`Stack::stop_auth`], on the same address.
    pub async fn start_auth(&mut self) {
        let listener = TcpListener::bind(self.auth)
            .await
            .expect("rebind the auth address");
        self.servers
            .push(spawn_auth(&self.common, &self.auth_config, listener));
    }

    /// Starts another task-service instance on the same database (as a second process would)
    /// and returns its address.
    pub async fn start_extra_task_service(&mut self) -> SocketAddr {
        let (listener, addr) = loopback_listener().await;
        let mut config = self.task_config.clone();
        config.listen_addr = addr;
        let common = self.common.clone();
        self.servers
            .push(Running::spawn("task-service", move |shutdown| {
                tokio::spawn(async move {
                    task_service::run(&common, &config, listener, shutdown).await
                })
            }));
        addr
    }

    /// Stops the auth service (draining it), leaving the others running.
    pub async fn stop_auth(&mut self) {
        self.stop_named("auth-service").await;
    }

    /// Stops the (first) task service, leaving the others running.
    pub async fn stop_task(&mut self) {
        self.stop_named("task-service").await;
    }

    /// Starts the task service again after [`Stack::stop_task`], on the same address.
    pub async fn start_task(&mut self) {
        let listener = TcpListener::bind(self.task)
            .await
            .expect("rebind the task address");
        let (common, config) = (self.common.clone(), self.task_config.clone());
        self.servers
            .push(Running::spawn("task-service", move |shutdown| {
                tokio::spawn(async move {
                    task_service::run(&common, &config, listener, shutdown).await
                })
            }));
    }

    async fn stop_named(&mut self, name: &str) {
        let index = self
            .servers
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} runs"));
        self.servers.remove(index).stop().await;
    }

    /// Signs a new user up and returns their id and access token.
    pub async fn sign_up(&self, email: &str) -> SignedIn {
        let mut auth = AuthServiceClient::new(channel(self.auth).await);
        let response = auth
            .sign_up(SignUpRequest {
                email: email.to_owned(),
                password: "correct horse battery".to_owned(),
                display_name: String::new(),
            })
            .await
            .unwrap_or_else(|s| panic!("sign up {email}: {s:?}"))
            .into_inner();
        SignedIn {
            id: response.user.expect("user").id,
            token: response.tokens.expect("tokens").access_token,
        }
    }

    /// A task-service client that sends `user`'s token.
    pub async fn tasks(&self, user: &SignedIn) -> TaskClient {
        task_client(channel(self.task).await, &user.token)
    }

    /// Signals shutdown to every server without waiting, as SIGTERM would.
    pub fn begin_shutdown(&self) {
        for server in &self.servers {
            server.shutdown.trigger();
        }
    }

    /// Shuts every server down, checks each stopped cleanly, and removes the stack's data.
    pub async fn stop(self) {
        for server in self.servers {
            server.stop().await;
        }
        for database in self.databases {
            database.remove().await;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A user signed up through the auth service.
#[derive(Clone, Debug)]
pub struct SignedIn {
    /// User id.
    pub id: String,
    /// Access token.
    pub token: String,
}

/// Adds `authorization: Bearer …` to every call.
#[derive(Clone, Debug)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A task-service client sending a bearer token.
pub type TaskClient = TaskServiceClient<InterceptedService<Channel, Bearer>>;

/// The interceptor that sends `token`.
pub fn bearer(token: &str) -> Bearer {
    Bearer(format!("Bearer {token}").parse().expect("ASCII token"))
}

/// A task-service client on `channel` that sends `token`.
pub fn task_client(channel: Channel, token: &str) -> TaskClient {
    TaskServiceClient::with_interceptor(channel, bearer(token))
}

/// A task-service client over gRPC-web (HTTP/1.1) to `addr` that sends `token`.
pub fn grpc_web_task_client(
    addr: SocketAddr,
    token: &str,
) -> TaskServiceClient<InterceptedService<GrpcWebTransport, Bearer>> {
    let (transport, origin) = grpc_web(addr);
    TaskServiceClient::with_origin(InterceptedService::new(transport, bearer(token)), origin)
}

/// A gRPC-web transport (HTTP/1.1) to `addr`, as a browser library would use.
pub type GrpcWebTransport = tonic_web::GrpcWebClientService<
    hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        tonic_web::GrpcWebCall<tonic::body::Body>,
    >,
>;

/// A gRPC-web transport to `addr` over HTTP/1.1, and the origin to give clients.
pub fn grpc_web(addr: SocketAddr) -> (GrpcWebTransport, http::Uri) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let origin = format!("http://{addr}").parse().expect("valid URI");
    (tonic_web::GrpcWebClientService::new(client), origin)
}

/// A channel to `addr` (gRPC over HTTP/2 cleartext).
pub async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid URI")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}
