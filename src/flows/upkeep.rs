//! Upkeep of stored flows: sealing rows left in plain text by older
//! versions, deleting finished ones.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter};

use super::view::seal_text;
use super::FlowEngine;
use crate::domain::FlowStatus;
use crate::entities::oauth_flow;
use crate::error::ApiResult;
use crate::store::{FLOW_USER_CODE_FIELD, FLOW_VERIFICATION_URI_FIELD};

impl FlowEngine {
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
