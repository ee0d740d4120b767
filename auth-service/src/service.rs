//! The gRPC implementation of `todo.auth.v1.AuthService`.
//!
//! Each handler destructures its request, validates it into checked values, calls the store
//! and the hasher, and converts the result with the named functions at the bottom. Errors are
//! [`AuthError`]s, mapped to statuses in one place (`error.rs`).

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use todo_common::{
    rpc_error::FieldViolation,
    time::{Micros, micros, now_micros, to_timestamp},
    token::{AccessClaims, Identity, bearer_token},
};
use todo_proto::auth::v1::{
    ChangePasswordRequest, ChangePasswordResponse, GetCurrentUserRequest, GetCurrentUserResponse,
    GetJwksRequest, GetJwksResponse, Jwk, LoginRequest, LoginResponse, LogoutRequest,
    LogoutResponse, RefreshRequest, RefreshResponse, SignUpRequest, SignUpResponse, TokenPair,
    User, VerifyTokenRequest, VerifyTokenResponse, auth_service_server::AuthService,
};
use tonic::{Request, Response, Status};

use crate::{
    error::AuthError,
    keys::Keys,
    password::{MAX_PASSWORD_BYTES, PasswordHasher, password_problem},
    store::{RefreshTokenRecord, Rotation, UserRecord, UserStore},
    throttle::ThrottlePolicy,
    validate::{
        MAX_EMAIL_CHARS, display_name_or_default, display_name_problem, email_problem,
        normalize_email,
    },
};

/// Longest refresh token accepted; ours are 43 characters.
const MAX_REFRESH_TOKEN_CHARS: usize = 128;

/// Lifetimes of the credentials the service issues.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    /// Access tokens.
    pub access_token: Duration,
    /// Sign-ins (refresh-token families).
    pub refresh_token: Duration,
}

/// The service: shared by every call.
#[derive(Debug)]
pub struct AuthApi<S> {
    store: Arc<S>,
    keys: Arc<Keys<S>>,
    hasher: PasswordHasher,
    throttle: ThrottlePolicy,
    lifetimes: Lifetimes,
    issuer: String,
    audience: String,
}

impl<S: UserStore> AuthApi<S> {
    /// Assembles the service.
    pub fn new(
        store: Arc<S>,
        keys: Arc<Keys<S>>,
        hasher: PasswordHasher,
        throttle: ThrottlePolicy,
        lifetimes: Lifetimes,
        issuer: String,
        audience: String,
    ) -> Self {
        Self {
            store,
            keys,
            hasher,
            throttle,
            lifetimes,
            issuer,
            audience,
        }
    }

    /// A new access token and a new sign-in (refresh-token family) for `user`.
    async fn sign_in(&self, user: &UserRecord, now: Micros) -> Result<TokenPair, AuthError> {
        let (refresh_token, token_hash) = new_refresh_token()?;
        let record = RefreshTokenRecord {
            token_hash,
            family_id: uuid::Uuid::now_v7().to_string(),
            user_id: user.id.clone(),
            create_time: now,
            expire_time: now.saturating_add(micros(self.lifetimes.refresh_token)),
        };
        self.store.insert_refresh_token(&record).await?;
        self.token_pair(user, refresh_token, record.expire_time, now)
    }

