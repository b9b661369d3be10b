//! The task runner's handle: the only code path that decrypts a credential
//! for use. Every issuance is audited durably before plaintext leaves.
//!
//! Here: the handle and its entry points; `issuance` picks, audits, leases
//! and materialises credentials (in batches); `returns` takes back the
//! files a task's agent refreshed.

mod issuance;
mod returns;

pub(crate) use issuance::{Decision, IssueRequest};

use chrono::{DateTime, Utc};

use crate::agents::Materialized;
use crate::auth::Principal;
use crate::domain::{Agent, CredentialSource, Delivery, Provider};
use crate::error::{ApiError, ApiResult};
use crate::store::audit::Actor;
use crate::store::{AccessToken, Store, TokenKind};
use issuance::checked_provider;
pub(super) use issuance::unusable_reason;
use zeroize::Zeroizing;

/// A task id as the runner names it: 1–200 characters of `[A-Za-z0-9._:/-]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskId(String);

impl TaskId {
    pub fn parse(raw: &str) -> ApiResult<TaskId> {
        let ok = (1..=200).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'));
        if ok {
            Ok(TaskId(raw.to_owned()))
        } else {
            Err(ApiError::bad_input("taskId must be 1 to 200 characters of letters, digits and . _ : / -"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a task receives.
#[derive(Debug)]
pub struct Issued {
    pub source: CredentialSource,
    pub credential_id: Option<String>,
    pub provider: Provider,
    pub materialized: Materialized,
    pub expires_at: Option<DateTime<Utc>>,
    pub delivery: Delivery,
}

pub struct RunnerHandle {
    store: Store,
    principal: Principal,
}

impl RunnerHandle {
    pub(super) fn new(store: Store, principal: Principal) -> RunnerHandle {
        RunnerHandle { store, principal }
    }

    fn token_id(&self) -> &str {
        self.principal.actor_id()
    }

    /// The id of the person with this email or id (`task-env --user`).
    pub async fn person_id(&self, id_or_email: &str) -> ApiResult<String> {
        Ok(self.store.find_person(id_or_email).await?.id)
    }

    /// The next RUNNER token (to rotate its own: create one, then revoke the
    /// old), shown once; it names this runner as its creator.
    pub async fn create_runner_token(&self, name: &str) -> ApiResult<(AccessToken, Zeroizing<String>)> {
        let actor = Actor::Principal(&self.principal);
        self.store.create_runner_token_as(actor, &self.principal.as_creator(), name).await
    }

    /// What a task spent through the egress proxy, per grant.
    pub async fn task_usage(&self, task: &TaskId) -> ApiResult<Vec<crate::store::TaskUsage>> {
        self.store.task_usage(task.as_str(), None).await
    }

    /// Revokes a runner token (a person's token is FORBIDDEN).
    pub async fn revoke_runner_token(&self, id: &str) -> ApiResult<()> {
        let actor = Actor::Principal(&self.principal);
        self.store.revoke_token_as(actor, id, None, Some(TokenKind::Runner)).await
    }

    /// Resolves by priority (subscription, the user's API key, the system
    /// key), audits, leases, and only then materialises the plaintext.
    ///
    /// Tasks starting together are issued in one batch (one read, one
    /// transaction, one commit); a task whose credential must be refreshed
    /// first, is being refreshed, or changed under the batch goes alone.
    pub async fn issue(
        &self,
        user_id: &str,
        agent: Agent,
        provider: Option<Provider>,
        task: &TaskId,
        delivery: Option<Delivery>,
    ) -> ApiResult<Issued> {
        let provider = checked_provider(agent, provider)?;
        let settings = self.store.delivery();
        let delivery = delivery.unwrap_or(settings.default);
        if delivery == Delivery::Proxy && settings.proxy.is_none() {
            return Err(ApiError::bad_input(
                "delivery PROXY needs the vault's egress proxy, and this vault runs none: an operator sets SESAME_PROXY__LISTEN, or issue with delivery FILES",
            ));
        }
        let request = IssueRequest {
            principal: self.principal.clone(),
            user_id: user_id.to_owned(),
            agent,
            provider,
            task: task.clone(),
            delivery,
        };
        let batcher = self.store.batcher(crate::store::ISSUE_WORKERS, |inner| &inner.issue_batch, Store::issue_batch);
        let issued = match batcher.submit(request).await {
            Ok(Decision::Granted(grant)) => self.store.deliver(*grant),
            Ok(Decision::Alone(request)) => self.store.issue_alone(request).await,
            Err(e) => Err(e),
        };
        crate::metrics::issuance(issued.as_ref().map(|i| i.source.as_str()).map_err(|e| e.code()));
        match &issued {
            Ok(i) => tracing::info!(
                user = user_id,
                agent = agent.as_str(),
                provider = i.provider.as_str(),
                task = task.as_str(),
                source = i.source.as_str(),
                delivery = delivery.as_str(),
                credential = i.credential_id.as_deref().unwrap_or("-"),
                "task credentials issued"
            ),
            Err(e) => tracing::info!(
                user = user_id,
                agent = agent.as_str(),
                task = task.as_str(),
                code = e.code(),
                "task credentials not issued"
            ),
        }
        issued
    }
}
