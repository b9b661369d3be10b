//! What an admin may do: see metadata, create users, delete credentials.
//! There is deliberately no method here that decrypts anything.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use zeroize::Zeroizing;

use super::audit::{Action, Actor};
use super::{CredentialMeta, Page, Person, Store};
use crate::auth::Principal;
use crate::domain::{CredentialStatus, Role};
use crate::entities::{audit_log, credential, user};
use crate::error::{ApiError, ApiResult};
use crate::ids::encode_cursor;

const REMOVED_BY_ADMIN: &str = "removed by an administrator";

pub struct AdminHandle {
    pub(super) store: Store,
    pub(super) principal: Principal,
}

/// One audit entry, as admins page through them.
#[derive(Clone, Debug)]
pub struct AuditEntry {
    pub id: String,
    pub at: DateTime<Utc>,
    /// USER, ADMIN, RUNNER or SYSTEM.
    pub actor_kind: String,
    pub actor_id: Option<String>,
    /// The acting person's email (kept after they are deleted).
    pub actor_email: Option<String>,
    pub action: String,
    pub owner_id: Option<String>,
    /// The owner's email (kept after they are deleted).
    pub owner_email: Option<String>,
    pub credential_id: Option<String>,
    pub provider: Option<String>,
    pub agent: Option<String>,
    pub task_id: Option<String>,
    pub detail: Option<String>,
}

/// Turns `limit + 1` fetched rows into a page with a cursor.
fn paginate<T>(mut rows: Vec<T>, limit: u64, key: impl Fn(&T) -> String) -> Page<T> {
    let has_more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if has_more { rows.last().map(|r| encode_cursor(&key(r))) } else { None };
    Page { nodes: rows, next_cursor }
}

impl AdminHandle {
    pub(super) fn new(store: Store, principal: Principal) -> AdminHandle {
        AdminHandle { store, principal }
    }

    pub(super) fn actor(&self) -> Actor<'_> {
        Actor::Principal(&self.principal)
    }

    pub async fn users(&self, limit: u64, after: Option<String>) -> ApiResult<Page<Person>> {
        let mut query = user::Entity::find().order_by_asc(user::Column::Id).limit(limit + 1);
        if let Some(after) = after {
            query = query.filter(user::Column::Id.gt(after));
        }
        let rows =
            query.all(self.store.db()).await?.into_iter().map(Person::try_from).collect::<ApiResult<Vec<_>>>()?;
        Ok(paginate(rows, limit, |u| u.id.clone()))
    }

    pub async fn credentials(
        &self,
        owner_id: Option<String>,
        status: Option<CredentialStatus>,
        limit: u64,
        after: Option<String>,
    ) -> ApiResult<Page<CredentialMeta>> {
        let mut query = credential::Entity::find().order_by_asc(credential::Column::Id).limit(limit + 1);
        if let Some(owner_id) = owner_id {
            query = query.filter(credential::Column::OwnerId.eq(owner_id));
        }
        if let Some(status) = status {
            query = query.filter(credential::Column::Status.eq(status.as_str()));
        }
        if let Some(after) = after {
            query = query.filter(credential::Column::Id.gt(after));
        }
        let rows =
            query.all(self.store.db()).await?.iter().map(CredentialMeta::try_from).collect::<ApiResult<Vec<_>>>()?;
        Ok(paginate(rows, limit, |c| c.id.clone()))
    }

    pub async fn credential(&self, id: &str) -> ApiResult<Option<CredentialMeta>> {
        credential::Entity::find_by_id(id)
            .one(self.store.db())
            .await?
            .as_ref()
            .map(CredentialMeta::try_from)
            .transpose()
    }

    pub async fn create_user(&self, email: &str, role: Role) -> ApiResult<(Person, Zeroizing<String>)> {
        self.store.create_user(self.actor(), email, role).await
    }

    /// Deletes any user's credential without reading it.
    pub async fn delete_credential(&self, id: &str) -> ApiResult<()> {
        let txn = self.store.db().begin().await?;
        let row = credential::Entity::find_by_id(id)
            .lock_exclusive()
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::not_found("credential"))?;
        // A token the vault's sign-in obtained is revoked at its provider too,
        // after commit (the admin never sees it).
        let doomed = self.store.to_revoke(std::slice::from_ref(&row))?;
        let removed = self
            .store
            .delete_credentials(&txn, self.actor(), Action::AdminDeletedCredential, vec![row], Some(REMOVED_BY_ADMIN))
            .await?;
        let removed = self.store.record_events(&txn, removed).await?;
        self.store.commit_ending(txn).await?;
        self.store.revoke_removed(doomed, removed).await;
        Ok(())
    }

    pub async fn delete_user_credentials(&self, user_id: &str) -> ApiResult<usize> {
        let txn = self.store.db().begin().await?;
        if user::Entity::find_by_id(user_id).one(&txn).await?.is_none() {
            return Err(ApiError::not_found("user"));
        }
        let rows = credential::Entity::find()
            .filter(credential::Column::OwnerId.eq(user_id))
            .lock_exclusive()
            .all(&txn)
            .await?;
        let doomed = self.store.to_revoke(&rows)?;
        let removed = self
            .store
            .delete_credentials(&txn, self.actor(), Action::AdminDeletedCredential, rows, Some(REMOVED_BY_ADMIN))
            .await?;
        let removed = self.store.record_events(&txn, removed).await?;
        self.store.commit_ending(txn).await?;
        let n = removed.len();
        self.store.revoke_removed(doomed, removed).await;
        Ok(n)
    }

    /// The audit trail, oldest first (or newest first), with the emails of
    /// the people in it.
    pub async fn audit_log(
        &self,
        limit: u64,
        after: Option<String>,
        newest_first: bool,
    ) -> ApiResult<Page<AuditEntry>> {
        let mut query = audit_log::Entity::find().limit(limit + 1);
        query = if newest_first {
            query.order_by_desc(audit_log::Column::Id)
        } else {
            query.order_by_asc(audit_log::Column::Id)
        };
        if let Some(after) = after {
            let after: i64 =
                after.parse().map_err(|_| ApiError::bad_input("after is not a cursor this server issued"))?;
            query = query.filter(if newest_first {
                audit_log::Column::Id.lt(after)
            } else {
                audit_log::Column::Id.gt(after)
            });
        }
        let rows = query.all(self.store.db()).await?;
        let is_person = |kind: &str| kind == "USER" || kind == "ADMIN";
        let mut ids: Vec<String> = rows
            .iter()
            .flat_map(|m| {
                let actor = m.actor_id.clone().filter(|_| is_person(&m.actor_kind));
                m.owner_id.clone().into_iter().chain(actor)
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let emails = self.store.emails(ids).await?;
        let email_of = |id: &Option<String>| id.as_ref().and_then(|id| emails.get(id).cloned());
        let rows = rows
            .into_iter()
            .map(|m| AuditEntry {
                id: m.id.to_string(),
                at: m.at,
                actor_email: if is_person(&m.actor_kind) { email_of(&m.actor_id).or(m.actor_email) } else { None },
                actor_kind: m.actor_kind,
                actor_id: m.actor_id,
                action: m.action,
                owner_email: email_of(&m.owner_id).or(m.owner_email),
                owner_id: m.owner_id,
                credential_id: m.credential_id,
                provider: m.provider,
                agent: m.agent,
                task_id: m.task_id,
                detail: m.detail,
            })
            .collect();
        Ok(paginate(rows, limit, |e: &AuditEntry| e.id.clone()))
    }
}
