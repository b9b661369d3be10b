use async_graphql::{Context, Subscription, ID};
use futures_util::Stream;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use super::guards::PersonGuard;
use super::types::DeviceFlow;
use super::{principal, store};
use crate::events::CredentialEvent;
use async_graphql::Result;

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Owner only. First event: the current state; then every change; ends after a final state.
    #[graphql(guard = "PersonGuard")]
    async fn device_flow_status(&self, ctx: &Context<'_>, id: ID) -> Result<impl Stream<Item = DeviceFlow>> {
        Ok(crate::flows::device_flow_status(ctx, &id).await?)
    }

    /// The caller's own credential events; ADMIN receives every user's (metadata only).
    #[graphql(guard = "PersonGuard")]
    async fn credential_events(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = CredentialEvent>> {
        let principal = principal(ctx)?.clone();
        let receiver = store(ctx).events().subscribe();
        Ok(BroadcastStream::new(receiver).filter_map(move |event| {
            // A lagging subscriber skips what it missed rather than failing.
            let event = event.ok()?;
            (principal.is_admin() || principal.user_id() == Some(event.owner_id.as_str())).then_some(event)
        }))
    }
}
