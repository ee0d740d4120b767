//! The ListTasks scale curve: first-page and deep-page latency for a user with 100, 10,000 and
//! (by default) 1,000,000 tasks, and for a user with 100 tasks among a million of other users'.
//! Tasks are seeded straight into the task service's database, in large batches, as the service
//! itself would store them, and the database settles (vacuum, analyze) before each point.

use std::{sync::Arc, time::Duration};

use serde::Serialize;

use todo_bench::{
    clients::{Auth, Path, Tasks},
    load::drive,
    servers::{Stack, Storage},
};

/// One point of the curve.
#[derive(Debug, Serialize)]
pub struct ScalePoint {
    /// Back-end.
    pub database: &'static str,
    /// Tasks of the user listed (one user), or in the table (many users).
    pub tasks: u64,
    /// `one user` or `many users (this one has 100)`.
    pub layout: &'static str,
    /// First page, p50, ms.
    pub first_page_ms: f64,
    /// First page, p99, ms.
    pub first_page_p99_ms: f64,
    /// A page deep in the list (half of it, at most 10,000 tasks in), p50, ms.
    pub deep_page_ms: f64,
    /// The deep page, p99, ms.
    pub deep_page_p99_ms: f64,
}

const ROWS_PER_STATEMENT: usize = 500;
const ROWS_PER_TRANSACTION: u64 = 50_000;

/// Seeds `count` tasks for each owner in `owners`.
macro_rules! seed {
    ($pool:expr, $owners:expr, $count:expr) => {{
        let pool = $pool;
        let mut time: i64 = 1_600_000_000_000_000;
        for owner in $owners {
            let mut left = $count;
            while left > 0 {
                let mut tx = pool.begin().await.expect("begin");
                let mut in_tx = 0;
                while left > 0 && in_tx < ROWS_PER_TRANSACTION {
                    let rows = usize::try_from(left.min(ROWS_PER_STATEMENT as u64)).expect("rows");
                    let placeholders: Vec<String> = (0..rows)
                        .map(|r| {
                            let b = r * 6;
                            format!("(${}, ${}, ${}, '', ${}, ${}, ${}, 1)", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6)
                        })
                        .collect();
                    let sql = format!(
                        "INSERT INTO tasks (id, owner_id, title, description, completed, create_time, update_time, version) VALUES {}",
                        placeholders.join(", ")
                    );
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for r in 0..rows {
                        time += 1;
                        query = query
                            .bind(uuid::Uuid::now_v7().to_string())
                            .bind(owner.as_str())
                            .bind(format!("seeded task {r}"))
                            .bind(false)
                            .bind(time)
                            .bind(time);
                    }
                    query.execute(&mut *tx).await.expect("seed tasks");
                    left -= rows as u64;
                    in_tx += rows as u64;
                }
                tx.commit().await.expect("commit");
            }
            // On SQLite the task service's triggers keep the per-owner counts.
        }
    }};
}

async fn seed(storage: &Storage, owners: &[String], count: u64) {
    match storage {
        Storage::Sqlite(dir) => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.join("tasks.db"))
                .busy_timeout(Duration::from_secs(30));
            let pool = sqlx::SqlitePool::connect_with(options)
                .await
                .expect("open tasks.db");
            seed!(&pool, owners, count);
            pool.close().await;
        }
        Storage::Postgres(_, tasks) => {
            // Without the count triggers, which would serialise a million inserts on one
            // counter row: the counts are set once at the end instead.
            let pool = sqlx::postgres::PgPoolOptions::new()
                .after_connect(|connection, _| {
                    Box::pin(async move {
                        sqlx::query("SET session_replication_role = replica")
                            .execute(connection)
                            .await
                            .map(drop)
                    })
                })
                .connect(tasks)
                .await
                .expect("open the tasks database");
            seed!(&pool, owners, count);
            sqlx::query(
                "INSERT INTO task_counts (owner_id, total, completed) \
                 SELECT owner_id, COUNT(*), COUNT(*) FILTER (WHERE completed) FROM tasks \
                 WHERE owner_id = ANY($1) GROUP BY owner_id \
                 ON CONFLICT (owner_id) DO UPDATE SET total = EXCLUDED.total, \
                 completed = EXCLUDED.completed",
            )
            .bind(owners)
            .execute(&pool)
            .await
            .expect("count the seeded tasks");
            pool.close().await;
        }
    }
}

