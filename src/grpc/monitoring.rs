//! Bounce-rate monitoring RPCs: GetSourceStats, ListSourceStats, and the messages of
//! WatchSourceHealth.

use super::convert;
use super::error::{AppError, FieldViolation};
use super::paging::{PageTokens, Scope};
use super::proto as pb;
use super::request::record_span;
use crate::app::monitoring::{Monitoring, RankBy, Ranking, Window, WindowChoice};
use crate::app::{Caller, Limits};
use crate::domain::{Dimension, Label};
use crate::monitor::HealthChange;

/// The window of a stats request: an explicit range, or one of the named windows.
fn window_choice(
    window: i32,
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
) -> Result<WindowChoice, FieldViolation> {
    match convert::time_range(start, end)? {
        (Some(start), Some(end)) => Ok(WindowChoice::Between(start, end)),
        (Some(_), None) => Err(FieldViolation::new(
            "end_time",
            "is required with start_time",
        )),
        (None, Some(_)) => Err(FieldViolation::new(
            "start_time",
            "is required with end_time",
        )),
        (None, None) => match pb::StatsWindow::try_from(window) {
            Ok(pb::StatsWindow::Unspecified | pb::StatsWindow::Last24Hours) => {
                Ok(WindowChoice::Last24Hours)
            }
            Ok(pb::StatsWindow::Last7Days) => Ok(WindowChoice::Last7Days),
            Ok(pb::StatsWindow::Last30Days) => Ok(WindowChoice::Last30Days),
            Err(_) => Err(FieldViolation::new(
                "window",
                format!("unknown value {window}"),
            )),
        },
    }
}

fn required_dimension(raw: i32) -> Result<Dimension, FieldViolation> {
    convert::dimension("dimension", raw)?
        .ok_or_else(|| FieldViolation::new("dimension", "is required"))
}

fn resolve(
    monitoring: &Monitoring,
    window: i32,
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
) -> Result<Window, FieldViolation> {
    monitoring.window(window_choice(window, start, end)?)
}

/// GetSourceStats.
pub(super) async fn source_stats(
    monitoring: &Monitoring,
    caller: &Caller,
    req: pb::GetSourceStatsRequest,
) -> Result<pb::GetSourceStatsResponse, AppError> {
    let tenant = convert::tenant(&req.tenant)?;
    record_span(&tenant, 1);
    let dimension = required_dimension(req.dimension)?;
    let value = Label::required(&req.value).map_err(|e| FieldViolation::new("value", e))?;
    let window = resolve(
        monitoring,
        req.window,
        req.start_time.as_ref(),
        req.end_time.as_ref(),
    )?;
    let stats = monitoring
        .stats(caller, tenant, dimension, value.clone(), window)
        .await?;
    Ok(pb::GetSourceStatsResponse {
        dimension: convert::proto_dimension(dimension) as i32,
        value,
        current: Some(convert::proto_window(&stats.current)),
        previous: Some(convert::proto_window(&stats.previous)),
        series: stats
            .current
            .series
            .iter()
            .map(|(start, c)| pb::StatsBucket {
                start_time: Some(convert::proto_timestamp(*start)),
                counts: Some(convert::proto_counts(c)),
            })
            .collect(),
        bucket_seconds: (window.granularity.micros() / 1_000_000) as u32,
        verdict: Some(convert::proto_verdict(&stats.verdict)),
    })
}

/// ListSourceStats.
pub(super) async fn ranked_source_stats(
    monitoring: &Monitoring,
    caller: &Caller,
    tokens: &PageTokens,
    limits: Limits,
    req: pb::ListSourceStatsRequest,
) -> Result<pb::ListSourceStatsResponse, AppError> {
    let tenant = convert::tenant(&req.tenant)?;
    let dimension = required_dimension(req.dimension)?;
    let window = resolve(
        monitoring,
        req.window,
        req.start_time.as_ref(),
        req.end_time.as_ref(),
    )?;
    let rank_by = match pb::StatsMetric::try_from(req.order_by) {
        Ok(pb::StatsMetric::Unspecified | pb::StatsMetric::HardBounceRate) => {
            RankBy::HardBounceRate
        }
        Ok(pb::StatsMetric::ComplaintRate) => RankBy::ComplaintRate,
        Ok(pb::StatsMetric::Sent) => RankBy::Sent,
        Ok(pb::StatsMetric::HardBounces) => RankBy::HardBounces,
        Err(_) => {
            return Err(
                FieldViolation::new("order_by", format!("unknown value {}", req.order_by)).into(),
            )
        }
    };
    let scope = Scope::new("ListSourceStats")
        .with("tenant", &tenant)
        .with("dimension", dimension.name())
        .with("start", window.start.micros())
        .with("end", window.end.micros())
        .with("order_by", format_args!("{rank_by:?}"));
    let offset = match tokens.check(&scope, &req.page_token)? {
        None => 0usize,
        Some(c) => {
            let bytes: [u8; 8] = c
                .as_slice()
                .try_into()
                .map_err(|_| FieldViolation::new("page_token", "is malformed"))?;
            u64::from_be_bytes(bytes) as usize
        }
    };
    let limit = limits.page_size(req.page_size);
    record_span(&tenant, limit);
    let (rows, more) = monitoring
        .ranked(
            caller,
            tenant,
            Ranking {
                dimension,
                window,
                rank_by,
                offset,
                limit,
            },
        )
        .await?;
    let next_page_token = if more {
        tokens.issue(&scope, &((offset + limit) as u64).to_be_bytes())
    } else {
        String::new()
    };
    Ok(pb::ListSourceStatsResponse {
        rows: rows
            .into_iter()
            .map(|r| pb::SourceStatsRow {
                stats: Some(convert::proto_window(&r.counts)),
                verdict: Some(convert::proto_verdict(&r.verdict)),
                value: r.value,
            })
            .collect(),
        next_page_token,
    })
}

/// A verdict change -> a WatchSourceHealth message.
pub(super) fn proto_health_change(change: &HealthChange) -> pb::WatchSourceHealthResponse {
    let s = &change.subject;
    pb::WatchSourceHealthResponse {
        dimension: convert::proto_dimension(s.dimension) as i32,
        value: s.value.clone(),
        previous: convert::proto_health(change.previous) as i32,
        verdict: Some(convert::proto_verdict(&change.verdict)),
        stats: Some(convert::proto_window(&change.window)),
        at: Some(convert::proto_timestamp(change.at)),
    }
}
