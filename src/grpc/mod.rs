//! The gRPC surface: one file per proto service, proto <-> domain conversion, page tokens and
//! the error map. The only module that knows tonic; every rule it applies comes from
//! [`crate::app`].
//!
//! - `suppression_service`: `suppression.v1.SuppressionService`, every RPC.
//! - `admin_service`: `suppression.v1.SuppressionAdminService` (Reclassify).
//! - `import`: the `CheckImport` stream and its verdict formats.
//! - `feed`: the `WatchSuppressions` change feed.
//! - `domains`: domain-level suppression and accept-all policies.
//! - `forget`: `ForgetAddress`.
//! - `bounce_messages`: `ParseBounceMessage` and `ReportBounceMessage`.
//! - `import_suppressions`: `ImportSuppressions`; [`import_client`]: its client side, for
//!   `suppressd import`.
//! - `monitoring`: the stats RPCs' windows, rankings and watch messages.
//! - `convert`: wire <-> domain; validation of wire input, with field-named errors.
//! - `paging`: signed page tokens bound to their request.
//! - `request`: the caller's identity and the call's span fields.
//! - [`error`]: the one place where errors become status codes.

mod admin_service;
pub mod auth;
mod bounce_messages;
mod convert;
mod domains;
pub mod error;
mod feed;
mod forget;
mod import;
pub mod import_client;
mod import_suppressions;
mod monitoring;
mod paging;
mod request;
mod suppression_service;

pub use admin_service::AdminApi;
pub use bounce_messages::bounce_response;
pub use request::{ANONYMOUS, CALLER_ID_HEADER};
pub use suppression_service::SuppressionApi;

/// Code generated from `proto/suppression/v1/suppression.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("suppression.v1");

    /// The encoded file descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("suppression_descriptor");
}
