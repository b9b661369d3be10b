//! People and tokens (issue 14): people who sign in with the platform's
//! JWTs are keyed by (issuer, subject); a person can be disabled; a token
//! can expire; the audit trail keeps a deleted person's email beside their
//! id.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    DisabledAt,
    Issuer,
    Subject,
}

#[derive(DeriveIden)]
enum AccessTokens {
    Table,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    OwnerEmail,
    ActorEmail,
}

const PERSON_INDEX: &str = "users_issuer_subject";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        let add = |table: TableRef, column: ColumnDef| Table::alter().table(table).add_column(column).to_owned();
        manager
            .alter_table(add(
                Users::Table.into_table_ref(),
                ColumnDef::new(Users::DisabledAt).timestamp_with_time_zone().null().take(),
            ))
            .await?;
        manager
            .alter_table(add(
                Users::Table.into_table_ref(),
                ColumnDef::new(Users::Issuer).string_len(512).null().take(),
            ))
            .await?;
        manager
            .alter_table(add(
                Users::Table.into_table_ref(),
                ColumnDef::new(Users::Subject).string_len(512).null().take(),
            ))
            .await?;
        // NULLs are distinct in a unique index on both backends: people
        // with only `sv_` tokens have neither.
        manager
            .create_index(
                Index::create()
                    .name(PERSON_INDEX)
                    .table(Users::Table)
                    .col(Users::Issuer)
                    .col(Users::Subject)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(add(
                AccessTokens::Table.into_table_ref(),
                ColumnDef::new(AccessTokens::ExpiresAt).timestamp_with_time_zone().null().take(),
            ))
            .await?;
        for column in [AuditLog::OwnerEmail, AuditLog::ActorEmail] {
            manager
                .alter_table(add(
                    AuditLog::Table.into_table_ref(),
                    ColumnDef::new(column).string_len(320).null().take(),
                ))
                .await?;
        }
        Ok(())
    }

    /// Drops what `up` added. Disabled people become enabled again and
    /// tokens stop expiring: run it only to go back to the previous version.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [AuditLog::ActorEmail, AuditLog::OwnerEmail] {
            manager.alter_table(Table::alter().table(AuditLog::Table).drop_column(column).to_owned()).await?;
        }
        manager
            .alter_table(Table::alter().table(AccessTokens::Table).drop_column(AccessTokens::ExpiresAt).to_owned())
            .await?;
        manager.drop_index(Index::drop().name(PERSON_INDEX).table(Users::Table).to_owned()).await?;
        for column in [Users::Subject, Users::Issuer, Users::DisabledAt] {
            manager.alter_table(Table::alter().table(Users::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
