//! The auth service's settings (flags and environment variables, prefixed `auth`).

use std::{net::SocketAddr, time::Duration};

use clap::Args;
use todo_common::{CommonArgs, DatabaseUrl, config::parse_duration};

use crate::password::{HashCost, MIN_ITERATIONS, MIN_MEMORY_KIB};

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

    /// Lifetime of access tokens.
    #[arg(long = "auth-access-token-ttl", env = "AUTH_ACCESS_TOKEN_TTL", default_value = "15m",
          value_parser = parse_duration, value_name = "DURATION")]
    pub access_token_ttl: Duration,

    /// Lifetime of a sign-in: its refresh tokens stop working this long after login, however
    /// often they are refreshed.
    #[arg(long = "auth-refresh-token-ttl", env = "AUTH_REFRESH_TOKEN_TTL", default_value = "30days",
          value_parser = parse_duration, value_name = "DURATION")]
    pub refresh_token_ttl: Duration,

    /// Age at which the signing key is replaced by a new one (the old one stays published until
    /// its tokens expire). `auth-service rotate-signing-key` rotates at once.
    #[arg(long = "auth-signing-key-max-age", env = "AUTH_SIGNING_KEY_MAX_AGE", default_value = "30days",
          value_parser = parse_duration, value_name = "DURATION")]
    pub signing_key_max_age: Duration,

    /// How often the signing keys are re-read from the database (to pick up a rotation made by
    /// another instance or by the rotation command).
    #[arg(long = "auth-key-reload-interval", env = "AUTH_KEY_RELOAD_INTERVAL", default_value = "1m",
          value_parser = parse_duration, value_name = "DURATION")]
    pub key_reload_interval: Duration,

    /// Argon2id memory per password hash, KiB (at least 19456, the OWASP minimum).
    #[arg(long = "auth-argon2-memory-kib", env = "AUTH_ARGON2_MEMORY_KIB",
          default_value_t = MIN_MEMORY_KIB,
          value_parser = clap::value_parser!(u32).range(i64::from(MIN_MEMORY_KIB)..=4 * 1024 * 1024))]
    pub argon2_memory_kib: u32,

    /// Argon2id passes (at least 2, the OWASP minimum at 19 MiB).
    #[arg(long = "auth-argon2-iterations", env = "AUTH_ARGON2_ITERATIONS",
          default_value_t = MIN_ITERATIONS,
          value_parser = clap::value_parser!(u32).range(i64::from(MIN_ITERATIONS)..=64))]
    pub argon2_iterations: u32,

    /// Argon2id lanes.
    #[arg(long = "auth-argon2-parallelism", env = "AUTH_ARGON2_PARALLELISM", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=16))]
    pub argon2_parallelism: u32,

    /// Password hashes computed at once (default: the number of CPUs).
    #[arg(long = "auth-hash-concurrency", env = "AUTH_HASH_CONCURRENCY",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub hash_concurrency: Option<u16>,

    /// Password hashes allowed to wait for a turn; beyond that, sign-ups and logins are refused
    /// with RESOURCE_EXHAUSTED until the queue drains.
    #[arg(
        long = "auth-hash-queue",
        env = "AUTH_HASH_QUEUE",
        default_value_t = 64
    )]
    pub hash_queue: u16,

    /// Failed logins in a row allowed on an account before each attempt must wait.
    #[arg(
        long = "auth-login-free-attempts",
        env = "AUTH_LOGIN_FREE_ATTEMPTS",
        default_value_t = 5
    )]
    pub login_free_attempts: u32,

    /// The first wait after the free attempts; it doubles with each further failure.
    #[arg(long = "auth-login-base-delay", env = "AUTH_LOGIN_BASE_DELAY", default_value = "1s",
          value_parser = parse_duration, value_name = "DURATION")]
    pub login_base_delay: Duration,

    /// The longest wait between attempts: how long an attacker can keep the owner out after
    /// the attack stops.
    #[arg(long = "auth-login-max-delay", env = "AUTH_LOGIN_MAX_DELAY", default_value = "1m",
          value_parser = parse_duration, value_name = "DURATION")]
    pub login_max_delay: Duration,
}

impl Config {
    /// Defaults for everything, listening on `listen_addr` with the given database.
    pub fn new(listen_addr: SocketAddr, database_url: Option<DatabaseUrl>) -> Self {
        Self {
            listen_addr,
            database_url,
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 86_400),
            signing_key_max_age: Duration::from_secs(30 * 86_400),
            key_reload_interval: Duration::from_secs(60),
            argon2_memory_kib: MIN_MEMORY_KIB,
            argon2_iterations: MIN_ITERATIONS,
            argon2_parallelism: 1,
            hash_concurrency: None,
            hash_queue: 64,
            login_free_attempts: 5,
            login_base_delay: Duration::from_secs(1),
            login_max_delay: Duration::from_secs(60),
        }
    }

    /// The database to open: the configured URL, or the default SQLite file.
    pub fn database_url(&self, common: &CommonArgs) -> DatabaseUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| DatabaseUrl::sqlite_in(&common.data_dir, DEFAULT_DATABASE_FILE))
    }

    /// The password hashing cost.
    pub fn hash_cost(&self) -> HashCost {
        HashCost {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        auth: Config,
    }

    #[test]
    fn clap_defaults_match_config_new() {
        let parsed = Cli::try_parse_from(["x"]).unwrap().auth;
        let built = Config::new(parsed.listen_addr, None);
        assert_eq!(format!("{parsed:?}"), format!("{built:?}"));
    }

    #[test]
    fn hashing_below_the_owasp_minimum_is_refused() {
        assert!(Cli::try_parse_from(["x", "--auth-argon2-memory-kib", "4096"]).is_err());
        assert!(Cli::try_parse_from(["x", "--auth-argon2-iterations", "1"]).is_err());
        assert!(Cli::try_parse_from(["x", "--auth-argon2-memory-kib", "65536"]).is_ok());
    }
}
