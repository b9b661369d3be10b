//! People and their tokens (issue 14): a person lists, creates and revokes
//! their own tokens; an admin lists and revokes people's tokens, disables,
//! enables and deletes people (never the last enabled admin); runner tokens
//! are made by the operator's CLI or by a runner, never by an admin (issue
//! 21); people who sign in with the platform's JWTs are found (or created)
//! by (issuer, subject), act only through its JWTs (no `sv_` tokens), and
//! once deleted stay out (a tombstone) until the operator readmits them.
//! Every change writes its audit entry in the same transaction.

use async_graphql::Enum;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use zeroize::Zeroizing;

use super::admin::AdminHandle;
use super::audit::{self, Action, Actor};
use super::owner::OwnerHandle;
use super::{Email, Store};
use crate::auth::{generate_token, Principal};
use crate::domain::Role;
use crate::entities::{access_token, audit_log, credential, jwt_tombstone, oauth_flow, user};
use crate::error::{ApiError, ApiResult};
use crate::ids::new_id;

const USER_KIND: &str = "USER";
const RUNNER_KIND: &str = "RUNNER";
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

fn kind_str(kind: TokenKind) -> &'static str {
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

/// A token's name: what its owner will recognise it by in a list.
fn token_name(raw: &str) -> ApiResult<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_input("name must be 1 to 200 characters, without control characters"));
    }
    Ok(name.to_owned())
}

fn disabled_refusal() -> ApiError {
    ApiError::Unauthenticated("this person is disabled; ask an admin to enable them".into())
}

/// Why a person who signs in with the IdP has no `sv_` tokens: a token of
/// theirs would keep the role and the access the IdP may since have taken
/// away (a demotion, a disable, a deletion there never reaches the vault).
const JWT_PEOPLE_HAVE_NO_TOKENS: &str = "sign in with your identity provider's token (JWT): people who sign in \
     through the IdP act only with its tokens, so the IdP's changes (a new role, a disabled or deleted \
     account) take effect at once";

/// Refusal of an `sv_` token whose person signs in through the IdP.
pub(super) fn jwt_person_token() -> ApiError {
    ApiError::Unauthenticated(format!("this sesame-vault token is no longer accepted: {JWT_PEOPLE_HAVE_NO_TOKENS}"))
}

/// Inserts a token row in `txn`; returns it and the token (shown once).
async fn insert_token_by<C: ConnectionTrait>(
    txn: &C,
    kind: TokenKind,
    user_id: Option<&str>,
    name: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    created_by: Option<String>,
) -> ApiResult<(access_token::Model, Zeroizing<String>)> {
    let (token, hash) = generate_token();
    let row = access_token::ActiveModel {
        id: Set(new_id()),
        kind: Set(kind_str(kind).into()),
        user_id: Set(user_id.map(str::to_owned)),
        name: Set(name),
        token_hash: Set(hash),
        created_at: Set(Utc::now()),
        last_used_at: Set(None),
        revoked_at: Set(None),
        expires_at: Set(expires_at),
        created_by: Set(created_by),
    }
    .insert(txn)
    .await?;
    Ok((row, token))
}

impl Store {
    /// Inserts a token in `txn`; returns its row and the token (shown once).
    pub(super) async fn insert_token<C: ConnectionTrait>(
        &self,
        txn: &C,
        kind: TokenKind,
        user_id: Option<&str>,
        name: Option<String>,
        expires_at: Option<DateTime<Utc>>,
    ) -> ApiResult<(access_token::Model, Zeroizing<String>)> {
        insert_token_by(txn, kind, user_id, name, expires_at, None).await
    }

