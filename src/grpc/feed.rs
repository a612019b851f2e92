//! `WatchSuppressions`: the change feed of a tenant's suppression list.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::proto as pb;
use crate::app::App;

/// The stream of changes sent to one follower.
pub type ChangeStream = Pin<Box<dyn Stream<Item = Result<pb::SuppressionChange, Status>> + Send>>;

/// Streams the tenant's changes after the request's cursor, then as they are committed.
pub async fn watch_suppressions(
    _app: &App,
    _request: Request<pb::WatchSuppressionsRequest>,
) -> Result<Response<ChangeStream>, Status> {
    Err(Status::unimplemented("WatchSuppressions is not built yet"))
}
