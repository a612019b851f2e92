//! `suppression.v1.SuppressionAdminService`: Reclassify, Backup.

use std::pin::Pin;

use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::convert;
use super::error::AppError;
use super::proto as pb;
use super::proto::suppression_admin_service_server::SuppressionAdminService;
use super::request::record_span;
use crate::app::reclassify::ReclassifyRequest;
use crate::app::App;
use crate::classify::RULES_VERSION;
use crate::policy::reclassify::Effect;

/// The admin service over the use cases. Cheap to clone.
#[derive(Clone)]
pub struct AdminApi {
    app: App,
}

impl AdminApi {
    /// The admin service over `app`.
    pub fn new(app: App) -> Self {
        AdminApi { app }
    }
}

fn proto_effect(e: Effect) -> pb::ReclassifyEffect {
    match e {
        Effect::None => pb::ReclassifyEffect::Unspecified,
        Effect::Lifted => pb::ReclassifyEffect::Lifted,
        Effect::Suppressed => pb::ReclassifyEffect::Suppressed,
        Effect::Repointed => pb::ReclassifyEffect::Repointed,
    }
}

/// The messages of a Backup stream.
pub type BackupStream = Pin<Box<dyn Stream<Item = Result<pb::BackupResponse, Status>> + Send>>;

#[tonic::async_trait]
impl SuppressionAdminService for AdminApi {
    type BackupStream = BackupStream;

    async fn backup(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Result<Response<BackupStream>, Status> {
        let caller = super::request::caller(&request);
        let backup = self.app.backup.start(&caller).await?;
        let mut first = Some((backup.seq, convert::proto_timestamp(backup.created_at)));
        let messages = ReceiverStream::new(backup.chunks).map(move |piece| match piece {
            Ok(data) => {
                let (snapshot_seq, created_at) = match first.take() {
                    Some((seq, at)) => (seq, Some(at)),
                    None => (0, None),
                };
                Ok(pb::BackupResponse {
                    data,
                    snapshot_seq,
                    created_at,
                })
            }
            Err(e) => Err(Status::from(e)),
        });
        Ok(Response::new(Box::pin(messages)))
    }

    async fn reclassify(
        &self,
        request: Request<pb::ReclassifyRequest>,
    ) -> Result<Response<pb::ReclassifyResponse>, Status> {
        let caller = super::request::caller(&request);
        let req = request.into_inner();
        let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
        record_span(&tenant, 0);
        let (start, end) = convert::time_range(req.start_time.as_ref(), req.end_time.as_ref())
            .map_err(AppError::from)?;
        let max_listed = match req.max_listed {
            0 => 100,
            n => n.min(10_000) as usize,
        };
        let report = self
            .app
            .reclassify
            .run(
                &caller,
                tenant,
                ReclassifyRequest {
                    start,
                    end,
                    dry_run: req.dry_run,
                    max_listed,
                },
            )
            .await?;
        Ok(Response::new(pb::ReclassifyResponse {
            dry_run: req.dry_run,
            rules_version: RULES_VERSION,
            examined: report.examined,
            reclassified: report.reclassified,
            suppressions_lifted: report.lifted,
            suppressions_added: report.added,
            suppressions_repointed: report.repointed,
            changes: report
                .changes
                .into_iter()
                .map(|c| pb::ReclassifiedEvent {
                    before: Some(convert::proto_classification(&c.before)),
                    after: Some(convert::proto_classification(&c.after)),
                    effect: proto_effect(c.effect) as i32,
                    event_id: c.event_id,
                    address: c.address,
                })
                .collect(),
        }))
    }
}
