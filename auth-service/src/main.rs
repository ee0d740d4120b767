//! `auth-service`: runs `todo.auth.v1.AuthService` alone. See `--help` for its settings.

use std::process::ExitCode;

use clap::Parser;
use todo_common::{CommonArgs, Shutdown, bind_or_exit, parse_args, telemetry};

/// The Todo backend's auth service: accounts, passwords and tokens over gRPC.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    auth: auth_service::Config,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = parse_args();
    telemetry::init(cli.common.log_format);
    let listener = bind_or_exit(cli.auth.listen_addr).await;
    match auth_service::run(&cli.common, &cli.auth, listener, Shutdown::on_signals()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "auth service failed");
            ExitCode::FAILURE
        }
    }
}
