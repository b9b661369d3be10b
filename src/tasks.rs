//! Task credentials: resolution by priority and materialisation (issue 5).

use async_graphql::{Context, ID};

use crate::domain::{Agent, Provider};
use crate::error::{ApiError, ApiResult};
use crate::graphql::types::{Credential, CredentialFileInput, TaskCredentials};

pub async fn issue(
    _ctx: &Context<'_>,
    _user_id: &ID,
    _agent: Agent,
    _provider: Option<Provider>,
    _task_id: &str,
) -> ApiResult<TaskCredentials> {
    Err(ApiError::Unavailable("task credential issuance is not available on this server yet".into()))
}

pub async fn return_files(
    _ctx: &Context<'_>,
    _task_id: &str,
    _files: Vec<CredentialFileInput>,
) -> ApiResult<Vec<Credential>> {
    Err(ApiError::Unavailable("task credential return is not available on this server yet".into()))
}
