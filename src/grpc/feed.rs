//! `WatchSuppressions`: the change feed of a tenant's suppression list, and the cursors that
//! name positions in it (also handed out by ListSuppressions as its `feed_cursor`).

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::convert;
use super::error::{AppError, FieldViolation};
use super::proto as pb;
use super::request::{caller, record_span};
use crate::app::feed::FeedPosition;
use crate::app::App;
use crate::domain::ChangeKind;

/// The stream of changes sent to one follower.
pub type ChangeStream = Pin<Box<dyn Stream<Item = Result<pb::SuppressionChange, Status>> + Send>>;

/// Version tag in front of a cursor's position.
const CURSOR_TAG: &str = "c1.";

/// The cursor of a feed position, as clients see it.
pub fn cursor(position: FeedPosition) -> String {
    format!("{CURSOR_TAG}{:016x}", position.0)
}

/// The position a client's cursor names.
fn position(field: &str, cursor: &str) -> Result<FeedPosition, FieldViolation> {
    cursor
        .strip_prefix(CURSOR_TAG)
        .filter(|hex| hex.len() == 16)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .map(FeedPosition)
        .ok_or_else(|| {
            FieldViolation::new(
                field,
                "is not a cursor of this server (give a SuppressionChange.cursor or a \
                 ListSuppressions feed_cursor, or leave it empty)",
            )
        })
}

/// Streams the tenant's changes after the request's cursor, then as they are committed.
pub async fn watch_suppressions(
    app: &App,
    request: Request<pb::WatchSuppressionsRequest>,
) -> Result<Response<ChangeStream>, Status> {
    let caller = caller(&request);
    let req = request.into_inner();
    let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
    record_span(&tenant, 0);
    let kinds = req
        .kinds
        .iter()
        .enumerate()
        .map(|(i, &k)| convert::change_kind(&format!("kinds[{i}]"), k))
        .collect::<Result<Vec<ChangeKind>, _>>()
        .map_err(AppError::from)?;
    let feed = app.feed.clone();
    let mut after = match req.after_cursor.as_str() {
        "" => feed.head(),
        given => position("after_cursor", given).map_err(AppError::from)?,
    };
    // The first read answers the call itself: a bad tenant or a cursor past retention fails
    // the call instead of the stream's first message.
    let first = feed.read(&caller, &tenant, after, &kinds).await?;
    let (tx, rx) = mpsc::channel(256);
    let mut head = feed.follow();
    tokio::spawn(
        async move {
            let mut page = Some(first);
            loop {
                let current = match page.take() {
                    Some(p) => p,
                    None => match feed.read(&caller, &tenant, after, &kinds).await {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = tx.send(Err(e.into())).await;
                            return;
                        }
                    },
                };
                for change in current.changes {
                    let message = convert::proto_list_change(change, cursor);
                    if tx.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
                after = current.position;
                if current.more {
                    continue;
                }
                // Caught up: wait until a commit moves the head past what was read.
                loop {
                    if *head.borrow_and_update() > after.0 {
                        break;
                    }
                    tokio::select! {
                        moved = head.changed() => if moved.is_err() { return },
                        _ = tx.closed() => return,
                    }
                }
            }
        }
        .in_current_span(),
    );
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}
