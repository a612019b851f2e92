//! `ForgetAddress`: erasing a person's data while still blocking the address.

use tonic::{Request, Response, Status};

use super::convert;
use super::error::{AppError, FieldViolation};
use super::proto as pb;
use super::request::{caller, record_span};
use crate::app::forget::check_justification;
use crate::app::App;
use crate::domain::Note;

/// Validates the request (address; a justification that is given, at most 1,024 characters and
/// does not name the address), forgets the address, and answers its status afterwards.
pub async fn forget_address(
    app: &App,
    request: Request<pb::ForgetAddressRequest>,
) -> Result<Response<pb::ForgetAddressResponse>, Status> {
    let caller = caller(&request);
    let req = request.into_inner();
    let tenant = convert::tenant(&req.tenant).map_err(AppError::from)?;
    record_span(&tenant, 1);
    let address = convert::address("address", &req.address).map_err(AppError::from)?;
    let justification = Note::required(&req.justification)
        .map_err(|e| AppError::from(FieldViolation::new("justification", e)))?;
    check_justification(&address, &req.address, &justification).map_err(AppError::from)?;
    let done = app
        .forget
        .forget(&caller, tenant, address, justification)
        .await?;
    Ok(Response::new(pb::ForgetAddressResponse {
        status: Some(convert::proto_status(done.status, req.address)),
        already_forgotten: done.already_forgotten,
    }))
}
