//! Task leases: which credential went out to which task, until when.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TaskLeases {
    Table,
    Id,
    TaskId,
    RunnerTokenId,
    OwnerId,
    CredentialId,
    Agent,
    Provider,
    CredentialVersion,
    IssuedAt,
    ExpiresAt,
    ReturnedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TaskLeases::Table)
                    .col(ColumnDef::new(TaskLeases::Id).string_len(36).not_null().primary_key())
                    .col(ColumnDef::new(TaskLeases::TaskId).string_len(200).not_null())
                    .col(ColumnDef::new(TaskLeases::RunnerTokenId).string_len(36).not_null())
                    .col(ColumnDef::new(TaskLeases::OwnerId).string_len(36).not_null())
                    .col(ColumnDef::new(TaskLeases::CredentialId).string_len(36).not_null())
                    .col(ColumnDef::new(TaskLeases::Agent).string_len(16).not_null())
                    .col(ColumnDef::new(TaskLeases::Provider).string_len(16).not_null())
                    .col(ColumnDef::new(TaskLeases::CredentialVersion).big_integer().not_null())
                    .col(ColumnDef::new(TaskLeases::IssuedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(TaskLeases::ExpiresAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(TaskLeases::ReturnedAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("task_leases_task").table(TaskLeases::Table).col(TaskLeases::TaskId).to_owned(),
            )
            .await?;
        // The scheduler asks "is this credential out with a task?" by this index.
        manager
            .create_index(
                Index::create()
                    .name("task_leases_credential")
                    .table(TaskLeases::Table)
                    .col(TaskLeases::CredentialId)
                    .col(TaskLeases::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(TaskLeases::Table).to_owned()).await
    }
}
