//! Checks with the provider (issue 15): each credential records its last
//! check (when, result, message) and a claim that lets one replica at a
//! time check it; system-wide keys, which live in the environment, get a
//! row per provider keyed by a fingerprint of the key.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Credentials {
    Table,
    LastCheckedAt,
    CheckResult,
    CheckMessage,
    CheckClaimedUntil,
}

#[derive(DeriveIden)]
enum SystemKeyChecks {
    Table,
    Provider,
    KeyFingerprint,
    LastCheckedAt,
    CheckResult,
    CheckMessage,
    CheckClaimedUntil,
}

const STALE_INDEX: &str = "credentials_last_checked_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        let columns = [
            ColumnDef::new(Credentials::LastCheckedAt).timestamp_with_time_zone().null().take(),
            ColumnDef::new(Credentials::CheckResult).string_len(16).null().take(),
            ColumnDef::new(Credentials::CheckMessage).text().null().take(),
            ColumnDef::new(Credentials::CheckClaimedUntil).timestamp_with_time_zone().null().take(),
        ];
        for column in columns {
            manager.alter_table(Table::alter().table(Credentials::Table).add_column(column).to_owned()).await?;
        }
        // The periodic job asks for the least recently checked first.
        manager
            .create_index(
                Index::create().name(STALE_INDEX).table(Credentials::Table).col(Credentials::LastCheckedAt).to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SystemKeyChecks::Table)
                    .col(ColumnDef::new(SystemKeyChecks::Provider).string_len(16).not_null().primary_key())
                    // SHA-256 of the key, hex: a replaced key starts unchecked.
                    .col(ColumnDef::new(SystemKeyChecks::KeyFingerprint).string_len(64).not_null())
                    .col(ColumnDef::new(SystemKeyChecks::LastCheckedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(SystemKeyChecks::CheckResult).string_len(16).null())
                    .col(ColumnDef::new(SystemKeyChecks::CheckMessage).text().null())
                    .col(ColumnDef::new(SystemKeyChecks::CheckClaimedUntil).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(SystemKeyChecks::Table).to_owned()).await?;
        manager.drop_index(Index::drop().name(STALE_INDEX).table(Credentials::Table).to_owned()).await?;
        for column in [
            Credentials::CheckClaimedUntil,
            Credentials::CheckMessage,
            Credentials::CheckResult,
            Credentials::LastCheckedAt,
        ] {
            manager.alter_table(Table::alter().table(Credentials::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
