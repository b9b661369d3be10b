//! Wiring: configuration → key → database → store → flows → checks →
//! schema → listeners. Above everything it wires (ARCHITECTURE.md,
//! Layers): it hands each part its settings; only the commands import it.

use anyhow::Context;

use crate::checks::Checker;
use crate::config::Config;
use crate::error::api_to_anyhow;
use crate::flows::FlowEngine;
use crate::graphql::{build_schema, GatedSchema};
use crate::ops::{Listeners, Serving};
use crate::providers::revoke::Revoker;
use crate::providers::Providers;
use crate::store::{db, Store, StoreSettings};

/// `serve`: signals, listeners, then the store (migrating), then the service.
/// The listeners are bound *before* the database is opened and migrated
/// (`crate::ops`), so the port answers 503 meanwhile.
pub async fn serve(mut config: Config) -> anyhow::Result<()> {
    // A malformed system-wide key stops start-up before anything is bound.
    config.system_keys.check()?;
    crate::limits::init(&config.writes);
    tokio::spawn(crate::shutdown::listen_for_signals());
    // Header and idle deadlines, a connection cap within the open-file
    // limit, and accept back-off on EMFILE: `crate::edge`.
    let caps = crate::edge::connection_caps(&config.http, config.metrics.listen.is_some());
    let serving = Serving::bind(Listeners {
        public: config.listen,
        metrics: config.metrics.listen,
        http: &config.http,
        caps,
        grace: config.shutdown.grace,
    })
    .await?;
    // The egress proxy's port and CA (`crate::proxy`), when it is on:
    // proxy deliveries hand out its address and CA certificate.
    let proxy = crate::proxy::Proxy::bind(&config.proxy, &config.data_dir).await?;
    let separate_reader = config.is_sqlite() && !db::is_in_memory(&config.database_url());
    let app = tokio::select! {
        app = App::open(config) => app?,
        () = crate::shutdown::triggered() => {
            tracing::info!("stopped before the database was open");
            return Ok(());
        }
    };
    serving.store_opened(app.store.clone(), separate_reader);
    app.serve(serving, proxy).await
}

/// `proxy`: the egress proxy as its own process, beside the sandboxes, on
/// the same database as `serve` (the same SQLite file on one host, or
/// PostgreSQL). It lends through the store's proxy handle exactly as the
/// proxy inside `serve` does, and hears of every end the same way (the
/// SQLite watcher, or the relay's LISTEN). `serve` hands tasks its URL
/// (`SESAME_PROXY__PUBLIC_URL`) and CA certificate.
pub async fn proxy(mut config: Config) -> anyhow::Result<()> {
    if config.proxy.listen.is_none() {
        anyhow::bail!("`sesame-vault proxy` needs SESAME_PROXY__LISTEN (e.g. 0.0.0.0:8443)");
    }
    // It lends the system-wide keys too: the same settings as `serve`'s.
    config.system_keys.check()?;
    tokio::spawn(crate::shutdown::listen_for_signals());
    let proxy = crate::proxy::Proxy::bind(&config.proxy, &config.data_dir).await?.context("the proxy is not on")?;
    let grace = config.shutdown.grace;
    let app = tokio::select! {
        app = App::open(config) => app?,
        () = crate::shutdown::triggered() => return Ok(()),
    };
    if !app.config.is_sqlite() {
        // Grants are kept between requests only while this listens.
        crate::relay::start_proxy_grants(app.store.clone()).await.context("listening for PostgreSQL notifications")?;
    }
    // `sesame_proxy_*` and the store's gauges, when SESAME_METRICS__LISTEN is set.
    let metrics = match app.config.metrics.listen {
        Some(listen) => {
            let (_, cap) = crate::edge::connection_caps(&app.config.http, true);
            let separate_reader = app.config.is_sqlite() && !db::is_in_memory(&app.config.database_url());
            let store = app.store.clone();
            Some(crate::ops::metrics_only(listen, &app.config.http, cap, grace, store, separate_reader).await?)
        }
        None => None,
    };
    let addr = proxy.addr();
    let running = proxy.start(app.store.proxy());
    println!("sesame-vault egress proxy on http://{addr}");
    tracing::info!(%addr, "egress proxy listening (its own process)");
    crate::shutdown::triggered().await;
    running.stopped(grace).await;
    if let Some(metrics) = metrics {
        let _ = tokio::time::timeout(grace, metrics).await;
    }
    Ok(())
}

