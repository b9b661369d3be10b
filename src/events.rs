//! Credential events, fanned out to subscribers in this process.

use async_graphql::{ComplexObject, SimpleObject, ID};
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::domain::{Agent, CredentialEventKind, CredentialStatus, Provider};

/// Metadata only: an event never carries secret material.
#[derive(Clone, Debug, SimpleObject, serde::Serialize, serde::Deserialize)]
#[graphql(complex)]
pub struct CredentialEvent {
    /// The outbox row id: unique per event, so duplicates can be dropped.
    #[graphql(skip)]
    pub seq: i64,
    pub kind: CredentialEventKind,
    pub credential_id: ID,
    pub owner_id: ID,
    pub provider: Provider,
    pub agent: Option<Agent>,
    pub status: Option<CredentialStatus>,
    pub at: DateTime<Utc>,
    pub message: Option<String>,
}

#[ComplexObject]
impl CredentialEvent {
    /// The event's id: pass the last one you received as
    /// `credentialEvents(after:)` to get what you missed while away.
    async fn id(&self) -> ID {
        ID(self.seq.to_string())
    }
}

#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<CredentialEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        // A slow subscriber that falls this far behind misses events (and is
        // told so) rather than holding memory for everyone.
        EventBus { tx: broadcast::channel(1024).0 }
    }
}

impl EventBus {
    pub fn publish(&self, event: CredentialEvent) {
        // No subscribers is not an error.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CredentialEvent> {
        self.tx.subscribe()
    }
}
