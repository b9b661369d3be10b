//! Cross-instance fan-out on PostgreSQL: LISTEN/NOTIFY over the pool that
//! sea-orm already has, no extra broker.
//!
//! On PostgreSQL every change is announced with `pg_notify` (events inside
//! the transaction that records them, so a notification goes out if and
//! only if the change committed) and reaches local subscribers only through
//! this listener, on every instance alike: one path, so nothing is
//! delivered twice. On SQLite there is one instance and events stay
//! in-process.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sqlx::postgres::PgListener;

use crate::error::ApiResult;
use crate::events::CredentialEvent;
use crate::flows::{FlowEngine, FlowUpdate};
use crate::store::Store;

pub const EVENTS_CHANNEL: &str = "sesame_credential_events";
pub const FLOWS_CHANNEL: &str = "sesame_flow_updates";

/// Announces `payload` on `channel`; inside a transaction it is sent on commit.
pub async fn notify<C: ConnectionTrait>(db: &C, channel: &str, payload: &impl serde::Serialize) -> ApiResult<()> {
    let json = serde_json::to_string(payload).map_err(crate::error::ApiError::internal)?;
    db.execute(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [channel.into(), json.into()],
    ))
    .await?;
    Ok(())
}

/// Starts the listener (PostgreSQL only). It reconnects by itself; changes
/// announced while it is disconnected are missed by live subscribers (a
/// flow subscriber still gets the final state: flows are re-read on lag).
pub async fn start(store: Store, flows: FlowEngine) -> anyhow::Result<()> {
    let pool = store.db().get_postgres_connection_pool().clone();
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen_all([EVENTS_CHANNEL, FLOWS_CHANNEL]).await?;
    tokio::spawn(async move {
        loop {
            match listener.recv().await {
                Ok(n) => match n.channel() {
                    EVENTS_CHANNEL => match serde_json::from_str::<CredentialEvent>(n.payload()) {
                        Ok(event) => store.events().publish(event),
                        Err(e) => tracing::error!(error = %e, "unreadable credential event notification"),
                    },
                    FLOWS_CHANNEL => match serde_json::from_str::<FlowUpdate>(n.payload()) {
                        Ok(update) => flows.publish(update),
                        Err(e) => tracing::error!(error = %e, "unreadable flow notification"),
                    },
                    _ => {}
                },
                Err(e) => {
                    tracing::warn!(error = %e, "lost the PostgreSQL listener; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(())
}
