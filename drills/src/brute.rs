//! Brute force: 200 wrong passwords as fast as they can be sent against one account, straight
//! to the auth service (the per-account throttle) and through the gateway (the per-address
//! limit too); the owner signs in once the attack stops; and login does not tell which emails
//! are registered (same code, message, details and time for an unknown email as for a wrong
//! password).

use std::time::{Duration, Instant};

use todo_proto::auth::v1::{LoginRequest, SignUpRequest, auth_service_client::AuthServiceClient};
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt as _;

use crate::{Ctx, net};

/// Wrong passwords per attack.
const GUESSES: usize = 200;
/// Accounts (and unknown emails) timed for the enumeration check, in alternating pairs.
const TIMED: usize = 24;

async fn login(
    auth: &mut AuthServiceClient<Channel>,
    email: &str,
    password: &str,
) -> Result<(), Status> {
    auth.login(LoginRequest {
        email: email.to_owned(),
        password: password.to_owned(),
    })
    .await
    .map(drop)
}

fn retry_delay(status: &Status) -> Option<Duration> {
    status.get_error_details().retry_info()?.retry_delay
}

/// The answer a client sees, without what differs per request (nothing should).
fn shape(status: &Status) -> (Code, String, Vec<u8>) {
    (
        status.code(),
        status.message().to_owned(),
        status.details().to_vec(),
    )
}

pub async fn run(ctx: &mut Ctx) {
    let storage = ctx.storage("brute").await;
    let stack = ctx.start(&storage, &ctx.settings()).await;
    let victim = "victim@example.com";
    net::sign_up(stack.auth.addr, victim).await;
    let mut auth = AuthServiceClient::new(net::channel(stack.auth.addr).await);

    // The attack, straight to the auth service.
    let started = Instant::now();
    let (mut checked, mut throttled, mut without_retry, mut other) = (0, 0, 0, 0);
    let mut last_delay = Duration::ZERO;
    for n in 0..GUESSES {
        match login(&mut auth, victim, &format!("wrong guess {n}")).await {
            Err(status) if status.code() == Code::Unauthenticated => checked += 1,
            Err(status) if status.code() == Code::ResourceExhausted => {
                throttled += 1;
                match retry_delay(&status) {
                    Some(delay) => last_delay = delay,
                    None => without_retry += 1,
                }
            }
            _ => other += 1,
        }
    }
    let attack = started.elapsed();
    ctx.check(
        "200 wrong passwords against one account are throttled",
        checked <= 10 && throttled + checked == GUESSES && without_retry == 0 && other == 0,
        format!(
            "{GUESSES} guesses in {}: {checked} checked (wrong password), {throttled} refused unchecked with RESOURCE_EXHAUSTED + RetryInfo ({without_retry} without), {other} other",
            net::ms(attack)
        ),
    );

    // The owner, once the attack stops, after the wait the last answer named.
    let stopped = Instant::now();
    tokio::time::sleep(last_delay).await;
    let mut owner_in = None;
    while stopped.elapsed() < Duration::from_secs(90) {
        match login(&mut auth, victim, net::PASSWORD).await {
            Ok(()) => {
                owner_in = Some(stopped.elapsed());
                break;
            }
            Err(status) => {
                tokio::time::sleep(retry_delay(&status).unwrap_or(Duration::from_millis(100)))
                    .await;
            }
        }
    }
    ctx.check(
        "the owner signs in once the attack stops",
        owner_in.is_some_and(|t| t <= Duration::from_secs(61)),
        format!(
            "signed in {} after the attack stopped (the last refusal said to wait {}; the cap is 1 min)",
            owner_in.map_or("never".into(), net::ms),
            net::ms(last_delay)
        ),
    );

    // The same attack through the gateway: the per-address limit holds it too.
    let mut gateway = AuthServiceClient::new(net::channel(stack.gateway.addr).await);
    let (mut rate_limited, mut reached) = (0, 0);
    for n in 0..GUESSES {
        let answer = if n % 2 == 0 {
            login(&mut gateway, victim, &format!("gateway guess {n}")).await
        } else {
            // Probing which emails exist by signing them up is held by the same limit.
            gateway
                .sign_up(SignUpRequest {
                    email: victim.into(),
                    password: net::PASSWORD.into(),
                    display_name: String::new(),
                })
                .await
                .map(drop)
        };
        match answer {
            Err(status)
                if status.code() == Code::ResourceExhausted
                    && status
                        .get_error_details()
                        .error_info()
                        .map(|i| i.reason.as_str())
                        == Some("RATE_LIMITED") =>
            {
                rate_limited += 1;
            }
            _ => reached += 1,
        }
    }
    ctx.check(
        "through the gateway, logins and sign-ups from one address are rate limited",
        reached <= 31 && rate_limited + reached == GUESSES,
        format!(
            "{GUESSES} Login and SignUp calls: {reached} reached the auth service (limit 30 a minute), {rate_limited} RATE_LIMITED"
        ),
    );

    // Enumeration: an unknown email and a wrong password look and take the same. The
    // accounts are signed up first and the two kinds of login alternate which goes first, so a
    // slow spell of the machine falls on both sides alike.
    for n in 0..TIMED {
        net::sign_up(stack.auth.addr, &format!("known-{n}@example.com")).await;
    }
    let mut known_times = Vec::new();
    let mut unknown_times = Vec::new();
    let mut shapes = Vec::new();
    for n in 0..TIMED {
        let mut pair = [
            (format!("known-{n}@example.com"), &mut known_times),
            (format!("unknown-{n}@example.com"), &mut unknown_times),
        ];
        if n % 2 == 1 {
            pair.reverse();
        }
        for (email, times) in pair {
            let sent = Instant::now();
            let status = login(&mut auth, &email, "not the password")
                .await
                .expect_err("a wrong login");
            times.push(sent.elapsed());
            shapes.push(shape(&status));
        }
    }
    let same_answer = shapes.windows(2).all(|pair| pair[0] == pair[1]);
    let known = net::percentile(&mut known_times, 50.0);
    let unknown = net::percentile(&mut unknown_times, 50.0);
    let gap = known.abs_diff(unknown).as_secs_f64() / known.max(unknown).as_secs_f64();
    ctx.check(
        "login does not tell which emails exist",
        same_answer && gap <= 0.25,
        format!(
            "{TIMED} wrong passwords and {TIMED} unknown emails: same code, message and details: {same_answer}; median {} vs {} ({:.0}% apart; at most 25%)",
            net::ms(known),
            net::ms(unknown),
            gap * 100.0
        ),
    );
    let taken = AuthServiceClient::new(net::channel(stack.auth.addr).await)
        .sign_up(SignUpRequest {
            email: victim.into(),
            password: net::PASSWORD.into(),
            display_name: String::new(),
        })
        .await
        .map_or_else(|s| s.code(), |_| Code::Ok);
    ctx.check(
        "sign-up of a taken email is ALREADY_EXISTS, as the contract says",
        taken == Code::AlreadyExists,
        format!(
            "{taken:?} (the original API's 409; the gateway's per-address limit bounds probing by sign-up, above)"
        ),
    );
    ctx.check_no_panics(&stack);
    drop(stack);
    ctx.clean(storage).await;
}
