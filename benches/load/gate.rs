//! The `gate` scenario: what the document gate (`src/graphql/gate`) adds to
//! a signed-in `{ __typename }`, in process: the real schema behind its
//! gate and the same schema without it (`GatedSchema::ungated`, kept for
//! this measurement and the SDL) execute the baseline request, alternating rounds of
//! each on one thread so that drift hits both alike. The difference per
//! request is then set against the HTTP baseline's server CPU per request
//! of the same run (the end-to-end cost the target is about).
//!
//! Two cases: the same document every time (the baseline's; the gate's
//! parsed-operation cache answers it, so the gate also spares async-graphql
//! its parse) and a new document every time (`{ __typename n123: __typename }`:
//! the gate pre-scans, parses and checks each one, and async-graphql alone
//! would parse each too).

use std::time::Instant;

use anyhow::{Context, Result};
use async_graphql::Executor;
use sesame_vault::auth::Principal;
use sesame_vault::domain::Role;

use crate::Settings;

pub(crate) struct GateResult {
    pub(crate) rounds: usize,
    pub(crate) per_round: usize,
    /// Median µs per request of each schema over the rounds (the same document).
    pub(crate) gated_us: f64,
    pub(crate) ungated_us: f64,
    /// The same with a new document every request.
    pub(crate) cold_gated_us: f64,
    pub(crate) cold_ungated_us: f64,
}

impl GateResult {
    pub(crate) fn added_us(&self) -> f64 {
        self.gated_us - self.ungated_us
    }
    pub(crate) fn cold_added_us(&self) -> f64 {
        self.cold_gated_us - self.cold_ungated_us
    }
}

/// Documents of the cold rounds are numbered from here on (never repeated).
static NEXT_DOCUMENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn round(schema: &impl Executor, n: usize, cold: bool) -> Result<f64> {
    let principal = Principal::Person { user_id: "bench-admin".into(), role: Role::Admin, token_id: "bench".into() };
    let queries: Vec<String> = (0..n)
        .map(|_| match cold {
            false => "{ __typename }".to_owned(),
            true => {
                let i = NEXT_DOCUMENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format!("{{ __typename n{i}: __typename }}")
            }
        })
        .collect();
    let started = Instant::now();
    for query in queries {
        let request = async_graphql::Request::new(query).data(principal.clone());
        let response = schema.execute(request).await;
        if !response.errors.is_empty() {
            anyhow::bail!("{{ __typename }} failed in process: {:?}", response.errors);
        }
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / n as f64)
}

pub(crate) async fn gate_bench(settings: &Settings) -> Result<GateResult> {
    let dir = tempfile::Builder::new().prefix("sesame-bench-gate-").tempdir().context("creating a temp dir")?;
    let config = sesame_vault::config::Config {
        data_dir: dir.path().to_path_buf(),
        encryption_key: Some(sesame_vault::config::SecretValue::new(sesame_vault::crypto::Key::generate())),
        ..Default::default()
    };
    let app = sesame_vault::app::App::open(config).await.context("opening the app on a temp SQLite file")?;
    let ungated = app.schema.ungated();
    let (rounds, per_round) = if settings.tiny { (2, 200) } else { (15, 20_000) };
    // Warm both (the gate's parsed-operation cache, allocator, branch predictors).
    round(&app.schema, per_round / 10 + 1, false).await?;
    round(ungated, per_round / 10 + 1, false).await?;
    let mut times = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..rounds {
        times[0].push(round(&app.schema, per_round, false).await?);
        times[1].push(round(ungated, per_round, false).await?);
        times[2].push(round(&app.schema, per_round, true).await?);
        times[3].push(round(ungated, per_round, true).await?);
    }
    let [gated, plain, cold_gated, cold_plain] = times.map(|t| crate::scan::median(&t));
    Ok(GateResult {
        rounds,
        per_round,
        gated_us: gated,
        ungated_us: plain,
        cold_gated_us: cold_gated,
        cold_ungated_us: cold_plain,
    })
}
