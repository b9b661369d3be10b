//! `sesame-vault backup FILE`: a consistent copy of the SQLite database,
//! taken while the server runs (`VACUUM INTO` reads one snapshot of the
//! database; writers carry on). The copy is created 0600 before SQLite
//! writes into it. The encryption key is not in it, on purpose: a backup
//! without its key is useless, and one stored with its key is a plaintext
//! copy, so the key is backed up separately.

use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::config::Config;

/// Writes the backup to `target`; returns its size in bytes.
pub async fn run(config: &Config, target: &Path) -> anyhow::Result<u64> {
    let url = config.database_url();
    if !config.is_sqlite() {
        bail!(
            "backup copies the embedded SQLite database; this server uses PostgreSQL: \
             back it up with `pg_dump --format=custom` (see docs/operations.md, Backups)"
        );
    }
    let options = SqliteConnectOptions::from_str(&url).context("reading the SQLite database URL")?;
    let source = options.get_filename().to_path_buf();
    if !source.is_file() {
        bail!(
            "no database at {}: run backup with the server's configuration (SESAME_DATA_DIR or --config)",
            source.display()
        );
    }
    // An empty file of our own, 0600: SQLite writes into it and keeps its mode.
    let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(target);
    match created {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            bail!("{} exists already; name a new file (a backup never overwrites one)", target.display())
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", target.display())),
    }
    let result = vacuum_into(options, target).await;
    if result.is_err() {
        let _ = std::fs::remove_file(target);
    }
    result?;
    Ok(std::fs::metadata(target)?.len())
}

async fn vacuum_into(options: SqliteConnectOptions, target: &Path) -> anyhow::Result<()> {
    let mut conn = options
        .read_only(true)
        .busy_timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .context("opening the database")?;
    let target = target.to_str().context("the backup path must be UTF-8")?;
    sqlx::query("VACUUM INTO ?").bind(target).execute(&mut conn).await.context("copying the database")?;
    conn.close().await.ok();
    Ok(())
}
