//! The sign-in flow engine: keeps flows (secrets encrypted) through the
//! store's named operations (`store/flows.rs`, which alone writes their
//! rows), polls device flows in the background with the provider's rules,
//! resumes after a restart, and fans status changes out to subscribers. It
//! returns plain views ([`DeviceFlow`], [`AuthorizationFlow`]);
//! `graphql::flows` shows them.
//!
//! Each pending device flow is polled by one instance at a time: the
//! poller holds a lease in the database (`lease_owner`, `lease_until`) and
//! renews it every loop; a sweep picks up flows whose lease ran out.
//!
//! Here: the engine and its announcements; `sign_in` starts, completes,
//! cancels and reads flows; `poller` polls device flows and sweeps for
//! orphans; `upkeep` seals old rows and deletes finished ones.

mod poller;
mod sign_in;
mod upkeep;
mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Duration;
use tokio::sync::{broadcast, Notify};

pub use view::{AuthorizationFlow, DeviceFlow};

use crate::crypto::Binding;
use crate::error::{ApiError, ApiResult};
use crate::ids::new_id;
use crate::providers::FlowSecret;
use crate::store::{FlowHolder as Holder, FlowRecord, Store, FLOW_COMPLETING as COMPLETING, FLOW_FIELD as FIELD};
use view::view;

const KIND_DEVICE: &str = "DEVICE";
const KIND_AUTHORIZATION: &str = "AUTHORIZATION";
/// The poller wakes at least this often to renew its lease.
const MAX_SLEEP: Duration = Duration::seconds(5);
/// A watcher that heard nothing for this long re-reads the flow.
const REREAD_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// How often each instance looks for pending flows nobody polls.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A visible change of a device flow.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct FlowUpdate {
    pub owner_id: String,
    pub revision: i64,
    pub flow: DeviceFlow,
}

#[derive(Clone)]
pub struct FlowEngine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    bus: broadcast::Sender<FlowUpdate>,
    /// This process's id as a lease owner.
    instance: String,
    /// Flows polled by this process, with the handle that wakes the poller.
    running: Mutex<HashMap<String, Arc<Notify>>>,
    /// Device sign-ins of each person being started (asking the provider)
    /// and not stored yet; counted against the pending limit.
    starting: Mutex<HashMap<String, u64>>,
    /// Taken while one start counts and reserves its slot.
    starting_turn: tokio::sync::Mutex<()>,
}

fn binding<'a>(row: &'a FlowRecord) -> Binding<'a> {
    Binding { owner_id: &row.owner_id, record_id: &row.id, field: FIELD }
}

impl FlowEngine {
    pub fn new(store: Store) -> FlowEngine {
        FlowEngine {
            inner: Arc::new(Inner {
                store,
                bus: broadcast::channel(1024).0,
                instance: new_id(),
                running: Mutex::new(HashMap::new()),
                starting: Mutex::new(HashMap::new()),
                starting_turn: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    /// How long a poller's claim on a flow lasts without renewal: longer
    /// than one poll can take (OpenAI's is two requests), so a live poller
    /// never loses its flow to another instance mid-request.
    fn lease(&self) -> Duration {
        Duration::from_std(self.config().http_timeout * 2).unwrap_or(Duration::minutes(1)) + Duration::seconds(10)
    }

    fn config(&self) -> &crate::providers::OauthConfig {
        self.store().providers().config()
    }

    /// Receives every flow change made in this process (and, with a shared
    /// database and a relay, others).
    pub fn updates(&self) -> broadcast::Receiver<FlowUpdate> {
        self.inner.bus.subscribe()
    }

    /// Publishes a change to local subscribers.
    pub fn publish(&self, update: FlowUpdate) {
        let _ = self.inner.bus.send(update);
    }

    /// Publishes a change announced over PostgreSQL: the notification holds
    /// no user code, so the flow is read back (and decrypted) here.
    pub async fn publish_notified(&self, update: FlowUpdate) {
        let id = update.flow.id.to_string();
        let fresh = async {
            let row = self.store().flow(id.as_str()).await?;
            row.map(|row| {
                let flow = view(self.store().keys(), &row)?;
                Ok::<_, ApiError>(FlowUpdate { owner_id: row.owner_id.clone(), revision: row.revision, flow })
            })
            .transpose()
        };
        match fresh.await {
            Ok(Some(update)) => self.publish(update),
            // Deleted meanwhile (housekeeping): nothing left to show.
            Ok(None) => {}
            Err(ApiError::Internal(e)) => {
                tracing::error!(flow = %id, error = format!("{e:#}"), "reading a notified flow failed")
            }
            Err(_) => {}
        }
    }

    /// Announces a flow's new state through the store's sink: in-process on
    /// SQLite; on PostgreSQL to every instance (this one included) through
    /// the relay.
    async fn publish_row(&self, row: &FlowRecord) -> ApiResult<()> {
        if row.kind != KIND_DEVICE {
            return Ok(());
        }
        let update = FlowUpdate {
            owner_id: row.owner_id.clone(),
            revision: row.revision,
            flow: view(self.store().keys(), row)?,
        };
        // A notification (PostgreSQL) is readable by any session LISTENing
        // on the database: it carries no user code or link; receivers read
        // the flow back (`publish_notified`).
        let mut slim = update.clone();
        slim.flow.user_code = String::new();
        slim.flow.verification_uri_complete = None;
        if !self.store().announce_flow_update(&slim).await? {
            self.publish(update);
        }
        Ok(())
    }

    fn seal(&self, owner_id: &str, id: &str, secret: &FlowSecret) -> ApiResult<String> {
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(secret).map_err(ApiError::internal)?);
        Ok(self.store().keys().encrypt(&plain, Binding { owner_id, record_id: id, field: FIELD }))
    }

    fn open(&self, row: &FlowRecord) -> ApiResult<FlowSecret> {
        let plain = self.store().keys().decrypt(&row.secret, binding(row))?;
        serde_json::from_slice(&plain)
            .map_err(|_| ApiError::internal(anyhow::anyhow!("flow {} secret does not parse", row.id)))
    }
}
