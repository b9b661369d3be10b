//! The expiry scan, in-process over a real SQLite file.

use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

use crate::Settings;

pub(crate) struct ScanResult {
    pub(crate) rows: u64,
    pub(crate) due: u64,
    pub(crate) insert_secs: f64,
    pub(crate) db_mib: f64,
    pub(crate) idle_runs_ms: Vec<f64>,
    pub(crate) due_ms: f64,
    pub(crate) updates_only_ms: f64,
    pub(crate) due_report: (usize, usize),
    pub(crate) idle_after_ms: Vec<f64>,
    pub(crate) plans: Vec<(String, String, Vec<String>)>,
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

pub(crate) async fn scan_bench(settings: &Settings) -> Result<ScanResult> {
    use sea_orm::sea_query::Expr;
    use sea_orm::{
        ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryTrait, Statement, TransactionTrait,
    };
    use sesame_vault::entities::credential;

    let rows = settings.scan_rows;
    let due = (rows / 10).min(10_000);
    let step = rows / due;
    let dir = tempfile::Builder::new().prefix("sesame-bench-scan-").tempdir().context("creating a temp dir")?;
    let config = sesame_vault::config::Config {
        data_dir: dir.path().to_path_buf(),
        encryption_key: Some(sesame_vault::config::SecretValue::new(sesame_vault::crypto::Key::generate())),
        ..Default::default()
    };
    let url = config.database_url();
    let app = sesame_vault::app::App::open(config).await.context("opening the app on a temp SQLite file")?;
    // A separate connection to the same file, as another process would have.
    let db = sesame_vault::store::db::open(&url).await.context("opening a second connection")?;

    let base = chrono::Utc::now();
    let day = chrono::Duration::days(1);
    let owner = "00000000-0000-7000-8000-00000000bench";
    let inserted = Instant::now();
    let txn = db.begin().await?;
    txn.execute(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        "INSERT INTO users (id, email, role, created_at) VALUES (?1, ?2, 'USER', ?3)",
        Vec::<sea_orm::Value>::from([owner.into(), "scan@bench.local".into(), base.into()]),
    ))
    .await
    .context("inserting the owner")?;
    // Every `step`-th row is due at `base + 25 days`: half already expired
    // (EXPIRED), half within the 7-day window (EXPIRING). The rest expire in
    // ten years. Nothing is due at `base`.
    let sql = "INSERT INTO credentials (id, owner_id, slot, provider, agent, kind, status, status_message, secret, \
               hint, has_refresh_token, expires_at, last_used_at, created_at, updated_at, version, refresh_claimed_until) \
               WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?1) \
               SELECT printf('bench-%010d', n), ?2, printf('api:BENCH%010d', n), 'ANTHROPIC', NULL, 'API_KEY', \
               'ACTIVE', NULL, 'sv1.placeholder.secret', 'sv1.placeholder.hint', 0, \
               CASE WHEN n % ?3 = 0 THEN (CASE WHEN (n / ?3) % 2 = 0 THEN ?4 ELSE ?5 END) ELSE ?6 END, \
               NULL, ?7, ?7, 1, NULL FROM seq";
    let values: Vec<sea_orm::Value> = vec![
        (rows as i64).into(),
        owner.into(),
        (step as i64).into(),
        (base + day * 20).into(),
        (base + day * 28).into(),
        (base + day * 3650).into(),
        base.into(),
    ];
    txn.execute(Statement::from_sql_and_values(DbBackend::Sqlite, sql, values))
        .await
        .context("bulk-inserting credentials")?;
    txn.commit().await?;
    db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)").await.context("checkpointing")?;
    let insert_secs = inserted.elapsed().as_secs_f64();
    let count = db
        .query_one(Statement::from_string(DbBackend::Sqlite, "SELECT COUNT(*) AS n FROM credentials"))
        .await?
        .and_then(|r| r.try_get::<i64>("", "n").ok())
        .unwrap_or(0);
    if count as u64 != rows {
        bail!("expected {rows} credentials in the scan database, found {count}");
    }
    let db_mib = std::fs::metadata(dir.path().join("sesame.db")).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;

    let within = chrono::Duration::days(7);
    let store = &app.store;
    let mut idle_runs_ms = Vec::new();
    for _ in 0..settings.scan_runs {
        let t = Instant::now();
        let report =
            store.operator_unchecked().scan_expiry(base, within).await.map_err(|e| anyhow!("scan_expiry: {e:?}"))?;
        idle_runs_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if report.expired + report.expiring != 0 {
            bail!("a scan with nothing due transitioned {report:?}");
        }
    }

    // The two statements the scan issues (as lifecycle.rs builds them), for EXPLAIN QUERY PLAN.
    let now2 = base + day * 25;
    let expired_stmt = credential::Entity::update_many()
        .col_expr(credential::Column::Status, Expr::value("EXPIRED"))
        .col_expr(credential::Column::StatusMessage, Expr::value("this credential has expired"))
        .filter(credential::Column::Status.is_in(["ACTIVE", "EXPIRING"]))
        .filter(credential::Column::ExpiresAt.lte(now2))
        .build(DbBackend::Sqlite);
    let expiring_stmt = credential::Entity::update_many()
        .col_expr(credential::Column::Status, Expr::value("EXPIRING"))
        .col_expr(credential::Column::StatusMessage, Expr::value("this credential expires soon"))
        .filter(credential::Column::Status.eq("ACTIVE"))
        .filter(credential::Column::ExpiresAt.gt(now2))
        .filter(credential::Column::ExpiresAt.lte(now2 + within))
        .filter(credential::Column::HasRefreshToken.eq(false))
        .build(DbBackend::Sqlite);
    let expired_stmt_exec = expired_stmt.clone();
    let expiring_stmt_exec = expiring_stmt.clone();
    let mut plans = Vec::new();
    for (name, stmt) in [("to EXPIRED", expired_stmt), ("to EXPIRING", expiring_stmt)] {
        let explain = Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!("EXPLAIN QUERY PLAN {}", stmt.sql),
            stmt.values.clone().map(|v| v.0).unwrap_or_default(),
        );
        let lines = db
            .query_all(explain)
            .await
            .context("EXPLAIN QUERY PLAN")?
            .iter()
            .filter_map(|r| r.try_get::<String>("", "detail").ok())
            .collect();
        plans.push((name.to_owned(), stmt.sql.clone(), lines));
    }

    // The two UPDATEs alone (no RETURNING rows decoded, no events), rolled
    // back: how much of the due run is the set-based part.
    let updates_only_ms = {
        let txn = db.begin().await?;
        let t = Instant::now();
        let mut changed = 0;
        for stmt in [&expired_stmt_exec, &expiring_stmt_exec] {
            changed += txn.execute(stmt.clone()).await.context("timing the bare UPDATEs")?.rows_affected();
        }
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        txn.rollback().await?;
        if changed != due {
            bail!("the bare UPDATEs changed {changed} rows, expected {due}");
        }
        ms
    };

    let t = Instant::now();
    let report =
        store.operator_unchecked().scan_expiry(now2, within).await.map_err(|e| anyhow!("scan_expiry: {e:?}"))?;
    let due_ms = t.elapsed().as_secs_f64() * 1000.0;
    if (report.expired + report.expiring) as u64 != due {
        bail!("expected {due} transitions, the scan made {report:?}");
    }
    let mut idle_after_ms = Vec::new();
    for _ in 0..settings.scan_runs {
        let t = Instant::now();
        let report =
            store.operator_unchecked().scan_expiry(now2, within).await.map_err(|e| anyhow!("scan_expiry: {e:?}"))?;
        idle_after_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if report.expired + report.expiring != 0 {
            bail!("a rerun transitioned {report:?} again");
        }
    }
    Ok(ScanResult {
        rows,
        due,
        insert_secs,
        db_mib,
        idle_runs_ms,
        due_ms,
        updates_only_ms,
        due_report: (report.expired, report.expiring),
        idle_after_ms,
        plans,
    })
}
