//! Refresh claims carry an owner, and a credential records until when it
//! is out with a task, so a refresher and an issuer decide on one row.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Credentials {
    Table,
    RefreshClaim,
    LeasedUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(Credentials::Table)
                    .add_column(ColumnDef::new(Credentials::RefreshClaim).string_len(36).null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Credentials::Table)
                    .add_column(ColumnDef::new(Credentials::LeasedUntil).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Credentials::LeasedUntil, Credentials::RefreshClaim] {
            manager.alter_table(Table::alter().table(Credentials::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