/// The opened service: store and schema, ready to serve or to run a command.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub flows: FlowEngine,
    /// Checks credentials with their providers (`crate::checks`).
    pub checker: Checker,
    pub webhooks: crate::webhooks::Webhooks,
    pub schema: GatedSchema,
}

impl App {
    /// Creates the data directory (private: `crate::private_fs`),
    /// loads the key, connects (migrating) and seals sign-in flows left in
    /// plain text by an older version. Every command that opens the store
    /// comes through here.
    pub async fn open(config: Config) -> anyhow::Result<App> {
        let url = config.database_url();
        // The directory holds the SQLite database (unless it is in memory)
        // and, without ENCRYPTION_KEY, the generated key.
        let uses_data_dir = (config.is_sqlite() && !db::is_in_memory(&url)) || config.encryption_key.is_none();
        if uses_data_dir {
            crate::private_fs::private_data_dir(&config.data_dir)?;
        }
        let keys = crate::keys::load_keyring(
            config.encryption_key.as_ref(),
            config.encryption_keys_old.as_ref(),
            &config.data_dir,
        )?;
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
        let webhooks = crate::webhooks::Webhooks::new(&config.webhooks, config.public_url.as_deref())?;
        let schema = build_schema(store.clone(), flows.clone(), checker.clone(), webhooks.clone(), &config.graphql);
        Ok(App { config, store, flows, checker, webhooks, schema })
    }

    /// Serves on the listeners [`serve`] bound until Ctrl-C /
    /// SIGTERM, then shuts down gracefully (`crate::shutdown`). Prints the
    /// URL (and, on first start, the bootstrap admin's token) to stdout.
    pub async fn serve(self, serving: Serving, proxy: Option<crate::proxy::Proxy>) -> anyhow::Result<()> {
        // After the listener is bound ([`serve`]): a port in use
        // never swallows the once-shown token.
        let first_run = self.store.operator_unchecked().bootstrap_admin().await.map_err(api_to_anyhow)?.is_some_and(
            |(user, token)| {
                println!("Created the first admin {} (id {}).", user.email, user.id.as_str());
                println!("Admin token (shown once, keep it safe): {}", token.as_str());
                true
            },
        );
        let addr = serving.addr();
        // How tasks receive their credentials; PROXY needs the egress proxy,
        // in this process or its own (`sesame-vault proxy`).
        let access = match &proxy {
            Some(proxy) => Some(proxy.access()),
            None => crate::proxy::external_access(&self.config.proxy, &self.config.data_dir)?,
        };
        if self.config.tasks.default_delivery == crate::domain::Delivery::Proxy && access.is_none() {
            anyhow::bail!(
                "SESAME_TASKS__DEFAULT_DELIVERY=PROXY needs the egress proxy: set SESAME_PROXY__LISTEN (e.g. 127.0.0.1:0), \
                 or SESAME_PROXY__PUBLIC_URL where `sesame-vault proxy` runs"
            );
        }
        self.store.set_delivery(crate::store::DeliverySettings {
            default: self.config.tasks.default_delivery,
            proxy: access,
        });
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
        self.webhooks.start(self.store.clone());
        let auth = crate::identity::Authenticator::new(self.store.clone(), &self.config.auth)?;
        auth.warm_up();
        // WebSockets waiting for `connection_init` get a fraction of the cap.
        let routes = crate::http::routes(
            self.schema,
            auth,
            self.config.graphql.clone(),
            self.config.http.body_timeout,
            Some(serving.connection_cap()),
        );
        // The egress proxy serves with the store's proxy handle (it is not a
        // principal: each request's placeholders decide what it may reach).
        let proxy = proxy.map(|proxy| {
            let addr = proxy.addr();
            let running = proxy.start(self.store.proxy());
            println!("sesame-vault egress proxy on http://{addr}");
            tracing::info!(%addr, "egress proxy listening");
            running
        });
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
        let grace = self.config.shutdown.grace;
        let result = serving.run(&self.flows, scheduler).await;
        if let Some(proxy) = proxy {
            // Its connections close on the same signal; the usage counted
            // meanwhile is flushed to the store before exit.
            proxy.stopped(grace).await;
        }
        result
    }
}
