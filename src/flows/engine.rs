//! The sign-in flow engine: stores flows (secrets encrypted), polls device
//! flows in the background with the provider's rules, resumes after a
//! restart, and fans status changes out to subscribers.
//!
//! Each pending device flow is polled by one instance at a time: the
//! poller holds a lease in the database (`lease_owner`, `lease_until`) and
//! renews it every loop; a sweep picks up flows whose lease ran out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::ID;
use chrono::{DateTime, Duration, Utc};
use futures_util::Stream;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter,
    Set, Statement, TransactionTrait,
};
use tokio::sync::{broadcast, Notify};

use crate::catalog;
use crate::crypto::{Binding, Keyring};
use crate::domain::{Agent, CredentialKind, FlowStatus, Provider};
use crate::entities::oauth_flow;
use crate::error::{ApiError, ApiResult};
use crate::graphql::types::{AuthorizationFlow, DeviceFlow};
use crate::ids::new_id;
use crate::oauth::{FlowSecret, Poll, Tokens};
use crate::store::audit::Actor;
use crate::store::{CredentialMeta, NewCredential, OwnerHandle, Store, StoredSecret};

const KIND_DEVICE: &str = "DEVICE";
const KIND_AUTHORIZATION: &str = "AUTHORIZATION";
/// First key of the per-person advisory lock around the pending-flow limit
/// (PostgreSQL; arbitrary, stable).
const PENDING_LIMIT_LOCK: i32 = 0x5e5a_0001;
use crate::store::{FLOW_FIELD as FIELD, FLOW_USER_CODE_FIELD, FLOW_VERIFICATION_URI_FIELD};
/// A completion in progress holds the flow with this lease-owner prefix.
const COMPLETING: &str = "complete:";
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
}

/// Who may end a flow.
#[derive(Clone, Copy)]
enum Holder<'a> {
    Anyone,
    /// The instance polling it, or the request completing it.
    Lease(&'a str),
    /// Anyone but a completion in progress (a cancel).
    NotCompleting,
}

fn binding<'a>(row: &'a oauth_flow::Model) -> Binding<'a> {
    Binding { owner_id: &row.owner_id, record_id: &row.id, field: FIELD }
}

/// Encrypts one of a flow's display values (the user code, or the link that
/// carries it), bound to the flow's owner, id and `field`.
fn seal_text(keys: &Keyring, owner_id: &str, id: &str, field: &str, text: &str) -> String {
    keys.encrypt(text.as_bytes(), Binding { owner_id, record_id: id, field })
}

/// The sealed value if there is one; otherwise the plain column of a row
/// written before values were sealed (or by an older instance).
fn unseal(
    keys: &Keyring,
    row: &oauth_flow::Model,
    sealed: Option<&str>,
    field: &str,
    plain: Option<&str>,
) -> ApiResult<Option<String>> {
    match sealed {
        Some(stored) => {
            let binding = Binding { owner_id: &row.owner_id, record_id: &row.id, field };
            Ok(Some(keys.decrypt_string(stored, binding)?.to_string()))
        }
        None => Ok(plain.map(str::to_owned)),
    }
}

/// The API's view of a device flow; the user code and link are decrypted.
fn view(keys: &Keyring, row: &oauth_flow::Model) -> ApiResult<DeviceFlow> {
    let user_code = unseal(keys, row, row.sealed_user_code.as_deref(), FLOW_USER_CODE_FIELD, Some(&row.user_code))?;
    let verification_uri_complete = unseal(
        keys,
        row,
        row.sealed_verification_uri_complete.as_deref(),
        FLOW_VERIFICATION_URI_FIELD,
        row.verification_uri_complete.as_deref(),
    )?;
    Ok(DeviceFlow {
        id: ID(row.id.clone()),
        agent: row.agent.parse().map_err(ApiError::internal)?,
        provider: row.provider.parse().map_err(ApiError::internal)?,
        status: row.status.parse().map_err(ApiError::internal)?,
        user_code: user_code.unwrap_or_default(),
        verification_uri: row.verification_uri.clone(),
        verification_uri_complete,
        expires_at: row.expires_at,
        interval: row.interval_secs,
        message: row.message.clone(),
        credential_id: row.credential_id.clone(),
    })
}

/// The sign-in method an (agent, provider) pair uses, if any.
fn method_for(agent: Agent, provider: Provider) -> Option<&'static str> {
    match (agent, provider) {
        (Agent::Copilot, Provider::Github) | (Agent::Codex | Agent::Opencode, Provider::Openai) => Some(KIND_DEVICE),
        (Agent::ClaudeCode | Agent::Opencode, Provider::Anthropic) => Some(KIND_AUTHORIZATION),
        _ => None,
    }
}

