//! `credentialEvents(after:)`: the events a subscriber missed, from the
//! outbox, then the live ones, with no gap and no duplicate at the seam.
//!
//! The live receiver is opened *before* the outbox is read, so an event
//! committed during the replay is in one or the other (or both: dropped
//! by id). A subscriber that falls behind the live channel catches up from
//! the outbox the same way instead of losing events.

use std::collections::{HashSet, VecDeque};

use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::events::CredentialEvent;
use crate::store::{EventScope, Store};

/// Outbox rows read per query while replaying.
const PAGE: u64 = 200;
/// The most events one subscription replays; further back, the client
/// reloads its state instead (a bound on work per subscribe).
pub const MAX_REPLAY: usize = 10_000;

/// Parses `after` and checks it names an event the caller could have
/// received that is still kept (retention bounds how far back it reaches).
pub async fn resume_point(store: &Store, principal: &Principal, after: Option<&str>) -> ApiResult<Option<i64>> {
    let Some(after) = after else { return Ok(None) };
    let id: i64 = after
        .trim()
        .parse()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| ApiError::bad_input("`after` must be the `id` of a credential event you received"))?;
    if !store.event_is_kept(scope(principal), id).await? {
        return Err(ApiError::bad_input(
            "`after` names no event still kept for you: events are kept for SESAME_SCHEDULER__EVENT_RETENTION \
             (30 days by default); reload your credentials and subscribe without `after`",
        ));
    }
    Ok(Some(id))
}

fn scope(principal: &Principal) -> EventScope<'_> {
    match principal.user_id() {
        Some(_) if principal.is_admin() => EventScope::Everyone,
        Some(user_id) => EventScope::Owner(user_id),
        None => EventScope::Owner(""),
    }
}

/// The caller's events after `after` (if given), then live.
pub fn events(store: Store, principal: Principal, after: Option<i64>) -> impl Stream<Item = CredentialEvent> {
    // Subscribed now, before the first read of the outbox.
    let mut live = store.events().subscribe();
    async_stream::stream! {
        let mut seen = RecentIds::default();
        let mut last = after;
        if let Some(after) = after {
            let mut cursor = after;
            let mut replayed = 0usize;
            loop {
                let page = match store.events_after(scope(&principal), cursor, PAGE).await {
                    Ok(page) => page,
                    Err(e) => {
                        log_error(e);
                        return;
                    }
                };
                let full = page.len() as u64 == PAGE;
                for event in page {
                    cursor = event.seq;
                    last = Some(last.map_or(event.seq, |l| l.max(event.seq)));
                    if seen.first_time(event.seq) {
                        yield event;
                    }
                    replayed += 1;
                }
                if !full || replayed >= MAX_REPLAY {
                    break;
                }
            }
        }
        loop {
            match live.recv().await {
                Ok(event) => {
                    let visible = principal.is_admin() || principal.user_id() == Some(event.owner_id.as_str());
                    if visible && seen.first_time(event.seq) {
                        last = Some(last.map_or(event.seq, |l| l.max(event.seq)));
                        yield event;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    // Fell behind the live channel: what it dropped is in the outbox.
                    let Some(from) = last else { continue };
                    match store.events_after(scope(&principal), from.saturating_sub(RecentIds::KEEP as i64), PAGE * 5).await {
                        Ok(missed) => {
                            for event in missed {
                                if seen.first_time(event.seq) {
                                    last = Some(last.map_or(event.seq, |l| l.max(event.seq)));
                                    yield event;
                                }
                            }
                        }
                        Err(e) => log_error(e),
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

fn log_error(e: ApiError) {
    if let ApiError::Internal(cause) = e {
        tracing::error!(error = format!("{cause:#}"), "reading credential events failed");
    }
}

/// The last event ids a subscriber got (replayed ones included): an event
/// is never delivered to one subscriber twice, whatever path it came by.
#[derive(Default)]
struct RecentIds {
    order: VecDeque<i64>,
    set: HashSet<i64>,
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
