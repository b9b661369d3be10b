//! Expiry and refresh: a refresh claim on credentials, and the event
//! outbox that makes each transition's event exactly-once.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Credentials {
    Table,
    RefreshClaimedUntil,
}

#[derive(DeriveIden)]
enum CredentialEvents {
    Table,
    Id,
    Kind,
    CredentialId,
    OwnerId,
    Provider,
    Agent,
    Status,
    Message,
    At,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Credentials::Table)
                    .add_column(ColumnDef::new(Credentials::RefreshClaimedUntil).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CredentialEvents::Table)
                    .col(ColumnDef::new(CredentialEvents::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(CredentialEvents::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(CredentialEvents::CredentialId).string_len(36).not_null())
                    .col(ColumnDef::new(CredentialEvents::OwnerId).string_len(36).not_null())
                    .col(ColumnDef::new(CredentialEvents::Provider).string_len(16).not_null())
                    .col(ColumnDef::new(CredentialEvents::Agent).string_len(16).null())
                    .col(ColumnDef::new(CredentialEvents::Status).string_len(16).null())
                    .col(ColumnDef::new(CredentialEvents::Message).text().null())
                    .col(ColumnDef::new(CredentialEvents::At).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("credential_events_at")
                    .table(CredentialEvents::Table)
                    .col(CredentialEvents::At)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(CredentialEvents::Table).to_owned()).await?;
        manager
            .alter_table(
                Table::alter().table(Credentials::Table).drop_column(Credentials::RefreshClaimedUntil).to_owned(),
            )
            .await
    }
}
