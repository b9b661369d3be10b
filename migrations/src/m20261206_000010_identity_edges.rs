//! Trust at the edges (issue 21, items 3 and 4): a token records who
//! created it (a runner token's issuance audit names it), and a person who
//! signed in with the platform's JWTs and was deleted by an admin leaves a
//! tombstone keyed by (issuer, subject), so their next JWT does not create
//! them again (`sesame-vault user readmit` lifts it).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AccessTokens {
    Table,
    CreatedBy,
}

#[derive(DeriveIden)]
enum JwtTombstones {
    Table,
    Issuer,
    Subject,
    Email,
    DeletedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AccessTokens::Table)
                    .add_column(ColumnDef::new(AccessTokens::CreatedBy).string_len(600).null())
                    .to_owned(),
            )
            .await?;
        // Runner tokens an admin minted through the API (before this, the
        // admin API could: item 3) would keep that admin's path to plaintext
        // open: revoke them. Their creation is known from the audit trail
        // ("runner token <id>", actor ADMIN); the operator mints new ones
        // with `sesame-vault token create --runner`.
        let now = match manager.get_database_backend() {
            sea_orm_migration::sea_orm::DbBackend::Postgres => "now()",
            // The text form sqlx writes for a UTC time.
            _ => "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')",
        };
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "UPDATE access_tokens SET revoked_at = {now}, created_by = 'an admin, through the API (revoked on upgrade)' \
                 WHERE kind = 'RUNNER' AND revoked_at IS NULL AND id IN (\
                 SELECT substr(detail, 14) FROM audit_log \
                 WHERE action = 'RUNNER_TOKEN_CREATED' AND actor_kind = 'ADMIN' AND detail LIKE 'runner token %')"
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(JwtTombstones::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(JwtTombstones::Issuer).string_len(512).not_null())
                    .col(ColumnDef::new(JwtTombstones::Subject).string_len(512).not_null())
                    .col(ColumnDef::new(JwtTombstones::Email).string_len(320).not_null())
                    .col(ColumnDef::new(JwtTombstones::DeletedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(JwtTombstones::Issuer).col(JwtTombstones::Subject))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(JwtTombstones::Table).to_owned()).await?;
        manager
            .alter_table(Table::alter().table(AccessTokens::Table).drop_column(AccessTokens::CreatedBy).to_owned())
            .await
    }
}
