//! People and their tokens (issue 14): a person lists, creates and revokes
//! their own tokens; an admin lists and revokes people's tokens, disables,
//! enables and deletes people (never the last enabled admin); runner tokens
//! are made by the operator's CLI or by a runner, never by an admin (issue
//! 21); people who sign in with the platform's JWTs are found (or created)
//! by (issuer, subject), act only through its JWTs (no `sv_` tokens), and
//! once deleted stay out (a tombstone) until the operator readmits them.
//! Every change writes its audit entry in the same transaction.
//!
//! Here: people (create, list, disable, delete); `tokens` their `sv_`
//! tokens and runner tokens; `jwt` people who sign in with the IdP.

mod jwt;
mod tokens;

pub(super) use jwt::jwt_person_token;
pub use jwt::JWT_TOKEN_ID;
pub(super) use tokens::not_expired;

use async_graphql::Enum;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use zeroize::Zeroizing;

use super::admin::AdminHandle;
use super::audit::{self, Action, Actor};
use super::{Email, Store};
use crate::domain::Role;
use crate::entities::{access_token, audit_log, credential, jwt_tombstone, oauth_flow, user};
use crate::error::{ApiError, ApiResult};
use crate::ids::new_id;

const USER_KIND: &str = "USER";
pub(super) const RUNNER_KIND: &str = "RUNNER";
const REMOVED_WITH_PERSON: &str = "removed with its owner, who was deleted by an administrator";
/// The creator recorded for runner tokens made by `sesame-vault token create --runner`.
pub const OPERATOR_CLI: &str = "the operator (CLI on the vault's host)";
/// The creator shown for runner tokens from before creators were recorded.
pub(super) const UNKNOWN_CREATOR: &str = "unknown (created before the vault recorded it)";
/// Live (not revoked, not expired) tokens a person may hold at once.
pub const MAX_LIVE_TOKENS_PER_PERSON: u64 = 25;

/// What a token stands for.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// Acts as its person.
    User,
    /// The task runner's service token.
    Runner,
}

/// A token's metadata; the token itself is shown once, when it is created.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub id: String,
    pub kind: TokenKind,
    /// The person a USER token acts for.
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Null: it lasts until revoked.
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<access_token::Model> for AccessToken {
    fn from(m: access_token::Model) -> AccessToken {
        AccessToken {
            id: m.id,
            kind: if m.kind == RUNNER_KIND { TokenKind::Runner } else { TokenKind::User },
            user_id: m.user_id,
            name: m.name,
            created_at: m.created_at,
            last_used_at: m.last_used_at,
            expires_at: m.expires_at,
        }
    }
}

/// A person: who they are, whether they are disabled and how they sign in.
/// The API shows it as `User` (to anyone who may see the person) and as
/// `Person` (to admins managing people).
#[derive(Clone, Debug)]
pub struct Person {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// The JWT issuer they sign in through; null for people with `sv_` tokens only.
    pub issuer: Option<String>,
}

impl TryFrom<user::Model> for Person {
    type Error = ApiError;
    fn try_from(m: user::Model) -> ApiResult<Person> {
        Ok(Person {
            id: m.id,
            email: m.email,
            role: m.role.parse().map_err(ApiError::internal)?,
            created_at: m.created_at,
            disabled_at: m.disabled_at,
            issuer: m.issuer,
        })
    }
}

/// Who a verified JWT says the caller is (see `crate::identity::jwt`).
#[derive(Debug, Clone)]
pub struct JwtPerson {
    pub issuer: String,
    pub subject: String,
    /// Only a verified email (`email_verified: true`, unless the operator
    /// turned that check off).
    pub email: Option<String>,
    /// The token named an email that was not verified (it is not used).
    pub email_unverified: bool,
    pub role: Role,
}

pub(super) fn kind_str(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::User => USER_KIND,
        TokenKind::Runner => RUNNER_KIND,
    }
}

