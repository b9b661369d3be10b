//! Proxy delivery (issue 23): one grant per task issuance with
//! `delivery: PROXY`. The task holds placeholders carrying the grant's
//! random id; the row holds its SHA-256, what the grant may reach, how long
//! it lives, and the usage the proxy counted for it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ProxyGrants {
    Table,
    IdHash,
    TaskId,
    RunnerTokenId,
    OwnerId,
    CredentialId,
    Agent,
    Provider,
    Source,
    IssuedAt,
    ExpiresAt,
    EndedAt,
    EndReason,
    FirstUsedAt,
    Requests,
    BytesSent,
    BytesReceived,
    InputTokens,
    OutputTokens,
}

const TASK_INDEX: &str = "proxy_grants_task";
const CREDENTIAL_INDEX: &str = "proxy_grants_credential";
const OWNER_INDEX: &str = "proxy_grants_owner";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProxyGrants::Table)
                    .col(ColumnDef::new(ProxyGrants::IdHash).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(ProxyGrants::TaskId).string_len(200).not_null())
                    .col(ColumnDef::new(ProxyGrants::RunnerTokenId).string_len(64).not_null())
                    .col(ColumnDef::new(ProxyGrants::OwnerId).string_len(64).not_null())
                    // Null: the system-wide key of `provider`.
                    .col(ColumnDef::new(ProxyGrants::CredentialId).string_len(64).null())
                    .col(ColumnDef::new(ProxyGrants::Agent).string_len(32).not_null())
                    .col(ColumnDef::new(ProxyGrants::Provider).string_len(32).not_null())
                    .col(ColumnDef::new(ProxyGrants::Source).string_len(32).not_null())
                    .col(ColumnDef::new(ProxyGrants::IssuedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(ProxyGrants::ExpiresAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(ProxyGrants::EndedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(ProxyGrants::EndReason).string_len(64).null())
                    .col(ColumnDef::new(ProxyGrants::FirstUsedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(ProxyGrants::Requests).big_integer().not_null().default(0))
                    .col(ColumnDef::new(ProxyGrants::BytesSent).big_integer().not_null().default(0))
                    .col(ColumnDef::new(ProxyGrants::BytesReceived).big_integer().not_null().default(0))
                    .col(ColumnDef::new(ProxyGrants::InputTokens).big_integer().not_null().default(0))
                    .col(ColumnDef::new(ProxyGrants::OutputTokens).big_integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            (TASK_INDEX, ProxyGrants::TaskId),
            (CREDENTIAL_INDEX, ProxyGrants::CredentialId),
            (OWNER_INDEX, ProxyGrants::OwnerId),
        ] {
            manager.create_index(Index::create().name(name).table(ProxyGrants::Table).col(col).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ProxyGrants::Table).to_owned()).await
    }
}
