//! Opening the database: SQLite (WAL, synchronous commits, one writer and a
//! few readers; its files private, 0600) or PostgreSQL.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, SqlxSqliteConnector, TransactionTrait,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Connection;

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
        let options = SqliteConnectOptions::from_str(url).context("DATABASE_URL is not a valid sqlite:// URL")?;
        if !is_in_memory(url) {
            private_sqlite_files(options.get_filename())?;
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Every commit reaches the disk before it is acknowledged (an
            // issued credential's audit entry survives a power cut); batched
            // issuance pays one sync per batch, not per task.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // Statement journals in memory, not in temporary files.
            .pragma("temp_store", "memory")
            // Deleted and overwritten content is zeroed where that costs no
            // extra I/O, so old values do not linger in free space.
            .pragma("secure_delete", "fast");
        // One connection: SQLite allows one writer, and a deferred
        // transaction that reads then writes would fail with SQLITE_BUSY
        // under concurrency. Other processes (the CLI) wait on the busy timeout.
        sqlite_pool(options, 1, Pool::Writer).await.context("opening the SQLite database")
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
    if !url.starts_with("sqlite:") || is_in_memory(url) {
        return Ok(writer.clone());
    }
    let options = SqliteConnectOptions::from_str(url)
        .context("DATABASE_URL is not a valid sqlite:// URL")?
        .read_only(true)
        .busy_timeout(Duration::from_secs(5));
    sqlite_pool(options, READERS, Pool::Readers).await.context("opening read connections to the SQLite database")
}

/// Whether a SQLite URL names an in-memory database (no files).
pub fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// Makes a SQLite database's files private before SQLite opens them: a
/// missing database file is created 0600 whatever the umask (SQLite gives
/// its `-wal`, `-shm` and `-journal` files the database file's mode), and
/// existing ones that others may read are tightened (with a warning).
fn private_sqlite_files(db_file: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(db_file) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating the SQLite database {}", db_file.display())),
    }
    crate::private_fs::make_private(db_file)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = db_file.as_os_str().to_owned();
        name.push(suffix);
        crate::private_fs::make_private(Path::new(&name))?;
    }
    Ok(())
}

/// A pool of `connections` to a SQLite file. An embedded database cannot
/// drop a connection, so no ping before each use (each would cost a round
/// trip to the connection's thread).
///
/// A connection that comes back still inside a transaction is closed, not
/// reused: when a statement or `COMMIT` fails with SQLITE_FULL or
/// SQLITE_IOERR, SQLite rolls the transaction back itself, sqlx's `ROLLBACK`
/// then fails and sqlx still counts the connection as in a transaction; its
/// next `BEGIN` would become a `SAVEPOINT` and its `COMMIT` a `RELEASE`, and
/// the writer would answer OK for transactions that never commit (issue 21,
/// item 9). A fresh connection is opened on the next acquire. Read-only
/// connections write nothing, so they skip that check: it is a round trip
/// to the connection's thread on every release (sqlx pings once more
/// itself), and every hot read pays it.
async fn sqlite_pool(
    options: SqliteConnectOptions,
    connections: u32,
    kind: Pool,
) -> Result<DatabaseConnection, sqlx::Error> {
    let pool_options = SqlitePoolOptions::new().max_connections(connections).test_before_acquire(false);
    if kind == Pool::Readers {
        let pool = pool_options.connect_with(options).await?;
        return Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool));
    }
    let pool = pool_options
        .after_release(|conn, _| {
            Box::pin(async move {
                // Runs the rollback a dropped transaction queued first.
                conn.ping().await?;
                if conn.is_in_transaction() {
                    tracing::warn!(
                        "a SQLite connection came back inside a failed transaction; closing it (a new one is opened)"
                    );
                    return Ok(false);
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await?;
    Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
}

/// Read-only SQLite connections (each has its own thread).
const READERS: u32 = 2;

/// The writer's pool or the read-only one (see [`sqlite_pool`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pool {
    Writer,
    Readers,
}
