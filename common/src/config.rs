//! Settings shared by every binary, and the handling of bad values: one clear line on stderr and
//! exit code 64 (`EX_USAGE`), never a stack trace or a page of usage text.
//!
//! Every setting is a flag and an environment variable. Service-specific settings carry the
//! service's prefix (`--auth-…`/`AUTH_…`, `--task-…`/`TASK_…`, `--gateway-…`/`GATEWAY_…`), so
//! the same names work for a service run alone and for the whole stack in one process.

use std::{fmt::Display, path::PathBuf, time::Duration};

use clap::{Args, Parser, ValueEnum, error::ErrorKind};

/// Exit code for a bad command line or environment (`EX_USAGE` from sysexits.h).
pub const EXIT_USAGE: i32 = 64;

/// Default directory for the embedded SQLite databases.
pub const DEFAULT_DATA_DIR: &str = "data";
/// Default time in-flight calls get to finish after SIGTERM/SIGINT.
pub const DEFAULT_GRACE_PERIOD: &str = "10s";
/// Default upper bound on the time a call may take; a client's shorter `grpc-timeout` wins.
pub const DEFAULT_REQUEST_TIMEOUT: &str = "30s";
/// Default `iss` of access tokens.
pub const DEFAULT_TOKEN_ISSUER: &str = "todo-auth";
/// Default `aud` of access tokens.
pub const DEFAULT_TOKEN_AUDIENCE: &str = "todo";

/// Settings every server uses.
#[derive(Args, Clone, Debug)]
#[group(id = "common")]
pub struct CommonArgs {
    /// Directory holding the embedded SQLite databases (created if missing). Used by services
    /// whose database URL is not set.
    #[arg(long, env = "TODO_DATA_DIR", default_value = DEFAULT_DATA_DIR, value_name = "DIR")]
    pub data_dir: PathBuf,

    /// Log format: `text` for people, `json` for log collectors. The level is set by `RUST_LOG`
    /// (default `info`).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How long in-flight calls may run on after SIGTERM/SIGINT before connections are closed
    /// (for example `10s`, `500ms`).
    #[arg(long, env = "SHUTDOWN_GRACE_PERIOD", default_value = DEFAULT_GRACE_PERIOD,
          value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_grace_period: Duration,

    /// The longest a unary call may take on the server; a client's shorter `grpc-timeout`
    /// wins. Calls past it end with `DEADLINE_EXCEEDED`.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = DEFAULT_REQUEST_TIMEOUT,
          value_parser = parse_duration, value_name = "DURATION")]
    pub request_timeout: Duration,

    /// The `iss` claim the auth service puts in access tokens and every service requires.
    #[arg(long, env = "TOKEN_ISSUER", default_value = DEFAULT_TOKEN_ISSUER, value_name = "NAME")]
    pub token_issuer: String,

    /// The `aud` claim the auth service puts in access tokens and every service requires.
    #[arg(long, env = "TOKEN_AUDIENCE", default_value = DEFAULT_TOKEN_AUDIENCE, value_name = "NAME")]
    pub token_audience: String,
}

/// The shape of log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Parses a duration such as `30s`, `500ms`, `2m` or `1h 30m`. Zero is refused: every timeout
/// and grace period here must allow some time.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value)
        .map_err(|e| format!("{e} (expected a duration such as 30s, 500ms or 2m)"))?;
    if duration.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(duration)
}

/// Parses the command line and environment into `T`. `--help` and `--version` print and exit
/// 0; anything invalid prints one line and exits with [`EXIT_USAGE`].
pub fn parse_args<T: Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(err) => match err.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => err.exit(),
            _ => {
                let rendered = err.render().to_string();
                let line = rendered.lines().next().unwrap_or("invalid arguments");
                let line = line.strip_prefix("error: ").unwrap_or(line);
                exit_on_bad_config(line)
            }
        },
    }
}

/// Prints `error: {message}` on one line and exits with [`EXIT_USAGE`].
pub fn exit_on_bad_config(message: impl Display) -> ! {
    let message = message.to_string();
    let line = message.lines().next().unwrap_or_default();
    eprintln!("error: {line}");
    std::process::exit(EXIT_USAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    #[test]
    fn defaults_are_documented_values() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.common.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(cli.common.log_format, LogFormat::Text);
        assert_eq!(cli.common.shutdown_grace_period, Duration::from_secs(10));
        assert_eq!(cli.common.request_timeout, Duration::from_secs(30));
    }

    #[test]
    fn durations_accept_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(Cli::try_parse_from(["x", "--request-timeout", "never"]).is_err());
    }
}
