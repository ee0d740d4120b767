//! Server assembly: every server of the backend is built here, so that health, reflection,
//! logging, the panic guard, deadlines and graceful shutdown are the same everywhere.

use std::{
    any::Any, convert::Infallible, fmt, future::Future, net::SocketAddr, pin::Pin, time::Duration,
};

use http::Response;
use tokio::net::TcpListener;
use tonic::{
    Status,
    body::Body,
    server::NamedService,
    service::{Routes, RoutesBuilder},
    transport::{Server, server::TcpIncoming},
};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower_http::catch_panic::CatchPanicLayer;

use crate::{Database, Shutdown, rpc_log::RpcLogLayer};

/// How often a watched database is pinged for the health status.
pub const DATABASE_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The services every server answers besides its own.
const STANDARD_SERVICES: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// A gRPC server under assembly: add the service implementations, then [`GrpcServer::serve`].
///
/// Every server built here also answers `grpc.health.v1.Health` (one status per service, plus
/// the empty name for the whole server) and server reflection v1 and v1alpha (grpcurl 1.8 and
/// other older tools speak only v1alpha), advertising exactly the services it serves.
pub struct GrpcServer {
    name: &'static str,
    routes: RoutesBuilder,
    services: Vec<&'static str>,
    forwarded: Vec<&'static str>,
    health: HealthReporter,
    database: Option<Database>,
    request_timeout: Duration,
    grace_period: Duration,
}

impl fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcServer")
            .field("name", &self.name)
            .field("services", &self.services)
            .field("request_timeout", &self.request_timeout)
            .field("grace_period", &self.grace_period)
            .finish_non_exhaustive()
    }
}

