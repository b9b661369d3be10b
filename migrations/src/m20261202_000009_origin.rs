//! Where a credential came from (issue 15, "Remove means removed"): a token
//! the vault obtained through its own sign-in flows can be revoked at the
//! provider when it is removed; a pasted one cannot, and the person is told
//! where to revoke it. Rows from before this migration count as pasted.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Credentials {
    Table,
    Origin,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Credentials::Table)
                    .add_column(ColumnDef::new(Credentials::Origin).string_len(8).not_null().default("PASTED"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(Credentials::Table).drop_column(Credentials::Origin).to_owned()).await
    }
}
