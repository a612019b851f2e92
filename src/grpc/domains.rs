//! Domain-level suppression and accept-all policies: `SuppressDomain`, `ReactivateDomain`,
//! `SetDomainPolicy`, `GetDomainStatus`, `ListSuppressedDomains`.

use tonic::{Request, Response, Status};

use super::paging::PageTokens;
use super::proto as pb;
use crate::app::App;

pub async fn suppress_domain(
    _app: &App,
    _request: Request<pb::SuppressDomainRequest>,
) -> Result<Response<pb::SuppressDomainResponse>, Status> {
    Err(Status::unimplemented("SuppressDomain is not built yet"))
}

pub async fn reactivate_domain(
    _app: &App,
    _request: Request<pb::ReactivateDomainRequest>,
) -> Result<Response<pb::ReactivateDomainResponse>, Status> {
    Err(Status::unimplemented("ReactivateDomain is not built yet"))
}

pub async fn set_domain_policy(
    _app: &App,
    _request: Request<pb::SetDomainPolicyRequest>,
) -> Result<Response<pb::SetDomainPolicyResponse>, Status> {
    Err(Status::unimplemented("SetDomainPolicy is not built yet"))
}

pub async fn get_domain_status(
    _app: &App,
    _request: Request<pb::GetDomainStatusRequest>,
) -> Result<Response<pb::GetDomainStatusResponse>, Status> {
    Err(Status::unimplemented("GetDomainStatus is not built yet"))
}

pub async fn list_suppressed_domains(
    _app: &App,
    _tokens: &PageTokens,
    _request: Request<pb::ListSuppressedDomainsRequest>,
) -> Result<Response<pb::ListSuppressedDomainsResponse>, Status> {
    Err(Status::unimplemented(
        "ListSuppressedDomains is not built yet",
    ))
}