/// Refuses an email that mixes scripts or passes for another address
/// (Unicode TS #39, through `unicode-security`): `аdmin@…` with a Cyrillic
/// а, or an address written wholly in look-alike letters of another script.
/// Plain ASCII addresses pass as they are; so does an address written in
/// one non-Latin script that does not pass for a Latin one.
pub(super) fn check_confusable(email: &str) -> Result<(), String> {
    use unicode_security::{GeneralSecurityProfile, MixedScript};
    if email.is_ascii() {
        return Ok(());
    }
    if let Some(c) = email.chars().find(|c| !c.is_ascii() && !c.identifier_allowed()) {
        return Err(format!(
            "the email contains a character that is not allowed in addresses here (U+{:04X}: invisible, a \
             symbol or from a restricted script)",
            c as u32
        ));
    }
    let (local, domain) = email.split_once('@').unwrap_or((email, ""));
    for (part, what) in [(local, "name (before the @)")].into_iter().chain(domain.split('.').map(|l| (l, "domain"))) {
        if !part.is_single_script() {
            return Err(format!(
                "the email's {what} mixes scripts (e.g. a Cyrillic letter among Latin ones), so it could pass \
                 for another address; write it in one script"
            ));
        }
    }
    if unicode_security::skeleton(email).all(|c| c.is_ascii()) {
        return Err("the email is written with letters of another script that look like Latin ones, so it could \
                    pass for another address; write it as it is spelled, in Latin letters"
            .into());
    }
    Ok(())
}

/// Why a person who signs in with the IdP has no `sv_` tokens: a token of
/// theirs would keep the role and the access the IdP may since have taken
/// away (a demotion, a disable, a deletion there never reaches the vault).
pub(super) const JWT_PEOPLE_HAVE_NO_TOKENS: &str =
    "sign in with your identity provider's token (JWT): people who sign in \
     through the IdP act only with its tokens, so the IdP's changes (a new role, a disabled or deleted \
     account) take effect at once";

pub(super) fn disabled_refusal() -> ApiError {
    ApiError::Unauthenticated("this person is disabled; ask an admin to enable them".into())
}

impl Store {
    /// Creates a user and their first token (shown once, stored hashed).
    pub(in crate::store) async fn create_user(
        &self,
        actor: audit::Actor<'_>,
        email: &str,
        role: Role,
    ) -> ApiResult<(Person, Zeroizing<String>)> {
        let email = Email::parse(email)?;
        let txn = self.db().begin().await?;
        if user::Entity::find().filter(user::Column::Email.eq(email.0.as_str())).count(&txn).await? > 0 {
            return Err(ApiError::bad_input("a user with that email already exists"));
        }
        let user = user::ActiveModel {
            id: Set(new_id()),
            email: Set(email.0),
            role: Set(role.as_str().to_owned()),
            created_at: Set(Utc::now()),
            disabled_at: Set(None),
            issuer: Set(None),
            subject: Set(None),
        }
        .insert(&txn)
        .await?;
        let (_, token) = self.insert_token(&txn, TokenKind::User, Some(&user.id), None, None).await?;
        audit::record(
            &txn,
            actor,
            audit::Action::UserCreated,
            audit::Entry { owner_id: Some(&user.id), detail: Some(format!("role {}", role)), ..Default::default() },
        )
        .await?;
        txn.commit().await?;
        Ok((Person::try_from(user)?, token))
    }

