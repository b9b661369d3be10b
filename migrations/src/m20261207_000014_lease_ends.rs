//! The expiry scan cuts back leases that a clock running ahead made too
//! long (`leased_until` / `expires_at` later than now + the lease, issue 21):
//! without these indexes each scan read every credential and every task
//! lease (178 ms at 1,000,000 credentials instead of 0.2 ms; BENCHMARKS.md).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Credentials {
    Table,
    LeasedUntil,
}

#[derive(DeriveIden)]
enum TaskLeases {
    Table,
    ExpiresAt,
}

const CREDENTIALS_INDEX: &str = "credentials_leased_until";
const TASK_LEASES_INDEX: &str = "task_leases_expires_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(CREDENTIALS_INDEX)
                    .table(Credentials::Table)
                    .col(Credentials::LeasedUntil)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name(TASK_LEASES_INDEX).table(TaskLeases::Table).col(TaskLeases::ExpiresAt).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(TASK_LEASES_INDEX).table(TaskLeases::Table).to_owned()).await?;
        manager.drop_index(Index::drop().name(CREDENTIALS_INDEX).table(Credentials::Table).to_owned()).await
    }
}
