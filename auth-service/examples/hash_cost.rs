//! Measures what one password hash costs on this machine at the configured Argon2id settings
//! (the OWASP minimum by default), one at a time and with every core busy:
//!
//! ```sh
//! cargo run --release -p auth-service --example hash_cost [-- MEMORY_KIB ITERATIONS]
//! ```

use std::time::Instant;

use auth_service::password::{HashCost, PasswordHasher};

#[tokio::main]
async fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<u32>().expect("a number"));
    let cost = HashCost {
        memory_kib: args.next().unwrap_or(HashCost::OWASP.memory_kib),
        iterations: args.next().unwrap_or(HashCost::OWASP.iterations),
        parallelism: 1,
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let hasher = PasswordHasher::new(cost, cores, 1024).expect("valid cost");
    let rounds = 40;

    let started = Instant::now();
    for _ in 0..rounds {
        hasher
            .hash("correct horse battery".into())
            .await
            .expect("hash");
    }
    let serial = started.elapsed() / rounds;

    let started = Instant::now();
    let calls: Vec<_> = (0..rounds * 2)
        .map(|_| {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash("correct horse battery".into()).await })
        })
        .collect();
    for call in calls {
        call.await.expect("task").expect("hash");
    }
    let per_second = f64::from(rounds * 2) / started.elapsed().as_secs_f64();

    println!(
        "argon2id m={} KiB t={} p=1: {:.1} ms per hash alone; {:.0} hashes/s on {cores} cores",
        cost.memory_kib,
        cost.iterations,
        serial.as_secs_f64() * 1000.0,
        per_second
    );
}
