//! Starting, completing, cancelling and reading sign-in flows: what a
//! person's requests do.

use std::sync::PoisonError;

use chrono::{Duration, Utc};
use futures_util::Stream;
use tokio::sync::broadcast;

use super::view::{seal_text, view, AuthorizationFlow, DeviceFlow};
use super::{FlowEngine, Holder, COMPLETING, KIND_AUTHORIZATION, KIND_DEVICE, REREAD_EVERY};
use crate::agents::catalog;
use crate::domain::{Agent, AuthMethod, CredentialKind, FlowStatus, Provider};
use crate::error::{ApiError, ApiResult};
use crate::ids::new_id;
use crate::providers::{FlowSecret, Tokens};
use crate::store::audit::Actor;
use crate::store::{CredentialMeta, FlowRecord, NewCredential, Origin, OwnerHandle, StoredSecret};
use crate::store::{FLOW_USER_CODE_FIELD, FLOW_VERIFICATION_URI_FIELD};

/// The sign-in method an (agent, provider) pair uses, if any.
fn method_for(agent: Agent, provider: Provider) -> Option<&'static str> {
    match catalog::sign_in_method(agent, provider)? {
        AuthMethod::DeviceCode => Some(KIND_DEVICE),
        _ => Some(KIND_AUTHORIZATION),
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
        crate::agents::spec(agent).name,
        crate::providers::spec(provider).name,
        catalog::supported_methods(agent)
    ))
}

/// A reserved pending-flow slot (see `FlowEngine::reserve_slot`).
struct StartingSlot {
    engine: FlowEngine,
    owner_id: String,
}

impl Drop for StartingSlot {
    fn drop(&mut self) {
        let mut starting = self.engine.inner.starting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = starting.get_mut(&self.owner_id) {
            *n -= 1;
            if *n == 0 {
                starting.remove(&self.owner_id);
            }
        }
    }
}

impl FlowEngine {
    /// The pending-flow limit: `stored` pending flows of a person and
    /// `starting` ones not stored yet.
    fn check_pending_limit(&self, stored: u64, starting: u64) -> ApiResult<()> {
        let pending = stored + starting;
        let max = self.config().max_pending_per_user;
        if pending >= max {
            return Err(ApiError::Limit(format!(
                "you already have {pending} sign-ins in progress (the limit is {max}); finish one or cancel it with cancelFlow"
            )));
        }
        Ok(())
    }

    /// Stores a new PENDING flow if its owner is still under the limit
    /// (counted and inserted in one transaction: `Store::insert_pending_flow`).
    async fn insert_pending(&self, row: FlowRecord) -> ApiResult<FlowRecord> {
        self.store().insert_pending_flow(row, |stored| self.check_pending_limit(stored, 0)).await
    }

    /// Holds one of the person's pending-flow slots in this process until
    /// dropped: counted with their stored pending flows, under one lock, so
    /// parallel starts cannot all pass the check before any is stored.
    async fn reserve_slot(&self, owner_id: &str) -> ApiResult<StartingSlot> {
        let _turn = self.inner.starting_turn.lock().await;
        let starting = self.inner.starting.lock().unwrap_or_else(PoisonError::into_inner).get(owner_id).copied();
        self.check_pending_limit(self.store().count_pending_flows(owner_id).await?, starting.unwrap_or(0))?;
        *self.inner.starting.lock().unwrap_or_else(PoisonError::into_inner).entry(owner_id.to_owned()).or_default() +=
            1;
        Ok(StartingSlot { engine: self.clone(), owner_id: owner_id.to_owned() })
    }

