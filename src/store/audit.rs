//! The audit trail: written in the same transaction as the change it records.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Set};

use crate::auth::Principal;
use crate::domain::{Agent, Provider};
use crate::entities::audit_log;
use crate::error::ApiResult;

/// What an audit entry says happened. Never secret material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    CredentialCreated,
    CredentialReplaced,
    CredentialRemoved,
    AdminDeletedCredential,
    TaskCredentialsIssued,
    TaskCredentialsReturned,
    CredentialRefreshed,
    /// A credential (or a system-wide key) was checked with its provider.
    CredentialChecked,
    UserCreated,
    RunnerTokenCreated,
    TokenCreated,
    TokenRevoked,
    UserDisabled,
    UserEnabled,
    UserDeleted,
    KeyRotated,
    WebhookCreated,
    WebhookDeleted,
    WebhookTested,
    /// A task's first request through the egress proxy with its credential.
    ProxyFirstUse,
    WebhookUpdated,
    WebhookSecretRotated,
    /// The delivery worker disabled an endpoint (410 Gone, or failing too long).
    WebhookDisabled,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::CredentialCreated => "CREDENTIAL_CREATED",
            Action::CredentialReplaced => "CREDENTIAL_REPLACED",
            Action::CredentialRemoved => "CREDENTIAL_REMOVED",
            Action::AdminDeletedCredential => "ADMIN_DELETED_CREDENTIAL",
            Action::TaskCredentialsIssued => "TASK_CREDENTIALS_ISSUED",
            Action::TaskCredentialsReturned => "TASK_CREDENTIALS_RETURNED",
            Action::CredentialRefreshed => "CREDENTIAL_REFRESHED",
            Action::CredentialChecked => "CREDENTIAL_CHECKED",
            Action::UserCreated => "USER_CREATED",
            Action::RunnerTokenCreated => "RUNNER_TOKEN_CREATED",
            Action::TokenCreated => "TOKEN_CREATED",
            Action::TokenRevoked => "TOKEN_REVOKED",
            Action::UserDisabled => "USER_DISABLED",
            Action::UserEnabled => "USER_ENABLED",
            Action::UserDeleted => "USER_DELETED",
            Action::KeyRotated => "KEY_ROTATED",
            Action::WebhookCreated => "WEBHOOK_CREATED",
            Action::WebhookDeleted => "WEBHOOK_DELETED",
            Action::WebhookTested => "WEBHOOK_TESTED",
            Action::ProxyFirstUse => "TASK_CREDENTIALS_FIRST_USED",
            Action::WebhookUpdated => "WEBHOOK_UPDATED",
            Action::WebhookSecretRotated => "WEBHOOK_SECRET_ROTATED",
            Action::WebhookDisabled => "WEBHOOK_DISABLED",
        }
    }
}

/// Who acted: a principal, or the service itself (CLI, scheduler).
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    Principal(&'a Principal),
    System,
}

#[derive(Debug, Default)]
pub struct Entry<'a> {
    pub owner_id: Option<&'a str>,
    pub credential_id: Option<&'a str>,
    pub provider: Option<Provider>,
    pub agent: Option<Agent>,
    pub task_id: Option<&'a str>,
    pub detail: Option<String>,
}

pub(in crate::store) async fn record<C: ConnectionTrait>(
    db: &C,
    actor: Actor<'_>,
    action: Action,
    entry: Entry<'_>,
) -> ApiResult<()> {
    entry_model(actor, action, entry).insert(db).await?;
    Ok(())
}

/// Several entries in one statement (a batch of task issuances).
pub(in crate::store) async fn record_many<C: ConnectionTrait>(
    db: &C,
    entries: Vec<audit_log::ActiveModel>,
) -> ApiResult<()> {
    if !entries.is_empty() {
        audit_log::Entity::insert_many(entries).exec_without_returning(db).await?;
    }
    Ok(())
}

pub(in crate::store) fn entry_model(actor: Actor<'_>, action: Action, entry: Entry<'_>) -> audit_log::ActiveModel {
    let (actor_kind, actor_id) = match actor {
        Actor::Principal(p) => (p.actor_kind(), Some(p.actor_id().to_owned())),
        Actor::System => ("SYSTEM", None),
    };
    audit_log::ActiveModel {
        at: Set(Utc::now()),
        actor_kind: Set(actor_kind.to_owned()),
        actor_id: Set(actor_id),
        action: Set(action.as_str().to_owned()),
        owner_id: Set(entry.owner_id.map(str::to_owned)),
        credential_id: Set(entry.credential_id.map(str::to_owned)),
        provider: Set(entry.provider.map(|p| p.as_str().to_owned())),
        agent: Set(entry.agent.map(|a| a.as_str().to_owned())),
        task_id: Set(entry.task_id.map(str::to_owned)),
        detail: Set(entry.detail),
        ..Default::default()
    }
}
