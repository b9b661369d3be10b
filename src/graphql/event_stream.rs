//! `credentialEvents(after:)`: the events a subscriber missed, from the
//! outbox, then the live ones, with no gap and no duplicate at the seam.
//!
//! The live receiver is opened *before* the outbox is read, so an event
//! committed during the replay is in one or the other (or both: dropped
//! by id). A subscriber that falls behind the live channel catches up from
//! the outbox the same way instead of losing events. Ids are in commit
//! order (`store::event_log`), so a replay never steps past an event that
//! commits later, and copies are dropped by id over a window of time, not a
//! count of events.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use futures_util::{Stream, StreamExt};
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

/// What event ids are sealed for (`Keyring::seal_counter`).
const EVENT_ID: &str = crate::events::EVENT_ID_PURPOSE;

/// The id clients see for the event at `seq` in the outbox: opaque, so the
/// gap between two of a person's events does not count everyone else's.
pub fn event_id(store: &Store, seq: i64) -> String {
    store.keys().seal_counter(EVENT_ID, seq)
}

/// Parses `after` and checks it names an event the caller could have
/// received that is still kept (retention bounds how far back it reaches).
pub async fn resume_point(store: &Store, principal: &Principal, after: Option<&str>) -> ApiResult<Option<i64>> {
    let Some(after) = after else { return Ok(None) };
    let id = store.keys().open_counter(EVENT_ID, after.trim()).filter(|id| *id >= 0).ok_or_else(|| {
        ApiError::bad_input(
            "`after` must be the `id` of a credential event you received (ids from before a key rotation \
                 that dropped the old key are no longer known: subscribe without `after`)",
        )
    })?;
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
        // Nothing at or before `after` is delivered again.
        let mut delivered = Delivered::new(after);
        if let Some(after) = after {
            // Boxed: a live subscriber's state then holds no room for a replay.
            let mut replay = Box::pin(replay(&store, &principal, after, &mut delivered));
            while let Some(event) = replay.next().await {
                yield event;
            }
        }
        loop {
            match live.recv().await {
                Ok(event) => {
                    let visible = principal.is_admin() || principal.user_id() == Some(event.owner_id.as_str());
                    if visible && delivered.first_time(event.seq) {
                        yield event;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    // Fell behind the live channel: what it dropped is in the
                    // outbox, after the last event this subscriber got.
                    let Some(from) = delivered.resume_from() else { continue };
                    let mut replay = Box::pin(replay(&store, &principal, from, &mut delivered));
                    while let Some(event) = replay.next().await {
                        yield event;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

/// The caller's events after `after` in the outbox, oldest first, that
/// `delivered` has not seen (at most [`MAX_REPLAY`]).
fn replay<'a>(
    store: &'a Store,
    principal: &'a Principal,
    after: i64,
    delivered: &'a mut Delivered,
) -> impl Stream<Item = CredentialEvent> + 'a {
    async_stream::stream! {
        let mut cursor = after;
        let mut replayed = 0usize;
        loop {
            let page = match store.events_after(scope(principal), cursor, PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    log_error(e);
                    return;
                }
            };
            let full = page.len() as u64 == PAGE;
            for event in page {
                cursor = event.seq;
                replayed += 1;
                if delivered.first_time(event.seq) {
                    yield event;
                }
            }
            if !full || replayed >= MAX_REPLAY {
                return;
            }
        }
    }
}

fn log_error(e: ApiError) {
    if let ApiError::Internal(cause) = e {
        tracing::error!(error = format!("{cause:#}"), "reading credential events failed");
    }
}

/// The ids a subscriber got (replayed ones included), for [`Delivered::WINDOW`]
/// of monotonic time; older ones are folded into `floor`: nothing at or
/// below it is delivered again. Ids are in commit order, and an event is
/// published within moments of its commit, so an event more than the window
/// older than one already delivered can only be a copy.
struct Delivered {
    recent: VecDeque<(Instant, i64)>,
    set: HashSet<i64>,
    floor: Option<i64>,
    newest: Option<i64>,
}

impl Delivered {
    const WINDOW: Duration = Duration::from_secs(60);

    fn new(after: Option<i64>) -> Delivered {
        Delivered { recent: VecDeque::new(), set: HashSet::new(), floor: after, newest: after }
    }

    fn first_time(&mut self, id: i64) -> bool {
        let now = Instant::now();
        while let Some(&(at, old)) = self.recent.front() {
            if now.duration_since(at) < Self::WINDOW {
                break;
            }
            self.recent.pop_front();
            self.set.remove(&old);
            self.floor = Some(self.floor.map_or(old, |f| f.max(old)));
        }
        if self.floor.is_some_and(|f| id <= f) || !self.set.insert(id) {
            return false;
        }
        self.recent.push_back((now, id));
        self.newest = Some(self.newest.map_or(id, |n| n.max(id)));
        true
    }

    /// Where to read the outbox from after falling behind: below every id
    /// still remembered (those are dropped again by id), or the floor.
    fn resume_from(&self) -> Option<i64> {
        let lowest = self.set.iter().min().map(|id| id - 1);
        match (lowest, self.floor) {
            (Some(l), Some(f)) => Some(l.max(f)),
            (Some(l), None) => Some(l),
            (None, f) => f.or(self.newest),
        }
    }
}