    /// On first start, creates an admin so someone can sign in at all.
    pub(in crate::store) async fn bootstrap_admin(&self) -> ApiResult<Option<(Person, Zeroizing<String>)>> {
        if user::Entity::find().count(self.db()).await? > 0 {
            return Ok(None);
        }
        match self.create_user(audit::Actor::System, "admin@localhost", Role::Admin).await {
            Ok(created) => Ok(Some(created)),
            // Another instance starting at the same moment made it.
            Err(_) if user::Entity::find().count(self.db()).await? > 0 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A person by id or email (what the CLI takes everywhere).
    pub(in crate::store) async fn find_person(&self, id_or_email: &str) -> ApiResult<Person> {
        let raw = id_or_email.trim();
        let found = if raw.contains('@') {
            let email = Email::parse(raw)?;
            user::Entity::find().filter(user::Column::Email.eq(email.0)).one(self.db()).await?
        } else {
            let id = crate::ids::parse_id("user", raw)
                .map_err(|_| ApiError::bad_input("give the user's email or id (a UUID)"))?;
            user::Entity::find_by_id(id).one(self.db()).await?
        };
        found.ok_or_else(|| ApiError::NotFound(format!("no user has the email or id {raw}")))?.try_into()
    }

    /// Every person, oldest first (the CLI's `user list`).
    pub(in crate::store) async fn people(&self) -> ApiResult<Vec<Person>> {
        user::Entity::find()
            .order_by_asc(user::Column::Id)
            .all(self.db())
            .await?
            .into_iter()
            .map(Person::try_from)
            .collect()
    }

    /// Refuses (BAD_USER_INPUT) when `target` is the last enabled admin.
    /// The enabled admins' rows are locked (PostgreSQL), so two admins
    /// disabling each other at once cannot both succeed; SQLite has one
    /// writer.
    async fn keep_an_admin(&self, txn: &DatabaseTransaction, target: &user::Model, doing: &str) -> ApiResult<()> {
        if target.role != Role::Admin.as_str() || target.disabled_at.is_some() {
            return Ok(());
        }
        let admins = user::Entity::find()
            .filter(user::Column::Role.eq(Role::Admin.as_str()))
            .filter(user::Column::DisabledAt.is_null())
            .lock_exclusive()
            .all(txn)
            .await?;
        if admins.iter().all(|a| a.id == target.id) {
            return Err(ApiError::bad_input(format!(
                "{} is the last enabled admin and cannot be {doing}: make another person an admin first \
                 (`sesame-vault user create --email … --admin`)",
                target.email
            )));
        }
        Ok(())
    }

    /// Disables or enables a person. A disabled person's tokens and JWTs
    /// are refused and their credentials are not issued; nothing is deleted.
    pub(in crate::store) async fn set_disabled(
        &self,
        actor: Actor<'_>,
        user_id: &str,
        disabled: bool,
    ) -> ApiResult<Person> {
        let txn = self.db().begin().await?;
        let target = locked_user(&txn, user_id).await?;
        if disabled {
            self.keep_an_admin(&txn, &target, "disabled").await?;
        }
        let changed = target.disabled_at.is_some() != disabled;
        let mut row = target.clone();
        if changed {
            let mut active: user::ActiveModel = target.into();
            active.disabled_at = Set(disabled.then(Utc::now));
            row = active.update(&txn).await?;
            let action = if disabled { Action::UserDisabled } else { Action::UserEnabled };
            audit::record(
                &txn,
                actor,
                action,
                audit::Entry { owner_id: Some(&row.id), detail: Some(row.email.clone()), ..Default::default() },
            )
            .await?;
        }
        self.commit_ending(txn).await?;
        Person::try_from(row)
    }

    /// Deletes a person: their credentials (each audited, with a REMOVED
    /// event), their sign-ins in progress and their tokens. The audit trail
    /// stays, with their id and, from now on, their email beside it.
    pub(in crate::store) async fn delete_person(&self, actor: Actor<'_>, user_id: &str) -> ApiResult<DeletedPerson> {
        let txn = self.db().begin().await?;
        let target = locked_user(&txn, user_id).await?;
        self.keep_an_admin(&txn, &target, "deleted").await?;
        let rows = credential::Entity::find()
            .filter(credential::Column::OwnerId.eq(user_id))
            .lock_exclusive()
            .all(&txn)
            .await?;
        // Tokens the vault's sign-in obtained are revoked at their providers
        // once the deletion commits.
        let doomed = self.to_revoke(&rows)?;
        let removed = self
            .delete_credentials(&txn, actor, Action::AdminDeletedCredential, rows, Some(REMOVED_WITH_PERSON))
            .await?;
        let flows =
            oauth_flow::Entity::delete_many().filter(oauth_flow::Column::OwnerId.eq(user_id)).exec(&txn).await?;
        let tokens = access_token::Entity::update_many()
            .col_expr(access_token::Column::RevokedAt, Expr::value(Utc::now()))
            .filter(access_token::Column::UserId.eq(user_id))
            .filter(access_token::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        audit::record(
            &txn,
            actor,
            Action::UserDeleted,
            audit::Entry {
                owner_id: Some(&target.id),
                detail: Some(format!(
                    "{}: {} credentials, {} sign-ins in progress and {} tokens removed",
                    target.email,
                    removed.len(),
                    flows.rows_affected,
                    tokens.rows_affected
                )),
                ..Default::default()
            },
        )
        .await?;
        // The trail keeps the email once the row that held it is gone.
        audit_log::Entity::update_many()
            .col_expr(audit_log::Column::OwnerEmail, Expr::value(target.email.clone()))
            .filter(audit_log::Column::OwnerId.eq(user_id))
            .exec(&txn)
            .await?;
        audit_log::Entity::update_many()
            .col_expr(audit_log::Column::ActorEmail, Expr::value(target.email.clone()))
            .filter(audit_log::Column::ActorId.eq(user_id))
            .filter(audit_log::Column::ActorKind.is_in([Role::User.as_str(), Role::Admin.as_str()]))
            .exec(&txn)
            .await?;
        // Someone who signs in with the IdP stays out: their next JWT must
        // not create them again (`sesame-vault user readmit` lifts it).
        if let (Some(issuer), Some(subject)) = (&target.issuer, &target.subject) {
            jwt_tombstone::Entity::delete_by_id((issuer.clone(), subject.clone())).exec(&txn).await?;
            jwt_tombstone::ActiveModel {
                issuer: Set(issuer.clone()),
                subject: Set(subject.clone()),
                email: Set(target.email.clone()),
                deleted_at: Set(Utc::now()),
            }
            .insert(&txn)
            .await?;
        }
        // Its tokens go with it (ON DELETE CASCADE), revoked above first.
        user::Entity::delete_by_id(user_id).exec(&txn).await?;
        // Events last, after every row write (see `Store::record_event`).
        let removed = self.record_events(&txn, removed).await?;
        self.commit_ending(txn).await?;
        let deleted = DeletedPerson {
            id: target.id,
            email: target.email,
            credentials: removed.len(),
            tokens: tokens.rows_affected,
        };
        self.revoke_removed(doomed, removed).await;
        Ok(deleted)
    }

    /// Whether a person still may act (for an open WebSocket signed in with
    /// a JWT): they exist and are not disabled.
    pub async fn person_allowed(&self, user_id: &str) -> ApiResult<()> {
        match user::Entity::find_by_id(user_id).one(self.reader()).await? {
            Some(row) if row.disabled_at.is_none() => Ok(()),
            Some(_) => Err(disabled_refusal()),
            None => Err(ApiError::Unauthenticated("this person was deleted".into())),
        }
    }

    /// Emails of the given people, for the audit log.
    pub(super) async fn emails(&self, ids: Vec<String>) -> ApiResult<std::collections::HashMap<String, String>> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        Ok(user::Entity::find()
            .filter(user::Column::Id.is_in(ids))
            .all(self.db())
            .await?
            .into_iter()
            .map(|u| (u.id, u.email))
            .collect())
    }
}

/// What `deleteUser` removed.
#[derive(Clone, Debug)]
pub struct DeletedPerson {
    pub id: String,
    pub email: String,
    /// Credentials removed.
    pub credentials: usize,
    /// Tokens revoked.
    pub tokens: u64,
}

/// Refusal for a token whose person is disabled.
pub(super) fn person_disabled() -> ApiError {
    disabled_refusal()
}

impl AdminHandle {
    pub async fn set_disabled(&self, user_id: &str, disabled: bool) -> ApiResult<Person> {
        self.store.set_disabled(Actor::Principal(&self.principal), user_id, disabled).await
    }

    pub async fn delete_user(&self, user_id: &str) -> ApiResult<DeletedPerson> {
        self.store.delete_person(Actor::Principal(&self.principal), user_id).await
    }

    pub async fn people(&self) -> ApiResult<Vec<Person>> {
        self.store.people().await
    }
}

/// The person's row, locked for the rest of the transaction (PostgreSQL;
/// SQLite's single writer orders transactions anyway).
pub(super) async fn locked_user(txn: &sea_orm::DatabaseTransaction, user_id: &str) -> ApiResult<user::Model> {
    user::Entity::find_by_id(user_id).lock_exclusive().one(txn).await?.ok_or_else(|| ApiError::not_found("user"))
}

#[cfg(test)]
mod tests {
    use super::check_confusable;

    #[test]
    fn mixed_script_and_look_alike_emails_are_refused() {
        assert!(check_confusable("admin@example.com").is_ok());
        assert!(check_confusable("иван@пример.рф").is_ok(), "one non-Latin script that passes for nothing Latin");
        assert!(check_confusable("josé@example.com").is_ok());
        let mixed = check_confusable("\u{430}dmin@example.com").unwrap_err();
        assert!(mixed.contains("mixes scripts"), "{mixed}");
        assert!(check_confusable("admin@ex\u{430}mple.com").unwrap_err().contains("mixes scripts"));
        let look_alike = check_confusable("\u{445}\u{435}@example.com").unwrap_err(); // Cyrillic хе
        assert!(look_alike.contains("look like Latin"), "{look_alike}");
        assert!(check_confusable("ad\u{200b}min@example.com").unwrap_err().contains("U+200B"));
    }
}
