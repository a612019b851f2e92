//! Domain-level suppression and accept-all policies: `SuppressDomain`, `ReactivateDomain`,
//! `SetDomainPolicy`, `GetDomainStatus`, `ListSuppressedDomains`.

use tonic::{Request, Response, Status};

use super::convert;
use super::error::AppError;
use super::paging::{PageTokens, Scope};
use super::proto as pb;
use super::request::{caller, record_span};
use super::suppression_service::field;
use crate::app::domains::SuppressDomain;
use crate::app::App;
use crate::domain::{BounceReason, Note};

pub async fn suppress_domain(
    app: &App,
    request: Request<pb::SuppressDomainRequest>,
) -> Result<Response<pb::SuppressDomainResponse>, Status> {
    let caller = caller(&request);
    let req = request.into_inner();
    let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
    record_span(&tenant, 1);
    let domain = convert::mail_domain("domain", &req.domain).map_err(AppError::from)?;
    let reason =
        convert::reason("reason", req.reason, BounceReason::Manual).map_err(AppError::from)?;
    let note = field("note", Note::optional(&req.note))?;
    let done = app
        .domains
        .suppress(
            &caller,
            tenant,
            SuppressDomain {
                domain,
                reason,
                note,
                include_subdomains: req.include_subdomains,
            },
        )
        .await?;
    Ok(Response::new(pb::SuppressDomainResponse {
        status: Some(convert::proto_domain_status(done.status)),
        already_suppressed: done.already_suppressed,
    }))
}

pub async fn reactivate_domain(
    app: &App,
    request: Request<pb::ReactivateDomainRequest>,
) -> Result<Response<pb::ReactivateDomainResponse>, Status> {
    let caller = caller(&request);
    let req = request.into_inner();
    let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
    record_span(&tenant, 1);
    let domain = convert::mail_domain("domain", &req.domain).map_err(AppError::from)?;
    let justification = field("justification", Note::required(&req.justification))?;
    let done = app
        .domains
        .reactivate(&caller, tenant, domain, justification)
        .await?;
    Ok(Response::new(pb::ReactivateDomainResponse {
        status: Some(convert::proto_domain_status(done.status)),
        lifted: Some(convert::proto_domain_suppression(done.lifted)),
    }))
}

pub async fn set_domain_policy(
    app: &App,
    request: Request<pb::SetDomainPolicyRequest>,
) -> Result<Response<pb::SetDomainPolicyResponse>, Status> {
    let caller = caller(&request);
    let req = request.into_inner();
    let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
    record_span(&tenant, 1);
    let domain = convert::mail_domain("domain", &req.domain).map_err(AppError::from)?;
    let note = field("note", Note::optional(&req.note))?;
    let status = app
        .domains
        .set_policy(&caller, tenant, domain, req.accept_all, note)
        .await?;
    Ok(Response::new(pb::SetDomainPolicyResponse {
        status: Some(convert::proto_domain_status(status)),
    }))
}

pub async fn get_domain_status(
    app: &App,
    request: Request<pb::GetDomainStatusRequest>,
) -> Result<Response<pb::GetDomainStatusResponse>, Status> {
    let caller = caller(&request);
    let req = request.into_inner();
    let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
    record_span(&tenant, 1);
    let domain = convert::mail_domain("domain", &req.domain).map_err(AppError::from)?;
    let (status, history) = app.domains.status(&caller, tenant, domain).await?;
    Ok(Response::new(pb::GetDomainStatusResponse {
        status: Some(convert::proto_domain_status(status)),
        history: history
            .iter()
            .map(|c| pb::DomainHistoryEntry {
                at: Some(convert::proto_timestamp(c.at)),
                change: Some(convert::proto_change(c)),
            })
            .collect(),
    }))
}

pub async fn list_suppressed_domains(
    app: &App,
    tokens: &PageTokens,
    request: Request<pb::ListSuppressedDomainsRequest>,
) -> Result<Response<pb::ListSuppressedDomainsResponse>, Status> {
    let caller = caller(&request);
    let req = request.into_inner();
    let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
    let scope = Scope::new("ListSuppressedDomains").with("tenant", &tenant);
    let cursor = tokens
        .check(&scope, &req.page_token)
        .map_err(AppError::from)?;
    let limit = app.limits.page_size(req.page_size);
    record_span(&tenant, limit);
    let page = app
        .domains
        .suppressed(&caller, tenant, cursor, limit)
        .await?;
    Ok(Response::new(pb::ListSuppressedDomainsResponse {
        domains: page
            .items
            .into_iter()
            .map(convert::proto_domain_status)
            .collect(),
        next_page_token: page
            .next
            .map(|c| tokens.issue(&scope, &c))
            .unwrap_or_default(),
    }))
}
