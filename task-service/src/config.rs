//! The task service's settings (flags and environment variables, prefixed `task`).

use std::net::SocketAddr;

use clap::Args;
use todo_common::{CommonArgs, DatabaseUrl};

/// Default address of the task service.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:50052";
/// File name of the default SQLite database inside the data directory.
pub const DEFAULT_DATABASE_FILE: &str = "tasks.db";

/// Settings of the task service.
#[derive(Args, Clone, Debug)]
#[group(id = "task")]
#[command(next_help_heading = "Task service")]
pub struct Config {
    /// Address the task service listens on.
    #[arg(id = "task_listen_addr", long = "task-listen-addr", env = "TASK_LISTEN_ADDR",
          default_value = DEFAULT_LISTEN_ADDR, value_name = "ADDR")]
    pub listen_addr: SocketAddr,

    /// Tasks database: `sqlite://PATH` or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`.
    /// Default: `tasks.db` in the data directory.
    #[arg(
        id = "task_database_url",
        long = "task-database-url",
        env = "TASK_DATABASE_URL",
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
