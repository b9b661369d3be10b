//! Issue 23: the expiry scan cuts back proxy grants that a clock running
//! ahead made too long (as it does task leases, migration
//! `m20261207_000014_lease_ends`); without this index each scan would read
//! every grant kept (90 days of tasks).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ProxyGrants {
    Table,
    ExpiresAt,
}

const INDEX: &str = "proxy_grants_expires_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(Index::create().name(INDEX).table(ProxyGrants::Table).col(ProxyGrants::ExpiresAt).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(INDEX).table(ProxyGrants::Table).to_owned()).await
    }
}