    pub async fn start_device(&self, owner: &OwnerHandle, agent: Agent, provider: Provider) -> ApiResult<DeviceFlow> {
        if method_for(agent, provider) != Some(KIND_DEVICE) {
            return Err(wrong_method(agent, provider, "device"));
        }
        // The slot is reserved before the provider is asked (and released
        // if it refuses), so racing starts ask it at most as many times as
        // flows can be pending; the limit is checked again when storing.
        let _slot = self.reserve_slot(owner.user_id()).await?;
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
        let row = FlowRecord {
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
        let (url, secret) = self.store().providers().authorization_request(provider).ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("{provider} is listed with a code sign-in it does not offer"))
        })?;
        let id = new_id();
        let now = Utc::now();
        let expires_at = now + Duration::from_std(self.config().authorization_timeout).unwrap_or(Duration::minutes(10));
        let row = FlowRecord {
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
        Ok(AuthorizationFlow { id, agent, provider, status: FlowStatus::Pending, authorize_url: url, expires_at })
    }

    async fn own_flow(&self, owner: &OwnerHandle, id: &str) -> ApiResult<Option<FlowRecord>> {
        self.store().own_flow(owner.user_id(), id).await
    }

    /// Moves a PENDING flow to a final state (once: a concurrent change
    /// wins). `holder` limits it to whoever holds the flow.
    pub(super) async fn finish(
        &self,
        row: &FlowRecord,
        status: FlowStatus,
        message: Option<String>,
        credential_id: Option<String>,
        holder: Holder<'_>,
    ) -> ApiResult<bool> {
        let credential_shown = credential_id.clone();
        let ended = self.store().finish_flow(&row.id, status, message, credential_id, holder).await?;
        if ended {
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
            if let Some(fresh) = self.store().flow(&row.id).await? {
                self.publish_row(&fresh).await?;
            }
        }
        Ok(ended)
    }

    /// A pending authorization flow past its time becomes EXPIRED on sight.
    async fn expire_if_due(&self, row: FlowRecord) -> ApiResult<FlowRecord> {
        if row.status == FlowStatus::Pending.as_str() && row.expires_at <= Utc::now() {
            self.finish(
                &row,
                FlowStatus::Expired,
                Some("the sign-in expired; start again".into()),
                None,
                Holder::Anyone,
            )
            .await?;
            return Ok(self.store().flow(&row.id).await?.unwrap_or(row));
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
        let rows = self.pending_rows(owner, KIND_DEVICE).await?;
        rows.iter().map(|row| view(self.store().keys(), row)).collect()
    }

    /// The owner's flows of `kind` still PENDING (those past their time
    /// become EXPIRED on the way), newest first.
    async fn pending_rows(&self, owner: &OwnerHandle, kind: &str) -> ApiResult<Vec<FlowRecord>> {
        let rows = self.store().pending_flows_of(owner.user_id(), kind).await?;
        let mut pending = Vec::with_capacity(rows.len());
        for row in rows {
            let row = self.expire_if_due(row).await?;
            if row.status == FlowStatus::Pending.as_str() {
                pending.push(row);
            }
        }
        Ok(pending)
    }

    /// The owner's authorization-code sign-ins still PENDING, newest first,
    /// each with its URL rebuilt from the encrypted verifier and state: what
    /// a person resumes after a reload.
    pub async fn pending_authorization_flows(&self, owner: &OwnerHandle) -> ApiResult<Vec<AuthorizationFlow>> {
        let rows = self.pending_rows(owner, KIND_AUTHORIZATION).await?;
        let mut pending = Vec::with_capacity(rows.len());
        for row in rows {
            let provider = row.provider.parse().map_err(ApiError::internal)?;
            let authorize_url =
                self.store().providers().authorization_url(provider, &self.open(&row)?).ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!("authorization flow {} holds a device secret", row.id))
                })?;
            pending.push(AuthorizationFlow {
                id: row.id.clone(),
                agent: row.agent.parse().map_err(ApiError::internal)?,
                provider: row.provider.parse().map_err(ApiError::internal)?,
                status: FlowStatus::Pending,
                authorize_url,
                expires_at: row.expires_at,
            });
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
        if !self.store().take_flow_for_completion(&row.id, &tag).await? {
            return Err(ApiError::bad_input("this sign-in is already being completed"));
        }
        let provider = row.provider.parse().map_err(ApiError::internal)?;
        let tokens = match self.store().providers().exchange_code(provider, code, state, &verifier).await {
            Ok(tokens) => tokens,
            Err(e) if e.transient => {
                self.store().release_flow_completion(&row.id, &tag).await?;
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

    pub(super) async fn store_tokens(
        &self,
        row: &FlowRecord,
        tokens: Tokens,
        owner: Option<&OwnerHandle>,
    ) -> ApiResult<CredentialMeta> {
        let new = NewCredential {
            provider: row.provider.parse().map_err(ApiError::internal)?,
            agent: Some(row.agent.parse().map_err(ApiError::internal)?),
            kind: CredentialKind::Subscription,
            secret: StoredSecret::Subscription(tokens.secret),
            expires_at: tokens.expires_at,
            origin: Origin::Flow,
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
                    match engine.store().flow(id.as_str()).await {
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
}