    /// Signs an access token for `user` and pairs it with `refresh_token`.
    fn token_pair(
        &self,
        user: &UserRecord,
        refresh_token: String,
        refresh_expire_time: Micros,
        now: Micros,
    ) -> Result<TokenPair, AuthError> {
        let issued = now.div_euclid(1_000_000);
        let ttl = i64::try_from(self.lifetimes.access_token.as_secs()).unwrap_or(i64::MAX);
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.id.clone(),
            email: user.email.clone(),
            iat: issued,
            nbf: issued,
            exp: issued.saturating_add(ttl),
            jti: uuid::Uuid::now_v7().to_string(),
        };
        let access_token = self.keys.sign(&claims)?;
        Ok(TokenPair {
            access_token,
            access_token_expire_time: Some(to_timestamp(claims.exp.saturating_mul(1_000_000))),
            refresh_token,
            refresh_token_expire_time: Some(to_timestamp(refresh_expire_time)),
            token_type: "Bearer".to_owned(),
        })
    }

    /// The identity proven by the request's bearer token.
    async fn caller<T>(&self, request: &Request<T>) -> Result<Identity, AuthError> {
        let token = bearer_token(request.metadata())?;
        Ok(self.keys.verify(token).await?)
    }

    /// Refuses the attempt while the account is throttled.
    async fn check_throttle(&self, email: &str, now: Micros) -> Result<(), AuthError> {
        let failures = self.store.login_failures(email).await?;
        match self.throttle.wait(failures, now) {
            Some(wait) => Err(AuthError::Throttled(wait)),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt on `email`.
    async fn record_failure(&self, email: &str, now: Micros) -> Result<(), AuthError> {
        let failures = self
            .store
            .record_login_failure(email, now, self.throttle.forget_before(now))
            .await?;
        if i64::from(self.throttle.free_failures) <= failures.failures {
            tracing::info!(
                failures = failures.failures,
                "login throttled for an account"
            );
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl<S: UserStore> AuthService for AuthApi<S> {
    async fn sign_up(
        &self,
        request: Request<SignUpRequest>,
    ) -> Result<Response<SignUpResponse>, Status> {
        let SignUpRequest {
            email,
            password,
            display_name,
        } = request.into_inner();
        let email = normalize_email(&email);
        let display_name = display_name_or_default(&display_name, &email);
        let mut violations = Vec::new();
        if let Some(problem) = email_problem(&email) {
            violations.push(FieldViolation::new("email", problem));
        }
        if let Some(problem) = password_problem(&password) {
            violations.push(FieldViolation::new("password", problem));
        }
        if email_problem(&email).is_none()
            && let Some(problem) = display_name_problem(&display_name)
        {
            violations.push(FieldViolation::new("display_name", problem));
        }
        if !violations.is_empty() {
            return Err(AuthError::Invalid(violations).into());
        }

        let password_hash = self.hasher.hash(password).await.map_err(AuthError::from)?;
        let now = now_micros();
        let user = UserRecord {
            id: uuid::Uuid::now_v7().to_string(),
            email,
            display_name,
            password_hash,
            create_time: now,
            update_time: now,
        };
        self.store
            .create_user(&user)
            .await
            .map_err(AuthError::from)?;
        let tokens = self.sign_in(&user, now).await?;
        tracing::info!(user_id = user.id, "account created");
        Ok(Response::new(SignUpResponse {
            user: Some(user_to_proto(&user)),
            tokens: Some(tokens),
        }))
    }

    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let LoginRequest { email, password } = request.into_inner();
        let email = normalize_email(&email);
        let mut violations = Vec::new();
        if email.is_empty() || email.chars().count() > MAX_EMAIL_CHARS {
            violations.push(FieldViolation::new(
                "email",
                "is required (at most 254 characters)",
            ));
        }
        if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
            violations.push(FieldViolation::new(
                "password",
                "is required (at most 1024 bytes)",
            ));
        }
        if !violations.is_empty() {
            return Err(AuthError::Invalid(violations).into());
        }

        let now = now_micros();
        self.check_throttle(&email, now).await?;
        let user = self
            .store
            .user_by_email(&email)
            .await
            .map_err(AuthError::from)?;
        // An unknown email is checked against a dummy hash: same work, same answer.
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let verified = self
            .hasher
            .verify(password.clone(), stored)
            .await
            .map_err(AuthError::from)?;
        let Some(user) = user.filter(|_| verified.matches) else {
            self.record_failure(&email, now).await?;
            return Err(AuthError::InvalidCredentials.into());
        };

        self.store
            .clear_login_failures(&email)
            .await
            .map_err(AuthError::from)?;
        if verified.needs_rehash {
            // Best effort: the login succeeds even if the new hash cannot be stored now.
            match self.hasher.hash(password).await {
                Ok(hash) => {
                    if let Err(error) = self.store.update_password_hash(&user.id, &hash, now).await
                    {
                        tracing::warn!(%error, "cannot store a rehashed password");
                    }
                }
                Err(error) => tracing::warn!(?error, "cannot rehash a password"),
            }
        }
        let tokens = self.sign_in(&user, now).await?;
        Ok(Response::new(LoginResponse {
            user: Some(user_to_proto(&user)),
            tokens: Some(tokens),
        }))
    }

    async fn refresh(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<RefreshResponse>, Status> {
        let RefreshRequest { refresh_token } = request.into_inner();
        let old_hash = checked_refresh_token(&refresh_token)?;
        let (new_token, new_hash) = new_refresh_token()?;
        let now = now_micros();
        let (rotation, record) = self
            .store
            .rotate_refresh_token(&old_hash, &new_hash, now)
            .await
            .map_err(AuthError::from)?;
        let (user_id, record) = match (rotation, record) {
            (Rotation::Rotated { user_id }, Some(record)) => (user_id, record),
            (Rotation::Reused, _) => {
                tracing::warn!("refresh token reused: its whole sign-in is revoked");
                return Err(AuthError::InvalidRefreshToken.into());
            }
            _ => return Err(AuthError::InvalidRefreshToken.into()),
        };
        let user = self
            .store
            .user_by_id(&user_id)
            .await
            .map_err(AuthError::from)?
            .ok_or(AuthError::InvalidRefreshToken)?;
        let tokens = self.token_pair(&user, new_token, record.expire_time, now)?;
        Ok(Response::new(RefreshResponse {
            tokens: Some(tokens),
        }))
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        let LogoutRequest { refresh_token } = request.into_inner();
        let hash = checked_refresh_token(&refresh_token)?;
        self.store
            .revoke_family(&hash, now_micros())
            .await
            .map_err(AuthError::from)?;
        Ok(Response::new(LogoutResponse {}))
    }

    async fn get_current_user(
        &self,
        request: Request<GetCurrentUserRequest>,
    ) -> Result<Response<GetCurrentUserResponse>, Status> {
        let identity = self.caller(&request).await?;
        let GetCurrentUserRequest {} = request.into_inner();
        let user = self
            .store
            .user_by_id(&identity.user_id)
            .await
            .map_err(AuthError::from)?
            .ok_or(AuthError::UserGone)?;
        Ok(Response::new(GetCurrentUserResponse {
            user: Some(user_to_proto(&user)),
        }))
    }

    async fn change_password(
        &self,
        request: Request<ChangePasswordRequest>,
    ) -> Result<Response<ChangePasswordResponse>, Status> {
        let identity = self.caller(&request).await?;
        let ChangePasswordRequest {
            current_password,
            new_password,
        } = request.into_inner();
        let mut violations = Vec::new();
        if current_password.is_empty() || current_password.len() > MAX_PASSWORD_BYTES {
            violations.push(FieldViolation::new(
                "current_password",
                "is required (at most 1024 bytes)",
            ));
        }
        if let Some(problem) = password_problem(&new_password) {
            violations.push(FieldViolation::new("new_password", problem));
        } else if new_password == current_password {
            violations.push(FieldViolation::new(
                "new_password",
                "must differ from the current password",
            ));
        }
        if !violations.is_empty() {
            return Err(AuthError::Invalid(violations).into());
        }

        let user = self
            .store
            .user_by_id(&identity.user_id)
            .await
            .map_err(AuthError::from)?
            .ok_or(AuthError::UserGone)?;
        let now = now_micros();
        // Guessing the current password with a stolen access token is throttled like logins.
        self.check_throttle(&user.email, now).await?;
        let verified = self
            .hasher
            .verify(current_password, Some(user.password_hash.clone()))
            .await
            .map_err(AuthError::from)?;
        if !verified.matches {
            self.record_failure(&user.email, now).await?;
            return Err(AuthError::InvalidCredentials.into());
        }
        let hash = self
            .hasher
            .hash(new_password)
            .await
            .map_err(AuthError::from)?;
        if !self
            .store
            .change_password(&user.id, &hash, now)
            .await
            .map_err(AuthError::from)?
        {
            return Err(AuthError::UserGone.into());
        }
        let tokens = self.sign_in(&user, now).await?;
        tracing::info!(
            user_id = user.id,
            "password changed; other sessions revoked"
        );
        Ok(Response::new(ChangePasswordResponse {
            tokens: Some(tokens),
        }))
    }

    async fn verify_token(
        &self,
        request: Request<VerifyTokenRequest>,
    ) -> Result<Response<VerifyTokenResponse>, Status> {
        let VerifyTokenRequest { access_token } = request.into_inner();
        if access_token.is_empty() {
            return Err(AuthError::Invalid(vec![FieldViolation::new(
                "access_token",
                "is required",
            )])
            .into());
        }
        let identity = self
            .keys
            .verify(&access_token)
            .await
            .map_err(AuthError::from)?;
        Ok(Response::new(VerifyTokenResponse {
            user_id: identity.user_id,
            email: identity.email,
            expire_time: Some(to_timestamp(identity.expire_time.saturating_mul(1_000_000))),
        }))
    }

    async fn get_jwks(
        &self,
        request: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        let GetJwksRequest {} = request.into_inner();
        let keys = self
            .keys
            .published()
            .into_iter()
            .map(|key| Jwk {
                kid: key.kid,
                kty: "OKP".to_owned(),
                crv: "Ed25519".to_owned(),
                x: key.x,
                alg: "EdDSA".to_owned(),
                r#use: "sig".to_owned(),
            })
            .collect();
        Ok(Response::new(GetJwksResponse { keys }))
    }
}

/// A new refresh token (256 random bits, base64url) and the hash that is stored.
fn new_refresh_token() -> Result<(String, String), AuthError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| AuthError::Internal(format!("no randomness: {e}")))?;
    let token = URL_SAFE_NO_PAD.encode(secret);
    let hash = hash_refresh_token(&token);
    Ok((token, hash))
}

/// The stored form of a refresh token: hex SHA-256. The token has 256 random bits, so a plain
/// hash cannot be reversed by guessing.
fn hash_refresh_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Checks a presented refresh token's shape and returns its hash.
fn checked_refresh_token(token: &str) -> Result<String, AuthError> {
    if token.is_empty() {
        return Err(AuthError::Invalid(vec![FieldViolation::new(
            "refresh_token",
            "is required",
        )]));
    }
    if token.len() > MAX_REFRESH_TOKEN_CHARS {
        return Err(AuthError::InvalidRefreshToken);
    }
    Ok(hash_refresh_token(token))
}

fn user_to_proto(user: &UserRecord) -> User {
    User {
        name: format!("users/{}", user.id),
        id: user.id.clone(),
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        create_time: Some(to_timestamp(user.create_time)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_random_and_stored_only_hashed() {
        let (a, hash_a) = new_refresh_token().unwrap();
        let (b, _) = new_refresh_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43, "256 bits in base64url");
        assert_eq!(hash_a.len(), 64);
        assert!(!hash_a.contains(&a));
        assert_eq!(checked_refresh_token(&a).unwrap(), hash_a);
    }
}
