//! Credential events: what changed, as plain data (the GraphQL object that
//! shows one is `graphql::types::CredentialEvent`), and the bus that fans
//! them out to subscribers in this process.

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::domain::{Agent, CredentialEventKind, CredentialStatus, Provider};

/// The purpose an event's outbox position is sealed under for clients
/// (`Keyring::seal_counter`): the `id` a `credentialEvents` subscriber sees
/// and the `webhook-id` a webhook receiver sees are the same string.
pub const EVENT_ID_PURPOSE: &str = "credential-event";

/// Metadata only: an event never carries secret material. Serialised as the
/// PostgreSQL notification payload.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CredentialEvent {
    /// The outbox row id: unique per event, so duplicates can be dropped.
    pub seq: i64,
    pub kind: CredentialEventKind,
    pub credential_id: String,
    pub owner_id: String,
    pub provider: Provider,
    pub agent: Option<Agent>,
    pub status: Option<CredentialStatus>,
    pub at: DateTime<Utc>,
    pub message: Option<String>,
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
