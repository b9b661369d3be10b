//! Start-up: configuration, key, database, schema, listener; and the
//! data directory's permissions (0700, its files 0600, whatever the umask).

use std::path::Path;

use anyhow::Context;

use crate::checks::Checker;
use crate::config::Config;
use crate::flows::FlowEngine;
use crate::graphql::{build_schema, VaultSchema};
use crate::providers::revoke::Revoker;
use crate::providers::Providers;
use crate::store::{db, Store, StoreSettings};

/// The opened service: store and schema, ready to serve or to run a command.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub flows: FlowEngine,
    /// Checks credentials with their providers (`crate::checks`).
    pub checker: Checker,
    pub schema: VaultSchema,
}

impl App {
    /// Creates the data directory (private: see [`private_data_dir`]),
    /// loads the key, connects (migrating) and seals sign-in flows left in
    /// plain text by an older version. Every command that opens the store
    /// comes through here.
    pub async fn open(config: Config) -> anyhow::Result<App> {
        let url = config.database_url();
        // The directory holds the SQLite database (unless it is in memory)
        // and, without ENCRYPTION_KEY, the generated key.
        let uses_data_dir = (config.is_sqlite() && !db::is_in_memory(&url)) || config.encryption_key.is_none();
        if uses_data_dir {
            private_data_dir(&config.data_dir)?;
        }
        let keys = crate::keys::load_keyring(&config)?;
        let db = db::connect(&url).await?;
        let reader = db::open_reader(&url, &db).await?;
        let events = crate::events::EventBus::default();
        let settings = StoreSettings {
            system_keys: config.system_keys.clone(),
            task_lease: config.tasks.lease,
            providers: Providers::new(config.oauth.clone())?,
            revoker: Revoker::new(config.oauth.clone(), config.providers.clone())?,
            events: events.clone(),
            sink: crate::relay::sink_for(&db, &events),
        };
        let store = Store::new(db, reader, keys, settings);
        let flows = FlowEngine::new(store.clone());
        let sealed = flows.seal_plain_text_rows().await.map_err(api_to_anyhow)?;
        if sealed > 0 {
            tracing::info!(flows = sealed, "sealed the user codes of sign-in flows stored in plain text before");
        }
        let checker = Checker::new(
            &config.checks,
            config.providers.clone(),
            config.oauth.http_timeout,
            config.scheduler.expiring_within,
        )?;
        let schema = build_schema(store.clone(), flows.clone(), checker.clone(), &config.graphql);
        Ok(App { config, store, flows, checker, schema })
    }

    /// Serves on the listeners `crate::ops::serve` bound until Ctrl-C /
    /// SIGTERM, then shuts down gracefully (`crate::shutdown`). Prints the
    /// URL (and, on first start, the bootstrap admin's token) to stdout.
    pub async fn serve(self, serving: crate::ops::Serving) -> anyhow::Result<()> {
        // After the listener is bound (`crate::ops::serve`): a port in use
        // never swallows the once-shown token.
        let first_run = self.store.operator_unchecked().bootstrap_admin().await.map_err(api_to_anyhow)?.is_some_and(
            |(user, token)| {
                println!("Created the first admin {} (id {}).", user.email, user.id.as_str());
                println!("Admin token (shown once, keep it safe): {}", token.as_str());
                true
            },
        );
        let addr = serving.addr();
        // A SQLite database has one instance by construction: leases left by
        // its previous run are its own, so pending flows resume at once.
        if !self.config.is_sqlite() {
            crate::relay::start(self.store.clone(), self.flows.clone())
                .await
                .context("listening for PostgreSQL notifications")?;
        }
        self.flows.run_background(self.config.is_sqlite());
        // The system-wide keys are checked in the background (readiness
        // does not wait for providers), unless the checks job is off.
        if !self.config.scheduler.checks.trim().is_empty() {
            let (store, checker) = (self.store.clone(), self.checker.clone());
            tokio::spawn(async move {
                if let Err(e) = crate::checks::job::check_system_keys(&store, &checker).await {
                    tracing::warn!(error = ?e, "checking the system keys at start-up failed; the checks job tries again");
                }
            });
        }
        let scheduler = crate::scheduler::start(
            self.store.clone(),
            self.flows.clone(),
            self.checker.clone(),
            self.config.scheduler.clone(),
        )
        .await?;
        let auth = crate::identity::Authenticator::new(self.store.clone(), &self.config.auth)?;
        auth.warm_up();
        let routes = crate::http::routes(self.schema, auth, self.config.graphql.clone(), self.config.http.body_timeout);
        // Ready (routes in, `/ready` 200) before the URL is announced.
        serving.open(routes);
        println!("sesame-vault listening on http://{addr}");
        println!("Credentials app: http://{addr}/settings   GraphQL explorer: http://{addr}/");
        if first_run {
            println!();
            println!("What to do next:");
            println!("  1. Open http://{addr}/ and paste the admin token above into the token field.");
            println!("  2. Create people with `createUser` there (or `sesame-vault user create --email …`),");
            println!("     and a runner token with `sesame-vault token create --runner --name …`.");
            println!("  3. Lost a token? `sesame-vault token create --user EMAIL --name …` from this folder.");
        }
        tracing::info!(%addr, "listening");
        serving.run(&self.flows, scheduler).await
    }
}

/// For commands: an API error becomes a plain error with its client message.
pub fn api_to_anyhow(e: crate::error::ApiError) -> anyhow::Error {
    match e {
        crate::error::ApiError::Internal(cause) => cause,
        other => anyhow::anyhow!("{}", async_graphql::Error::from(other).message),
    }
}

/// Creates `dir` (and missing parents) as 0700 whatever the umask; an
/// existing directory that group or others may access is tightened to 0700
/// with a warning naming it, or, if that fails, start-up stops with a
/// message saying what to fix. The files in it are made private by whoever
/// opens them: the key file in `keys`, the SQLite files in `store::db`.
pub(crate) fn private_data_dir(dir: &Path) -> anyhow::Result<()> {
    create_private_dir(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
    make_private(dir)
}

/// `create_dir_all`, with mode 0700 for every directory it creates.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Takes group and other permissions off `path` (a file or a directory) if
/// it has any, logging at WARN what it changed; an error (naming the path,
/// its mode and the fix) if it cannot. A missing path is fine.
pub(crate) fn make_private(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading the permissions of {}", path.display())),
        };
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 == 0 {
            return Ok(());
        }
        let private = mode & 0o700;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(private)).with_context(|| {
            let fix = if metadata.is_dir() { "chmod 700" } else { "chmod 600" };
            let shown = path.display();
            format!(
                "{shown} is open to group or other users (mode {mode:04o}) and could not be made private; \
                 run `{fix} {shown}` as its owner and start again"
            )
        })?;
        tracing::warn!(
            path = %path.display(),
            from = %format!("{mode:04o}"),
            to = %format!("{private:04o}"),
            "tightened permissions: group or other users could access the vault's data here"
        );
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
