//! Black-box tests: the real server on 127.0.0.1:0, a fresh data directory per test, and the
//! client generated from the proto.

#[path = "../support/cli.rs"]
mod cli;
mod helpers;
#[path = "../support/test_ca.rs"]
mod test_ca;

mod auth;
mod backup;
mod bounce_messages;
mod classification;
mod correction;
mod domains;
mod expiry;
mod feed;
mod forget;
mod history_and_manual;
mod import;
mod import_suppressions;
mod limits;
mod list_bounces;
mod metrics;
mod migrate_postgres;
mod monitoring;
mod operations;
mod postgres;
mod reporting;
mod status;
mod unsubscribes;
