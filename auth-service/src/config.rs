//! The auth service's settings (flags and environment variables, prefixed `auth`).

use std::net::SocketAddr;

use clap::Args;
use todo_common::{CommonArgs, DatabaseUrl};

/// Default address of the auth service.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:50051";
/// File name of the default SQLite database inside the data directory.
pub const DEFAULT_DATABASE_FILE: &str = "auth.db";

/// Settings of the auth service.
#[derive(Args, Clone, Debug)]
#[group(id = "auth")]
#[command(next_help_heading = "Auth service")]
pub struct Config {
    /// Address the auth service listens on.
    #[arg(id = "auth_listen_addr", long = "auth-listen-addr", env = "AUTH_LISTEN_ADDR",
          default_value = DEFAULT_LISTEN_ADDR, value_name = "ADDR")]
    pub listen_addr: SocketAddr,

    /// Users database: `sqlite://PATH` or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`.
    /// Default: `auth.db` in the data directory.
    #[arg(
        id = "auth_database_url",
        long = "auth-database-url",
        env = "AUTH_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<DatabaseUrl>,
}

impl Config {
    /// The database to open: the configured URL, or the default SQLite file.
    pub fn database_url(&self, common: &CommonArgs) -> DatabaseUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| DatabaseUrl::sqlite_in(&common.data_dir, DEFAULT_DATABASE_FILE))
    }
}
