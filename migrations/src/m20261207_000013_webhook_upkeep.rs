//! Webhooks, the rest of issue 24: a rotated signing secret keeps verifying
//! for a grace period (`previous_secret` until `previous_secret_until`), each
//! endpoint counts the deliveries dropped past its queue bound, and each
//! attempt keeps a short, scrubbed excerpt of the receiver's answer; the
//! outbox is indexed by credential (a "working again" webhook names the
//! state the credential left).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    PreviousSecret,
    PreviousSecretUntil,
    Dropped,
}

#[derive(DeriveIden)]
enum CredentialEvents {
    Table,
    CredentialId,
    Id,
}

/// A "working again" webhook looks up the credential's previous event.
const BY_CREDENTIAL_INDEX: &str = "credential_events_by_credential";

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    AnswerExcerpt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        let endpoint_columns = [
            ColumnDef::new(WebhookEndpoints::PreviousSecret).text().null().to_owned(),
            ColumnDef::new(WebhookEndpoints::PreviousSecretUntil).timestamp_with_time_zone().null().to_owned(),
            ColumnDef::new(WebhookEndpoints::Dropped).big_integer().not_null().default(0).to_owned(),
        ];
        for column in endpoint_columns {
            manager.alter_table(Table::alter().table(WebhookEndpoints::Table).add_column(column).to_owned()).await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookDeliveries::Table)
                    .add_column(ColumnDef::new(WebhookDeliveries::AnswerExcerpt).string_len(256).null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(BY_CREDENTIAL_INDEX)
                    .table(CredentialEvents::Table)
                    .col(CredentialEvents::CredentialId)
                    .col(CredentialEvents::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(BY_CREDENTIAL_INDEX).table(CredentialEvents::Table).to_owned()).await?;
        manager
            .alter_table(
                Table::alter().table(WebhookDeliveries::Table).drop_column(WebhookDeliveries::AnswerExcerpt).to_owned(),
            )
            .await?;
        for column in
            [WebhookEndpoints::Dropped, WebhookEndpoints::PreviousSecretUntil, WebhookEndpoints::PreviousSecret]
        {
            manager.alter_table(Table::alter().table(WebhookEndpoints::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
