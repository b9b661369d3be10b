//! Opening the database: SQLite (WAL, synchronous commits, one writer and a
//! few readers) or PostgreSQL.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, SqlxSqliteConnector, TransactionTrait,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// Connects and brings the schema up to date.
pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    let db = open(url).await?;
    if db.get_database_backend() == DbBackend::Postgres {
        // Instances starting together take turns: one migrates, the others
        // then find nothing pending. The lock lives on one held connection.
        let mut conn = db.get_postgres_connection_pool().acquire().await.context("connecting to PostgreSQL")?;
        sqlx::query("SELECT pg_advisory_lock($1)").bind(MIGRATION_LOCK).execute(&mut *conn).await?;
        let migrated = Migrator::up(&db, None).await.context("applying database migrations");
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK).execute(&mut *conn).await?;
        migrated?;
    } else {
        // sea-orm-migration wraps PostgreSQL runs in a transaction itself;
        // on SQLite (transactional DDL too) do it here, so a failed
        // migration leaves the schema as it was.
        let txn = db.begin().await?;
        Migrator::up(&txn, None).await.context("applying database migrations")?;
        txn.commit().await?;
    }
    Ok(db)
}

/// Advisory lock key for migrations (arbitrary, stable).
const MIGRATION_LOCK: i64 = 0x5e5a_0000;

/// Connects without migrating (the `migrate` command and tests use this).
pub async fn open(url: &str) -> anyhow::Result<DatabaseConnection> {
    if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url)
            .context("DATABASE_URL is not a valid sqlite:// URL")?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Every commit reaches the disk before it is acknowledged (an
            // issued credential's audit entry survives a power cut); batched
            // issuance pays one sync per batch, not per task.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // Statement journals in memory, not in temporary files.
            .pragma("temp_store", "memory");
        // One connection: SQLite allows one writer, and a deferred
        // transaction that reads then writes would fail with SQLITE_BUSY
        // under concurrency. Other processes (the CLI) wait on the busy timeout.
        sqlite_pool(options, 1).await.context("opening the SQLite database")
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let mut options = ConnectOptions::new(url.to_owned());
        options.max_connections(32).min_connections(1).connect_timeout(Duration::from_secs(10)).sqlx_logging(false);
        Database::connect(options).await.context("connecting to PostgreSQL")
    } else {
        anyhow::bail!("DATABASE_URL must start with sqlite:// or postgres://")
    }
}

/// Connections for reads that need not queue behind the writer: on a SQLite
/// file, a few read-only connections (WAL lets readers run beside the one
/// writer and see every committed change); otherwise the writer's pool.
pub async fn open_reader(url: &str, writer: &DatabaseConnection) -> anyhow::Result<DatabaseConnection> {
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if !url.starts_with("sqlite:") || in_memory {
        return Ok(writer.clone());
    }
    let options = SqliteConnectOptions::from_str(url)
        .context("DATABASE_URL is not a valid sqlite:// URL")?
        .read_only(true)
        .busy_timeout(Duration::from_secs(5));
    sqlite_pool(options, READERS).await.context("opening read connections to the SQLite database")
}

/// A pool of `connections` to a SQLite file. An embedded database cannot
/// drop a connection, so no ping before each use (each would cost a round
/// trip to the connection's thread).
async fn sqlite_pool(options: SqliteConnectOptions, connections: u32) -> Result<DatabaseConnection, sqlx::Error> {
    let pool =
        SqlitePoolOptions::new().max_connections(connections).test_before_acquire(false).connect_with(options).await?;
    Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
}

/// Read-only SQLite connections (each has its own thread).
const READERS: u32 = 2;
