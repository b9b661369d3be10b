//! GraphQL entry points for sign-in flows: the caller's owner handle, the
//! engine's call, and its plain views turned into API objects.

use async_graphql::{Context, ID};
use futures_util::{Stream, StreamExt};

use super::types::{AuthorizationFlow, Credential, DeviceFlow};
use super::{principal, store};
use crate::domain::{Agent, Provider};
use crate::error::ApiResult;
use crate::flows::FlowEngine;
use crate::ids::parse_id;

fn engine<'a>(ctx: &Context<'a>) -> &'a FlowEngine {
    ctx.data_unchecked::<FlowEngine>()
}

pub async fn device_flow(ctx: &Context<'_>, id: &ID) -> ApiResult<Option<DeviceFlow>> {
    let owner = store(ctx).owner(principal(ctx)?)?;
    Ok(engine(ctx).device_flow(&owner, &parse_id("id", id)?).await?.map(DeviceFlow))
}

pub async fn pending_device_flows(ctx: &Context<'_>) -> ApiResult<Vec<DeviceFlow>> {
    let owner = store(ctx).owner(principal(ctx)?)?;
    Ok(engine(ctx).pending_device_flows(&owner).await?.into_iter().map(DeviceFlow).collect())
}

pub async fn pending_authorization_flows(ctx: &Context<'_>) -> ApiResult<Vec<AuthorizationFlow>> {
    let owner = store(ctx).owner(principal(ctx)?)?;
    Ok(engine(ctx).pending_authorization_flows(&owner).await?.into_iter().map(AuthorizationFlow::from).collect())
}

pub async fn start_device_flow(ctx: &Context<'_>, agent: Agent, provider: Provider) -> ApiResult<DeviceFlow> {
    let owner = store(ctx).owner(principal(ctx)?)?;
    engine(ctx).start_device(&owner, agent, provider).await.map(DeviceFlow)
}

pub async fn start_authorization_flow(
    ctx: &Context<'_>,
    agent: Agent,
    provider: Provider,
) -> ApiResult<AuthorizationFlow> {
    let owner = store(ctx).owner(principal(ctx)?)?;
    engine(ctx).start_authorization(&owner, agent, provider).await.map(AuthorizationFlow::from)
}

pub async fn complete_authorization_flow(ctx: &Context<'_>, id: &ID, code: &str) -> ApiResult<Credential> {
    let owner = store(ctx).owner(principal(ctx)?)?;
    engine(ctx).complete(&owner, &parse_id("id", id)?, code).await.map(Credential)
}

pub async fn cancel_flow(ctx: &Context<'_>, id: &ID) -> ApiResult<bool> {
    let owner = store(ctx).owner(principal(ctx)?)?;
    engine(ctx).cancel(&owner, &parse_id("id", id)?).await
}

pub async fn device_flow_status(ctx: &Context<'_>, id: &ID) -> ApiResult<impl Stream<Item = DeviceFlow> + use<>> {
    let owner = store(ctx).owner(principal(ctx)?)?;
    Ok(engine(ctx).watch(&owner, &parse_id("id", id)?).await?.map(DeviceFlow))
}
