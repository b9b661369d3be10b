//! A device flow's user code (and the link that carries it) is stored
//! encrypted in new columns; the plain columns stay for rows written before,
//! which the service seals at start-up (the migration has no key). The
//! authorize URL, which carries an authorization flow's `state`, is no
//! longer kept: nothing reads it back, and the state itself sits in the
//! encrypted `secret`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OauthFlows {
    Table,
    AuthorizeUrl,
    SealedUserCode,
    SealedVerificationUriComplete,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [OauthFlows::SealedUserCode, OauthFlows::SealedVerificationUriComplete] {
            manager
                .alter_table(
                    Table::alter().table(OauthFlows::Table).add_column(ColumnDef::new(column).text().null()).to_owned(),
                )
                .await?;
        }
        manager
            .exec_stmt(
                Query::update()
                    .table(OauthFlows::Table)
                    .value(OauthFlows::AuthorizeUrl, Option::<String>::None)
                    .and_where(Expr::col(OauthFlows::AuthorizeUrl).is_not_null())
                    .to_owned(),
            )
            .await
    }

    /// Drops the sealed columns. Flows sealed meanwhile then show an empty
    /// user code (they still complete: the device code is in `secret`);
    /// flows last at most their provider's expiry, so this passes quickly.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [OauthFlows::SealedVerificationUriComplete, OauthFlows::SealedUserCode] {
            manager.alter_table(Table::alter().table(OauthFlows::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
