//! Sign-in flows, stored so a restart (or another instance) resumes them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OauthFlows {
    Table,
    Id,
    OwnerId,
    Agent,
    Provider,
    Kind,
    Status,
    UserCode,
    VerificationUri,
    VerificationUriComplete,
    AuthorizeUrl,
    /// Encrypted: device code / device auth id, PKCE verifier, state.
    Secret,
    IntervalSecs,
    ExpiresAt,
    NextPollAt,
    Failures,
    Message,
    CredentialId,
    Revision,
    LeaseOwner,
    LeaseUntil,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let ts = |c: OauthFlows| ColumnDef::new(c).timestamp_with_time_zone().not_null().take();
        manager
            .create_table(
                Table::create()
                    .table(OauthFlows::Table)
                    .col(ColumnDef::new(OauthFlows::Id).string_len(36).not_null().primary_key())
                    .col(ColumnDef::new(OauthFlows::OwnerId).string_len(36).not_null())
                    .col(ColumnDef::new(OauthFlows::Agent).string_len(16).not_null())
                    .col(ColumnDef::new(OauthFlows::Provider).string_len(16).not_null())
                    .col(ColumnDef::new(OauthFlows::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(OauthFlows::Status).string_len(16).not_null())
                    .col(ColumnDef::new(OauthFlows::UserCode).string_len(64).not_null())
                    .col(ColumnDef::new(OauthFlows::VerificationUri).text().not_null())
                    .col(ColumnDef::new(OauthFlows::VerificationUriComplete).text().null())
                    .col(ColumnDef::new(OauthFlows::AuthorizeUrl).text().null())
                    .col(ColumnDef::new(OauthFlows::Secret).text().not_null())
                    .col(ColumnDef::new(OauthFlows::IntervalSecs).integer().not_null())
                    .col(ts(OauthFlows::ExpiresAt))
                    .col(ts(OauthFlows::NextPollAt))
                    .col(ColumnDef::new(OauthFlows::Failures).integer().not_null().default(0))
                    .col(ColumnDef::new(OauthFlows::Message).text().null())
                    .col(ColumnDef::new(OauthFlows::CredentialId).string_len(36).null())
                    .col(ColumnDef::new(OauthFlows::Revision).big_integer().not_null().default(1))
                    .col(ColumnDef::new(OauthFlows::LeaseOwner).string_len(36).null())
                    .col(ColumnDef::new(OauthFlows::LeaseUntil).timestamp_with_time_zone().null())
                    .col(ts(OauthFlows::CreatedAt))
                    .col(ts(OauthFlows::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OauthFlows::Table, OauthFlows::OwnerId)
                            .to(Alias::new("users"), Alias::new("id"))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("oauth_flows_status_owner")
                    .table(OauthFlows::Table)
                    .col(OauthFlows::Status)
                    .col(OauthFlows::OwnerId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(OauthFlows::Table).to_owned()).await
    }
}
