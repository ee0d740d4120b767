//! The auth service's errors and their one mapping to gRPC statuses (AIP-193).

use std::time::Duration;

use todo_common::{
    rpc_error::{ErrorStatus, FieldViolation},
    token::TokenError,
};
use tonic::{Code, Status};

use crate::{keys::KeyError, password::HashError, store::StoreError};

/// `ErrorInfo.domain` of every error of this service.
pub const DOMAIN: &str = "auth.todo";

/// How soon to retry when the password hasher is saturated.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// Every way an auth RPC can fail.
#[derive(Debug)]
pub enum AuthError {
    /// Bad request fields.
    Invalid(Vec<FieldViolation>),
    /// The email has an account.
    EmailTaken,
    /// Unknown email or wrong password: the same answer for both.
    InvalidCredentials,
    /// Too many failed logins: wait this long.
    Throttled(Duration),
    /// No usable access token.
    Token(TokenError),
    /// A valid token whose account no longer exists.
    UserGone,
    /// Unknown, expired, revoked or reused refresh token.
    InvalidRefreshToken,
    /// The password hasher is saturated.
    Busy,
    /// The database is unreachable.
    Unavailable(String),
    /// A bug; the cause is logged, never sent.
    Internal(String),
}

impl From<StoreError> for AuthError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::EmailTaken => Self::EmailTaken,
            StoreError::Unavailable(e) => Self::Unavailable(e.to_string()),
            StoreError::Internal(e) => Self::Internal(e.to_string()),
        }
    }
}

impl From<HashError> for AuthError {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy => Self::Busy,
            HashError::Failed => Self::Internal("password hashing failed".to_owned()),
        }
    }
}

impl From<KeyError> for AuthError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Store(e) => e.into(),
            KeyError::Corrupt(e) => Self::Internal(e),
        }
    }
}

impl From<TokenError> for AuthError {
    fn from(error: TokenError) -> Self {
        Self::Token(error)
    }
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        let status = |code, reason, message: &str| ErrorStatus::new(code, DOMAIN, reason, message);
        match error {
            AuthError::Invalid(violations) => ErrorStatus::invalid_argument(DOMAIN, &violations),
            AuthError::EmailTaken => status(
                Code::AlreadyExists,
                "EMAIL_TAKEN",
                "an account with this email already exists",
            ),
            AuthError::InvalidCredentials => status(
                Code::Unauthenticated,
                "INVALID_CREDENTIALS",
                "invalid email or password",
            ),
            AuthError::Throttled(wait) => status(
                Code::ResourceExhausted,
                "LOGIN_THROTTLED",
                "too many failed attempts; try again later",
            )
            .retry_after(wait),
            AuthError::Token(e) => status(Code::Unauthenticated, e.reason(), e.message()),
            AuthError::UserGone => status(
                Code::Unauthenticated,
                "USER_NOT_FOUND",
                "the account of this token no longer exists",
            ),
            AuthError::InvalidRefreshToken => status(
                Code::Unauthenticated,
                "INVALID_REFRESH_TOKEN",
                "invalid refresh token; sign in again",
            ),
            AuthError::Busy => status(
                Code::ResourceExhausted,
                "SERVER_BUSY",
                "the server is busy; try again shortly",
            )
            .retry_after(BUSY_RETRY),
            AuthError::Unavailable(cause) => ErrorStatus::database_unavailable(DOMAIN, &cause),
            AuthError::Internal(cause) => ErrorStatus::internal(DOMAIN, &cause),
        }
        .build()
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    #[test]
    fn every_error_carries_error_info_and_no_internal_detail() {
        let cases = [
            (
                AuthError::Invalid(vec![FieldViolation::new("email", "is required")]),
                Code::InvalidArgument,
            ),
            (AuthError::EmailTaken, Code::AlreadyExists),
            (AuthError::InvalidCredentials, Code::Unauthenticated),
            (
                AuthError::Throttled(Duration::from_secs(2)),
                Code::ResourceExhausted,
            ),
            (AuthError::Token(TokenError::Expired), Code::Unauthenticated),
            (AuthError::UserGone, Code::Unauthenticated),
            (AuthError::InvalidRefreshToken, Code::Unauthenticated),
            (AuthError::Busy, Code::ResourceExhausted),
            (
                AuthError::Unavailable("connection refused (os error 111)".into()),
                Code::Unavailable,
            ),
            (
                AuthError::Internal("syntax error at or near SELEC".into()),
                Code::Internal,
            ),
        ];
        for (error, code) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code);
            let details = status.get_error_details();
            let info = details.error_info().expect("ErrorInfo");
            assert_eq!(info.domain, DOMAIN);
            assert!(!info.reason.is_empty());
            assert!(
                !status.message().contains("os error"),
                "{}",
                status.message()
            );
            assert!(!status.message().contains("SELEC"), "{}", status.message());
        }
    }

    #[test]
    fn throttling_says_when_to_retry() {
        let status = Status::from(AuthError::Throttled(Duration::from_secs(8)));
        let retry = status.get_error_details().retry_info().unwrap().retry_delay;
        assert_eq!(retry, Some(Duration::from_secs(8)));
    }
}
