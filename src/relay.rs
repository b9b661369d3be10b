//! Cross-instance fan-out on PostgreSQL: LISTEN/NOTIFY over the pool that
//! sea-orm already has, no extra broker.
//!
//! On PostgreSQL every change is announced with `pg_notify` (events inside
//! the transaction that records them, so a notification goes out if and
//! only if the change committed) and reaches local subscribers only through
//! this listener, on every instance alike: one path, so nothing is
//! delivered twice. On SQLite there is one instance and events stay
//! in-process.
//!
//! The same listener hears the triggers that say a proxy grant may have
//! ended (`store::GRANTS_CHANNEL`): the egress proxy keeps grants between
//! requests only while it listens (`Store::set_grants_watched`).

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use sqlx::postgres::PgListener;

use crate::events::{CredentialEvent, EventBus};
use crate::flows::{FlowEngine, FlowUpdate};
use crate::store::{Channel, EventScope, EventSink, Store, GRANTS_CHANNEL};

pub const EVENTS_CHANNEL: &str = "sesame_credential_events";
pub const FLOWS_CHANNEL: &str = "sesame_flow_updates";

/// The store's sink for `db`: NOTIFY on PostgreSQL, the in-process bus
/// otherwise.
pub fn sink_for(db: &DatabaseConnection, bus: &EventBus) -> Arc<dyn EventSink> {
    if db.get_database_backend() == DbBackend::Postgres {
        Arc::new(Notifier)
    } else {
        Arc::new(bus.clone())
    }
}

/// Announces with `pg_notify`; inside a transaction it is sent on commit.
/// Local subscribers hear back through [`start`]'s listener.
pub struct Notifier;

impl EventSink for Notifier {
    fn announce(&self, channel: Channel, payload: &str) -> Option<Statement> {
        let channel = match channel {
            Channel::CredentialEvents => EVENTS_CHANNEL,
            Channel::FlowUpdates => FLOWS_CHANNEL,
        };
        Some(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [channel.into(), payload.into()],
        ))
    }

    fn publish(&self, _events: Vec<CredentialEvent>) {}
}

/// One instance (SQLite): announcements stay in this process; events reach
/// subscribers once their transaction committed.
impl EventSink for EventBus {
    fn announce(&self, _channel: Channel, _payload: &str) -> Option<sea_orm::Statement> {
        None
    }

    fn publish(&self, events: Vec<CredentialEvent>) {
        for event in events {
            EventBus::publish(self, event);
        }
    }
}

/// Starts the listener (PostgreSQL only). Event ids are in commit order
/// (migration `m20261206_230000`), and notifications arrive in commit order,
/// so one number says what this listener has handed on: the last id. When
/// its connection is lost it connects again, LISTENs, and only then reads
/// the outbox after that id; notifications for ids it already handed on
/// (read in the catch-up, or announced before it started) are dropped. Each
/// event reaches local subscribers once, with no gap. Flow watchers re-read
/// their flow on silence, so flows need no catch-up.
pub async fn start(store: Store, flows: FlowEngine) -> anyhow::Result<()> {
    run(store, Some(flows)).await
}

/// Starts a listener that hears only the proxy grant changes, for the
/// egress proxy run as its own process (`app::proxy`): it has no
/// subscribers and no sign-in flows to hand events on to.
pub async fn start_proxy_grants(store: Store) -> anyhow::Result<()> {
    run(store, None).await
}

async fn run(store: Store, flows: Option<FlowEngine>) -> anyhow::Result<()> {
    let channels: &'static [&'static str] =
        if flows.is_some() { &[EVENTS_CHANNEL, FLOWS_CHANNEL, GRANTS_CHANNEL] } else { &[GRANTS_CHANNEL] };
    let events = flows.is_some();
    // Read before listening: what commits in between is caught up below.
    let mut last_seq = if events { store.latest_event_id().await.map_err(crate::error::api_to_anyhow)? } else { 0 };
    let mut listener = listen(&store, channels).await?;
    if events {
        last_seq = catch_up(&store, last_seq).await;
    }
    // Grants are kept only from here (listening, caught up, triggers in
    // place) until the connection is lost or this task ends, however.
    store.set_grants_watched(store.grant_triggers_present().await);
    tokio::spawn(async move {
        struct Unwatch(Store);
        impl Drop for Unwatch {
            fn drop(&mut self) {
                self.0.set_grants_watched(false);
            }
        }
        let _unwatch = Unwatch(store.clone());
        loop {
            // `try_recv` (not `recv`, which reconnects silently) says when the
            // connection was lost: `Ok(None)`.
            let lost = match listener.try_recv().await {
                Ok(Some(n)) => {
                    match n.channel() {
                        EVENTS_CHANNEL => match serde_json::from_str::<CredentialEvent>(n.payload()) {
                            Ok(event) if event.seq <= last_seq => {
                                tracing::debug!(seq = event.seq, "credential event already handed on");
                            }
                            Ok(event) => {
                                last_seq = event.seq;
                                store.events().publish(event);
                            }
                            Err(e) => tracing::error!(error = %e, "unreadable credential event notification"),
                        },
                        GRANTS_CHANNEL => store.grants_changed(),
                        FLOWS_CHANNEL => match (&flows, serde_json::from_str::<FlowUpdate>(n.payload())) {
                            (Some(flows), Ok(update)) => flows.publish_notified(update).await,
                            (None, _) => {}
                            (_, Err(e)) => tracing::error!(error = %e, "unreadable flow notification"),
                        },
                        _ => {}
                    }
                    continue;
                }
                Ok(None) => "the connection closed".to_owned(),
                Err(e) => e.to_string(),
            };
            // Changes go unheard until it is back: the proxy reads every grant.
            store.set_grants_watched(false);
            tracing::warn!(error = %lost, "lost the PostgreSQL listener; reconnecting");
            listener = loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                match listen(&store, channels).await {
                    Ok(fresh) => break fresh,
                    Err(e) => tracing::warn!(error = %e, "reconnecting the PostgreSQL listener failed"),
                }
            };
            if events {
                last_seq = catch_up(&store, last_seq).await;
            }
            store.set_grants_watched(store.grant_triggers_present().await);
        }
    });
    Ok(())
}

async fn listen(store: &Store, channels: &[&str]) -> anyhow::Result<PgListener> {
    let pool = store.postgres_pool();
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen_all(channels.iter().copied()).await?;
    Ok(listener)
}

/// Publishes the events recorded after `last_seq` (ids are in commit
/// order: nothing below the newest one read can still commit), page by page,
/// retrying while the database does not answer (notifications wait in the
/// listener meanwhile). Returns the new last id.
async fn catch_up(store: &Store, mut last_seq: i64) -> i64 {
    const PAGE: u64 = 1_000;
    let mut caught_up = 0usize;
    loop {
        match store.events_after(EventScope::Everyone, last_seq, PAGE).await {
            Ok(missed) => {
                let full = missed.len() as u64 == PAGE;
                caught_up += missed.len();
                for event in missed {
                    last_seq = last_seq.max(event.seq);
                    store.events().publish(event);
                }
                if !full {
                    break;
                }
            }
            Err(e) => {
                tracing::error!(error = ?e, "catching up credential events from the outbox failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    if caught_up > 0 {
        tracing::info!(events = caught_up, "the PostgreSQL listener caught up from the outbox");
    }
    last_seq
}
