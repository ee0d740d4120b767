//! `todo-drill`: reliability and security drills against the real servers.
//!
//! Each drill starts the binaries (one process each, on loopback, with fresh databases), does
//! to them what production will (kills, outages, restarts, hostile input, attacks, hours of
//! traffic) and checks that nothing acknowledged is lost, nothing hangs, nothing panics and
//! every answer is a proper gRPC status. Every check prints one PASS/FAIL line with its
//! figures; the exit code is non-zero when one fails.
//!
//! ```sh
//! cargo build --release --bins && target/release/todo-drill --database both
//! ```

mod brute;
mod crash;
mod hostile;
mod isolation;
mod net;
mod outage;
mod peers;
mod soak;
mod tokens;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, ValueEnum};

use todo_bench::servers::{self, Settings, Stack, Storage};

/// Reliability and security drills of the Todo backend.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Drills to run (default: all).
    #[arg(value_enum)]
    drills: Vec<Drill>,
    /// Database back-end(s) to drill.
    #[arg(long, value_enum, default_value_t = Databases::Both)]
    database: Databases,
    /// How long the soak runs (CI runs it for 20 s).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    soak_duration: Duration,
    /// PostgreSQL server where the drills may create their databases.
    #[arg(
        long,
        env = "DRILL_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    postgres_url: String,
    /// Directory of the server binaries (default: this one's).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the servers' logs go, one directory per drill.
    #[arg(long, default_value = "target/drills")]
    logs: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Databases {
    Sqlite,
    Postgres,
    Both,
}

/// The drills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Drill {
    /// `kill -9` during concurrent CreateTask and SignUp calls: nothing acknowledged lost, no
    /// duplicate on retry.
    Crash,
    /// PostgreSQL goes away under load and comes back.
    Outage,
    /// The auth service down; a backend restarted behind the gateway; SIGTERM to each server.
    Peers,
    /// Random and malformed bodies, framing, content types, metadata and sizes.
    Hostile,
    /// Forged, expired, replayed and otherwise wrong tokens, everywhere a token is checked.
    Tokens,
    /// Two users, every RPC: nobody reaches the other's tasks.
    Isolation,
    /// Half the measured capacity through the gateway for `--soak-duration`.
    Soak,
    /// Many wrong passwords against one account.
    BruteForce,
}

impl Drill {
    fn name(self) -> &'static str {
        match self {
            Self::Crash => "crash",
            Self::Outage => "outage",
            Self::Peers => "peers",
            Self::Hostile => "hostile",
            Self::Tokens => "tokens",
            Self::Isolation => "isolation",
            Self::Soak => "soak",
            Self::BruteForce => "brute-force",
        }
    }
}

/// One drill on one database: where to start servers and where to report.
#[derive(Debug)]
pub struct Ctx {
    bin_dir: PathBuf,
    logs: PathBuf,
    postgres_url: String,
    /// `sqlite` or `postgres`.
    pub database: &'static str,
    /// The drill running.
    pub drill: &'static str,
    /// How long the soak runs.
    pub soak_duration: Duration,
    failures: usize,
    checks: usize,
}

impl Ctx {
    /// Fresh, empty databases for this drill (`label` tells several apart).
    pub async fn storage(&self, label: &str) -> Storage {
        match self.database {
            "postgres" => Storage::postgres(&self.postgres_url, &format!("drill_{label}")).await,
            _ => {
                let dir = std::env::temp_dir().join(format!(
                    "todo-drill-{}-{label}-{}",
                    self.drill,
                    std::process::id()
                ));
                let _ = std::fs::remove_dir_all(&dir);
                Storage::Sqlite(dir)
            }
        }
    }

    /// The settings every drill starts from: logs in the drill's directory.
    pub fn settings(&self) -> Settings {
        Settings {
            logs: Some(self.logs.join(format!("{}-{}", self.drill, self.database))),
            ..Settings::default()
        }
    }

    /// Starts the stack on `storage` with `settings`.
    pub async fn start(&self, storage: &Storage, settings: &Settings) -> Stack {
        Stack::start(&self.bin_dir, storage, settings).await
    }

    /// Reports one check.
    pub fn check(&mut self, check: &str, pass: bool, figures: impl AsRef<str>) {
        self.checks += 1;
        if !pass {
            self.failures += 1;
        }
        println!(
            "{} {:<8} {:<11} {check}: {}",
            if pass { "PASS" } else { "FAIL" },
            self.database,
            self.drill,
            figures.as_ref()
        );
    }

    /// Checks that no server of `stack` logged a panic.
    pub fn check_no_panics(&mut self, stack: &Stack) {
        let panics: Vec<String> = stack
            .servers()
            .iter()
            .flat_map(|server| server.logged_panics())
            .collect();
        let figures = match panics.first() {
            None => "none logged".to_owned(),
            Some(first) => format!("{} logged, first: {first}", panics.len()),
        };
        self.check("no server panicked", panics.is_empty(), figures);
    }

    /// Removes what `storage` holds.
    pub async fn clean(&self, storage: Storage) {
        storage.remove(&self.postgres_url).await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let drills = if cli.drills.is_empty() {
        Drill::value_variants().to_vec()
    } else {
        cli.drills.clone()
    };
    let databases: &[&'static str] = match cli.database {
        Databases::Sqlite => &["sqlite"],
        Databases::Postgres => &["postgres"],
        Databases::Both => &["sqlite", "postgres"],
    };
    let (mut checks, mut failures) = (0, 0);
    for &database in databases {
        for &drill in &drills {
            if drill == Drill::Outage && database == "sqlite" {
                // An embedded database has no outage of its own: it fails with the process.
                continue;
            }
            let mut ctx = Ctx {
                bin_dir: cli.bin_dir.clone().unwrap_or_else(servers::bin_dir),
                logs: cli.logs.clone(),
                postgres_url: cli.postgres_url.clone(),
                database,
                drill: drill.name(),
                soak_duration: cli.soak_duration,
                failures: 0,
                checks: 0,
            };
            if let Some(dir) = ctx.settings().logs {
                let _ = std::fs::remove_dir_all(&dir);
            }
            match drill {
                Drill::Crash => crash::run(&mut ctx).await,
                Drill::Outage => outage::run(&mut ctx).await,
                Drill::Peers => peers::run(&mut ctx).await,
                Drill::Tokens => tokens::run(&mut ctx).await,
                Drill::Isolation => isolation::run(&mut ctx).await,
                Drill::Hostile => hostile::run(&mut ctx).await,
                Drill::Soak => soak::run(&mut ctx).await,
                Drill::BruteForce => brute::run(&mut ctx).await,
            }
            checks += ctx.checks;
            failures += ctx.failures;
        }
    }
    println!("\n{checks} checks, {failures} failed");
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
