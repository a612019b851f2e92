//! The gRPC surface: tonic services, proto <-> domain conversion and error mapping. The only
//! module that knows tonic.

mod classification;
mod convert;
mod correction;
pub mod error;
mod import;
mod monitoring;
mod paging;
mod service;

pub use service::{ApiSettings, Limits, SuppressionApi, ANONYMOUS, CALLER_ID_HEADER};

/// Code generated from `proto/suppression/v1/suppression.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("suppression.v1");

    /// The encoded file descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("suppression_descriptor");
}