/// Tasks of the user listed among many users' tasks (its label says so too).
const CROWD_USER_TASKS: u64 = 100;

/// Calls in flight while the curve is measured: one, so that each figure is the latency of a
/// call, not of a queue.
const WORKERS: usize = 1;

/// p50 and p99 of ListTasks (page of 50) with `token`, one call at a time for 2 s.
async fn latency(clients: Arc<Vec<Tasks>>, token: String) -> (f64, f64) {
    let measured = drive(
        clients.len(),
        Duration::from_millis(500),
        Duration::from_secs(2),
        move |w, _| {
            let (mut client, token) = (clients[w].clone(), token.clone());
            async move { client.list(50, &token).await.is_ok() }
        },
    )
    .await;
    assert_eq!(
        measured.errors, 0,
        "ListTasks failed while measuring the scale curve"
    );
    (measured.percentile_ms(50.0), measured.percentile_ms(99.0))
}

/// Measures the listing of a user who has `own` tasks, with `tasks` in the table.
async fn point(
    stack: &Stack,
    database: &'static str,
    token: &str,
    (tasks, own): (u64, u64),
    layout: &'static str,
) -> ScalePoint {
    let mut clients = Vec::new();
    for _ in 0..WORKERS {
        clients.push(Tasks::connect(Path::Direct, stack.task.addr, token).await);
    }
    let clients = Arc::new(clients);
    // The token of a page half-way down the user's own tasks (at most 10,000 in).
    let skip = (own / 2).min(10_000);
    let mut walker = clients[0].clone();
    let mut deep = String::new();
    let mut skipped = 0;
    while skipped < skip {
        let size = i32::try_from((skip - skipped).min(100)).expect("size");
        let page = walker.list(size, &deep).await.expect("walk");
        skipped += page.tasks.len() as u64;
        deep = page.next_page_token;
    }
    let (first_page_ms, first_page_p99_ms) = latency(clients.clone(), String::new()).await;
    let (deep_page_ms, deep_page_p99_ms) = latency(clients, deep).await;
    ScalePoint {
        database,
        tasks,
        layout,
        first_page_ms,
        first_page_p99_ms,
        deep_page_ms,
        deep_page_p99_ms,
    }
}

/// The whole curve.
pub async fn curve(
    stack: &Stack,
    database: &'static str,
    storage: &Storage,
    max: u64,
) -> Vec<ScalePoint> {
    let mut sizes = vec![100, 10_000, max];
    sizes.retain(|size| *size <= max);
    sizes.dedup();
    let mut auth = Auth::connect(Path::Direct, stack.auth.addr).await;
    let mut points = Vec::new();
    for size in sizes {
        let (id, token) = auth
            .sign_up(&format!("scale{size}@example.com"), "correct horse battery")
            .await;
        let started = std::time::Instant::now();
        seed(storage, &[id], size).await;
        crate::settle(storage).await;
        println!(
            "{database}: seeded one user with {size} tasks in {:.1?}",
            started.elapsed()
        );
        points.push(point(stack, database, &token, (size, size), "one user").await);
    }
    // A user with 100 tasks among many others': the other users' tasks must not slow them.
    let others: Vec<String> = (0..max / 1000)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let started = std::time::Instant::now();
    seed(storage, &others, 1000).await;
    let (id, token) = auth
        .sign_up("crowd@example.com", "correct horse battery")
        .await;
    seed(storage, &[id], CROWD_USER_TASKS).await;
    crate::settle(storage).await;
    println!(
        "{database}: seeded {} users with 1000 tasks each in {:.1?}",
        others.len(),
        started.elapsed()
    );
    points.push(
        point(
            stack,
            database,
            &token,
            (max, CROWD_USER_TASKS),
            "many users (this one has 100)",
        )
        .await,
    );
    points
}
