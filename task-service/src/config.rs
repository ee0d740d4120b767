//! The task service's settings (flags and environment variables, prefixed `task`).

use std::{net::SocketAddr, time::Duration};

use clap::Args;
use todo_common::{CommonArgs, DatabaseUrl, config::parse_duration};

/// Default address of the task service.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:50052";
/// File name of the default SQLite database inside the data directory.
pub const DEFAULT_DATABASE_FILE: &str = "tasks.db";
/// Default address of the auth service, whose public keys verify tokens.
pub const DEFAULT_AUTH_URL: &str = "http://127.0.0.1:50051";

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

    /// The auth service, whose public keys (`GetJwks`) verify access tokens.
    #[arg(long = "task-auth-url", env = "TASK_AUTH_URL", default_value = DEFAULT_AUTH_URL,
          value_name = "URL", value_parser = parse_http_url)]
    pub auth_url: String,

    /// How often the auth service's public keys are fetched again (they are also fetched at
    /// once when a token names an unknown key).
    #[arg(long = "task-keys-refresh-interval", env = "TASK_KEYS_REFRESH_INTERVAL", default_value = "5m",
          value_parser = parse_duration, value_name = "DURATION")]
    pub keys_refresh_interval: Duration,

    /// Events a `WatchTasks` stream may fall behind before it is ended with `ABORTED` (the
    /// client then lists again).
    #[arg(long = "task-watch-buffer", env = "TASK_WATCH_BUFFER", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub watch_buffer: u32,
}

/// Accepts `http://HOST:PORT` URLs.
fn parse_http_url(value: &str) -> Result<String, String> {
    let uri: http::Uri = value.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err("expected http://HOST:PORT".to_owned());
    }
    Ok(value.trim_end_matches('/').to_owned())
}

impl Config {
    /// Defaults for everything, listening on `listen_addr` with the given database and auth
    /// service.
    pub fn new(
        listen_addr: SocketAddr,
        database_url: Option<DatabaseUrl>,
        auth_url: String,
    ) -> Self {
        Self {
            listen_addr,
            database_url,
            auth_url,
            keys_refresh_interval: Duration::from_secs(300),
            watch_buffer: 256,
        }
    }

    /// The database to open: the configured URL, or the default SQLite file.
    pub fn database_url(&self, common: &CommonArgs) -> DatabaseUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| DatabaseUrl::sqlite_in(&common.data_dir, DEFAULT_DATABASE_FILE))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        task: Config,
    }

    #[test]
    fn clap_defaults_match_config_new() {
        let parsed = Cli::try_parse_from(["x"]).unwrap().task;
        let built = Config::new(parsed.listen_addr, None, DEFAULT_AUTH_URL.to_owned());
        assert_eq!(format!("{parsed:?}"), format!("{built:?}"));
    }

    #[test]
    fn auth_urls_must_be_http() {
        assert!(Cli::try_parse_from(["x", "--task-auth-url", "http://auth:50051/"]).is_ok());
        assert!(Cli::try_parse_from(["x", "--task-auth-url", "auth:50051"]).is_err());
        assert!(Cli::try_parse_from(["x", "--task-auth-url", "ftp://auth"]).is_err());
    }
}
