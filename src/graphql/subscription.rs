use async_graphql::{Context, Subscription, ID};
use futures_util::{Stream, StreamExt};

use super::guards::PersonGuard;
use super::subscription_limits::RootFieldTicket;
use super::types::{CredentialEvent, DeviceFlow};
use super::{principal, store};
use crate::error::ApiError;
use async_graphql::Result;

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Owner only. First event: the current state; then every change; ends after a final state.
    #[graphql(guard = "PersonGuard")]
    async fn device_flow_status(&self, ctx: &Context<'_>, id: ID) -> Result<impl Stream<Item = DeviceFlow>> {
        single_root_field(ctx)?;
        Ok(super::flows::device_flow_status(ctx, &id).await?)
    }

    /// The caller's own credential events; ADMIN receives every user's (metadata only).
    /// With `after` (an event's `id`), first the events after it that you missed, then live ones.
    #[graphql(guard = "PersonGuard")]
    async fn credential_events(
        &self,
        ctx: &Context<'_>,
        after: Option<ID>,
    ) -> Result<impl Stream<Item = CredentialEvent>> {
        single_root_field(ctx)?;
        let principal = principal(ctx)?.clone();
        let store = store(ctx).clone();
        // Boxed: async-graphql keeps this resolver's state inside the
        // subscription's stream for its whole life, sized for its largest
        // step; the database read that checks `after` is a one-off.
        let after = after.as_ref().map(|id| id.as_str());
        let after = Box::pin(super::event_stream::resume_point(&store, &principal, after)).await?;
        Ok(super::event_stream::events(store, principal, after).map(CredentialEvent))
    }
}

/// A subscription selects exactly one root field (the GraphQL spec's rule;
/// async-graphql would open a stream per field). Operations over
/// `/graphql/ws` carry a [`RootFieldTicket`]: the first root field claims
/// it, so a socket's subscription limits count streams, however a document
/// repeats or aliases fields.
fn single_root_field(ctx: &Context<'_>) -> Result<(), ApiError> {
    match ctx.data_opt::<RootFieldTicket>() {
        Some(ticket) if !ticket.claim() => Err(ApiError::bad_input(
            "a subscription selects exactly one root field: send each subscription as an operation of its own",
        )),
        _ => Ok(()),
    }
}
