//! OAuth sign-in flows (device code, authorization code with PKCE).
//!
//! Not built yet (issue 3): every entry point answers UNAVAILABLE with a
//! message pointing at the paste-a-token path that does work.

use async_graphql::{Context, ID};

use crate::domain::{Agent, Provider};
use crate::error::{ApiError, ApiResult};
use crate::graphql::types::{AuthorizationFlow, Credential, DeviceFlow};

fn unavailable<T>() -> ApiResult<T> {
    Err(ApiError::Unavailable(
        "sign-in flows are not available on this server yet; paste a token with saveSubscriptionCredential instead"
            .into(),
    ))
}

pub async fn device_flow(_ctx: &Context<'_>, _id: &ID) -> ApiResult<Option<DeviceFlow>> {
    unavailable()
}

pub async fn start_device_flow(_ctx: &Context<'_>, _agent: Agent, _provider: Provider) -> ApiResult<DeviceFlow> {
    unavailable()
}

pub async fn start_authorization_flow(
    _ctx: &Context<'_>,
    _agent: Agent,
    _provider: Provider,
) -> ApiResult<AuthorizationFlow> {
    unavailable()
}

pub async fn complete_authorization_flow(_ctx: &Context<'_>, _id: &ID, _code: &str) -> ApiResult<Credential> {
    unavailable()
}

pub async fn cancel_flow(_ctx: &Context<'_>, _id: &ID) -> ApiResult<bool> {
    unavailable()
}

pub async fn device_flow_status(_ctx: &Context<'_>, _id: &ID) -> ApiResult<futures_util::stream::Empty<DeviceFlow>> {
    unavailable()
}
