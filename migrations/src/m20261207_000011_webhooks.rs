//! Signed webhooks from the event outbox (issue 24): the endpoints admins
//! register (secret sealed like every other secret) and one delivery row
//! per event and endpoint, claimed by one instance at a time.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    Url,
    Events,
    Description,
    Secret,
    Enabled,
    DisabledReason,
    LastEventId,
    CreatedAt,
    FailingSince,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    EndpointId,
    EventId,
    MessageId,
    Payload,
    Attempt,
    NextAttemptAt,
    ClaimOwner,
    ClaimedUntil,
    StatusCode,
    DurationMs,
    Outcome,
    CreatedAt,
}

const DUE_INDEX: &str = "webhook_deliveries_due";
const ONCE_INDEX: &str = "webhook_deliveries_once";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookEndpoints::Table)
                    .col(ColumnDef::new(WebhookEndpoints::Id).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(WebhookEndpoints::Url).text().not_null())
                    // Comma-separated event kinds; empty means every kind.
                    .col(ColumnDef::new(WebhookEndpoints::Events).text().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::Description).text().null())
                    .col(ColumnDef::new(WebhookEndpoints::Secret).text().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::Enabled).boolean().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::DisabledReason).text().null())
                    // The outbox id up to which deliveries were queued for this endpoint.
                    .col(ColumnDef::new(WebhookEndpoints::LastEventId).big_integer().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::FailingSince).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .col(ColumnDef::new(WebhookDeliveries::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(WebhookDeliveries::EndpointId).string_len(64).not_null())
                    // Null for a test delivery.
                    .col(ColumnDef::new(WebhookDeliveries::EventId).big_integer().null())
                    // `webhook-id`: the event's id as clients see it.
                    .col(ColumnDef::new(WebhookDeliveries::MessageId).text().not_null())
                    .col(ColumnDef::new(WebhookDeliveries::Payload).text().not_null())
                    .col(ColumnDef::new(WebhookDeliveries::Attempt).integer().not_null())
                    .col(ColumnDef::new(WebhookDeliveries::NextAttemptAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(WebhookDeliveries::ClaimOwner).string_len(64).null())
                    .col(ColumnDef::new(WebhookDeliveries::ClaimedUntil).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(WebhookDeliveries::StatusCode).integer().null())
                    .col(ColumnDef::new(WebhookDeliveries::DurationMs).big_integer().null())
                    // PENDING, DELIVERED, FAILED, GONE.
                    .col(ColumnDef::new(WebhookDeliveries::Outcome).string_len(16).not_null())
                    .col(ColumnDef::new(WebhookDeliveries::CreatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookDeliveries::Table, WebhookDeliveries::EndpointId)
                            .to(WebhookEndpoints::Table, WebhookEndpoints::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(DUE_INDEX)
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::Outcome)
                    .col(WebhookDeliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        // An event is queued once per endpoint, whichever instance queues it.
        manager
            .create_index(
                Index::create()
                    .name(ONCE_INDEX)
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::EndpointId)
                    .col(WebhookDeliveries::EventId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(WebhookDeliveries::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(WebhookEndpoints::Table).to_owned()).await
    }
}
