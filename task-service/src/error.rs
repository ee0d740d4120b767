//! The task service's errors and their one mapping to gRPC statuses (AIP-193).

use todo_common::{
    rpc_error::{ErrorStatus, FieldViolation},
    token::TokenError,
};
use tonic::{Code, Status};

use crate::{names::NameError, store::StoreError};

/// `ErrorInfo.domain` of every error of this service.
pub const DOMAIN: &str = "task.todo";

/// Every way a task RPC can fail.
#[derive(Debug)]
pub enum TaskError {
    /// Bad request fields.
    Invalid(Vec<FieldViolation>),
    /// A parent or name under another user.
    PermissionDenied,
    /// The caller has no such task.
    NotFound,
    /// The task changed since the etag given was read.
    EtagMismatch,
    /// No usable access token.
    Token(TokenError),
    /// The auth service's keys have never been fetched: tokens cannot be checked yet.
    KeysUnavailable,
    /// A watcher fell too far behind.
    WatchLagged,
    /// The server is shutting down.
    ShuttingDown,
    /// The database is unreachable.
    Unavailable(String),
    /// A bug; the cause is logged, never sent.
    Internal(String),
}

impl TaskError {
    /// One bad field.
    pub fn invalid(field: &str, description: &str) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }

    /// A name error about `field`.
    pub fn name(field: &str, error: NameError) -> Self {
        match error {
            NameError::Malformed(description) => Self::invalid(field, description),
            NameError::OtherUser => Self::PermissionDenied,
        }
    }
}

impl From<StoreError> for TaskError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(e) => Self::Unavailable(e.to_string()),
            StoreError::Busy(e) => Self::Unavailable(e),
            StoreError::Internal(e) => Self::Internal(e),
        }
    }
}

impl From<TaskError> for Status {
    fn from(error: TaskError) -> Self {
        let status = |code, reason, message: &str| ErrorStatus::new(code, DOMAIN, reason, message);
        match error {
            TaskError::Invalid(violations) => ErrorStatus::invalid_argument(DOMAIN, &violations),
            TaskError::PermissionDenied => status(
                Code::PermissionDenied,
                "PERMISSION_DENIED",
                "you can only use your own tasks (users/me)",
            ),
            TaskError::NotFound => status(Code::NotFound, "TASK_NOT_FOUND", "task not found"),
            TaskError::EtagMismatch => status(
                Code::Aborted,
                "ETAG_MISMATCH",
                "the task has changed since it was read; read it again",
            ),
            TaskError::Token(e) => status(Code::Unauthenticated, e.reason(), e.message()),
            TaskError::KeysUnavailable => status(
                Code::Unavailable,
                "KEYS_UNAVAILABLE",
                "cannot check tokens yet: the auth service has not been reached; try again",
            ),
            TaskError::WatchLagged => status(
                Code::Aborted,
                "WATCH_LAGGED",
                "the stream fell behind; list the tasks again and re-open it",
            ),
            TaskError::ShuttingDown => status(
                Code::Unavailable,
                "SHUTTING_DOWN",
                "the server is shutting down; re-open the stream",
            ),
            TaskError::Unavailable(cause) => ErrorStatus::database_unavailable(DOMAIN, &cause),
            TaskError::Internal(cause) => ErrorStatus::internal(DOMAIN, &cause),
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
                TaskError::invalid("task.title", "is required"),
                Code::InvalidArgument,
            ),
            (TaskError::PermissionDenied, Code::PermissionDenied),
            (TaskError::NotFound, Code::NotFound),
            (TaskError::EtagMismatch, Code::Aborted),
            (TaskError::Token(TokenError::Missing), Code::Unauthenticated),
            (TaskError::KeysUnavailable, Code::Unavailable),
            (TaskError::WatchLagged, Code::Aborted),
            (TaskError::ShuttingDown, Code::Unavailable),
            (
                TaskError::Unavailable("pool timed out".into()),
                Code::Unavailable,
            ),
            (
                TaskError::Internal("no such column: titel".into()),
                Code::Internal,
            ),
        ];
        for (error, code) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code);
            let info = status
                .get_error_details()
                .error_info()
                .cloned()
                .expect("ErrorInfo");
            assert_eq!(info.domain, DOMAIN);
            assert!(!status.message().contains("titel"));
            assert!(!status.message().contains("pool"));
        }
    }
}
