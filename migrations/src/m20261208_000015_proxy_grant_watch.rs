//! Issue 23: the egress proxy keeps each grant it read until a change that
//! could end it (or change what it lends) is heard of (`store/grant_cache.rs`).
//! These triggers make every writer heard, whatever process or instance it
//! is: the operator's CLI, another instance, the scheduler.
//!
//! Watched: a credential's secret, kind, status, expiry, refresh token or
//! owner changed, or the credential deleted; a person's `disabled_at` or
//! role changed, or the person deleted; a token's revocation or expiry
//! changed, or the token deleted; a grant's end or lease changed, or the
//! grant deleted. Usage counters, `first_used_at` and `last_used_at` are
//! not watched (they change on every request or task).
//!
//! PostgreSQL: `pg_notify('sesame_proxy_grants', '')` (sent on commit;
//! identical notifications of one transaction are sent once), heard by the
//! relay on every instance. SQLite: `proxy_epoch.value` counts, and the
//! proxy reads it every 20 ms.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The PostgreSQL channel (`store::grant_cache::CHANNEL`).
const CHANNEL: &str = "sesame_proxy_grants";

/// Each watched table and the columns whose change matters.
const WATCHED: [(&str, &[&str]); 4] = [
    ("credentials", &["secret", "kind", "status", "expires_at", "has_refresh_token", "owner_id"]),
    ("users", &["disabled_at", "role"]),
    ("access_tokens", &["revoked_at", "expires_at"]),
    ("proxy_grants", &["ended_at", "expires_at"]),
];

fn changed(columns: &[&str], distinct: &str) -> String {
    columns.iter().map(|c| format!("OLD.{c} {distinct} NEW.{c}")).collect::<Vec<_>>().join(" OR ")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(&format!(
                "CREATE OR REPLACE FUNCTION sesame_proxy_grants_changed() RETURNS trigger AS $$
                 BEGIN
                     PERFORM pg_notify('{CHANNEL}', '');
                     RETURN NULL;
                 END
                 $$ LANGUAGE plpgsql"
            ))
            .await?;
            for (table, columns) in WATCHED {
                let cols = columns.join(", ");
                let when = changed(columns, "IS DISTINCT FROM");
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER {table}_proxy_update AFTER UPDATE OF {cols} ON {table}
                     FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION sesame_proxy_grants_changed()"
                ))
                .await?;
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER {table}_proxy_delete AFTER DELETE ON {table}
                     FOR EACH STATEMENT EXECUTE FUNCTION sesame_proxy_grants_changed()"
                ))
                .await?;
            }
            return Ok(());
        }
        if manager.get_database_backend() != DbBackend::Sqlite {
            // No watcher: the proxy reads every grant on every request.
            return Ok(());
        }
        db.execute_unprepared("CREATE TABLE proxy_epoch (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)").await?;
        db.execute_unprepared("INSERT INTO proxy_epoch (id, value) VALUES (1, 0)").await?;
        const BUMP: &str = "UPDATE proxy_epoch SET value = value + 1 WHERE id = 1;";
        for (table, columns) in WATCHED {
            let cols = columns.join(", ");
            let when = changed(columns, "IS NOT");
            db.execute_unprepared(&format!(
                "CREATE TRIGGER {table}_proxy_update AFTER UPDATE OF {cols} ON {table}
                 WHEN {when} BEGIN {BUMP} END"
            ))
            .await?;
            db.execute_unprepared(&format!(
                "CREATE TRIGGER {table}_proxy_delete AFTER DELETE ON {table} BEGIN {BUMP} END"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = manager.get_database_backend() == DbBackend::Postgres;
        for (table, _) in WATCHED {
            for what in ["update", "delete"] {
                let on = if postgres { format!(" ON {table}") } else { String::new() };
                db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {table}_proxy_{what}{on}")).await?;
            }
        }
        if postgres {
            db.execute_unprepared("DROP FUNCTION IF EXISTS sesame_proxy_grants_changed()").await?;
        } else {
            db.execute_unprepared("DROP TABLE IF EXISTS proxy_epoch").await?;
        }
        Ok(())
    }
}
