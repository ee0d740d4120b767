//! Token attack suite: every forged, expired, replayed, wrong-audience, wrong-issuer,
//! `alg: none`, algorithm-confusion, unknown-`kid` and truncated token is refused, by the
//! task service, by the auth service's VerifyToken, and through the gateway over gRPC and
//! gRPC-web. Forgeries are signed with the real signing key (read from the auth database, as
//! a thief of it would) wherever only the claims are wrong, so each is refused for its flaw.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use todo_proto::{
    auth::v1::{RefreshRequest, VerifyTokenRequest, auth_service_client::AuthServiceClient},
    task::v1::{ListTasksRequest, task_service_client::TaskServiceClient},
};
use tonic::Code;

use auth_service::store::UserStore as _;
use todo_bench::{
    clients::{Path, Tasks},
    servers::Storage,
};
use todo_common::{Database, DatabaseUrl, token::TOKEN_TYPE};

use crate::{
    Ctx,
    net::{self, authed},
};

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).expect("a token")
}

fn header(algorithm: Algorithm, kid: Option<&str>, typ: Option<&str>) -> Header {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    header.typ = typ.map(str::to_owned);
    header
}

/// Where a token is checked.
const TARGETS: [&str; 5] = [
    "task service",
    "auth VerifyToken",
    "gateway gRPC ListTasks",
    "gateway gRPC VerifyToken",
    "gateway gRPC-web ListTasks",
];

