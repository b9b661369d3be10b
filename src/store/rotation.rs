//! Re-encrypting every stored secret under the current key (the CLI's
//! `rotate-key`).

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, Set,
    TransactionTrait,
};

use super::{audit, credentials, webhooks, Store, FLOW_FIELD, FLOW_USER_CODE_FIELD, FLOW_VERIFICATION_URI_FIELD};
use crate::entities::{credential, oauth_flow, webhook_endpoint};
use crate::error::{ApiError, ApiResult};

impl Store {
    /// Re-encrypts every stored secret (credentials, pending sign-in flows
    /// and webhook endpoints' signing secrets) under the current key. Returns how many records were rewritten.
    ///
    /// On SQLite beside a running server: waits its turn for the write lock
    /// (the busy timeout), and if the server kept it, says to retry or stop
    /// the server instead of SQLite's "database is locked".
    pub(in crate::store) async fn rotate_keys(&self) -> ApiResult<usize> {
        self.try_rotate_keys().await.map_err(|e| match e {
            ApiError::Unavailable(m) if m == crate::error::DbUnavailable::Busy.message() => ApiError::Unavailable(
                "the database stayed locked by another process (the running server is writing); \
                 run rotate-key again, or stop the server first"
                    .into(),
            ),
            e => e,
        })
    }

    async fn try_rotate_keys(&self) -> ApiResult<usize> {
        let txn = self.db().begin().await?;
        if !self.is_postgres() {
            // Takes SQLite's write lock first, waiting on the busy timeout.
            // A transaction that read first and then wrote would fail at
            // once with "database is locked" (SQLITE_BUSY_SNAPSHOT, which
            // no busy timeout waits out) if the server wrote in between.
            txn.execute_unprepared("UPDATE credentials SET version = version WHERE 1 = 0").await?;
        }
        let rewritten = self.reseal_credentials(&txn).await?
            + self.reseal_flows(&txn).await?
            + self.reseal_webhook_secrets(&txn).await?;
        audit::record(
            &txn,
            audit::Actor::System,
            audit::Action::KeyRotated,
            audit::Entry {
                detail: Some(format!(
                    "{rewritten} credentials re-encrypted under key {}",
                    self.keys().current_fingerprint()
                )),
                ..Default::default()
            },
        )
        .await?;
        txn.commit().await?;
        Ok(rewritten)
    }

    /// Re-encrypts every credential not under the current key; returns how
    /// many. Per row a compare-and-swap on the version: a refresh committed
    /// by a live server meanwhile is re-read, never overwritten with the
    /// older plaintext.
    async fn reseal_credentials(&self, txn: &DatabaseTransaction) -> ApiResult<usize> {
        let mut rewritten = 0;
        for id in credential::Entity::find().all(txn).await?.into_iter().map(|row| row.id) {
            // Per row a compare-and-swap on the version: a refresh committed
            // by a live server meanwhile is re-read, never overwritten with
            // the older plaintext.
            for attempt in 1.. {
                // `FOR UPDATE` on PostgreSQL: a save waits for the rotation
                // instead of making it retry.
                let Some(row) = credential::Entity::find_by_id(id.as_str()).lock_exclusive().one(txn).await? else {
                    break;
                };
                let keys = self.keys();
                if keys.is_current(&row.secret) && keys.is_current(&row.hint) {
                    break;
                }
                let secret = keys.decrypt(&row.secret, credentials::binding(&row, credentials::FIELD_SECRET))?;
                let hint = keys.decrypt(&row.hint, credentials::binding(&row, credentials::FIELD_HINT))?;
                let updated = credential::Entity::update_many()
                    .col_expr(
                        credential::Column::Secret,
                        Expr::value(keys.encrypt(&secret, credentials::binding(&row, credentials::FIELD_SECRET))),
                    )
                    .col_expr(
                        credential::Column::Hint,
                        Expr::value(keys.encrypt(&hint, credentials::binding(&row, credentials::FIELD_HINT))),
                    )
                    .filter(credential::Column::Id.eq(row.id.as_str()))
                    .filter(credential::Column::Version.eq(row.version))
                    .exec(txn)
                    .await?
                    .rows_affected;
                if updated == 1 {
                    rewritten += 1;
                    break;
                }
                if attempt == 5 {
                    return Err(ApiError::internal(anyhow::anyhow!("credential {id} kept changing during rotation")));
                }
            }
        }
        Ok(rewritten)
    }

    /// Re-encrypts the sign-in flows' device codes and PKCE verifiers, user
    /// codes and the links that carry them; returns how many flows.
    async fn reseal_flows(&self, txn: &DatabaseTransaction) -> ApiResult<usize> {
        let mut rewritten = 0;
        for row in oauth_flow::Entity::find().all(txn).await? {
            let keys = self.keys();
            let current = |stored: &Option<String>| stored.as_deref().is_none_or(|c| keys.is_current(c));
            if keys.is_current(&row.secret)
                && current(&row.sealed_user_code)
                && current(&row.sealed_verification_uri_complete)
            {
                continue;
            }
            let reseal = |stored: &str, field| -> ApiResult<String> {
                let binding = crate::crypto::Binding { owner_id: &row.owner_id, record_id: &row.id, field };
                Ok(keys.encrypt(&keys.decrypt(stored, binding)?, binding))
            };
            let mut active: oauth_flow::ActiveModel = row.clone().into();
            active.secret = Set(reseal(&row.secret, FLOW_FIELD)?);
            if let Some(stored) = &row.sealed_user_code {
                active.sealed_user_code = Set(Some(reseal(stored, FLOW_USER_CODE_FIELD)?));
            }
            if let Some(stored) = &row.sealed_verification_uri_complete {
                active.sealed_verification_uri_complete = Set(Some(reseal(stored, FLOW_VERIFICATION_URI_FIELD)?));
            }
            active.update(txn).await?;
            rewritten += 1;
        }
        Ok(rewritten)
    }

    /// Re-encrypts the webhook endpoints' signing secrets; returns how many.
    /// Without this, dropping the old key would leave every endpoint
    /// unable to sign.
    async fn reseal_webhook_secrets(&self, txn: &DatabaseTransaction) -> ApiResult<usize> {
        let mut rewritten = 0;
        for row in webhook_endpoint::Entity::find().all(txn).await? {
            if let Some(active) = webhooks::resealed(self.keys(), row)? {
                active.update(txn).await?;
                rewritten += 1;
            }
        }
        Ok(rewritten)
    }
}
