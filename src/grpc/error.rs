//! The one place where service errors become gRPC status codes.

use tonic::codegen::http;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

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

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The client sent a bad field.
    #[error("{}: {}", .0.field, .0.description)]
    InvalidArgument(FieldViolation),
    /// The named thing does not exist (or is not in the required state).
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the system is not in a state to perform it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The server is shutting down or the store is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// Storage failed; details are logged, not sent.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else that is the server's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<FieldViolation> for ServiceError {
    fn from(v: FieldViolation) -> Self {
        ServiceError::InvalidArgument(v)
    }
}

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Status {
        let status = to_status(err);
        tracing::Span::current().record("outcome", tracing::field::debug(status.code()));
        tracing::debug!(code = ?status.code(), message = status.message(), "call failed");
        status
    }
}

fn to_status(err: ServiceError) -> Status {
    {
        match err {
            ServiceError::InvalidArgument(v) => {
                let mut details = ErrorDetails::new();
                details.add_bad_request_violation(v.field.clone(), v.description.clone());
                Status::with_error_details(
                    Code::InvalidArgument,
                    format!("{}: {}", v.field, v.description),
                    details,
                )
            }
            ServiceError::NotFound(m) => Status::not_found(m),
            ServiceError::FailedPrecondition(m) => Status::failed_precondition(m),
            ServiceError::Unavailable(m) => Status::unavailable(m),
            ServiceError::Store(StoreError::Closed) => {
                Status::unavailable("the server is shutting down")
            }
            ServiceError::Store(StoreError::BadCursor) => {
                let v = FieldViolation::new("page_token", "is not a token this server issued");
                ServiceError::InvalidArgument(v).into()
            }
            ServiceError::Store(e) => {
                tracing::error!(error = %e, "storage error");
                Status::internal("internal storage error")
            }
            ServiceError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// gRPC says an over-size message is RESOURCE_EXHAUSTED; the transport reports it as
/// OUT_OF_RANGE. Applied to statuses read from request streams.
pub fn inbound_error(status: Status) -> Status {
    if status.code() == Code::OutOfRange && status.message().contains("message length too large") {
        Status::resource_exhausted(status.message().to_string())
    } else {
        status
    }
}

/// The same for unary calls, whose decoding fails before a handler runs: rewrites the
/// trailers-only response.
pub fn oversize_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"11");
    let too_large = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| m.contains("too%20large") || m.contains("too large"));
    if out_of_range && too_large {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    response
}
