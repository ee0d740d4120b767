//! `gateway`: runs the public gateway alone. See `--help` for its settings.

use std::process::ExitCode;

use clap::Parser;
use todo_common::{CommonArgs, Shutdown, bind_or_exit, parse_args, telemetry};

/// mimalloc: allocation is a large share of a busy server's work (see the workspace manifest).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Todo backend's gateway: one public address for gRPC and gRPC-web clients.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    gateway: gateway::Config,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = parse_args();
    telemetry::init(cli.common.log_format);
    let listener = bind_or_exit(cli.gateway.listen_addr).await;
    match gateway::run(&cli.common, &cli.gateway, listener, Shutdown::on_signals()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "gateway failed");
            ExitCode::FAILURE
        }
    }
}
