//! Clients and small helpers the drills share.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use todo_proto::{
    auth::v1::{SignUpRequest, auth_service_client::AuthServiceClient},
    task::v1::{ListTasksRequest, Task, task_service_client::TaskServiceClient},
};
use tonic::{
    Code, Request, Status,
    transport::{Channel, Endpoint},
};

/// The password of every drill account.
pub const PASSWORD: &str = "correct horse battery";

/// A connection to `addr`, retried for a few seconds while the server comes up.
pub async fn channel(addr: SocketAddr) -> Channel {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .expect("URI")
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match endpoint.connect().await {
            Ok(channel) => return channel,
            Err(error) if Instant::now() >= deadline => panic!("connect {addr}: {error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A channel to `addr` that connects at its first call (and again after the server restarts).
pub fn lazy_channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("URI")
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy()
}

/// `message` with `token` as its bearer and, when given, a deadline.
pub fn authed<T>(message: T, token: &str, deadline: Option<Duration>) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ASCII token"),
    );
    if let Some(deadline) = deadline {
        request.set_timeout(deadline);
    }
    request
}

/// A signed-up account.
#[derive(Clone, Debug)]
pub struct Account {
    /// User id.
    pub id: String,
    /// Access token.
    pub token: String,
    /// Refresh token.
    pub refresh: String,
}

/// Signs `email` up with [`PASSWORD`] at the auth service on `addr`.
pub async fn sign_up(addr: SocketAddr, email: &str) -> Account {
    let response = AuthServiceClient::new(channel(addr).await)
        .sign_up(SignUpRequest {
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
            display_name: String::new(),
        })
        .await
        .unwrap_or_else(|status| panic!("sign up {email}: {status:?}"))
        .into_inner();
    let tokens = response.tokens.expect("tokens");
    Account {
        id: response.user.expect("user").id,
        token: tokens.access_token,
        refresh: tokens.refresh_token,
    }
}

/// Every task of the caller, page by page.
pub async fn list_all(tasks: &mut TaskServiceClient<Channel>, token: &str) -> Vec<Task> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = tasks
            .list_tasks(authed(
                ListTasksRequest {
                    parent: "users/me".into(),
                    page_size: 100,
                    page_token,
                    ..ListTasksRequest::default()
                },
                token,
                Some(Duration::from_secs(10)),
            ))
            .await
            .unwrap_or_else(|status| panic!("list: {status:?}"))
            .into_inner();
        all.extend(page.tasks);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

/// How many answers of each code, as `OK 12, UNAVAILABLE 3`.
pub fn codes(answers: impl IntoIterator<Item = Code>) -> String {
    tally(answers.into_iter().map(|code| format!("{code:?}")))
}

/// How often each label occurs, in label order: "Ok 3, Unavailable 1".
pub fn tally(labels: impl IntoIterator<Item = String>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for label in labels {
        *counts.entry(label).or_default() += 1;
    }
    if counts.is_empty() {
        return "no calls".into();
    }
    counts
        .iter()
        .map(|(code, n)| format!("{code} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why the server never took a call that failed at the transport, if it did not: a stream above
/// the last one a graceful `GOAWAY` accepted (RFC 9113 section 6.8: not processed, safe to retry;
/// tonic reports it as INTERNAL), or a request still queued in the client when its connection
/// closed (never sent; tonic reports it as CANCELLED).
pub fn never_taken(status: &Status) -> Option<&'static str> {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(h2) = error.downcast_ref::<h2::Error>()
            && h2.is_go_away()
            && h2.is_remote()
            && h2.reason() == Some(h2::Reason::NO_ERROR)
        {
            return Some("refused by GOAWAY");
        }
        if error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
        {
            return Some("never sent");
        }
        source = error.source();
    }
    None
}

/// The `p`-th percentile (0-100) of `values`, sorted in place; zero when empty.
pub fn percentile(values: &mut [Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}

/// A duration as milliseconds with one decimal.
pub fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// Runs `sql`, a query of one row of two integers, on the auth (`auth.db`) or task
/// (`tasks.db`) database of `storage`, straight, as an operator would look.
pub async fn query_pair(
    storage: &todo_bench::servers::Storage,
    auth: bool,
    sql: &'static str,
) -> (i64, i64) {
    use sqlx::Connection;
    use todo_bench::servers::Storage;
    match storage {
        Storage::Sqlite(dir) => {
            let file = dir.join(if auth { "auth.db" } else { "tasks.db" });
            let url = format!("sqlite://{}?mode=ro", file.display());
            let mut connection = sqlx::SqliteConnection::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            sqlx::query_as(sql)
                .fetch_one(&mut connection)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
        Storage::Postgres(auth_url, task_url) => {
            let url = if auth { auth_url } else { task_url };
            let mut connection = sqlx::PgConnection::connect(url)
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            sqlx::query_as(sql)
                .fetch_one(&mut connection)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    }
}

/// The code of an answer: `OK` or the error's.
pub fn code<T>(answer: Result<T, tonic::Status>) -> Code {
    answer.map_or_else(|status| status.code(), |_| Code::Ok)
}