pub async fn run(ctx: &mut Ctx) {
    let storage = ctx.storage("tokens").await;
    let stack = ctx.start(&storage, &ctx.settings()).await;
    let account = net::sign_up(stack.auth.addr, "tokens@example.com").await;

    // The real signing key, straight from the auth database.
    let url: DatabaseUrl = match &storage {
        Storage::Sqlite(dir) => format!("sqlite://{}", dir.join("auth.db").display()),
        Storage::Postgres(auth, _) => auth.clone(),
    }
    .parse()
    .expect("the auth database URL");
    let db = Database::connect(&url, &auth_service::MIGRATIONS)
        .await
        .expect("the auth database");
    let keys = auth_service::store::SqlUserStore::new(db.clone())
        .signing_keys()
        .await
        .expect("the signing keys");
    db.close().await;
    let real = keys.first().expect("a signing key");
    let real_key = auth_service::keys::encoding_key(real).expect("the real key");
    let other = auth_service::keys::generate_key(0).expect("a key");
    let other_key = auth_service::keys::encoding_key(&other).expect("another key");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let valid = json!({
        "iss": "todo-auth", "aud": "todo", "sub": account.id, "email": "tokens@example.com",
        "iat": now, "nbf": now, "exp": now + 600, "jti": "drill",
    });
    let with = |changes: Value| {
        let mut claims = valid.clone();
        for (field, value) in changes.as_object().expect("an object") {
            if value.is_null() {
                claims.as_object_mut().expect("an object").remove(field);
            } else {
                claims[field] = value.clone();
            }
        }
        claims
    };
    let good = header(Algorithm::EdDSA, Some(&real.kid), Some(TOKEN_TYPE));
    let control = sign(&good, &valid, &real_key);
    let issued = account.token.clone();
    let (issued_header, issued_payload, issued_signature) = {
        let parts: Vec<&str> = issued.split('.').collect();
        (parts[0], parts[1], parts[2])
    };
    let mut tampered = serde_json::from_slice::<Value>(
        &URL_SAFE_NO_PAD
            .decode(issued_payload)
            .expect("a base64url payload"),
    )
    .expect("JSON claims");
    tampered["sub"] = json!("someone-else");
    let public_text = EncodingKey::from_secret(real.public_key.as_bytes());
    let public_bytes = EncodingKey::from_secret(
        &URL_SAFE_NO_PAD
            .decode(&real.public_key)
            .expect("a base64url key"),
    );

    let attacks: Vec<(&str, String)> = vec![
        (
            "expired",
            sign(
                &good,
                &with(json!({"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600})),
                &real_key,
            ),
        ),
        (
            "expired beyond the leeway by a minute",
            sign(&good, &with(json!({"exp": now - 90})), &real_key),
        ),
        (
            "not yet valid",
            sign(
                &good,
                &with(json!({"nbf": now + 3600, "exp": now + 7200})),
                &real_key,
            ),
        ),
        (
            "no expiry",
            sign(&good, &with(json!({"exp": null})), &real_key),
        ),
        (
            "wrong audience",
            sign(&good, &with(json!({"aud": "other-app"})), &real_key),
        ),
        (
            "no audience",
            sign(&good, &with(json!({"aud": null})), &real_key),
        ),
        (
            "wrong issuer",
            sign(&good, &with(json!({"iss": "evil"})), &real_key),
        ),
        (
            "no subject",
            sign(&good, &with(json!({"sub": ""})), &real_key),
        ),
        (
            "wrong type (JWT)",
            sign(
                &header(Algorithm::EdDSA, Some(&real.kid), Some("JWT")),
                &valid,
                &real_key,
            ),
        ),
        (
            "no type",
            sign(
                &header(Algorithm::EdDSA, Some(&real.kid), None),
                &valid,
                &real_key,
            ),
        ),
        (
            "forged: another key under the real kid",
            sign(&good, &valid, &other_key),
        ),
        (
            "unknown kid",
            sign(
                &header(Algorithm::EdDSA, Some(&other.kid), Some(TOKEN_TYPE)),
                &valid,
                &other_key,
            ),
        ),
        (
            "no kid",
            sign(
                &header(Algorithm::EdDSA, None, Some(TOKEN_TYPE)),
                &valid,
                &real_key,
            ),
        ),
        (
            "tampered payload, original signature",
            format!("{issued_header}.{}.{issued_signature}", b64(&tampered)),
        ),
        (
            "signature of another token",
            format!(
                "{issued_header}.{issued_payload}.{}",
                control.rsplit('.').next().unwrap_or_default()
            ),
        ),
        (
            "alg none, no signature",
            format!(
                "{}.{issued_payload}.",
                b64(&json!({"alg": "none", "typ": TOKEN_TYPE, "kid": real.kid}))
            ),
        ),
        (
            "alg none, original signature",
            format!(
                "{}.{issued_payload}.{issued_signature}",
                b64(&json!({"alg": "none", "typ": TOKEN_TYPE, "kid": real.kid}))
            ),
        ),
        (
            "algorithm confusion: HS256 keyed with the public key (text)",
            sign(
                &header(Algorithm::HS256, Some(&real.kid), Some(TOKEN_TYPE)),
                &valid,
                &public_text,
            ),
        ),
        (
            "algorithm confusion: HS256 keyed with the public key (bytes)",
            sign(
                &header(Algorithm::HS256, Some(&real.kid), Some(TOKEN_TYPE)),
                &valid,
                &public_bytes,
            ),
        ),
        (
            "algorithm confusion: EdDSA signature under an RS256 header",
            format!(
                "{}.{}.{}",
                b64(&json!({"alg": "RS256", "typ": TOKEN_TYPE, "kid": real.kid})),
                b64(&valid),
                control.rsplit('.').next().unwrap_or_default()
            ),
        ),
        (
            "truncated signature",
            issued[..issued.len() - 10].to_owned(),
        ),
        (
            "truncated to two parts",
            format!("{issued_header}.{issued_payload}"),
        ),
        ("header only", issued_header.to_owned()),
        ("empty", String::new()),
        ("garbage", "garbage".into()),
        ("three empty parts", "..".into()),
        ("long (8 KiB)", format!("{issued}{}", "A".repeat(8 * 1024))),
    ];

    let mut task = TaskServiceClient::new(net::channel(stack.task.addr).await);
    let mut auth = AuthServiceClient::new(net::channel(stack.auth.addr).await);
    let mut gateway_task = TaskServiceClient::new(net::channel(stack.gateway.addr).await);
    let mut gateway_auth = AuthServiceClient::new(net::channel(stack.gateway.addr).await);
    let mut answers = async |token: &str| -> [Code; 5] {
        let list = || ListTasksRequest {
            parent: "users/me".into(),
            ..ListTasksRequest::default()
        };
        let verify = || VerifyTokenRequest {
            access_token: token.to_owned(),
        };
        let mut web = Tasks::connect(Path::GatewayWeb, stack.gateway.addr, token).await;
        [
            net::code(task.list_tasks(authed(list(), token, None)).await),
            net::code(auth.verify_token(verify()).await),
            net::code(gateway_task.list_tasks(authed(list(), token, None)).await),
            net::code(gateway_auth.verify_token(verify()).await),
            net::code(web.list(10, "").await),
        ]
    };

    let accepted = answers(&control).await;
    ctx.check(
        "a correctly signed control token is accepted everywhere (the suite can tell)",
        accepted.iter().all(|c| *c == Code::Ok),
        format!("{accepted:?}"),
    );
    let mut refused = 0;
    let mut let_through = Vec::new();
    for (attack, token) in &attacks {
        for (target, code) in TARGETS.iter().zip(answers(token).await) {
            // VerifyToken takes the token as a field: an empty one is a missing argument.
            let expected = if token.is_empty() && target.ends_with("VerifyToken") {
                Code::InvalidArgument
            } else {
                Code::Unauthenticated
            };
            if code == expected {
                refused += 1;
            } else {
                let_through.push(format!("{attack} at {target}: {code:?}"));
            }
        }
    }
    let total = attacks.len() * TARGETS.len();
    ctx.check(
        "every bad access token is refused (UNAUTHENTICATED), everywhere",
        let_through.is_empty(),
        format!(
            "{} attacks x {} places: {refused}/{total} refused{}",
            attacks.len(),
            TARGETS.len(),
            if let_through.is_empty() {
                String::new()
            } else {
                format!("; not refused: {}", let_through.join("; "))
            }
        ),
    );

    // A replayed refresh token: refused, and it ends the whole sign-in.
    let refresh = |token: String| {
        let mut auth = auth.clone();
        async move {
            auth.refresh(RefreshRequest {
                refresh_token: token,
            })
            .await
            .map(|r| r.into_inner().tokens.unwrap_or_default().refresh_token)
            .map_err(|s| s.code())
        }
    };
    let rotated = refresh(account.refresh.clone()).await;
    let replayed = refresh(account.refresh.clone()).await;
    let after = match &rotated {
        Ok(token) => refresh(token.clone()).await,
        Err(code) => Err(*code),
    };
    ctx.check(
        "a replayed refresh token is refused and revokes its sign-in",
        rotated.is_ok()
            && replayed == Err(Code::Unauthenticated)
            && after == Err(Code::Unauthenticated),
        format!(
            "first use: {}; replay: {:?}; the rotated token afterwards: {:?}",
            if rotated.is_ok() { "OK" } else { "refused" },
            replayed.err(),
            after.err()
        ),
    );
    ctx.check_no_panics(&stack);
    drop(stack);
    ctx.clean(storage).await;
}
