//! Cross-instance fan-out on PostgreSQL: LISTEN/NOTIFY over the pool that
//! sea-orm already has, no extra broker.
//!
//! On PostgreSQL every change is announced with `pg_notify` (events inside
//! the transaction that records them, so a notification goes out if and
//! only if the change committed) and reaches local subscribers only through
//! this listener, on every instance alike: one path, so nothing is
//! delivered twice. On SQLite there is one instance and events stay
//! in-process.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use sqlx::postgres::PgListener;

use crate::events::{CredentialEvent, EventBus};
use crate::flows::{FlowEngine, FlowUpdate};
use crate::store::{Channel, EventSink, Store};

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

/// Starts the listener (PostgreSQL only). When its connection is lost it
/// connects again, LISTENs, and only then reads the outbox for the events
/// announced while it was away, so live subscribers miss none (they drop
/// by id what they already have). Flow watchers re-read their flow on
/// silence, so flows need no catch-up.
pub async fn start(store: Store, flows: FlowEngine) -> anyhow::Result<()> {
    let mut listener = listen(&store).await?;
    // The newest event id this listener handed on (or that existed when it
    // started listening: older ones are not its to announce).
    let mut last_seq = store.latest_event_id().await.map_err(crate::app::api_to_anyhow)?;
    tokio::spawn(async move {
        loop {
            // `try_recv` (not `recv`, which reconnects silently) says when the
            // connection was lost: `Ok(None)`.
            let lost = match listener.try_recv().await {
                Ok(Some(n)) => {
                    match n.channel() {
                        EVENTS_CHANNEL => match serde_json::from_str::<CredentialEvent>(n.payload()) {
                            Ok(event) => {
                                last_seq = last_seq.max(event.seq);
                                store.events().publish(event);
                            }
                            Err(e) => tracing::error!(error = %e, "unreadable credential event notification"),
                        },
                        FLOWS_CHANNEL => match serde_json::from_str::<FlowUpdate>(n.payload()) {
                            Ok(update) => flows.publish_notified(update).await,
                            Err(e) => tracing::error!(error = %e, "unreadable flow notification"),
                        },
                        _ => {}
                    }
                    continue;
                }
                Ok(None) => "the connection closed".to_owned(),
                Err(e) => e.to_string(),
            };
            let lost_at = chrono::Utc::now();
            tracing::warn!(error = %lost, "lost the PostgreSQL listener; reconnecting");
            listener = loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                match listen(&store).await {
                    Ok(fresh) => break fresh,
                    Err(e) => tracing::warn!(error = %e, "reconnecting the PostgreSQL listener failed"),
                }
            };
            last_seq = catch_up(&store, last_seq, lost_at).await;
        }
    });
    Ok(())
}

async fn listen(store: &Store) -> anyhow::Result<PgListener> {
    let pool = store.db().get_postgres_connection_pool().clone();
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen_all([EVENTS_CHANNEL, FLOWS_CHANNEL]).await?;
    Ok(listener)
}

/// Publishes the events recorded since the listener was lost (ids above
/// the last one it saw, and anything recorded in a margin before the loss,
/// for ids that committed out of order). Returns the new last id.
async fn catch_up(store: &Store, last_seq: i64, lost_at: chrono::DateTime<chrono::Utc>) -> i64 {
    const MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
    const MAX: u64 = 10_000;
    match store.events_since(last_seq, lost_at - MARGIN, MAX).await {
        Ok(missed) => {
            tracing::info!(events = missed.len(), "the PostgreSQL listener is back; caught up from the outbox");
            let mut last = last_seq;
            for event in missed {
                last = last.max(event.seq);
                store.events().publish(event);
            }
            last
        }
        Err(e) => {
            tracing::error!(error = ?e, "catching up credential events from the outbox failed");
            last_seq
        }
    }
}
