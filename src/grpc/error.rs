//! The one place where use-case errors become gRPC status codes.

use tonic::codegen::http;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub use crate::app::{AppError, FieldViolation};
use crate::store::{ErrorChain, StoreError};

impl From<AppError> for Status {
    fn from(err: AppError) -> Status {
        let status = to_status(err);
        tracing::Span::current().record("outcome", tracing::field::debug(status.code()));
        tracing::debug!(code = ?status.code(), message = status.message(), "call failed");
        status
    }
}

fn to_status(err: AppError) -> Status {
    {
        match err {
            AppError::InvalidArgument(v) => {
                let mut details = ErrorDetails::new();
                details.add_bad_request_violation(v.field.clone(), v.description.clone());
                Status::with_error_details(
                    Code::InvalidArgument,
                    format!("{}: {}", v.field, v.description),
                    details,
                )
            }
            AppError::Unauthenticated(m) => Status::unauthenticated(m),
            AppError::PermissionDenied(m) => Status::permission_denied(m),
            AppError::NotFound(m) => Status::not_found(m),
            AppError::FailedPrecondition(m) => Status::failed_precondition(m),
            AppError::Unavailable(m) => Status::unavailable(m),
            AppError::OutOfRange(m) => Status::out_of_range(m),
            AppError::ResourceExhausted(m) => Status::resource_exhausted(m),
            AppError::Store(StoreError::Closed) => {
                Status::unavailable("the server is shutting down")
            }
            AppError::Store(StoreError::BadCursor) => {
                let v = FieldViolation::new("page_token", "is not a token this server issued");
                AppError::InvalidArgument(v).into()
            }
            AppError::Store(e) if e.is_unavailable() => {
                tracing::warn!(error = %ErrorChain(&e), "the database is unavailable");
                Status::unavailable("the database is unavailable; retry later")
            }
            AppError::Store(e) if e.is_conflict() => {
                tracing::warn!(error = %ErrorChain(&e), "a write kept conflicting with concurrent ones");
                Status::aborted(
                    "the write conflicted with concurrent writes and stored nothing; retry it",
                )
            }
            AppError::Store(e @ StoreError::Unsupported { .. }) => {
                Status::unimplemented(e.to_string())
            }
            AppError::Store(e) => {
                tracing::error!(error = %ErrorChain(&e), "storage error");
                Status::internal("internal storage error")
            }
            AppError::Internal(m) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("disk said no")]
    struct Root;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot write the batch")]
    struct Outer(#[source] Root);

    #[test]
    fn an_error_chain_shows_every_cause() {
        let e = Outer(Root);
        assert_eq!(
            ErrorChain(&e).to_string(),
            "cannot write the batch: disk said no"
        );
    }

    #[test]
    fn a_write_that_kept_conflicting_is_aborted_and_may_be_retried() {
        let conflict = StoreError::Conflict {
            context: "committing a group".into(),
            source: "deadlock detected".into(),
        };
        let status = Status::from(AppError::Store(StoreError::CommitFailed(
            std::sync::Arc::new(conflict),
        )));
        assert_eq!(status.code(), Code::Aborted);
        assert!(status.message().contains("retry"), "{}", status.message());
    }

    #[test]
    fn a_field_violation_is_invalid_argument_naming_the_field() {
        let status = Status::from(AppError::from(FieldViolation::new(
            "result.address",
            "has no @",
        )));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "result.address: has no @");
    }
}