fn wrong_method(agent: Agent, provider: Provider, wanted: &str) -> ApiError {
    let hint = match method_for(agent, provider) {
        Some(KIND_DEVICE) => " (use startDeviceFlow for this pair)",
        Some(_) => " (use startAuthorizationFlow for this pair)",
        None => "",
    };
    ApiError::bad_input(format!(
        "{} with {} has no {wanted} sign-in{hint}. {}",
        agent.display_name(),
        provider.display_name(),
        catalog::supported_methods(agent)
    ))
}

impl FlowEngine {
    pub fn new(store: Store) -> FlowEngine {
        FlowEngine {
            inner: Arc::new(Inner {
                store,
                bus: broadcast::channel(1024).0,
                instance: new_id(),
                running: Mutex::new(HashMap::new()),
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

    fn config(&self) -> &crate::config::OauthConfig {
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
            let row = oauth_flow::Entity::find_by_id(id.as_str()).one(self.store().db()).await?;
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

    /// Announces a flow's new state: in-process on SQLite; on PostgreSQL
    /// to every instance (this one included) through the relay.
    async fn publish_row(&self, row: &oauth_flow::Model) -> ApiResult<()> {
        if row.kind != KIND_DEVICE {
            return Ok(());
        }
        let update = FlowUpdate {
            owner_id: row.owner_id.clone(),
            revision: row.revision,
            flow: view(self.store().keys(), row)?,
        };
        if self.store().is_postgres() {
            // A notification is readable by any session LISTENing on the
            // database: it carries no user code or link; receivers read
            // the flow back (`publish_notified`).
            let mut slim = update;
            slim.flow.user_code = String::new();
            slim.flow.verification_uri_complete = None;
            crate::relay::notify(self.store().db(), crate::relay::FLOWS_CHANNEL, &slim).await
        } else {
            self.publish(update);
            Ok(())
        }
    }

    fn seal(&self, owner_id: &str, id: &str, secret: &FlowSecret) -> ApiResult<String> {
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(secret).map_err(ApiError::internal)?);
        Ok(self.store().keys().encrypt(&plain, Binding { owner_id, record_id: id, field: FIELD }))
    }

    fn open(&self, row: &oauth_flow::Model) -> ApiResult<FlowSecret> {
        let plain = self.store().keys().decrypt(&row.secret, binding(row))?;
        serde_json::from_slice(&plain)
            .map_err(|_| ApiError::internal(anyhow::anyhow!("flow {} secret does not parse", row.id)))
    }

    async fn check_pending_limit<C: ConnectionTrait>(&self, db: &C, owner_id: &str) -> ApiResult<()> {
        let pending = oauth_flow::Entity::find()
            .filter(oauth_flow::Column::OwnerId.eq(owner_id))
            .filter(oauth_flow::Column::Status.eq(FlowStatus::Pending.as_str()))
            .filter(oauth_flow::Column::ExpiresAt.gt(Utc::now()))
            .count(db)
            .await?;
        let max = self.config().max_pending_per_user;
        if pending >= max {
            return Err(ApiError::Limit(format!(
                "you already have {pending} sign-ins in progress (the limit is {max}); finish one or cancel it with cancelFlow"
            )));
        }
        Ok(())
    }

    /// Stores a new PENDING flow if its owner is still under the limit.
    /// Count and insert are one transaction that parallel starts of the same
    /// person take in turn: on SQLite the single writer connection orders
    /// them, on PostgreSQL a per-person advisory lock does.
    async fn insert_pending(&self, row: oauth_flow::Model) -> ApiResult<oauth_flow::Model> {
        let txn = self.store().db().begin().await?;
        if self.store().is_postgres() {
            txn.execute(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                [PENDING_LIMIT_LOCK.into(), row.owner_id.clone().into()],
            ))
            .await?;
        }
        self.check_pending_limit(&txn, &row.owner_id).await?;
        let row = oauth_flow::ActiveModel::from(row).insert(&txn).await?;
        txn.commit().await?;
        Ok(row)
    }

    pub async fn start_device(&self, owner: &OwnerHandle, agent: Agent, provider: Provider) -> ApiResult<DeviceFlow> {
        if method_for(agent, provider) != Some(KIND_DEVICE) {
            return Err(wrong_method(agent, provider, "device"));
        }
        // Checked before asking the provider, and again when storing.
        self.check_pending_limit(self.store().db(), owner.user_id()).await?;
        let started = self.store().providers().start_device(provider).await.map_err(|e| {
            if e.transient {
                ApiError::Unavailable(e.message)
            } else {
                ApiError::bad_input(e.message)
            }
        })?;
        let id = new_id();
        let now = Utc::now();
        let keys = self.store().keys();
        let seal = |field, text: &str| seal_text(keys, owner.user_id(), &id, field, text);
        let row = oauth_flow::Model {
            id: id.clone(),
            owner_id: owner.user_id().to_owned(),
            agent: agent.as_str().into(),
            provider: provider.as_str().into(),
            kind: KIND_DEVICE.into(),
            status: FlowStatus::Pending.as_str().into(),
            user_code: String::new(),
            verification_uri: started.verification_uri,
            verification_uri_complete: None,
            authorize_url: None,
            sealed_user_code: Some(seal(FLOW_USER_CODE_FIELD, &started.user_code)),
            sealed_verification_uri_complete: started
                .verification_uri_complete
                .as_deref()
                .map(|link| seal(FLOW_VERIFICATION_URI_FIELD, link)),
            secret: self.seal(owner.user_id(), &id, &started.secret)?,
            interval_secs: started.interval as i32,
            expires_at: now + started.expires_in,
            // RFC 8628: wait one interval before the first poll.
            next_poll_at: now + Duration::seconds(started.interval.into()),
            failures: 0,
            message: None,
            credential_id: None,
            revision: 1,
            lease_owner: Some(self.inner.instance.clone()),
            lease_until: Some(now + self.lease()),
            created_at: now,
            updated_at: now,
        };
        let row = self.insert_pending(row).await?;
        crate::metrics::flow(&row.provider, "STARTED");
        tracing::info!(flow = %row.id, owner = %row.owner_id, provider = %row.provider, agent = %row.agent, kind = KIND_DEVICE, "sign-in flow started");
        self.spawn_poller(row.id.clone());
        view(self.store().keys(), &row)
    }

    pub async fn start_authorization(
        &self,
        owner: &OwnerHandle,
        agent: Agent,
        provider: Provider,
    ) -> ApiResult<AuthorizationFlow> {
        if method_for(agent, provider) != Some(KIND_AUTHORIZATION) {
            return Err(wrong_method(agent, provider, "authorization-code"));
        }
        let (url, secret) = self.store().providers().authorization_request();
        let id = new_id();
        let now = Utc::now();
        let expires_at = now + Duration::from_std(self.config().authorization_timeout).unwrap_or(Duration::minutes(10));
        let row = oauth_flow::Model {
            id: id.clone(),
            owner_id: owner.user_id().to_owned(),
            agent: agent.as_str().into(),
            provider: provider.as_str().into(),
            kind: KIND_AUTHORIZATION.into(),
            status: FlowStatus::Pending.as_str().into(),
            user_code: String::new(),
            verification_uri: String::new(),
            verification_uri_complete: None,
            // Not kept: the URL carries the state (which `secret` holds,
            // encrypted). The client gets the URL once, below.
            authorize_url: None,
            sealed_user_code: None,
            sealed_verification_uri_complete: None,
            secret: self.seal(owner.user_id(), &id, &secret)?,
            interval_secs: 0,
            expires_at,
            next_poll_at: expires_at,
            failures: 0,
            message: None,
            credential_id: None,
            revision: 1,
            lease_owner: None,
            lease_until: None,
            created_at: now,
            updated_at: now,
        };
        let row = self.insert_pending(row).await?;
        crate::metrics::flow(&row.provider, "STARTED");
        tracing::info!(flow = %row.id, owner = %row.owner_id, provider = %row.provider, agent = %row.agent, kind = KIND_AUTHORIZATION, "sign-in flow started");
        Ok(AuthorizationFlow {
            id: ID(id),
            agent,
            provider,
            status: FlowStatus::Pending,
            authorize_url: url,
            expires_at,
        })
    }

    async fn own_flow(&self, owner: &OwnerHandle, id: &str) -> ApiResult<Option<oauth_flow::Model>> {
        Ok(oauth_flow::Entity::find_by_id(id)
            .filter(oauth_flow::Column::OwnerId.eq(owner.user_id()))
            .one(self.store().db())
            .await?)
    }

    /// Moves a PENDING flow to a final state (once: a concurrent change
    /// wins). `holder` limits it to whoever holds the flow.
    async fn finish(
        &self,
        row: &oauth_flow::Model,
        status: FlowStatus,
        message: Option<String>,
        credential_id: Option<String>,
        holder: Holder<'_>,
    ) -> ApiResult<bool> {
        let now = Utc::now();
        let credential_shown = credential_id.clone();
        let held = match holder {
            Holder::Anyone => Condition::all(),
            Holder::Lease(owner) => Condition::all().add(oauth_flow::Column::LeaseOwner.eq(owner)),
            Holder::NotCompleting => Condition::any()
                .add(oauth_flow::Column::LeaseOwner.is_null())
                .add(oauth_flow::Column::LeaseOwner.not_like(format!("{COMPLETING}%"))),
        };
        let updated = oauth_flow::Entity::update_many()
            .filter(held)
            .col_expr(oauth_flow::Column::Status, Expr::value(status.as_str()))
            .col_expr(oauth_flow::Column::Message, Expr::value(message))
            .col_expr(oauth_flow::Column::CredentialId, Expr::value(credential_id))
            .col_expr(oauth_flow::Column::Revision, Expr::col(oauth_flow::Column::Revision).add(1))
            .col_expr(oauth_flow::Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(oauth_flow::Column::UpdatedAt, Expr::value(now))
            .filter(oauth_flow::Column::Id.eq(row.id.as_str()))
            .filter(oauth_flow::Column::Status.eq(FlowStatus::Pending.as_str()))
            .exec(self.store().db())
            .await?
            .rows_affected;
        if updated == 1 {
            crate::metrics::flow(&row.provider, status.as_str());
            tracing::info!(
                flow = %row.id,
                owner = %row.owner_id,
                provider = %row.provider,
                agent = %row.agent,
                kind = %row.kind,
                status = status.as_str(),
                credential = credential_shown.as_deref().unwrap_or("-"),
                "sign-in flow ended"
            );
            if let Some(fresh) = oauth_flow::Entity::find_by_id(row.id.as_str()).one(self.store().db()).await? {
                self.publish_row(&fresh).await?;
            }
        }
        Ok(updated == 1)
    }

    /// A pending authorization flow past its time becomes EXPIRED on sight.
    async fn expire_if_due(&self, row: oauth_flow::Model) -> ApiResult<oauth_flow::Model> {
        if row.status == FlowStatus::Pending.as_str() && row.expires_at <= Utc::now() {
            self.finish(
                &row,
                FlowStatus::Expired,
                Some("the sign-in expired; start again".into()),
                None,
                Holder::Anyone,
            )
            .await?;
            return Ok(oauth_flow::Entity::find_by_id(row.id.as_str()).one(self.store().db()).await?.unwrap_or(row));
        }
        Ok(row)
    }

    pub async fn device_flow(&self, owner: &OwnerHandle, id: &str) -> ApiResult<Option<DeviceFlow>> {
        match self.own_flow(owner, id).await? {
            Some(row) if row.kind == KIND_DEVICE => {
                view(self.store().keys(), &self.expire_if_due(row).await?).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The owner's device sign-ins still PENDING, newest first: what a person
    /// can resume after a reload.
    pub async fn pending_device_flows(&self, owner: &OwnerHandle) -> ApiResult<Vec<DeviceFlow>> {
        use sea_orm::QueryOrder;
        let rows = oauth_flow::Entity::find()
            .filter(oauth_flow::Column::OwnerId.eq(owner.user_id()))
            .filter(oauth_flow::Column::Kind.eq(KIND_DEVICE))
            .filter(oauth_flow::Column::Status.eq(FlowStatus::Pending.as_str()))
            .order_by_desc(oauth_flow::Column::CreatedAt)
            .all(self.store().db())
            .await?;
        let mut pending = Vec::with_capacity(rows.len());
        for row in rows {
            let row = self.expire_if_due(row).await?;
            if row.status == FlowStatus::Pending.as_str() {
                pending.push(view(self.store().keys(), &row)?);
            }
        }
        Ok(pending)
    }

    pub async fn cancel(&self, owner: &OwnerHandle, id: &str) -> ApiResult<bool> {
        let row = self.own_flow(owner, id).await?.ok_or_else(|| ApiError::not_found("sign-in flow"))?;
        if row.status != FlowStatus::Pending.as_str() {
            return Err(ApiError::bad_input(format!("this sign-in has already ended ({})", row.status)));
        }
        let cancelled =
            self.finish(&row, FlowStatus::Cancelled, Some("cancelled".into()), None, Holder::NotCompleting).await?;
        if !cancelled {
            return Err(ApiError::bad_input(
                "this sign-in is being completed right now and can no longer be cancelled",
            ));
        }
        if let Some(notify) = self.inner.running.lock().expect("flow map").get(id) {
            notify.notify_one();
        }
        Ok(cancelled)
    }

    /// Completes an authorization-code flow with what the provider showed
    /// (`code#state`). The state must match; a mismatch changes nothing.
    pub async fn complete(&self, owner: &OwnerHandle, id: &str, pasted: &str) -> ApiResult<CredentialMeta> {
        let row = self.own_flow(owner, id).await?.ok_or_else(|| ApiError::not_found("sign-in flow"))?;
        if row.kind != KIND_AUTHORIZATION {
            return Err(ApiError::bad_input(
                "this is a device sign-in: it completes by itself once you enter the code",
            ));
        }
        let row = self.expire_if_due(row).await?;
        if row.status != FlowStatus::Pending.as_str() {
            return Err(ApiError::bad_input(format!(
                "this sign-in has already ended ({}); start a new one",
                row.status
            )));
        }
        let pasted = pasted.trim();
        if pasted.is_empty() || pasted.len() > 4096 || pasted.chars().any(char::is_whitespace) {
            return Err(ApiError::bad_input(
                "paste the whole code the provider showed, e.g. abc…#xyz…, without spaces",
            ));
        }
        let Some((code, state)) = pasted.split_once('#').filter(|(c, s)| !c.is_empty() && !s.is_empty()) else {
            return Err(ApiError::bad_input(
                "the code must look like code#state: copy everything the provider showed, including the part after #",
            ));
        };
        let FlowSecret::Authorization { verifier, state: expected } = self.open(&row)? else {
            return Err(ApiError::internal(anyhow::anyhow!("authorization flow {} holds a device secret", row.id)));
        };
        if !crate::auth::hashes_match(state, expected.expose()) {
            return Err(ApiError::bad_input(
                "this code belongs to a different sign-in (its state does not match): start the sign-in again and paste the code it shows",
            ));
        }
        // Take the flow before using the code: a double submit or a cancel
        // racing this request cannot also end it.
        let tag = format!("{COMPLETING}{}", new_id());
        let taken = oauth_flow::Entity::update_many()
            .col_expr(oauth_flow::Column::LeaseOwner, Expr::value(tag.as_str()))
            .filter(oauth_flow::Column::Id.eq(row.id.as_str()))
            .filter(oauth_flow::Column::Status.eq(FlowStatus::Pending.as_str()))
            .filter(oauth_flow::Column::LeaseOwner.is_null())
            .exec(self.store().db())
            .await?
            .rows_affected;
        if taken == 0 {
            return Err(ApiError::bad_input("this sign-in is already being completed"));
        }
        let tokens = match self.store().providers().exchange_code(code, state, &verifier).await {
            Ok(tokens) => tokens,
            Err(e) if e.transient => {
                oauth_flow::Entity::update_many()
                    .col_expr(oauth_flow::Column::LeaseOwner, Expr::value(Option::<String>::None))
                    .filter(oauth_flow::Column::Id.eq(row.id.as_str()))
                    .filter(oauth_flow::Column::LeaseOwner.eq(tag.as_str()))
                    .exec(self.store().db())
                    .await?;
                return Err(ApiError::Unavailable(e.message));
            }
            Err(e) => {
                self.finish(&row, FlowStatus::Failed, Some(e.message.clone()), None, Holder::Lease(&tag)).await?;
                return Err(ApiError::bad_input(e.message));
            }
        };
        let meta = self.store_tokens(&row, tokens, Some(owner)).await?;
        self.finish(&row, FlowStatus::Authorized, None, Some(meta.id.clone()), Holder::Lease(&tag)).await?;
        Ok(meta)
    }

    async fn store_tokens(
        &self,
        row: &oauth_flow::Model,
        tokens: Tokens,
        owner: Option<&OwnerHandle>,
    ) -> ApiResult<CredentialMeta> {
        let new = NewCredential {
            provider: row.provider.parse().map_err(ApiError::internal)?,
            agent: Some(row.agent.parse().map_err(ApiError::internal)?),
            kind: CredentialKind::Subscription,
            secret: StoredSecret::Subscription(tokens.secret),
            expires_at: tokens.expires_at,
        };
        match owner {
            Some(owner) => owner.put(new).await,
            None => self.store().put_credential(Actor::System, &row.owner_id, new).await,
        }
    }

    /// A stream of a device flow's states: the current one, then every
    /// change; it ends after a final state.
    pub async fn watch(&self, owner: &OwnerHandle, id: &str) -> ApiResult<impl Stream<Item = DeviceFlow> + use<>> {
        // Subscribe before reading, so no change slips between the two.
        let mut updates = self.updates();
        let row = match self.own_flow(owner, id).await? {
            Some(row) if row.kind == KIND_DEVICE => self.expire_if_due(row).await?,
            _ => return Err(ApiError::not_found("device sign-in flow")),
        };
        let first = view(self.store().keys(), &row)?;
        let engine = self.clone();
        let id = id.to_owned();
        Ok(async_stream::stream! {
            let mut revision = row.revision;
            let done = first.status.is_final();
            yield first;
            if done {
                return;
            }
            loop {
                let reread = || async {
                    match oauth_flow::Entity::find_by_id(id.as_str()).one(engine.store().db()).await {
                        Ok(Some(row)) => view(engine.store().keys(), &row).ok().map(|flow| (row.revision, flow)),
                        _ => None,
                    }
                };
                let next = match tokio::time::timeout(REREAD_EVERY, updates.recv()).await {
                    Ok(Ok(update)) if update.flow.id.as_str() == id => Some((update.revision, update.flow)),
                    Ok(Ok(_)) => None,
                    // Fell behind, or nothing heard for a while (a missed
                    // notification, say): read the current state instead.
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) | Err(_) => reread().await,
                    Ok(Err(broadcast::error::RecvError::Closed)) => return,
                };
                if let Some((rev, flow)) = next {
                    if rev > revision {
                        revision = rev;
                        let done = flow.status.is_final();
                        yield flow;
                        if done {
                            return;
                        }
                    }
                }
            }
        })
    }

    /// Takes (or renews) this instance's lease on a pending flow.
    async fn claim(&self, id: &str) -> ApiResult<bool> {
        let now = Utc::now();
        let claimed = oauth_flow::Entity::update_many()
            .col_expr(oauth_flow::Column::LeaseOwner, Expr::value(self.inner.instance.as_str()))
            .col_expr(oauth_flow::Column::LeaseUntil, Expr::value(now + self.lease()))
            .filter(oauth_flow::Column::Id.eq(id))
            .filter(oauth_flow::Column::Status.eq(FlowStatus::Pending.as_str()))
            .filter(
                Condition::any()
                    .add(oauth_flow::Column::LeaseOwner.is_null())
                    .add(oauth_flow::Column::LeaseOwner.eq(self.inner.instance.as_str()))
                    .add(oauth_flow::Column::LeaseUntil.lt(now)),
            )
            .exec(self.store().db())
            .await?
            .rows_affected;
        Ok(claimed == 1)
    }

    fn spawn_poller(&self, id: String) {
        // Shutting down: the flow stays for another instance (or the restart).
        if crate::shutdown::is_triggered() {
            return;
        }
        let notify = {
            let mut running = self.inner.running.lock().expect("flow map");
            if running.contains_key(&id) {
                return;
            }
            let notify = Arc::new(Notify::new());
            running.insert(id.clone(), notify.clone());
            notify
        };
        let engine = self.clone();
        tokio::spawn(async move {
            if let Err(e) = engine.poll_loop(&id, &notify).await {
                // Internal trouble (database): leave the flow pending; the
                // sweep retries it.
                tracing::error!(flow = %id, error = ?e, "flow poller stopped");
            }
            engine.inner.running.lock().expect("flow map").remove(&id);
        });
    }

    async fn poll_loop(&self, id: &str, wake: &Notify) -> ApiResult<()> {
        loop {
            // Between polls: a shutdown stops here, never mid-request.
            if crate::shutdown::is_triggered() {
                return Ok(());
            }
            if !self.claim(id).await? {
                return Ok(()); // finished, cancelled, or another instance has it
            }
            let Some(row) = oauth_flow::Entity::find_by_id(id).one(self.store().db()).await? else { return Ok(()) };
            let now = Utc::now();
            if now >= row.expires_at {
                self.finish(
                    &row,
                    FlowStatus::Expired,
                    Some("the code expired before the sign-in was completed; start again".into()),
                    None,
                    Holder::Lease(&self.inner.instance),
                )
                .await?;
                return Ok(());
            }
            let wait = (row.next_poll_at - now).min(row.expires_at - now).min(MAX_SLEEP);
            if wait > Duration::zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait.to_std().unwrap_or_default()) => {}
                    _ = wake.notified() => {}
                    _ = crate::shutdown::triggered() => {}
                }
                continue;
            }
            self.poll_once(&row).await?;
        }
    }

    async fn poll_once(&self, row: &oauth_flow::Model) -> ApiResult<()> {
        let secret = self.open(row)?;
        let outcome = self.store().providers().poll(&secret).await;
        let now = Utc::now();
        let db = self.store().db();
        let me = self.inner.instance.as_str();
        let pending = || {
            oauth_flow::Entity::update_many()
                .filter(oauth_flow::Column::Id.eq(row.id.as_str()))
                .filter(oauth_flow::Column::Status.eq(FlowStatus::Pending.as_str()))
                .filter(oauth_flow::Column::LeaseOwner.eq(me))
        };
        match outcome {
            Poll::Pending => {
                pending()
                    .col_expr(
                        oauth_flow::Column::NextPollAt,
                        Expr::value(now + Duration::seconds(row.interval_secs.into())),
                    )
                    .col_expr(oauth_flow::Column::Failures, Expr::value(0))
                    .exec(db)
                    .await?;
            }
            Poll::SlowDown => {
                // RFC 8628: +5 s, for this and every later poll.
                let interval = row.interval_secs + 5;
                let updated = pending()
                    .col_expr(oauth_flow::Column::IntervalSecs, Expr::value(interval))
                    .col_expr(oauth_flow::Column::NextPollAt, Expr::value(now + Duration::seconds(interval.into())))
                    .col_expr(oauth_flow::Column::Revision, Expr::col(oauth_flow::Column::Revision).add(1))
                    .col_expr(oauth_flow::Column::UpdatedAt, Expr::value(now))
                    .exec(db)
                    .await?;
                if updated.rows_affected == 1 {
                    if let Some(fresh) = oauth_flow::Entity::find_by_id(row.id.as_str()).one(db).await? {
                        self.publish_row(&fresh).await?;
                    }
                }
            }
            Poll::Transient(why) => {
                let failures = row.failures + 1;
                if failures as u32 >= self.config().max_poll_failures {
                    let message = format!(
                        "{} could not be reached after {failures} attempts ({why}); start the sign-in again later",
                        Provider::display_name(row.provider.parse().map_err(ApiError::internal)?)
                    );
                    self.finish(row, FlowStatus::Failed, Some(message), None, Holder::Lease(me)).await?;
                } else {
                    let backoff = i64::from(row.interval_secs) << failures.min(5);
                    pending()
                        .col_expr(oauth_flow::Column::Failures, Expr::value(failures))
                        .col_expr(oauth_flow::Column::NextPollAt, Expr::value(now + Duration::seconds(backoff.min(60))))
                        .exec(db)
                        .await?;
                }
            }
            Poll::Authorized(tokens) => {
                // Still ours and still pending? A cancel during the request wins.
                if self.claim(&row.id).await? {
                    let meta = self.store_tokens(row, tokens, None).await?;
                    self.finish(row, FlowStatus::Authorized, None, Some(meta.id), Holder::Lease(me)).await?;
                }
            }
            Poll::Denied(m) => {
                self.finish(row, FlowStatus::Denied, Some(m), None, Holder::Lease(me)).await?;
            }
            Poll::Expired(m) => {
                self.finish(row, FlowStatus::Expired, Some(m), None, Holder::Lease(me)).await?;
            }
            Poll::Failed(m) => {
                self.finish(row, FlowStatus::Failed, Some(m), None, Holder::Lease(me)).await?;
            }
        }
        Ok(())
    }

    /// At shutdown: waits (at most `grace`) for this instance's pollers to
    /// stop between polls, then releases their leases, so another instance's
    /// next sweep takes the flows over at once instead of after the lease
    /// runs out. Returns how many leases were released. Safe to call again
    /// (a flow started by a request that was still running).
    pub async fn release_leases(&self, grace: std::time::Duration) -> ApiResult<u64> {
        let deadline = tokio::time::Instant::now() + grace;
        while !self.inner.running.lock().expect("flow map").is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let still = self.inner.running.lock().expect("flow map").len();
        if still > 0 {
            tracing::warn!(pollers = still, "sign-in pollers still busy at the end of the grace period");
        }
        let released = oauth_flow::Entity::update_many()
            .col_expr(oauth_flow::Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(oauth_flow::Column::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(oauth_flow::Column::LeaseOwner.eq(self.inner.instance.as_str()))
            .filter(oauth_flow::Column::Status.eq(FlowStatus::Pending.as_str()))
            .exec(self.store().db())
            .await?
            .rows_affected;
        if released > 0 {
            tracing::info!(flows = released, "released sign-in flow leases for another instance");
        }
        Ok(released)
    }

    /// Starts pollers for pending device flows that no live instance holds.
    /// `take_over` ignores leases (a single-instance SQLite start-up, where
    /// any lease is left over from this same service's previous run).
    pub async fn sweep(&self, take_over: bool) -> ApiResult<usize> {
        let now = Utc::now();
        let mut query = oauth_flow::Entity::find()
            .filter(oauth_flow::Column::Status.eq(FlowStatus::Pending.as_str()))
            .filter(oauth_flow::Column::Kind.eq(KIND_DEVICE));
        if !take_over {
            query = query.filter(
                Condition::any()
                    .add(oauth_flow::Column::LeaseOwner.is_null())
                    .add(oauth_flow::Column::LeaseUntil.lt(now)),
            );
        }
        let rows = query.all(self.store().db()).await?;
        let mut started = 0;
        for row in rows {
            if take_over {
                let mut active: oauth_flow::ActiveModel = row.clone().into();
                active.lease_owner = Set(None);
                active.update(self.store().db()).await?;
            }
            let running = self.inner.running.lock().expect("flow map").contains_key(&row.id);
            if !running {
                self.spawn_poller(row.id);
                started += 1;
            }
        }
        Ok(started)
    }

    /// Resumes polling after a start, then keeps sweeping for orphans.
    pub fn run_background(&self, take_over_on_start: bool) {
        let engine = self.clone();
        tokio::spawn(async move {
            match engine.sweep(take_over_on_start).await {
                Ok(n) if n > 0 => tracing::info!(flows = n, "resumed pending sign-in flows"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = ?e, "resuming sign-in flows failed"),
            }
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = engine.sweep(false).await {
                    tracing::warn!(error = ?e, "sign-in flow sweep failed");
                }
            }
        });
    }

    /// Seals what rows written before sealing (or by an older instance)
    /// hold in plain text: the user code and the link that carries it move
    /// into their encrypted columns, and the authorize URL (it carries the
    /// state) is cleared. Runs at every start-up; returns how many rows
    /// changed. On SQLite the write-ahead log is then checkpointed and
    /// truncated, so the old plain text is not left in it.
    pub async fn seal_plain_text_rows(&self) -> ApiResult<usize> {
        let db = self.store().db();
        let keys = self.store().keys();
        let rows = oauth_flow::Entity::find()
            .filter(
                Condition::any()
                    .add(oauth_flow::Column::UserCode.ne(""))
                    .add(oauth_flow::Column::VerificationUriComplete.is_not_null())
                    .add(oauth_flow::Column::AuthorizeUrl.is_not_null()),
            )
            .all(db)
            .await?;
        let mut sealed = 0;
        for row in rows {
            let seal = |field, text: &str| seal_text(keys, &row.owner_id, &row.id, field, text);
            let mut update = oauth_flow::Entity::update_many()
                .col_expr(oauth_flow::Column::AuthorizeUrl, Expr::value(Option::<String>::None))
                .filter(oauth_flow::Column::Id.eq(row.id.as_str()));
            if !row.user_code.is_empty() {
                update = update
                    .col_expr(oauth_flow::Column::UserCode, Expr::value(""))
                    .col_expr(
                        oauth_flow::Column::SealedUserCode,
                        Expr::value(Some(seal(FLOW_USER_CODE_FIELD, &row.user_code))),
                    )
                    .filter(oauth_flow::Column::UserCode.eq(row.user_code.as_str()));
            }
            if let Some(link) = &row.verification_uri_complete {
                update = update
                    .col_expr(oauth_flow::Column::VerificationUriComplete, Expr::value(Option::<String>::None))
                    .col_expr(
                        oauth_flow::Column::SealedVerificationUriComplete,
                        Expr::value(Some(seal(FLOW_VERIFICATION_URI_FIELD, link))),
                    );
            }
            sealed += update.exec(db).await?.rows_affected as usize;
        }
        if sealed > 0 && !self.store().is_postgres() {
            if let Err(e) = db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)").await {
                tracing::warn!(error = %e, "could not truncate the write-ahead log after sealing sign-in flows");
            }
        }
        Ok(sealed)
    }

    /// Deletes finished flows last changed before `cutoff` (housekeeping).
    pub async fn delete_finished_before(&self, cutoff: DateTime<Utc>) -> ApiResult<u64> {
        Ok(oauth_flow::Entity::delete_many()
            .filter(oauth_flow::Column::Status.ne(FlowStatus::Pending.as_str()))
            .filter(oauth_flow::Column::UpdatedAt.lt(cutoff))
            .exec(self.store().db())
            .await?
            .rows_affected)
    }
}
