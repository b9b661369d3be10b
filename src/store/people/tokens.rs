//! `sv_` tokens: a person's own, those an admin manages, runner tokens
//! (made by the operator's CLI or a runner, never an admin), and the
//! operator's revocation by id.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    Set, TransactionTrait,
};
use zeroize::Zeroizing;

use super::{
    kind_str, locked_user, AccessToken, TokenKind, JWT_PEOPLE_HAVE_NO_TOKENS, MAX_LIVE_TOKENS_PER_PERSON, RUNNER_KIND,
};
use crate::auth::generate_token;
use crate::entities::access_token;
use crate::error::{ApiError, ApiResult};
use crate::ids::new_id;
use crate::store::admin::AdminHandle;
use crate::store::audit::{self, Action, Actor};
use crate::store::owner::OwnerHandle;
use crate::store::Store;

/// A token's name: what its owner will recognise it by in a list.
fn token_name(raw: &str) -> ApiResult<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_input("name must be 1 to 200 characters, without control characters"));
    }
    Ok(name.to_owned())
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
    pub(in crate::store) async fn create_runner_token_as(
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
    pub(in crate::store) async fn create_user_token(
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
    pub(in crate::store) async fn tokens(&self, user_id: Option<&str>) -> ApiResult<Vec<AccessToken>> {
        self.tokens_of(user_id, None).await
    }

    /// As `tokens`, of one kind only when `kind` is given.
    pub(in crate::store) async fn tokens_of(
        &self,
        user_id: Option<&str>,
        kind: Option<TokenKind>,
    ) -> ApiResult<Vec<AccessToken>> {
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
    pub(in crate::store) async fn revoke_token_as(
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
        self.commit_ending(txn).await?;
        Ok(())
    }

    /// Creates a RUNNER service token (the CLI's); returns its id and the token.
    pub(in crate::store) async fn create_runner_token(&self, name: &str) -> ApiResult<(String, Zeroizing<String>)> {
        let (token, secret) = self.create_runner_token_as(audit::Actor::System, super::OPERATOR_CLI, name).await?;
        Ok((token.id.to_string(), secret))
    }

    /// Revokes a token by id; false when no live token has that id.
    pub(in crate::store) async fn revoke_token(&self, id: &str) -> ApiResult<bool> {
        let id = crate::ids::parse_id("token id", id)?;
        let txn = self.db().begin().await?;
        let updated = access_token::Entity::update_many()
            .col_expr(access_token::Column::RevokedAt, Expr::value(Utc::now()))
            .filter(access_token::Column::Id.eq(id.as_str()))
            .filter(access_token::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?
            .rows_affected;
        if updated > 0 {
            audit::record(
                &txn,
                audit::Actor::System,
                audit::Action::TokenRevoked,
                audit::Entry { detail: Some(format!("token {id}")), ..Default::default() },
            )
            .await?;
        }
        self.commit_ending(txn).await?;
        Ok(updated > 0)
    }
}

/// Whether a live token row may be used now (not expired).
pub(in crate::store) fn not_expired(now: DateTime<Utc>) -> Condition {
    Condition::any().add(access_token::Column::ExpiresAt.is_null()).add(access_token::Column::ExpiresAt.gt(now))
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
}
