//! Issue 21: refresh claims name their owner (`<instance>/<nonce>`, wider
//! than one id), and credential events get their ids in commit order on
//! PostgreSQL.
//!
//! Event ids come from a sequence taken at insert, not at commit: a
//! transaction holding id 7 could commit after the one holding id 8, and a
//! reader that saw 8 would step past 7 for good. On PostgreSQL a trigger
//! takes a transaction-scoped advisory lock before it draws the id, so
//! transactions that record events commit in the order of their ids (the
//! lock is held from the insert to the commit: each event-recording
//! transaction's last few statements run one at a time). SQLite has a single
//! writer: its ids are in commit order already.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Credentials {
    Table,
    RefreshClaim,
}

/// The advisory lock key the trigger takes (arbitrary, stable; the
/// scheduler's keys are 0x5e5a_0001…3).
const EVENT_ORDER_LOCK: i64 = 0x5e5a_00e0;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            // SQLite does not enforce VARCHAR lengths, and has one writer.
            return Ok(());
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Credentials::Table)
                    .modify_column(ColumnDef::new(Credentials::RefreshClaim).string_len(80).null())
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(&format!(
            "CREATE OR REPLACE FUNCTION sesame_credential_event_id() RETURNS trigger AS $$
             BEGIN
                 PERFORM pg_advisory_xact_lock({EVENT_ORDER_LOCK});
                 NEW.id := nextval(pg_get_serial_sequence('credential_events', 'id'));
                 RETURN NEW;
             END
             $$ LANGUAGE plpgsql"
        ))
        .await?;
        db.execute_unprepared(
            "CREATE TRIGGER credential_events_commit_order BEFORE INSERT ON credential_events
             FOR EACH ROW EXECUTE FUNCTION sesame_credential_event_id()",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared("DROP TRIGGER IF EXISTS credential_events_commit_order ON credential_events").await?;
        db.execute_unprepared("DROP FUNCTION IF EXISTS sesame_credential_event_id()").await?;
        // Claims are short-lived: clear any that would not fit the old width.
        db.execute_unprepared("UPDATE credentials SET refresh_claim = NULL, refresh_claimed_until = NULL").await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Credentials::Table)
                    .modify_column(ColumnDef::new(Credentials::RefreshClaim).string_len(36).null())
                    .to_owned(),
            )
            .await
    }
}
