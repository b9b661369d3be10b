//! Users, access tokens, encrypted credentials and the audit log.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AccessTokens {
    Table,
    Id,
    Kind,
    UserId,
    Name,
    TokenHash,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Credentials {
    Table,
    Id,
    OwnerId,
    Slot,
    Provider,
    Agent,
    Kind,
    Status,
    StatusMessage,
    Secret,
    Hint,
    HasRefreshToken,
    ExpiresAt,
    LastUsedAt,
    CreatedAt,
    UpdatedAt,
    Version,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    ActorKind,
    ActorId,
    Action,
    OwnerId,
    CredentialId,
    Provider,
    Agent,
    TaskId,
    Detail,
}

fn id_col<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).string_len(36).not_null().primary_key().take()
}

fn ts<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).timestamp_with_time_zone().not_null().take()
}

fn ts_null<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).timestamp_with_time_zone().null().take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(id_col(Users::Id))
                    .col(ColumnDef::new(Users::Email).string_len(320).not_null().unique_key())
                    .col(ColumnDef::new(Users::Role).string_len(16).not_null())
                    .col(ts(Users::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AccessTokens::Table)
                    .col(id_col(AccessTokens::Id))
                    .col(ColumnDef::new(AccessTokens::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(AccessTokens::UserId).string_len(36).null())
                    .col(ColumnDef::new(AccessTokens::Name).string_len(200).null())
                    .col(ColumnDef::new(AccessTokens::TokenHash).string_len(64).not_null().unique_key())
                    .col(ts(AccessTokens::CreatedAt))
                    .col(ts_null(AccessTokens::LastUsedAt))
                    .col(ts_null(AccessTokens::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(AccessTokens::Table, AccessTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Credentials::Table)
                    .col(id_col(Credentials::Id))
                    .col(ColumnDef::new(Credentials::OwnerId).string_len(36).not_null())
                    // "api:<PROVIDER>" or "sub:<AGENT>:<PROVIDER>": one credential per slot and owner.
                    .col(ColumnDef::new(Credentials::Slot).string_len(64).not_null())
                    .col(ColumnDef::new(Credentials::Provider).string_len(16).not_null())
                    .col(ColumnDef::new(Credentials::Agent).string_len(16).null())
                    .col(ColumnDef::new(Credentials::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(Credentials::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Credentials::StatusMessage).text().null())
                    .col(ColumnDef::new(Credentials::Secret).text().not_null())
                    .col(ColumnDef::new(Credentials::Hint).text().not_null())
                    .col(ColumnDef::new(Credentials::HasRefreshToken).boolean().not_null())
                    .col(ts_null(Credentials::ExpiresAt))
                    .col(ts_null(Credentials::LastUsedAt))
                    .col(ts(Credentials::CreatedAt))
                    .col(ts(Credentials::UpdatedAt))
                    .col(ColumnDef::new(Credentials::Version).big_integer().not_null().default(1))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Credentials::Table, Credentials::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("credentials_owner_slot")
                    .table(Credentials::Table)
                    .col(Credentials::OwnerId)
                    .col(Credentials::Slot)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The expiry scan walks this index only: its cost follows the rows due.
        manager
            .create_index(
                Index::create()
                    .name("credentials_status_expires")
                    .table(Credentials::Table)
                    .col(Credentials::Status)
                    .col(Credentials::ExpiresAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(ColumnDef::new(AuditLog::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ts(AuditLog::At))
                    .col(ColumnDef::new(AuditLog::ActorKind).string_len(16).not_null())
                    .col(ColumnDef::new(AuditLog::ActorId).string_len(36).null())
                    .col(ColumnDef::new(AuditLog::Action).string_len(48).not_null())
                    .col(ColumnDef::new(AuditLog::OwnerId).string_len(36).null())
                    .col(ColumnDef::new(AuditLog::CredentialId).string_len(36).null())
                    .col(ColumnDef::new(AuditLog::Provider).string_len(16).null())
                    .col(ColumnDef::new(AuditLog::Agent).string_len(16).null())
                    .col(ColumnDef::new(AuditLog::TaskId).string_len(200).null())
                    .col(ColumnDef::new(AuditLog::Detail).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("audit_log_owner").table(AuditLog::Table).col(AuditLog::OwnerId).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditLog::Table.into_iden(),
            Credentials::Table.into_iden(),
            AccessTokens::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
