//! Start-up: configuration, key, database, schema, listener.

use anyhow::Context;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::Server;

use crate::config::Config;
use crate::flows::FlowEngine;
use crate::graphql::{build_schema, VaultSchema};
use crate::oauth::Providers;
use crate::store::{db, Store, StoreSettings};

/// The opened service: store and schema, ready to serve or to run a command.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub flows: FlowEngine,
    pub schema: VaultSchema,
}

impl App {
    /// Creates the data directory, loads the key and connects (migrating).
    pub async fn open(config: Config) -> anyhow::Result<App> {
        if config.is_sqlite() {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
        }
        let keys = crate::keys::load_keyring(&config)?;
        let db = db::connect(&config.database_url()).await?;
        let reader = db::open_reader(&config.database_url(), &db).await?;
        let settings = StoreSettings {
            system_keys: config.system_keys.clone(),
            task_lease: config.tasks.lease,
            providers: Providers::new(config.oauth.clone())?,
        };
        let store = Store::new(db, reader, keys, settings);
        let flows = FlowEngine::new(store.clone());
        let schema = build_schema(store.clone(), flows.clone(), &config.graphql);
        Ok(App { config, store, flows, schema })
    }

    /// Serves until Ctrl-C / SIGTERM. Prints the URL (and, on first start,
    /// the bootstrap admin's token) to stdout.
    pub async fn serve(self) -> anyhow::Result<()> {
        if let Some((user, token)) = self.store.bootstrap_admin().await.map_err(api_to_anyhow)? {
            println!("Created the first admin {} (id {}).", user.email, user.id.as_str());
            println!("Admin token (shown once, keep it safe): {}", token.as_str());
        }
        let acceptor = TcpListener::bind(self.config.listen)
            .into_acceptor()
            .await
            .with_context(|| format!("listening on {}", self.config.listen))?;
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .context("the listener has no address")?;
        // A SQLite database has one instance by construction: leases left by
        // its previous run are its own, so pending flows resume at once.
        if !self.config.is_sqlite() {
            crate::relay::start(self.store.clone(), self.flows.clone())
                .await
                .context("listening for PostgreSQL notifications")?;
        }
        self.flows.run_background(self.config.is_sqlite());
        let _scheduler =
            crate::scheduler::start(self.store.clone(), self.flows.clone(), self.config.scheduler.clone()).await?;
        println!("sesame-vault listening on http://{addr}");
        tracing::info!(%addr, "listening");
        let routes = crate::http::routes(self.schema, self.store, self.config.graphql.clone());
        Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(routes, shutdown_signal(), Some(std::time::Duration::from_secs(10)))
            .await
            .context("serving HTTP")
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// For commands: an API error becomes a plain error with its client message.
pub fn api_to_anyhow(e: crate::error::ApiError) -> anyhow::Error {
    match e {
        crate::error::ApiError::Internal(cause) => cause,
        other => anyhow::anyhow!("{}", async_graphql::Error::from(other).message),
    }
}
