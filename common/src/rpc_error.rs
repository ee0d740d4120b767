//! Error statuses per AIP-193: a canonical code, a message safe to show, and details a client
//! can act on: `google.rpc.ErrorInfo` always, `BadRequest` field violations for invalid
//! arguments, `RetryInfo` when retrying later helps.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.reason` of every validation failure.
pub const VALIDATION_FAILED: &str = "VALIDATION_FAILED";

/// One bad field of a request: its path (`task.title`) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field path, as in the proto (`email`, `task.title`).
    pub field: String,
    /// What is wrong, in words a person can act on.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Builds a [`Status`] with its error details.
#[derive(Debug)]
pub struct ErrorStatus {
    code: Code,
    message: String,
    details: ErrorDetails,
}

impl ErrorStatus {
    /// A status with `code`, a safe `message`, and `ErrorInfo { reason, domain }`.
    pub fn new(code: Code, domain: &str, reason: &str, message: impl Into<String>) -> Self {
        let mut details = ErrorDetails::new();
        details.set_error_info(reason, domain, std::collections::HashMap::new());
        Self {
            code,
            message: message.into(),
            details,
        }
    }

    /// `INVALID_ARGUMENT` (`VALIDATION_FAILED`) listing every bad field.
    pub fn invalid_argument(domain: &str, violations: &[FieldViolation]) -> Self {
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        let message = match violations {
            [only] => format!("invalid {}: {}", only.field, only.description),
            _ => format!("invalid fields: {}", fields.join(", ")),
        };
        let mut status = Self::new(Code::InvalidArgument, domain, VALIDATION_FAILED, message);
        for violation in violations {
            status
                .details
                .add_bad_request_violation(&violation.field, &violation.description);
        }
        status
    }

    /// `UNAVAILABLE` (`DATABASE_UNAVAILABLE`): the database is unreachable; `cause` is logged,
    /// never sent.
    pub fn database_unavailable(domain: &str, cause: &str) -> Self {
        tracing::warn!(domain, cause, "database unavailable");
        Self::new(
            Code::Unavailable,
            domain,
            "DATABASE_UNAVAILABLE",
            "the service is temporarily unavailable; try again",
        )
    }

    /// `INTERNAL`: a bug; `cause` is logged, never sent.
    pub fn internal(domain: &str, cause: &str) -> Self {
        tracing::error!(domain, cause, "internal error");
        Self::new(Code::Internal, domain, "INTERNAL", "internal error")
    }

    /// Adds `RetryInfo`: the client should wait `delay` before trying again.
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.details.set_retry_info(Some(delay));
        self
    }

    /// The finished status.
    pub fn build(self) -> Status {
        Status::with_error_details(self.code, self.message, self.details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_names_every_field_in_the_details() {
        let status = ErrorStatus::invalid_argument(
            "test.todo",
            &[
                FieldViolation::new("email", "must be an email address"),
                FieldViolation::new("password", "must be at least 8 characters"),
            ],
        )
        .build();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("email, password"));
        let details = status.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(info.reason, VALIDATION_FAILED);
        assert_eq!(info.domain, "test.todo");
        let fields: Vec<&str> = details
            .bad_request()
            .unwrap()
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["email", "password"]);
    }

    #[test]
    fn retry_info_travels_with_the_status() {
        let status = ErrorStatus::new(Code::ResourceExhausted, "d", "LOGIN_THROTTLED", "slow down")
            .retry_after(Duration::from_secs(3))
            .build();
        let details = status.get_error_details();
        assert_eq!(
            details.retry_info().unwrap().retry_delay,
            Some(Duration::from_secs(3))
        );
        assert_eq!(details.error_info().unwrap().reason, "LOGIN_THROTTLED");
    }
}
