//! `task-service`: runs `todo.task.v1.TaskService` alone. See `--help` for its settings.

use std::process::ExitCode;

use clap::Parser;
use todo_common::{CommonArgs, Shutdown, bind_or_exit, parse_args, telemetry};

/// mimalloc: allocation is a large share of a busy server's work (see the workspace manifest).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Todo backend's task service: every user's tasks over gRPC.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    task: task_service::Config,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = parse_args();
    telemetry::init(cli.common.log_format);
    let listener = bind_or_exit(cli.task.listen_addr).await;
    match task_service::run(&cli.common, &cli.task, listener, Shutdown::on_signals()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "task service failed");
            ExitCode::FAILURE
        }
    }
}
