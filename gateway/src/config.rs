//! The gateway's settings (flags and environment variables, prefixed `gateway`).

use std::{net::SocketAddr, time::Duration};

use clap::Args;
use todo_common::config::parse_duration;

/// Default public address of the gateway.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:8080";

/// Settings of the gateway.
#[derive(Args, Clone, Debug)]
#[group(id = "gateway")]
#[command(next_help_heading = "Gateway")]
pub struct Config {
    /// Public address of the gateway: the one address clients use.
    #[arg(id = "gateway_listen_addr", long = "gateway-listen-addr", env = "GATEWAY_LISTEN_ADDR",
          default_value = DEFAULT_LISTEN_ADDR, value_name = "ADDR")]
    pub listen_addr: SocketAddr,

    /// Addresses of the auth service, comma-separated; calls are spread over them.
    #[arg(long = "gateway-auth-backends", env = "GATEWAY_AUTH_BACKENDS",
          default_value = "http://127.0.0.1:50051", value_delimiter = ',',
          value_parser = parse_backend, value_name = "URL,…")]
    pub auth_backends: Vec<String>,

    /// Addresses of the task service, comma-separated; calls are spread over them.
    #[arg(long = "gateway-task-backends", env = "GATEWAY_TASK_BACKENDS",
          default_value = "http://127.0.0.1:50052", value_delimiter = ',',
          value_parser = parse_backend, value_name = "URL,…")]
    pub task_backends: Vec<String>,

    /// Browser origins allowed to call (CORS), comma-separated, for example
    /// `https://todo.example.com`. Pages served by the gateway itself are always allowed.
    #[arg(
        long = "gateway-allowed-origins",
        env = "GATEWAY_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN,…"
    )]
    pub allowed_origins: Vec<String>,

    /// Largest request or response message, bytes; larger ones are RESOURCE_EXHAUSTED.
    #[arg(long = "gateway-max-message-bytes", env = "GATEWAY_MAX_MESSAGE_BYTES",
          default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Deadline given to unary calls that arrive without one.
    #[arg(long = "gateway-default-deadline", env = "GATEWAY_DEFAULT_DEADLINE", default_value = "30s",
          value_parser = parse_duration, value_name = "DURATION")]
    pub default_deadline: Duration,

    /// Calls in flight at once; more are shed at once with UNAVAILABLE.
    #[arg(long = "gateway-max-concurrent-calls", env = "GATEWAY_MAX_CONCURRENT_CALLS",
          default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_calls: u32,

    /// SignUp and Login calls allowed per client address per minute (a burst of that size,
    /// refilled evenly); more are RESOURCE_EXHAUSTED with RetryInfo.
    #[arg(long = "gateway-auth-calls-per-minute", env = "GATEWAY_AUTH_CALLS_PER_MINUTE",
          default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_calls_per_minute: u32,

    /// How long connecting to a backend may take before the call fails with UNAVAILABLE.
    #[arg(long = "gateway-connect-timeout", env = "GATEWAY_CONNECT_TIMEOUT", default_value = "1s",
          value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Duration,

    /// How often each backend's health is checked.
    #[arg(long = "gateway-health-interval", env = "GATEWAY_HEALTH_INTERVAL", default_value = "1s",
          value_parser = parse_duration, value_name = "DURATION")]
    pub health_interval: Duration,
}

/// Accepts `http://HOST:PORT`.
fn parse_backend(value: &str) -> Result<String, String> {
    let uri: http::Uri = value
        .trim()
        .parse()
        .map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err("expected http://HOST:PORT".to_owned());
    }
    Ok(value.trim().trim_end_matches('/').to_owned())
}

impl Config {
    /// Defaults for everything, with the given address and backends.
    pub fn new(
        listen_addr: SocketAddr,
        auth_backends: Vec<String>,
        task_backends: Vec<String>,
    ) -> Self {
        Self {
            listen_addr,
            auth_backends,
            task_backends,
            allowed_origins: Vec::new(),
            max_message_bytes: 4 * 1024 * 1024,
            default_deadline: Duration::from_secs(30),
            max_concurrent_calls: 1024,
            auth_calls_per_minute: 30,
            connect_timeout: Duration::from_secs(1),
            health_interval: Duration::from_secs(1),
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
        gateway: Config,
    }

    #[test]
    fn clap_defaults_match_config_new() {
        let parsed = Cli::try_parse_from(["x"]).unwrap().gateway;
        let built = Config::new(
            parsed.listen_addr,
            vec!["http://127.0.0.1:50051".into()],
            vec!["http://127.0.0.1:50052".into()],
        );
        assert_eq!(format!("{parsed:?}"), format!("{built:?}"));
    }

    #[test]
    fn several_backends_and_origins() {
        let cli = Cli::try_parse_from([
            "x",
            "--gateway-task-backends",
            "http://a:1,http://b:2",
            "--gateway-allowed-origins",
            "https://todo.example.com,http://localhost:5173",
        ])
        .unwrap();
        assert_eq!(cli.gateway.task_backends, ["http://a:1", "http://b:2"]);
        assert_eq!(cli.gateway.allowed_origins.len(), 2);
        assert!(Cli::try_parse_from(["x", "--gateway-auth-backends", "a:1"]).is_err());
    }
}
