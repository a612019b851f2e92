//! The client side of `ImportSuppressions`, for `suppressd import`: rows of a provider's export
//! sent in batches on one stream, with the caller's token.

use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Request, Status};

use super::convert::proto_timestamp;
use super::proto as pb;
use super::proto::suppression_service_client::SuppressionServiceClient;
use crate::cli::import::ImportRow;

/// Our reason on the wire.
fn proto_reason(reason: crate::domain::BounceReason) -> i32 {
    super::convert::proto_reason(reason) as i32
}

/// Sends `rows` to the server in messages of `batch` items, calling `progress` with the number
/// of rows sent so far after each message; the server's answer, whose verdict indices are
/// positions in `rows`.
pub async fn import_rows(
    client: &mut SuppressionServiceClient<Channel>,
    token: Option<&str>,
    tenant: &str,
    source: &str,
    rows: &[ImportRow],
    batch: usize,
    mut progress: impl FnMut(usize) + Send + 'static,
) -> Result<pb::ImportSuppressionsResponse, Status> {
    let messages: Vec<pb::ImportSuppressionsRequest> = rows
        .chunks(batch.max(1))
        .map(|chunk| pb::ImportSuppressionsRequest {
            tenant: tenant.to_string(),
            items: chunk
                .iter()
                .map(|r| pb::ImportedSuppression {
                    address: r.address.clone(),
                    reason: proto_reason(r.reason),
                    original_reason: r.original_reason.clone(),
                    original_time: Some(proto_timestamp(r.original_time)),
                    source: source.to_string(),
                    list_id: r.list_id.clone(),
                })
                .collect(),
        })
        .collect();
    let mut sent = 0;
    let stream = tokio_stream::iter(messages).map(move |m| {
        sent += m.items.len();
        progress(sent);
        m
    });
    let mut request = Request::new(stream);
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::invalid_argument("the token is not a valid header value"))?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(client.import_suppressions(request).await?.into_inner())
}
