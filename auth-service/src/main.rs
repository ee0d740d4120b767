//! `auth-service`: runs `todo.auth.v1.AuthService` alone, or rotates its signing key. See
//! `--help` for its settings.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use todo_common::{CommonArgs, Database, Shutdown, bind_or_exit, parse_args, telemetry};

/// mimalloc: allocation is a large share of a busy server's work (see the workspace manifest).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Todo backend's auth service: accounts, passwords and tokens over gRPC.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    auth: auth_service::Config,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Add a new signing key to the users database and exit. Running instances sign with it
    /// from their next key reload; tokens signed with the previous key stay valid until they
    /// expire.
    RotateSigningKey,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = parse_args();
    telemetry::init(cli.common.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let listener = bind_or_exit(cli.auth.listen_addr).await;
            match auth_service::run(&cli.common, &cli.auth, listener, Shutdown::on_signals()).await
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "auth service failed");
                    ExitCode::FAILURE
                }
            }
        }
        Command::RotateSigningKey => {
            let url = cli.auth.database_url(&cli.common);
            let rotated = async {
                let db = Database::connect(&url, &auth_service::MIGRATIONS)
                    .await
                    .map_err(|e| e.to_string())?;
                let store = auth_service::store::SqlUserStore::new(db.clone());
                let kid = auth_service::keys::rotate(&store)
                    .await
                    .map_err(|e| e.to_string());
                db.close().await;
                kid
            }
            .await;
            match rotated {
                Ok(kid) => {
                    println!("new signing key {kid}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: cannot rotate the signing key: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
