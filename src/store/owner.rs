//! What a person may do with their own credentials. Every query here is
//! filtered by the owner's id, so another user's rows are simply not there.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::audit::Actor;
use super::checks::CheckTarget;
use super::credentials::{NewCredential, Origin, StoredSecret};
use super::{CredentialMeta, Person, Store};
use crate::agents::ParsedSubscription;
use crate::auth::Principal;
use crate::domain::{Agent, CheckResult, CredentialKind, Provider};
use crate::entities::credential;
use crate::error::{ApiError, ApiResult};
use crate::providers::{ApiKey, Outcome};

pub struct OwnerHandle {
    pub(super) store: Store,
    pub(super) principal: Principal,
    user_id: String,
}

impl OwnerHandle {
    pub(super) fn new(store: Store, principal: Principal) -> OwnerHandle {
        let user_id = principal.user_id().expect("owner handles are only made for people").to_owned();
        OwnerHandle { store, principal, user_id }
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    fn actor(&self) -> Actor<'_> {
        Actor::Principal(&self.principal)
    }

    async fn own_row(&self, id: &str) -> ApiResult<Option<credential::Model>> {
        Ok(credential::Entity::find_by_id(id)
            .filter(credential::Column::OwnerId.eq(self.user_id.as_str()))
            .one(self.store.db())
            .await?)
    }

    pub async fn me(&self) -> ApiResult<Person> {
        self.store
            .user(&self.user_id)
            .await?
            .ok_or_else(|| ApiError::Unauthenticated("this user no longer exists".into()))
    }

    pub async fn credentials(&self) -> ApiResult<Vec<CredentialMeta>> {
        self.store.credentials_of(&self.user_id).await
    }

    /// The credential if the caller owns it; `None` otherwise, so existence
    /// of other people's credentials does not leak.
    pub async fn credential(&self, id: &str) -> ApiResult<Option<CredentialMeta>> {
        self.own_row(id).await?.as_ref().map(CredentialMeta::try_from).transpose()
    }

    /// The masked preview of one of the caller's credentials (already
    /// loaded: no second query). Anyone else's is NOT_FOUND.
    pub fn hint(&self, meta: &CredentialMeta) -> ApiResult<String> {
        if meta.owner_id != self.user_id {
            return Err(ApiError::not_found("credential"));
        }
        let binding = crate::crypto::Binding {
            owner_id: &self.user_id,
            record_id: &meta.id,
            field: super::credentials::FIELD_HINT,
        };
        Ok(self.store.keys().decrypt_string(&meta.sealed_hint, binding)?.to_string())
    }

    pub async fn set_api_key(&self, key: ApiKey, expires_at: Option<DateTime<Utc>>) -> ApiResult<CredentialMeta> {
        self.set_api_key_checked(key, expires_at, None).await
    }

    /// [`OwnerHandle::set_api_key`], recording the check the key passed
    /// with its provider just before (`checkOnSave`).
    pub async fn set_api_key_checked(
        &self,
        key: ApiKey,
        expires_at: Option<DateTime<Utc>>,
        check: Option<&Outcome>,
    ) -> ApiResult<CredentialMeta> {
        if expires_at.is_some_and(|t| t <= Utc::now()) {
            return Err(ApiError::bad_input("expiresAt is in the past; give a future time or leave it out"));
        }
        let provider = key.provider();
        let secret = StoredSecret::ApiKey { key: key.secret().clone() };
        self.store
            .put_checked(
                self.actor(),
                &self.user_id,
                NewCredential {
                    provider,
                    agent: None,
                    kind: CredentialKind::ApiKey,
                    secret,
                    expires_at,
                    origin: Origin::Pasted,
                },
                check,
            )
            .await
    }

    pub async fn save_subscription(&self, agent: Agent, parsed: ParsedSubscription) -> ApiResult<CredentialMeta> {
        self.save_subscription_checked(agent, parsed, None).await
    }

    /// [`OwnerHandle::save_subscription`], recording the check the token
    /// passed with its provider just before (`checkOnSave`).
    pub async fn save_subscription_checked(
        &self,
        agent: Agent,
        parsed: ParsedSubscription,
        check: Option<&Outcome>,
    ) -> ApiResult<CredentialMeta> {
        let ParsedSubscription { provider, secret, expires_at } = parsed;
        self.store
            .put_checked(
                self.actor(),
                &self.user_id,
                NewCredential {
                    provider,
                    agent: Some(agent),
                    kind: CredentialKind::Subscription,
                    secret: StoredSecret::Subscription(secret),
                    expires_at,
                    origin: Origin::Pasted,
                },
                check,
            )
            .await
    }

    /// One of the caller's credentials, to check it; `None` for anyone
    /// else's.
    pub(crate) async fn check_target(&self, id: &str) -> ApiResult<Option<CheckTarget>> {
        Ok(self.own_row(id).await?.map(CheckTarget::new))
    }

    /// All of the caller's credentials, to check them.
    pub(crate) async fn check_targets(&self) -> ApiResult<Vec<CheckTarget>> {
        Ok(credential::Entity::find()
            .filter(credential::Column::OwnerId.eq(self.user_id.as_str()))
            .order_by_asc(credential::Column::Id)
            .all(self.store.db())
            .await?
            .into_iter()
            .map(CheckTarget::new)
            .collect())
    }

    /// Audits a save refused because the provider refused the credential
    /// (nothing else is written).
    pub(crate) async fn audit_refused_save(
        &self,
        provider: Provider,
        agent: Option<Agent>,
        result: CheckResult,
    ) -> ApiResult<()> {
        super::audit::record(
            self.store.db(),
            self.actor(),
            super::audit::Action::CredentialChecked,
            super::audit::Entry {
                owner_id: Some(&self.user_id),
                provider: Some(provider),
                agent,
                detail: Some(format!("result {result} before saving; nothing was saved")),
                ..Default::default()
            },
        )
        .await
    }

    /// Who acts, for the audit of a check.
    pub(crate) fn principal(&self) -> &Principal {
        &self.principal
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Stores a credential the caller obtained by signing in.
    pub(crate) async fn put(&self, new: NewCredential) -> ApiResult<CredentialMeta> {
        self.store.put_credential(self.actor(), &self.user_id, new).await
    }
}