/// Why a server stopped with an error.
#[derive(Debug)]
pub enum ServeError {
    /// The listener's address could not be read.
    Listener(std::io::Error),
    /// The reflection descriptors could not be loaded (a build problem).
    Reflection(tonic_reflection::server::Error),
    /// The HTTP/2 server failed.
    Transport(tonic::transport::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Listener(e) => write!(f, "listener: {e}"),
            Self::Reflection(e) => write!(f, "reflection descriptors: {e}"),
            Self::Transport(e) => write!(f, "transport: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

impl GrpcServer {
    /// Starts assembling the server called `name` (used in logs).
    pub fn new(name: &'static str, request_timeout: Duration, grace_period: Duration) -> Self {
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut routes = RoutesBuilder::default();
        routes.add_service(health_service);
        Self {
            name,
            routes,
            services: Vec::new(),
            forwarded: Vec::new(),
            health,
            database: None,
            request_timeout,
            grace_period,
        }
    }

    /// Adds a generated tonic service; it is reported SERVING and advertised by reflection.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.services.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Makes the health of every service follow `database`: it is pinged every
    /// [`DATABASE_CHECK_INTERVAL`] and the services are reported NOT_SERVING while it does not
    /// answer, so load balancers and the gateway can route around an instance cut off from it.
    pub fn watch_database(mut self, database: Database) -> Self {
        self.database = Some(database);
        self
    }

    /// The health reporter, for services that change their status while running.
    pub fn health(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Adds a service this server answers by forwarding (the gateway): it is advertised by
    /// reflection, and its health status is left to the caller.
    pub fn advertise(mut self, name: &'static str) -> Self {
        self.forwarded.push(name);
        self
    }

    /// Serves on `listener` until `shutdown` fires, then drains: health turns NOT_SERVING, the
    /// listener closes, and calls in progress get the grace period to finish before their
    /// connections are closed.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), ServeError> {
        let (name, request_timeout) = (self.name, self.request_timeout);
        let assembled = self.assemble(&shutdown).await?;
        // Layer order, outermost first: the log sees every outcome, a caught panic included;
        // the panic guard turns a panicking handler into a generic INTERNAL instead of a reset
        // stream. tonic itself applies the deadline (`grpc-timeout`, capped by
        // `request_timeout`) inside these layers.
        let router = Server::builder()
            .timeout(request_timeout)
            .layer(RpcLogLayer::new(name))
            .layer(CatchPanicLayer::custom(panic_response))
            .add_routes(assembled.routes.clone());
        assembled
            .serve_with(listener, shutdown, |incoming, drained| {
                router.serve_with_incoming_shutdown(incoming, drained)
            })
            .await
    }

    /// Adds health and reflection to the routes and reports the local services SERVING, for a
    /// caller that builds its own tonic server around them ([`Assembled::serve_with`]).
    pub async fn assemble(self, shutdown: &Shutdown) -> Result<Assembled, ServeError> {
        let Self {
            name,
            mut routes,
            services,
            forwarded,
            health,
            database,
            request_timeout: _,
            grace_period,
        } = self;
        let advertised: Vec<&str> = services
            .iter()
            .chain(&forwarded)
            .chain(STANDARD_SERVICES)
            .copied()
            .collect();
        let reflection = || {
            advertised.iter().fold(
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(todo_proto::FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                    // google.rpc error details, so that tools can decode them.
                    .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET),
                |builder, service| builder.with_service_name(*service),
            )
        };
        routes.add_service(reflection().build_v1().map_err(ServeError::Reflection)?);
        routes.add_service(
            reflection()
                .build_v1alpha()
                .map_err(ServeError::Reflection)?,
        );

        for service in &services {
            health
                .set_service_status(service, ServingStatus::Serving)
                .await;
        }
        let database_watch = database.map(|database| {
            tokio::spawn(watch_database(
                database,
                health.clone(),
                services.clone(),
                shutdown.clone(),
            ))
        });
        let mut reported = services;
        reported.extend(forwarded);
        Ok(Assembled {
            name,
            routes: routes.routes(),
            health,
            services: reported,
            database_watch,
            grace_period,
        })
    }
}

/// A server's routes with health and reflection, ready to be served.
#[derive(Debug)]
pub struct Assembled {
    name: &'static str,
    /// Health, reflection and the local services.
    pub routes: Routes,
    /// The health reporter.
    pub health: HealthReporter,
    services: Vec<&'static str>,
    database_watch: Option<tokio::task::JoinHandle<()>>,
    grace_period: Duration,
}

impl Assembled {
    /// Runs `serve` (given the listener's connections and a future that completes when the
    /// server should stop accepting) until `shutdown` fires, then drains with the grace period.
    pub async fn serve_with<F, Fut>(
        self,
        listener: TcpListener,
        shutdown: Shutdown,
        serve: F,
    ) -> Result<(), ServeError>
    where
        F: FnOnce(TcpIncoming, Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = Result<(), tonic::transport::Error>>,
    {
        let Self {
            name,
            routes: _,
            health,
            services,
            database_watch,
            grace_period,
        } = self;
        let addr: SocketAddr = listener.local_addr().map_err(ServeError::Listener)?;
        // h2 hands a DATA frame of 256 bytes or more to the socket in a write of its own, so an
        // answer with a large message (a page of ListTasks) goes out in two writes: headers and
        // message, then trailers. Holding a connection's writes until its task had nothing
        // more to send, and sending them in one write, was measured and not kept. It gave 7-10%
        // more pages a second at 50 calls in flight, and cost 4-5 us a call at one in flight.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let (drain, drained) = tokio::sync::oneshot::channel::<()>();
        let serving = serve(
            incoming,
            Box::pin(async {
                let _ = drained.await;
            }),
        );
        tokio::pin!(serving);
        tracing::info!(server = name, %addr, services = ?services, "listening");

        tokio::select! {
            result = &mut serving => return result.map_err(ServeError::Transport),
            () = shutdown.wait() => {}
        }

        tracing::info!(server = name, grace_period = ?grace_period, "draining");
        if let Some(watch) = database_watch {
            watch.abort();
        }
        for service in services.iter().copied().chain([""]) {
            health
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
        let _ = drain.send(());
        match tokio::time::timeout(grace_period, serving).await {
            Ok(result) => {
                result.map_err(ServeError::Transport)?;
                tracing::info!(server = name, "stopped: every call finished");
            }
            Err(_) => {
                tracing::warn!(server = name, "stopped: grace period over, calls cut short");
            }
        }
        Ok(())
    }
}

/// Reports `services` NOT_SERVING while `database` does not answer, SERVING when it does.
async fn watch_database(
    database: Database,
    health: HealthReporter,
    services: Vec<&'static str>,
    shutdown: Shutdown,
) {
    let mut interval = tokio::time::interval(DATABASE_CHECK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reachable = true;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = shutdown.wait() => return,
        }
        let now_reachable =
            match tokio::time::timeout(DATABASE_CHECK_INTERVAL, database.ping()).await {
                Ok(Ok(())) => true,
                Ok(Err(error)) => {
                    if reachable {
                        tracing::error!(%error, "database unreachable: reporting NOT_SERVING");
                    }
                    false
                }
                Err(_) => {
                    if reachable {
                        tracing::error!("database ping timed out: reporting NOT_SERVING");
                    }
                    false
                }
            };
        if now_reachable != reachable && !shutdown.is_triggered() {
            if now_reachable {
                tracing::info!("database reachable again: reporting SERVING");
            }
            let status = if now_reachable {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            for service in &services {
                health.set_service_status(service, status).await;
            }
        }
        reachable = now_reachable;
    }
}

/// The answer to a panicking handler: a trailers-only `INTERNAL` that says nothing about the
/// cause, which goes to the log instead.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let cause = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown cause");
    tracing::error!(cause, "handler panicked");
    let (parts, ()) = Status::internal("internal error")
        .into_http::<()>()
        .into_parts();
    Response::from_parts(parts, Body::empty())
}

/// Why a service's `run` failed.
#[derive(Debug)]
pub enum RunError {
    /// Its database could not be opened or migrated.
    Database(crate::db::DbError),
    /// The server failed.
    Serve(ServeError),
    /// Anything else needed at start failed (keys, settings).
    Setup(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Database(e) => write!(f, "database: {e}"),
            Self::Serve(e) => write!(f, "server: {e}"),
            Self::Setup(e) => write!(f, "setup: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<crate::db::DbError> for RunError {
    fn from(e: crate::db::DbError) -> Self {
        Self::Database(e)
    }
}

impl From<ServeError> for RunError {
    fn from(e: ServeError) -> Self {
        Self::Serve(e)
    }
}

/// Binds `addr` for a binary's `main`; on failure prints one line and exits 1.
pub async fn bind_or_exit(addr: SocketAddr) -> TcpListener {
    match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            std::process::exit(1)
        }
    }
}
