//! `todo.auth.v1.AuthService` through a real server and a real client, on every back-end.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use todo_common::{
    Database,
    time::now_micros,
    token::{AccessClaims, TOKEN_TYPE},
};
use todo_proto::auth::v1::{
    ChangePasswordRequest, GetCurrentUserRequest, GetJwksRequest, LoginRequest, LoginResponse,
    LogoutRequest, RefreshRequest, SignUpRequest, SignUpResponse, TokenPair, VerifyTokenRequest,
    auth_service_client::AuthServiceClient,
};
use todo_tests::{Backend, Stack, channel, for_each_backend};
use tonic::{Code, Request, Status, transport::Channel};
use tonic_types::StatusExt;

const PASSWORD: &str = "correct horse battery";

async fn client(addr: SocketAddr) -> AuthServiceClient<Channel> {
    AuthServiceClient::new(channel(addr).await)
}

async fn sign_up(client: &mut AuthServiceClient<Channel>, email: &str) -> SignUpResponse {
    client
        .sign_up(SignUpRequest {
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
            display_name: String::new(),
        })
        .await
        .unwrap_or_else(|s| panic!("sign up {email}: {s:?}"))
        .into_inner()
}

async fn login(
    client: &mut AuthServiceClient<Channel>,
    email: &str,
    password: &str,
) -> Result<LoginResponse, Status> {
    client
        .login(LoginRequest {
            email: email.to_owned(),
            password: password.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn with_bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn tokens(pair: Option<TokenPair>) -> TokenPair {
    pair.expect("a token pair")
}

/// The reason in the status's `ErrorInfo`, which every error must carry.
fn reason(status: &Status) -> String {
    let info = status.get_error_details().error_info().cloned();
    let info = info.unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "auth.todo");
    info.reason
}

/// The fields named by the status's `BadRequest`.
fn bad_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(reason(status), "VALIDATION_FAILED");
    let details = status.get_error_details();
    let mut fields: Vec<String> = details
        .bad_request()
        .expect("BadRequest details")
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    fields.sort();
    fields
}

#[tokio::test]
async fn sign_up_returns_the_account_and_tokens_that_work() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let mut auth = client(stack.auth).await;
        let before = now_micros() / 1_000_000;
        let response = auth
            .sign_up(SignUpRequest {
                email: "  Ada.Lovelace@Example.COM ".into(),
                password: PASSWORD.into(),
                display_name: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        // The call may take seconds where hashing gets little CPU: the times are checked
        // against the clock before and after it.
        let after = now_micros() / 1_000_000;
        let user = response.user.unwrap();
        assert_eq!(
            user.email, "ada.lovelace@example.com",
            "trimmed and lower-cased"
        );
        assert_eq!(
            user.display_name, "ada.lovelace",
            "defaults to the local part"
        );
        assert_eq!(user.name, format!("users/{}", user.id));
        assert_eq!(uuid_version(&user.id), 7);
        let created = user.create_time.unwrap().seconds;
        assert!((before..=after).contains(&created), "{created}");

        let pair = tokens(response.tokens);
        assert_eq!(pair.token_type, "Bearer");
        let access_expiry = pair.access_token_expire_time.unwrap().seconds;
        assert!(
            (before + 15 * 60..=after + 15 * 60 + 1).contains(&access_expiry),
            "15 minutes: {access_expiry} for a call from {before} to {after}"
        );
        let refresh_expiry = pair.refresh_token_expire_time.unwrap().seconds;
        assert!(
            (before + 30 * 86_400..=after + 30 * 86_400 + 1).contains(&refresh_expiry),
            "30 days: {refresh_expiry} for a call from {before} to {after}"
        );

        let me = auth
            .get_current_user(with_bearer(GetCurrentUserRequest {}, &pair.access_token))
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        assert_eq!(me, user);

        let verified = auth
            .verify_token(VerifyTokenRequest {
                access_token: pair.access_token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(verified.user_id, user.id);
        assert_eq!(verified.email, user.email);
        assert_eq!(verified.expire_time, pair.access_token_expire_time);

        // The password is stored as an Argon2id PHC string at no less than the OWASP cost.
        let store = open_store(&stack).await;
        let stored = todo_auth_store::UserStore::user_by_id(&store.0, &user.id)
            .await
            .unwrap()
            .unwrap();
        assert!(
            stored
                .password_hash
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            stored.password_hash
        );
        store.1.close().await;
        stack.stop().await;
    })
    .await;
}

fn uuid_version(id: &str) -> u32 {
    // xxxxxxxx-xxxx-Vxxx-…
    id.chars().nth(14).and_then(|c| c.to_digit(16)).unwrap_or(0)
}

mod todo_auth_store {
    pub use auth_service::store::{SqlUserStore, UserStore};
}

/// The auth service's store, opened beside the running service.
async fn open_store(stack: &Stack) -> (todo_auth_store::SqlUserStore, Database) {
    let db = Database::connect(&stack.auth_database(), &auth_service::MIGRATIONS)
        .await
        .unwrap();
    (todo_auth_store::SqlUserStore::new(db.clone()), db)
}

#[tokio::test]
async fn display_names_are_kept_trimmed() {
    let stack = Stack::start(&Backend::Sqlite).await;
    let mut auth = client(stack.auth).await;
    let user = auth
        .sign_up(SignUpRequest {
            email: "grace@example.com".into(),
            password: PASSWORD.into(),
            display_name: "  Grace Hopper 🚢 ".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.display_name, "Grace Hopper 🚢");
    stack.stop().await;
}

#[tokio::test]
async fn every_validation_rule_names_its_field() {
    let stack = Stack::start(&Backend::Sqlite).await;
    let mut auth = client(stack.auth).await;
    let cases: [(&str, &str, String, &[&str]); 10] = [
        ("", PASSWORD, String::new(), &["email"]),
        ("not-an-email", PASSWORD, String::new(), &["email"]),
        (&"a".repeat(250), PASSWORD, String::new(), &["email"]),
        ("ok@example.com", "short", String::new(), &["password"]),
        ("ok@example.com", "password1", String::new(), &["password"]),
        (
            "ok@example.com",
            "Password123",
            String::new(),
            &["password"],
        ),
        (
            "ok@example.com",
            PASSWORD,
            "x".repeat(101),
            &["display_name"],
        ),
        (
            "ok@example.com",
            PASSWORD,
            "bell\u{7}".into(),
            &["display_name"],
        ),
        ("bad", "short", String::new(), &["email", "password"]),
        ("ok@example.com", "        ", String::new(), &["password"]),
    ];
    for (email, password, display_name, fields) in cases {
        let status = auth
            .sign_up(SignUpRequest {
                email: email.into(),
                password: password.into(),
                display_name: display_name.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            bad_fields(&status),
            fields,
            "{email:?} {password:?} {display_name:?}"
        );
    }

    // Too long a password is refused, never truncated or hashed.
    let status = auth
        .sign_up(SignUpRequest {
            email: "ok@example.com".into(),
            password: "x".repeat(1025),
            display_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&status), ["password"]);
    // 64 and more characters are fine, and all of them count.
    let long = format!("{}!", "long passphrase ".repeat(8));
    auth.sign_up(SignUpRequest {
        email: "long@example.com".into(),
        password: long.clone(),
        display_name: String::new(),
    })
    .await
    .unwrap();
    assert!(login(&mut auth, "long@example.com", &long).await.is_ok());
    let truncated = &long[..long.len() - 1];
    assert_eq!(
        login(&mut auth, "long@example.com", truncated)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    // Login, refresh, logout and change-password inputs are checked too.
    assert_eq!(
        bad_fields(&login(&mut auth, "", "").await.unwrap_err()),
        ["email", "password"]
    );
    let status = auth.refresh(RefreshRequest::default()).await.unwrap_err();
    assert_eq!(bad_fields(&status), ["refresh_token"]);
    let status = auth.logout(LogoutRequest::default()).await.unwrap_err();
    assert_eq!(bad_fields(&status), ["refresh_token"]);
    let status = auth
        .verify_token(VerifyTokenRequest::default())
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&status), ["access_token"]);
    stack.stop().await;
}

#[tokio::test]
async fn an_email_taken_in_another_case_is_already_exists() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let mut auth = client(stack.auth).await;
        sign_up(&mut auth, "ada@example.com").await;
        let status = auth
            .sign_up(SignUpRequest {
                email: " ADA@example.com".into(),
                password: "another good passphrase".into(),
                display_name: "Impostor".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(reason(&status), "EMAIL_TAKEN");
        // Login works in any case.
        assert!(login(&mut auth, "Ada@Example.com ", PASSWORD).await.is_ok());
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer_in_the_same_time() {
    let stack = Stack::start(&Backend::Sqlite).await;
    let mut auth = client(stack.auth).await;
    sign_up(&mut auth, "ada@example.com").await;

    // Fewer attempts than the free ones, so that throttling stays out of the picture.
    let mut wrong_times = Vec::new();
    let mut unknown_times = Vec::new();
    let mut answers = Vec::new();
    for round in 0..4 {
        let started = Instant::now();
        let wrong = login(&mut auth, "ada@example.com", "not the password")
            .await
            .unwrap_err();
        wrong_times.push(started.elapsed());
        let started = Instant::now();
        let unknown = login(
            &mut auth,
            &format!("nobody{round}@example.com"),
            "not the password",
        )
        .await
        .unwrap_err();
        unknown_times.push(started.elapsed());
        answers.push((wrong, unknown));
    }
    for (wrong, unknown) in &answers {
        assert_eq!(wrong.code(), Code::Unauthenticated);
        assert_eq!(wrong.code(), unknown.code());
        assert_eq!(wrong.message(), unknown.message());
        assert_eq!(reason(wrong), "INVALID_CREDENTIALS");
        assert_eq!(wrong.details(), unknown.details(), "identical details");
    }
    // The fastest of each: the least disturbed by other tests running beside this one.
    let fastest = |times: &[Duration]| times.iter().min().unwrap().as_secs_f64();
    let (wrong, unknown) = (fastest(&wrong_times), fastest(&unknown_times));
    // Both verify one Argon2id hash; what differs is noise.
    assert!(
        (wrong - unknown).abs() < 0.5 * wrong.max(unknown),
        "wrong password {wrong:.4}s vs unknown email {unknown:.4}s"
    );
    stack.stop().await;
}

/// Signs `claims` with `key` under `kid`, with the given algorithm and type.
fn forge(
    claims: &AccessClaims,
    key: &EncodingKey,
    algorithm: Algorithm,
    kid: &str,
    typ: &str,
) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    header.typ = Some(typ.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn b64(json: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(json.to_string())
}

#[tokio::test]
async fn forged_expired_and_malformed_tokens_are_all_refused() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let mut auth = client(stack.auth).await;
        let account = sign_up(&mut auth, "ada@example.com").await;
        let user_id = account.user.unwrap().id;
        let good = tokens(account.tokens).access_token;

        // The real signing key, read from the service's database: tokens it signs with bad
        // claims must fail on the claims alone.
        let (store, db) = open_store(&stack).await;
        let stored_keys = todo_auth_store::UserStore::signing_keys(&store)
            .await
            .unwrap();
        db.close().await;
        let real = &stored_keys[0];
        let real_key = auth_service::keys::encoding_key(real).unwrap();
        let other = auth_service::keys::generate_key(now_micros()).unwrap();
        let other_key = auth_service::keys::encoding_key(&other).unwrap();

        let now = now_micros() / 1_000_000;
        let valid = AccessClaims {
            iss: "todo-auth".into(),
            aud: "todo".into(),
            sub: user_id.clone(),
            email: "ada@example.com".into(),
            iat: now,
            nbf: now,
            exp: now + 600,
            jti: "forged".into(),
        };
        // Sanity: the forging helper makes accepted tokens when nothing is wrong.
        let control = forge(&valid, &real_key, Algorithm::EdDSA, &real.kid, TOKEN_TYPE);
        auth.verify_token(VerifyTokenRequest {
            access_token: control,
        })
        .await
        .unwrap();

        let (header_b64, payload_b64, signature_b64) = {
            let parts: Vec<&str> = good.split('.').collect();
            (
                parts[0].to_owned(),
                parts[1].to_owned(),
                parts[2].to_owned(),
            )
        };
        let mut tampered_claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&payload_b64).unwrap()).unwrap();
        tampered_claims["sub"] = serde_json::json!("someone-else");
        let tampered = format!("{header_b64}.{}.{signature_b64}", b64(&tampered_claims));

        let none = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": TOKEN_TYPE, "kid": real.kid})),
            payload_b64
        );
        let hs256 = forge(
            &valid,
            &EncodingKey::from_secret(real.public_key.as_bytes()),
            Algorithm::HS256,
            &real.kid,
            TOKEN_TYPE,
        );
        let hs256_raw = forge(
            &valid,
            &EncodingKey::from_secret(&URL_SAFE_NO_PAD.decode(&real.public_key).unwrap()),
            Algorithm::HS256,
            &real.kid,
            TOKEN_TYPE,
        );

        let cases: Vec<(&str, String, &str)> = vec![
            (
                "expired",
                forge(
                    &AccessClaims {
                        iat: now - 7200,
                        nbf: now - 7200,
                        exp: now - 3600,
                        ..valid.clone()
                    },
                    &real_key,
                    Algorithm::EdDSA,
                    &real.kid,
                    TOKEN_TYPE,
                ),
                "TOKEN_EXPIRED",
            ),
            (
                "not yet valid",
                forge(
                    &AccessClaims {
                        nbf: now + 3600,
                        exp: now + 7200,
                        ..valid.clone()
                    },
                    &real_key,
                    Algorithm::EdDSA,
                    &real.kid,
                    TOKEN_TYPE,
                ),
                "TOKEN_INVALID",
            ),
            (
                "wrong audience",
                forge(
                    &AccessClaims {
                        aud: "other-app".into(),
                        ..valid.clone()
                    },
                    &real_key,
                    Algorithm::EdDSA,
                    &real.kid,
                    TOKEN_TYPE,
                ),
                "TOKEN_INVALID",
            ),
            (
                "wrong issuer",
                forge(
                    &AccessClaims {
                        iss: "evil".into(),
                        ..valid.clone()
                    },
                    &real_key,
                    Algorithm::EdDSA,
                    &real.kid,
                    TOKEN_TYPE,
                ),
                "TOKEN_INVALID",
            ),
            (
                "wrong type",
                forge(&valid, &real_key, Algorithm::EdDSA, &real.kid, "JWT"),
                "TOKEN_INVALID",
            ),
            (
                "wrong key, real kid",
                forge(&valid, &other_key, Algorithm::EdDSA, &real.kid, TOKEN_TYPE),
                "TOKEN_INVALID",
            ),
            (
                "unknown kid",
                forge(&valid, &other_key, Algorithm::EdDSA, &other.kid, TOKEN_TYPE),
                "TOKEN_INVALID",
            ),
            ("tampered payload", tampered, "TOKEN_INVALID"),
            ("alg none", none, "TOKEN_INVALID"),
            (
                "HS256 keyed with the public key (text)",
                hs256,
                "TOKEN_INVALID",
            ),
            (
                "HS256 keyed with the public key (bytes)",
                hs256_raw,
                "TOKEN_INVALID",
            ),
            (
                "truncated",
                good[..good.len() - 10].to_owned(),
                "TOKEN_INVALID",
            ),
            ("garbage", "garbage".into(), "TOKEN_INVALID"),
            ("three dots", "a.b.c".into(), "TOKEN_INVALID"),
            ("huge", "a".repeat(10_000), "TOKEN_INVALID"),
        ];
        for (name, token, expected_reason) in cases {
            let status = auth
                .verify_token(VerifyTokenRequest {
                    access_token: token.clone(),
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated, "VerifyToken, {name}");
            assert_eq!(reason(&status), expected_reason, "VerifyToken, {name}");
            let status = auth
                .get_current_user(with_bearer(GetCurrentUserRequest {}, &token))
                .await
                .unwrap_err();
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "GetCurrentUser, {name}"
            );
        }

        // No token at all.
        let status = auth
            .get_current_user(GetCurrentUserRequest {})
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (Code::Unauthenticated, "TOKEN_MISSING")
        );
        // A refresh token is not an access token.
        let refresh = login(&mut auth, "ada@example.com", PASSWORD)
            .await
            .unwrap()
            .tokens
            .unwrap()
            .refresh_token;
        let status = auth
            .get_current_user(with_bearer(GetCurrentUserRequest {}, &refresh))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_its_sign_in() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let mut auth = client(stack.auth).await;
        let first = tokens(sign_up(&mut auth, "ada@example.com").await.tokens);
        let other_session = tokens(
            login(&mut auth, "ada@example.com", PASSWORD)
                .await
                .unwrap()
                .tokens,
        );

        let second = tokens(
            auth.refresh(RefreshRequest {
                refresh_token: first.refresh_token.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .tokens,
        );
        assert_ne!(second.refresh_token, first.refresh_token);
        assert_ne!(second.access_token, first.access_token);
        assert_eq!(
            second.refresh_token_expire_time, first.refresh_token_expire_time,
            "refreshing never extends a sign-in"
        );
        auth.get_current_user(with_bearer(GetCurrentUserRequest {}, &second.access_token))
            .await
            .unwrap();

        // The spent token again: theft is assumed and the whole sign-in ends.
        let status = auth
            .refresh(RefreshRequest {
                refresh_token: first.refresh_token.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (Code::Unauthenticated, "INVALID_REFRESH_TOKEN")
        );
        let status = auth
            .refresh(RefreshRequest {
                refresh_token: second.refresh_token.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "its successor is revoked too"
        );

        // Another sign-in of the same account is unaffected.
        auth.refresh(RefreshRequest {
            refresh_token: other_session.refresh_token,
        })
        .await
        .unwrap();
        let status = auth
            .refresh(RefreshRequest {
                refresh_token: "never-issued".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn logout_ends_the_session_and_can_be_repeated() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let mut auth = client(stack.auth).await;
        let session = tokens(sign_up(&mut auth, "ada@example.com").await.tokens);
        for _ in 0..2 {
            auth.logout(LogoutRequest {
                refresh_token: session.refresh_token.clone(),
            })
            .await
            .unwrap();
        }
        auth.logout(LogoutRequest {
            refresh_token: "never-issued".into(),
        })
        .await
        .unwrap();
        let status = auth
            .refresh(RefreshRequest {
                refresh_token: session.refresh_token,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn changing_the_password_revokes_every_other_session() {
    for_each_backend(|backend| async move {
        let stack = Stack::start(&backend).await;
        let mut auth = client(stack.auth).await;
        let this = tokens(sign_up(&mut auth, "ada@example.com").await.tokens);
        let other = tokens(
            login(&mut auth, "ada@example.com", PASSWORD)
                .await
                .unwrap()
                .tokens,
        );
        let change = |current: &str, new: &str| ChangePasswordRequest {
            current_password: current.into(),
            new_password: new.into(),
        };

        let status = auth
            .change_password(change(PASSWORD, "a brand new passphrase"))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "needs an access token"
        );
        let status = auth
            .change_password(with_bearer(
                change("wrong password", "a brand new passphrase"),
                &this.access_token,
            ))
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (Code::Unauthenticated, "INVALID_CREDENTIALS")
        );
        let status = auth
            .change_password(with_bearer(
                change(PASSWORD, "iloveyou"),
                &this.access_token,
            ))
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&status), ["new_password"]);
        let status = auth
            .change_password(with_bearer(change(PASSWORD, PASSWORD), &this.access_token))
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&status), ["new_password"]);

        let fresh = tokens(
            auth.change_password(with_bearer(
                change(PASSWORD, "a brand new passphrase"),
                &this.access_token,
            ))
            .await
            .unwrap()
            .into_inner()
            .tokens,
        );
        for (name, old) in [
            ("this session's old", &this.refresh_token),
            ("the other session's", &other.refresh_token),
        ] {
            let status = auth
                .refresh(RefreshRequest {
                    refresh_token: old.clone(),
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated, "{name} refresh token");
        }
        auth.refresh(RefreshRequest {
            refresh_token: fresh.refresh_token,
        })
        .await
        .unwrap();
        assert_eq!(
            login(&mut auth, "ada@example.com", PASSWORD)
                .await
                .unwrap_err()
                .code(),
            Code::Unauthenticated
        );
        login(&mut auth, "ada@example.com", "a brand new passphrase")
            .await
            .unwrap();
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn jwks_publishes_the_signing_key_and_rotation_keeps_old_tokens_valid() {
    for_each_backend(|backend| async move {
        let stack = Stack::start_with(&backend, |configs| {
            configs.auth.key_reload_interval = Duration::from_millis(100);
        })
        .await;
        let mut auth = client(stack.auth).await;
        let before = tokens(sign_up(&mut auth, "ada@example.com").await.tokens).access_token;
        let kid_of = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();

        let jwks = auth
            .get_jwks(GetJwksRequest {})
            .await
            .unwrap()
            .into_inner()
            .keys;
        assert_eq!(jwks.len(), 1);
        let key = &jwks[0];
        assert_eq!(key.kid, kid_of(&before));
        assert_eq!(
            (
                key.kty.as_str(),
                key.crv.as_str(),
                key.alg.as_str(),
                key.r#use.as_str()
            ),
            ("OKP", "Ed25519", "EdDSA", "sig")
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(&key.x).unwrap().len(), 32);

        // Rotate as the `rotate-signing-key` command does, and let the service reload.
        let (store, db) = open_store(&stack).await;
        let new_kid = auth_service::keys::rotate(&store).await.unwrap();
        db.close().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let after = loop {
            let token = tokens(
                login(&mut auth, "ada@example.com", PASSWORD)
                    .await
                    .unwrap()
                    .tokens,
            )
            .access_token;
            if kid_of(&token) == new_kid {
                break token;
            }
            assert!(Instant::now() < deadline, "the new key never signed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };

        let jwks = auth
            .get_jwks(GetJwksRequest {})
            .await
            .unwrap()
            .into_inner()
            .keys;
        let kids: Vec<&str> = jwks.iter().map(|k| k.kid.as_str()).collect();
        let old_kid = kid_of(&before);
        assert_eq!(
            kids,
            [new_kid.as_str(), old_kid.as_str()],
            "new key first, old one still published"
        );
        for token in [&before, &after] {
            auth.verify_token(VerifyTokenRequest {
                access_token: token.clone(),
            })
            .await
            .unwrap();
        }
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_restart_logs_nobody_out() {
    for_each_backend(|backend| async move {
        let mut stack = Stack::start(&backend).await;
        let mut auth = client(stack.auth).await;
        let session = tokens(sign_up(&mut auth, "ada@example.com").await.tokens);
        let jwks_before = auth.get_jwks(GetJwksRequest {}).await.unwrap().into_inner();

        stack.restart_auth().await;
        let mut auth = client(stack.auth).await;
        assert_eq!(
            auth.get_jwks(GetJwksRequest {}).await.unwrap().into_inner(),
            jwks_before
        );
        auth.verify_token(VerifyTokenRequest {
            access_token: session.access_token.clone(),
        })
        .await
        .unwrap();
        auth.get_current_user(with_bearer(GetCurrentUserRequest {}, &session.access_token))
            .await
            .unwrap();
        auth.refresh(RefreshRequest {
            refresh_token: session.refresh_token,
        })
        .await
        .unwrap();
        stack.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_login_rehashes_the_password_when_the_cost_settings_change() {
    let mut stack = Stack::start(&Backend::Sqlite).await;
    let mut auth = client(stack.auth).await;
    let user_id = sign_up(&mut auth, "ada@example.com").await.user.unwrap().id;
    let stored_hash = |stack: &Stack| {
        let url = stack.auth_database();
        let user_id = user_id.clone();
        async move {
            let db = Database::connect(&url, &auth_service::MIGRATIONS)
                .await
                .unwrap();
            let store = todo_auth_store::SqlUserStore::new(db.clone());
            let user = todo_auth_store::UserStore::user_by_id(&store, &user_id)
                .await
                .unwrap()
                .unwrap();
            db.close().await;
            user.password_hash
        }
    };
    assert!(stored_hash(&stack).await.contains("m=19456,t=2"));

    stack
        .restart_auth_with(|auth| {
            auth.argon2_memory_kib = 24 * 1024;
            auth.argon2_iterations = 3;
        })
        .await;
    let mut auth = client(stack.auth).await;
    login(&mut auth, "ada@example.com", PASSWORD).await.unwrap();
    assert!(
        stored_hash(&stack).await.contains("m=24576,t=3"),
        "rehashed at the new cost"
    );
    login(&mut auth, "ada@example.com", PASSWORD).await.unwrap();
    stack.stop().await;
}

#[tokio::test]
async fn repeated_failures_are_throttled_and_the_owner_gets_back_in() {
    for_each_backend(|backend| async move {
        let stack = Stack::start_with(&backend, |configs| {
            configs.auth.login_free_attempts = 3;
            configs.auth.login_base_delay = Duration::from_millis(400);
            configs.auth.login_max_delay = Duration::from_millis(800);
        })
        .await;
        let mut auth = client(stack.auth).await;
        sign_up(&mut auth, "ada@example.com").await;

        for email in ["ada@example.com", "nobody@example.com"] {
            for _ in 0..3 {
                let status = login(&mut auth, email, "guess guess guess")
                    .await
                    .unwrap_err();
                assert_eq!(status.code(), Code::Unauthenticated, "{email}");
            }
            // Now even the right password waits: it is not even checked.
            let status = login(&mut auth, email, PASSWORD).await.unwrap_err();
            assert_eq!(status.code(), Code::ResourceExhausted, "{email}");
            assert_eq!(reason(&status), "LOGIN_THROTTLED");
            let retry = status
                .get_error_details()
                .retry_info()
                .unwrap()
                .retry_delay
                .unwrap();
            assert!(
                retry > Duration::ZERO && retry <= Duration::from_millis(400),
                "{retry:?}"
            );
        }

        // The attack goes on: delays double, up to the cap.
        tokio::time::sleep(Duration::from_millis(420)).await;
        assert_eq!(
            login(&mut auth, "ada@example.com", "guess again")
                .await
                .unwrap_err()
                .code(),
            Code::Unauthenticated
        );
        let status = login(&mut auth, "ada@example.com", PASSWORD)
            .await
            .unwrap_err();
        let retry = status
            .get_error_details()
            .retry_info()
            .unwrap()
            .retry_delay
            .unwrap();
        assert!(
            retry > Duration::from_millis(400) && retry <= Duration::from_millis(800),
            "{retry:?}"
        );

        // Once the attack stops, the owner is back in after at most the cap.
        tokio::time::sleep(retry + Duration::from_millis(20)).await;
        login(&mut auth, "ada@example.com", PASSWORD).await.unwrap();
        // Success clears the count.
        assert_eq!(
            login(&mut auth, "ada@example.com", "one more guess")
                .await
                .unwrap_err()
                .code(),
            Code::Unauthenticated
        );
        stack.stop().await;
    })
    .await;
}
