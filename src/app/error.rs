//! What a use case can fail with. The gRPC layer maps each kind to a status code in one place
//! (`grpc::error`); nothing here knows the wire.

use crate::store::StoreError;

/// A field of a request that is wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field path, e.g. `result.address` or `contacts[3].address`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl ToString) -> Self {
        FieldViolation {
            field: field.into(),
            description: description.to_string(),
        }
    }
}

/// Everything a use case can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The caller sent a bad field.
    #[error("{}: {}", .0.field, .0.description)]
    InvalidArgument(FieldViolation),
    /// The call carries no credentials the server accepts.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this (role), or not for this tenant.
    #[error("{0}")]
    PermissionDenied(String),
    /// The named thing does not exist (or is not in the required state).
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the system is not in a state to perform it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A position the caller gave is outside what the service keeps.
    #[error("{0}")]
    OutOfRange(String),
    /// The request is larger than a configured limit (the message names it).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The server is shutting down or the store is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// Storage failed; the cause chain is logged, not sent.
    #[error("storage failed")]
    Store(#[from] StoreError),
    /// Anything else that is the server's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<FieldViolation> for AppError {
    fn from(v: FieldViolation) -> Self {
        AppError::InvalidArgument(v)
    }
}

/// Runs blocking store work (scans, many point reads) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AppError::Internal(format!("blocking task failed: {e}")))?
}
