//! `ForgetAddress`: erasing a person's data while still blocking the address.

use tonic::{Request, Response, Status};

use super::proto as pb;
use crate::app::App;

pub async fn forget_address(
    _app: &App,
    _request: Request<pb::ForgetAddressRequest>,
) -> Result<Response<pb::ForgetAddressResponse>, Status> {
    Err(Status::unimplemented("ForgetAddress is not built yet"))
}
