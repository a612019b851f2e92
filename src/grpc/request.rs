//! What every handler reads off a call besides its message: who is calling, and the fields of
//! the call's tracing span.

use tonic::Request;

use crate::app::Caller;
use crate::domain::{Label, Tenant};

/// Metadata key naming the caller, recorded as the actor of operator actions.
pub const CALLER_ID_HEADER: &str = "x-caller-id";
/// Actor recorded when a call names no caller.
pub const ANONYMOUS: &str = "anonymous";

/// Who is calling: the caller the authentication layer found, or (without it) a trusted
/// caller named by the `x-caller-id` header, else `anonymous`.
pub(super) fn caller<T>(request: &Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(|| {
            Caller::trusted(
                named_caller(request.metadata()).unwrap_or_else(|| ANONYMOUS.to_string()),
            )
        })
}

/// The caller named by the `x-caller-id` header, when it is a valid label.
pub(super) fn named_caller(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    metadata
        .get(CALLER_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Label::required(v).ok())
}

/// Records the tenant and item count on the call's span.
pub(super) fn record_span(tenant: &Tenant, items: usize) {
    let span = tracing::Span::current();
    span.record("tenant", tenant.as_str());
    span.record("items", items);
}
