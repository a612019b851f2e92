//! suppressd: email suppression lists as a gRPC service.
//!
//! Internal services report every send result; senders ask whether an address may be mailed;
//! CRM sync jobs stream whole contact lists through the import guard so that addresses that
//! hard-bounced, complained or were suppressed never come back.
//!
//! Modules, from the inside out (dependencies point up this list, never down):
//! - [`domain`]: validated types (email addresses, tenants, labels, events, suppressions).
//!   No I/O.
//! - [`classify`]: SMTP response -> outcome type and reason. Pure functions.
//! - [`policy`]: what a classified event does to an address's state; replacement rules;
//!   health verdicts. Pure functions.
//! - [`suggest`]: correction candidates: domain typos, company email patterns. Pure.
//! - [`clock`]: where every rule reads the time (the system's, or one moved by hand in tests).
//! - [`store`]: durable storage behind the [`store::SuppressionStore`] trait; the only module
//!   that knows the storage engines (sled by default, redb with `--engine redb`).
//! - [`fasthash`]: hash containers for keys that are hashes already.
//! - [`monitor`]: bounce-rate windows over the counters, and the health-verdict watcher.
//! - [`app`]: the use cases (report, lookup, import guard, correction, reclassify,
//!   monitoring, operator actions) over domain types; what a handler calls.
//! - [`grpc`]: the tonic services, proto <-> domain conversion, and the one place where errors
//!   become gRPC status codes. The only module that knows tonic.
//! - [`tls`]: the server's reloadable TLS/mTLS acceptor and the client certificate's identity.
//! - [`cli`]: the command line's client commands (`check`, `export`, operator commands), gRPC
//!   clients of a running server, and the provider exports `suppressd import` reads.
//! - [`config`], [`telemetry`], [`startup`]: command line, logging, and the one start-up path
//!   shared by `main` and the tests.

pub mod app;
pub mod auth;
pub mod bounce;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod fasthash;
pub mod grpc;
pub mod monitor;
pub mod policy;
pub mod startup;
pub mod store;
pub mod suggest;
pub mod telemetry;
pub mod tls;
