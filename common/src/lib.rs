//! Plumbing shared by every server of the Todo backend, so that no service depends on another
//! service's crate.
//!
//! # Layout
//! - [`config`]: the command-line and environment settings every binary shares, and the
//!   one-line, exit-code-64 handling of bad values.
//! - [`telemetry`]: tracing set-up (human or JSON lines).
//! - [`shutdown`]: SIGTERM/SIGINT as a [`Shutdown`] token.
//! - [`server`]: [`GrpcServer`], which assembles a tonic server with health, reflection,
//!   per-RPC logging, a panic guard, request deadlines and graceful draining.
//! - [`rpc_log`]: the tower layer that writes one log line per RPC.
//! - [`db`]: [`Database`], a SQLite or PostgreSQL pool chosen by URL, with embedded migrations.
//! - [`rpc_error`]: statuses with AIP-193 details (`ErrorInfo`, `BadRequest`, `RetryInfo`).
//! - [`token`]: access-token claims, bearer metadata, verification against a key set.
//! - [`testing`]: fresh SQLite or PostgreSQL databases for tests.
//! - [`time`]: stored times (microseconds) and protobuf timestamps.
//!
//! # Request flow
//! `listener -> tonic (HTTP/2, deadline from grpc-timeout) -> RpcLog -> CatchPanic -> routes
//! (health, reflection, the service) -> handler -> store`.

pub mod config;
pub mod db;
pub mod rpc_error;
pub mod rpc_log;
pub mod server;
pub mod shutdown;
pub mod sqlite;
pub mod telemetry;
pub mod testing;
pub mod time;
pub mod token;

pub use config::{CommonArgs, exit_on_bad_config, parse_args};
pub use db::{Database, DatabaseUrl, EmbeddedMigration, Migrations};
pub use server::{GrpcServer, RunError, ServeError, bind_or_exit};
pub use shutdown::Shutdown;
