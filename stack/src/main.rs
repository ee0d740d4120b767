//! `todo-stack`: the whole backend (auth service, task service, gateway) in one process, with
//! embedded SQLite databases under the data directory. The quickest way to run everything on
//! one machine; in production each service runs as its own process (`auth-service`,
//! `task-service`, `gateway`) with the same settings.

use std::{io::Write, process::ExitCode};

use clap::Parser;
use todo_common::{CommonArgs, RunError, Shutdown, bind_or_exit, parse_args, telemetry};

/// mimalloc: allocation is a large share of a busy server's work (see the workspace manifest).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Todo backend, all three servers in one process.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    auth: auth_service::Config,
    #[command(flatten)]
    task: task_service::Config,
    #[command(flatten)]
    gateway: gateway::Config,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = parse_args();
    telemetry::init(cli.common.log_format);

    // Bind everything first, so a taken port fails before anything starts.
    let auth_listener = bind_or_exit(cli.auth.listen_addr).await;
    let task_listener = bind_or_exit(cli.task.listen_addr).await;
    let gateway_listener = bind_or_exit(cli.gateway.listen_addr).await;

    let shutdown = Shutdown::on_signals();
    let Cli {
        common,
        auth,
        mut task,
        mut gateway,
    } = cli;
    // The services talk to each other where they really listen (port 0 included): the task
    // service verifies tokens with the keys of the auth service beside it, and the gateway
    // forwards to both.
    if let (Ok(auth_addr), Ok(task_addr)) = (auth_listener.local_addr(), task_listener.local_addr())
    {
        task.auth_url = format!("http://{auth_addr}");
        gateway.auth_backends = vec![format!("http://{auth_addr}")];
        gateway.task_backends = vec![format!("http://{task_addr}")];
    }
    let address = |listener: &tokio::net::TcpListener| {
        listener
            .local_addr()
            .map_or_else(|e| format!("unknown ({e})"), |a| a.to_string())
    };
    // Ignore a closed stdout: the banner is for people, the servers must run regardless.
    let _ = writeln!(
        std::io::stdout(),
        "Todo backend (data in {}):\n  gateway       {}\n  auth-service  {}\n  task-service  {}\nTry: grpcurl -plaintext {} list",
        common.data_dir.display(),
        address(&gateway_listener),
        address(&auth_listener),
        address(&task_listener),
        address(&auth_listener),
    );

    let servers = [
        ("auth-service", {
            let (common, shutdown) = (common.clone(), shutdown.clone());
            spawn_server(shutdown.clone(), async move {
                auth_service::run(&common, &auth, auth_listener, shutdown).await
            })
        }),
        ("task-service", {
            let (common, shutdown) = (common.clone(), shutdown.clone());
            spawn_server(shutdown.clone(), async move {
                task_service::run(&common, &task, task_listener, shutdown).await
            })
        }),
        ("gateway", {
            let shutdown = shutdown.clone();
            spawn_server(shutdown.clone(), async move {
                gateway::run(&common, &gateway, gateway_listener, shutdown).await
            })
        }),
    ];

    let mut code = ExitCode::SUCCESS;
    for (name, server) in servers {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(server = name, %error, "server failed");
                code = ExitCode::FAILURE;
            }
            Err(error) => {
                tracing::error!(server = name, %error, "server task panicked");
                code = ExitCode::FAILURE;
            }
        }
    }
    code
}

/// Runs one server on its own task; if it stops with an error, stops the others too.
fn spawn_server(
    shutdown: Shutdown,
    server: impl Future<Output = Result<(), RunError>> + Send + 'static,
) -> tokio::task::JoinHandle<Result<(), RunError>> {
    tokio::spawn(async move {
        let result = server.await;
        if result.is_err() {
            shutdown.trigger();
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_setting_has_its_own_name() {
        // clap checks for clashing flag, env and id names only when the command is built.
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_put_each_server_on_its_own_port() {
        let cli = Cli::try_parse_from(["todo-stack"]).unwrap();
        let ports = [
            cli.auth.listen_addr.port(),
            cli.task.listen_addr.port(),
            cli.gateway.listen_addr.port(),
        ];
        assert_eq!(ports, [50051, 50052, 8080]);
    }
}
