//! A fresh PostgreSQL database for the `--postgres` run, dropped at the end
//! (also when the run fails: `Drop`).

use anyhow::{anyhow, Context, Result};
use sea_orm::{ConnectionTrait, Database};

pub(crate) struct TempDatabase {
    admin_url: String,
    name: String,
    /// The new database's URL (what the server gets as `DATABASE_URL`).
    pub(crate) url: String,
}

impl TempDatabase {
    pub(crate) async fn create(admin_url: &str) -> Result<TempDatabase> {
        let name = format!("sesame_bench_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(admin_url)
            .await
            .with_context(|| "connecting to the --postgres server (it needs to let this tool create a database)")?;
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.context("CREATE DATABASE")?;
        let base =
            admin_url.rsplit_once('/').map(|(base, _)| base).ok_or_else(|| anyhow!("--postgres: no /database"))?;
        Ok(TempDatabase { admin_url: admin_url.to_owned(), url: format!("{base}/{name}"), name })
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop cannot await: a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                if let Ok(db) = Database::connect(url).await {
                    let _ = db.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}
