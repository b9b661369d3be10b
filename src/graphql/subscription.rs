use async_graphql::{Context, Subscription, ID};
use futures_util::Stream;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use super::guards::PersonGuard;
use super::subscription_limits::RootFieldTicket;
use super::types::DeviceFlow;
use super::{principal, store};
use crate::error::ApiError;
use crate::events::CredentialEvent;
use async_graphql::Result;

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Owner only. First event: the current state; then every change; ends after a final state.
    #[graphql(guard = "PersonGuard")]
    async fn device_flow_status(&self, ctx: &Context<'_>, id: ID) -> Result<impl Stream<Item = DeviceFlow>> {
        single_root_field(ctx)?;
        Ok(crate::flows::device_flow_status(ctx, &id).await?)
    }

    /// The caller's own credential events; ADMIN receives every user's (metadata only).
    #[graphql(guard = "PersonGuard")]
    async fn credential_events(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = CredentialEvent>> {
        single_root_field(ctx)?;
        let principal = principal(ctx)?.clone();
        let receiver = store(ctx).events().subscribe();
        let mut seen = RecentIds::default();
        Ok(BroadcastStream::new(receiver).filter_map(move |event| {
            // A lagging subscriber skips what it missed rather than failing.
            let event = event.ok()?;
            let visible = principal.is_admin() || principal.user_id() == Some(event.owner_id.as_str());
            (visible && seen.first_time(event.seq)).then_some(event)
        }))
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

/// The last few event ids a subscriber got: an event is never delivered
/// to one subscriber twice, whatever path it came by.
#[derive(Default)]
struct RecentIds {
    order: std::collections::VecDeque<i64>,
    set: std::collections::HashSet<i64>,
}

impl RecentIds {
    const KEEP: usize = 512;

    fn first_time(&mut self, id: i64) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::KEEP {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}