    /// Creates a RUNNER token, audited as `actor`'s; `created_by` says who
    /// in words (the operator's CLI, or the runner that rotated it) and is
    /// kept with the token, so every issuance's audit entry can name it.
    /// Only the CLI and a runner get here: an admin never does (issue 21).
    pub async fn create_runner_token_as(
        &self,
        actor: Actor<'_>,
        created_by: &str,
        name: &str,
    ) -> ApiResult<(AccessToken, Zeroizing<String>)> {
        let name = token_name(name).map_err(|_| ApiError::bad_input("the runner name must be 1 to 200 characters"))?;
        let txn = self.db().begin().await?;
        let (row, token) =
            insert_token_by(&txn, TokenKind::Runner, None, Some(name.clone()), None, Some(created_by.to_owned()))
                .await?;
        audit::record(
            &txn,
            actor,
            Action::RunnerTokenCreated,
            audit::Entry {
                detail: Some(format!("runner token \"{name}\" ({}), created by {created_by}", row.id)),
                ..Default::default()
            },
        )
        .await?;
        txn.commit().await?;
        Ok((row.into(), token))
    }

    /// Creates a USER token for `user_id` (an admin's, the CLI's, or the
    /// person's own), audited as `actor`'s.
    pub async fn create_user_token(
        &self,
        actor: Actor<'_>,
        user_id: &str,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> ApiResult<(AccessToken, Zeroizing<String>)> {
        let name = token_name(name)?;
        if expires_at.is_some_and(|t| t <= Utc::now()) {
            return Err(ApiError::bad_input("expiresAt is in the past; give a future time or leave it out"));
        }
        let txn = self.db().begin().await?;
        // Locked, so two creations at once cannot both pass the cap.
        let person = locked_user(&txn, user_id).await?;
        if person.issuer.is_some() {
            return Err(ApiError::forbidden(format!(
                "{} signs in through the identity provider and gets no sesame-vault tokens: {JWT_PEOPLE_HAVE_NO_TOKENS}",
                person.email
            )));
        }
        let live = access_token::Entity::find()
            .filter(access_token::Column::UserId.eq(person.id.as_str()))
            .filter(access_token::Column::RevokedAt.is_null())
            .filter(not_expired(Utc::now()))
            .count(&txn)
            .await?;
        if live >= MAX_LIVE_TOKENS_PER_PERSON {
            return Err(ApiError::Limit(format!(
                "{} already has {live} live tokens, the most a person may hold ({MAX_LIVE_TOKENS_PER_PERSON}): \
                 revoke one first (myTokens lists them, revokeToken(id) revokes one; or \
                 `sesame-vault token list --user …` and `token revoke ID` on the vault's host)",
                person.email
            )));
        }
        let (row, token) = self.insert_token(&txn, TokenKind::User, Some(&person.id), Some(name), expires_at).await?;
        audit::record(
            &txn,
            actor,
            Action::TokenCreated,
            audit::Entry {
                owner_id: Some(&person.id),
                detail: Some(format!("token {}", row.id)),
                ..Default::default()
            },
        )
        .await?;
        txn.commit().await?;
        Ok((row.into(), token))
    }

    /// Live tokens (not revoked), oldest first: of one person, or every
    /// token when `user_id` is `None`.
    pub async fn tokens(&self, user_id: Option<&str>) -> ApiResult<Vec<AccessToken>> {
        self.tokens_of(user_id, None).await
    }

    /// As `tokens`, of one kind only when `kind` is given.
    async fn tokens_of(&self, user_id: Option<&str>, kind: Option<TokenKind>) -> ApiResult<Vec<AccessToken>> {
        let mut query = access_token::Entity::find()
            .filter(access_token::Column::RevokedAt.is_null())
            .order_by_asc(access_token::Column::Id);
        if let Some(user_id) = user_id {
            query = query.filter(access_token::Column::UserId.eq(user_id));
        }
        if let Some(kind) = kind {
            query = query.filter(access_token::Column::Kind.eq(kind_str(kind)));
        }
        Ok(query.all(self.db()).await?.into_iter().map(AccessToken::from).collect())
    }

    /// Revokes a live token; `owner` limits it to one person's tokens
    /// (anyone else's is NOT_FOUND, so existence does not leak); `kind` to
    /// one kind (an admin: people's tokens; a runner: runner tokens).
    pub async fn revoke_token_as(
        &self,
        actor: Actor<'_>,
        id: &str,
        owner: Option<&str>,
        kind: Option<TokenKind>,
    ) -> ApiResult<()> {
        let id = crate::ids::parse_id("id", id)?;
        let txn = self.db().begin().await?;
        let mut query = access_token::Entity::find_by_id(id.as_str()).filter(access_token::Column::RevokedAt.is_null());
        if let Some(owner) = owner {
            query = query.filter(access_token::Column::UserId.eq(owner));
        }
        let row = query.one(&txn).await?.ok_or_else(|| ApiError::not_found("token"))?;
        match kind {
            Some(TokenKind::User) if row.kind == RUNNER_KIND => {
                return Err(ApiError::forbidden(format!(
                    "runner tokens are not managed through the admin API: revoke it on the vault's host \
                     (`sesame-vault token revoke {}`) or with a runner token",
                    row.id
                )))
            }
            Some(TokenKind::Runner) if row.kind != RUNNER_KIND => {
                return Err(ApiError::forbidden("a runner revokes runner tokens only"))
            }
            _ => {}
        }
        access_token::Entity::update_many()
            .col_expr(access_token::Column::RevokedAt, Expr::value(Utc::now()))
            .filter(access_token::Column::Id.eq(row.id.as_str()))
            .exec(&txn)
            .await?;
        audit::record(
            &txn,
            actor,
            Action::TokenRevoked,
            audit::Entry {
                owner_id: row.user_id.as_deref(),
                detail: Some(format!("token {id}")),
                ..Default::default()
            },
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// A person by id or email (what the CLI takes everywhere).
    pub async fn find_person(&self, id_or_email: &str) -> ApiResult<user::Model> {
        let raw = id_or_email.trim();
        let found = if raw.contains('@') {
            let email = Email::parse(raw)?;
            user::Entity::find().filter(user::Column::Email.eq(email.0)).one(self.db()).await?
        } else {
            let id = crate::ids::parse_id("user", raw)
                .map_err(|_| ApiError::bad_input("give the user's email or id (a UUID)"))?;
            user::Entity::find_by_id(id).one(self.db()).await?
        };
        found.ok_or_else(|| ApiError::NotFound(format!("no user has the email or id {raw}")))
    }

    /// Every person, oldest first (the CLI's `user list`).
    pub async fn people(&self) -> ApiResult<Vec<Person>> {
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
    pub async fn set_disabled(&self, actor: Actor<'_>, user_id: &str, disabled: bool) -> ApiResult<Person> {
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
        txn.commit().await?;
        Person::try_from(row)
    }

    /// Deletes a person: their credentials (each audited, with a REMOVED
    /// event), their sign-ins in progress and their tokens. The audit trail
    /// stays, with their id and, from now on, their email beside it.
    pub async fn delete_person(&self, actor: Actor<'_>, user_id: &str) -> ApiResult<DeletedPerson> {
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
        txn.commit().await?;
        let deleted = DeletedPerson {
            id: target.id,
            email: target.email,
            credentials: removed.len(),
            tokens: tokens.rows_affected,
        };
        self.revoke_removed(doomed, removed).await;
        Ok(deleted)
    }

    /// The person a verified JWT stands for, created on their first valid
    /// token. Keyed by (issuer, subject), never by email (emails change and
    /// are reused); the email (and the role, for admins' lists) is updated
    /// from the token. The role of this request is the token's.
    pub async fn person_for_jwt(&self, jwt: &JwtPerson) -> ApiResult<Principal> {
        let find = || {
            user::Entity::find()
                .filter(user::Column::Issuer.eq(jwt.issuer.as_str()))
                .filter(user::Column::Subject.eq(jwt.subject.as_str()))
        };
        let existing = find().one(self.reader()).await?;
        let row = match existing {
            Some(row) => row,
            None => match self.create_jwt_person(jwt).await {
                Ok(row) => row,
                // Two first requests at once: the other one created them.
                Err(e) => find().one(self.db()).await?.ok_or(e)?,
            },
        };
        if row.disabled_at.is_some() {
            return Err(disabled_refusal());
        }
        let email = jwt.email.as_deref().map(jwt_email).transpose()?;
        let new_email = email.map(|e| e.0).filter(|e| *e != row.email);
        if new_email.is_some() || row.role != jwt.role.as_str() {
            self.update_jwt_person(&row, new_email, jwt.role).await?;
        }
        Ok(Principal::Person { user_id: row.id, role: jwt.role, token_id: JWT_TOKEN_ID.into() })
    }

    async fn create_jwt_person(&self, jwt: &JwtPerson) -> ApiResult<user::Model> {
        let tombstone =
            jwt_tombstone::Entity::find_by_id((jwt.issuer.clone(), jwt.subject.clone())).one(self.db()).await?;
        if tombstone.is_some() {
            return Err(ApiError::Unauthenticated(
                "this person was deleted from the vault by an administrator and is not created again by a new \
                 sign-in; the operator can let them back in on the vault's host (`sesame-vault user readmit EMAIL`)"
                    .into(),
            ));
        }
        let Some(email) = jwt.email.as_deref() else {
            return Err(ApiError::Unauthenticated(match jwt.email_unverified {
                true => "the token's email is not verified (its email_verified claim is not true), and a person's \
                         first sign-in needs a verified email; verify it at the identity provider (or, if the IdP \
                         never sends email_verified, the operator sets SESAME_AUTH__JWT__REQUIRE_EMAIL_VERIFIED=false)"
                    .into(),
                false => "the token has no email claim, which a person's first sign-in needs \
                          (SESAME_AUTH__JWT__EMAIL_CLAIM)"
                    .into(),
            }));
        };
        let email = jwt_email(email)?;
        let txn = self.db().begin().await?;
        if user::Entity::find().filter(user::Column::Email.eq(email.0.as_str())).one(&txn).await?.is_some() {
            return Err(email_taken());
        }
        let row = user::ActiveModel {
            id: Set(new_id()),
            email: Set(email.0),
            role: Set(jwt.role.as_str().to_owned()),
            created_at: Set(Utc::now()),
            disabled_at: Set(None),
            issuer: Set(Some(jwt.issuer.clone())),
            subject: Set(Some(jwt.subject.clone())),
        }
        .insert(&txn)
        .await?;
        audit::record(
            &txn,
            Actor::System,
            Action::UserCreated,
            audit::Entry {
                owner_id: Some(&row.id),
                detail: Some(format!("role {} (first sign-in with a JWT from {})", jwt.role, jwt.issuer)),
                ..Default::default()
            },
        )
        .await?;
        txn.commit().await?;
        Ok(row)
    }

    async fn update_jwt_person(&self, row: &user::Model, email: Option<String>, role: Role) -> ApiResult<()> {
        let txn = self.db().begin().await?;
        if let Some(email) = &email {
            let taken = user::Entity::find()
                .filter(user::Column::Email.eq(email.as_str()))
                .filter(user::Column::Id.ne(row.id.as_str()))
                .one(&txn)
                .await?;
            if taken.is_some() {
                return Err(email_taken());
            }
        }
        let mut active: user::ActiveModel = row.clone().into();
        if let Some(email) = email {
            active.email = Set(email);
        }
        active.role = Set(role.as_str().to_owned());
        active.update(&txn).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Lifts the tombstone of people deleted while signing in with the IdP
    /// whose email (when deleted) or subject is `who`, so their next JWT
    /// creates them again (the CLI's `user readmit`). Returns how many.
    pub async fn readmit(&self, who: &str) -> ApiResult<Vec<(String, String, String)>> {
        let who = who.trim();
        let email = Email::parse(who).map(|e| e.0).unwrap_or_else(|_| who.to_owned());
        let txn = self.db().begin().await?;
        let rows = jwt_tombstone::Entity::find()
            .filter(
                Condition::any()
                    .add(jwt_tombstone::Column::Email.eq(email.as_str()))
                    .add(jwt_tombstone::Column::Subject.eq(who)),
            )
            .all(&txn)
            .await?;
        for row in &rows {
            jwt_tombstone::Entity::delete_by_id((row.issuer.clone(), row.subject.clone())).exec(&txn).await?;
            audit::record(
                &txn,
                Actor::System,
                Action::UserEnabled,
                audit::Entry {
                    detail: Some(format!(
                        "{} readmitted: their next JWT from {} (subject {}) may sign in again",
                        row.email, row.issuer, row.subject
                    )),
                    ..Default::default()
                },
            )
            .await?;
        }
        txn.commit().await?;
        Ok(rows.into_iter().map(|r| (r.email, r.issuer, r.subject)).collect())
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

/// The `token_id` of a person signed in with a JWT (there is no token row).
pub const JWT_TOKEN_ID: &str = "jwt";

/// A token's email claim, checked as every email is (confusables too).
fn jwt_email(raw: &str) -> ApiResult<Email> {
    Email::parse(raw).map_err(|e| {
        let why = match e {
            ApiError::BadInput(why) => why,
            _ => "it is not an email address".into(),
        };
        ApiError::Unauthenticated(format!("the token's email claim was refused: {why}"))
    })
}

fn email_taken() -> ApiError {
    ApiError::Unauthenticated(
        "the token's email belongs to another person in the vault (people are matched by issuer and subject, \
         never by email): an admin must delete or rename that person first"
            .into(),
    )
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

/// Whether a live token row may be used now (not expired).
pub(super) fn not_expired(now: DateTime<Utc>) -> Condition {
    Condition::any().add(access_token::Column::ExpiresAt.is_null()).add(access_token::Column::ExpiresAt.gt(now))
}

/// Refusal for a token whose person is disabled.
pub(super) fn person_disabled() -> ApiError {
    disabled_refusal()
}

impl OwnerHandle {
    /// The caller's own live tokens.
    pub async fn my_tokens(&self) -> ApiResult<Vec<AccessToken>> {
        self.store.tokens(Some(self.user_id())).await
    }

    /// A new token for the caller (shown once).
    pub async fn create_token(
        &self,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> ApiResult<(AccessToken, Zeroizing<String>)> {
        self.store.create_user_token(Actor::Principal(&self.principal), self.user_id(), name, expires_at).await
    }

    /// Revokes one of the caller's tokens; anyone else's is NOT_FOUND.
    pub async fn revoke_token(&self, id: &str) -> ApiResult<()> {
        self.store.revoke_token_as(Actor::Principal(&self.principal), id, Some(self.user_id()), None).await
    }
}

impl AdminHandle {
    /// People's tokens: runner tokens are the operator's, not the admin's
    /// (issue 21), and are not listed.
    pub async fn tokens(&self, user_id: Option<&str>) -> ApiResult<Vec<AccessToken>> {
        self.store.tokens_of(user_id, Some(TokenKind::User)).await
    }

    /// Revokes any person's token (a runner token is FORBIDDEN: the
    /// operator's CLI or a runner revokes those).
    pub async fn revoke_token(&self, id: &str) -> ApiResult<()> {
        self.store.revoke_token_as(Actor::Principal(&self.principal), id, None, Some(TokenKind::User)).await
    }

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
async fn locked_user(txn: &sea_orm::DatabaseTransaction, user_id: &str) -> ApiResult<user::Model> {
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
