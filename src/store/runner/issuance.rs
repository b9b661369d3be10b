//! Issuing credentials to tasks: priority (subscription, API key, system
//! key), the batch that reads, audits and leases many requests at once, the
//! one-at-a-time path for refreshes and races, and materialising.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, Set, TransactionTrait};

use super::{Issued, TaskId};
use crate::agents::{self, IssuedSecret};
use crate::auth::Principal;
use crate::delivery::GrantId;
use crate::domain::{Agent, CheckResult, CredentialKind, CredentialSource, CredentialStatus, Delivery, Provider};
use crate::entities::{credential, proxy_grant, task_lease, user};
use crate::error::{ApiError, ApiResult};
use crate::ids::new_id;
use crate::secret::SecretValue;
use crate::store::audit::{self, Action, Actor};
use crate::store::credentials::{slot, StoredSecret};
use crate::store::lifecycle::Refreshes;
use crate::store::{Store, SystemKeyCheck};

/// Attempts before giving up on a credential that keeps changing.
const ISSUE_ATTEMPTS: usize = 40;
/// Pause while another party holds the credential's refresh token.
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Why a stored credential is passed over, in words for the person.
pub(in crate::store) fn unusable_reason(row: &credential::Model, now: DateTime<Utc>) -> Option<String> {
    if row.status == CredentialStatus::NeedsReauth.as_str() {
        Some("needs you to sign in again".into())
    } else if row.expires_at.is_some_and(|t| t <= now) || row.status == CredentialStatus::Expired.as_str() {
        Some("has expired".into())
    } else if row.status == CredentialStatus::Invalid.as_str() {
        // The check's message says what to do.
        let why = row.status_message.as_deref().unwrap_or("check it and save it again");
        Some(format!("was refused by the provider when last checked: {why}"))
    } else {
        None
    }
}

/// `unusable_reason(row, now).is_none()` as a database condition, for the
/// compare-and-swap: a refresh failure (NEEDS_REAUTH), the scan (EXPIRED)
/// or a check (INVALID) changes the status without a new version.
fn usable(now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(credential::Column::Status.is_not_in([
            CredentialStatus::NeedsReauth.as_str(),
            CredentialStatus::Expired.as_str(),
            CredentialStatus::Invalid.as_str(),
        ]))
        .add(Condition::any().add(credential::Column::ExpiresAt.is_null()).add(credential::Column::ExpiresAt.gt(now)))
}

/// The users among `user_ids` that exist, each with all their credentials
/// (a person holds at most nine; `choose` picks the slots it needs), in one
/// statement.
async fn users_with_credentials<C: ConnectionTrait>(
    db: &C,
    user_ids: &[&str],
) -> ApiResult<Vec<(user::Model, Vec<credential::Model>)>> {
    Ok(user::Entity::find()
        .filter(user::Column::Id.is_in(user_ids.iter().copied()))
        .find_with_related(credential::Entity)
        .all(db)
        .await?)
}

/// One task's request for credentials, checked at the edge.
pub(crate) struct IssueRequest {
    pub(super) principal: Principal,
    pub(super) user_id: String,
    pub(super) agent: Agent,
    pub(super) provider: Provider,
    pub(super) task: TaskId,
    pub(super) delivery: Delivery,
}

/// What a batch decided for one request.
pub(crate) enum Decision {
    /// Audited and leased: ready to materialise.
    Granted(Box<Grant>),
    /// Needs the one-at-a-time path (a refresh first, a refresher's claim to
    /// wait out, or the credential changed after the batch read it).
    Alone(IssueRequest),
}

/// A credential chosen for a task; after `commit_grants` it is audited and
/// leased.
pub(crate) struct Grant {
    request: IssueRequest,
    source: CredentialSource,
    row: Option<credential::Model>,
    secret: Option<StoredSecret>,
    now: DateTime<Utc>,
    /// Proxy delivery: the grant the task's placeholders carry. Such a grant
    /// leases nothing (no real secret leaves; the vault keeps refreshing).
    proxy: Option<GrantId>,
}

impl Grant {
    fn new(
        request: IssueRequest,
        source: CredentialSource,
        row: Option<credential::Model>,
        secret: Option<StoredSecret>,
        now: DateTime<Utc>,
    ) -> Grant {
        let proxy = (request.delivery == Delivery::Proxy).then(GrantId::mint);
        Grant { request, source, row, secret, now, proxy }
    }
}

/// What priority picks from a user's stored credentials.
enum Choice<'a> {
    /// A refresher holds the subscription's refresh token right now.
    Wait,
    /// The subscription expired and can be refreshed: do that first.
    Refresh(&'a credential::Model),
    /// This credential (`None`: the system key).
    Use(CredentialSource, Option<&'a credential::Model>),
    Nothing(ApiError),
}

/// The provider a task runs against, checked against the agent.
pub(super) fn checked_provider(agent: Agent, provider: Option<Provider>) -> ApiResult<Provider> {
    let valid = || crate::agents::spec(agent).providers.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(" or ");
    match provider.or(crate::agents::default_provider(agent)) {
        Some(p) if crate::agents::spec(agent).providers.contains(&p) => Ok(p),
        Some(p) => Err(ApiError::bad_input(format!(
            "{} does not run against {}; use one of: {}",
            crate::agents::spec(agent).name,
            p.as_str(),
            valid()
        ))),
        None => Err(ApiError::bad_input(format!("{} needs a provider: {}", crate::agents::spec(agent).name, valid()))),
    }
}

/// A login refreshed (or otherwise changed) more recently than this is not
/// refreshed ahead of a proxy task again: with tokens that live shorter than
/// the lease, every task would otherwise cost a real refresh.
const REFRESH_AHEAD_FLOOR: chrono::Duration = chrono::Duration::minutes(10);

/// Priority: the subscription, then the user's API key, then the system
/// key. `rows` may hold other credentials of the user; only the two slots
/// this agent and provider use count. A subscription that expired is
/// refreshed first; with proxy delivery also one that would expire within
/// `ahead` (the task's lease), unless it changed within the floor above.
fn choose<'a>(
    rows: impl Iterator<Item = &'a credential::Model> + Clone,
    request: &IssueRequest,
    now: DateTime<Utc>,
    may_refresh: bool,
    system_key: &SystemKey,
    refreshes: &Refreshes,
    ahead: chrono::Duration,
) -> Choice<'a> {
    let (agent, provider) = (request.agent, request.provider);
    let in_slot = |slot: String| rows.clone().find(move |r| r.owner_id == request.user_id && r.slot == slot);
    let subscription = in_slot(slot(CredentialKind::Subscription, Some(agent), provider));
    let api_key = in_slot(slot(CredentialKind::ApiKey, None, provider));

    // Never hand out a refresh token that is being used right now (this
    // process's own refreshes count while in flight, whatever the clock says).
    if subscription.is_some_and(|r| refreshes.claim_is_live(r, now)) {
        return Choice::Wait;
    }
    if let Some(row) = subscription.filter(|r| {
        may_refresh
            && r.has_refresh_token
            && r.status != CredentialStatus::NeedsReauth.as_str()
            && r.expires_at.is_some_and(|t| t <= now || (t <= now + ahead && r.updated_at <= now - REFRESH_AHEAD_FLOOR))
    }) {
        return Choice::Refresh(row);
    }
    let mut passed_over = Vec::new();
    for (row, source, what) in [
        (subscription, CredentialSource::Subscription, "subscription"),
        (api_key, CredentialSource::UserApiKey, "API key"),
    ] {
        let Some(row) = row else { continue };
        match unusable_reason(row, now) {
            None => return Choice::Use(source, Some(row)),
            Some(reason) => passed_over.push(format!("your {} {what} {reason}", crate::providers::spec(provider).name)),
        }
    }
    match system_key {
        SystemKey::Usable => Choice::Use(CredentialSource::SystemKey, None),
        SystemKey::Refused(why) => {
            let variable = crate::providers::spec(provider).api_key_env;
            passed_over.push(format!("the system key {variable} was refused by the provider when last checked: {why}"));
            Choice::Nothing(no_credentials(agent, provider, &passed_over))
        }
        SystemKey::Unset => Choice::Nothing(no_credentials(agent, provider, &passed_over)),
    }
}

/// The system key of a provider, as issuance sees it: a key whose last
/// check was INVALID is passed over like a person's.
enum SystemKey {
    Unset,
    Usable,
    Refused(String),
}

impl Store {
    /// How far ahead of expiry a login is refreshed before a task starts:
    /// with proxy delivery, the task's lease (the proxy holds the login for
    /// the whole task); with files, only once it expired (the task's agent
    /// refreshes for itself).
    fn refresh_ahead(&self, request: &IssueRequest) -> chrono::Duration {
        match request.delivery {
            Delivery::Proxy => self.task_lease(),
            Delivery::Files => chrono::Duration::zero(),
        }
    }

    /// The system key of `provider`, given the system keys' last checks.
    fn system_key(&self, provider: Provider, checks: &[SystemKeyCheck]) -> SystemKey {
        if self.system_keys().get(provider).is_none() {
            return SystemKey::Unset;
        }
        match checks.iter().find(|c| c.provider == provider && c.result == CheckResult::Invalid) {
            Some(check) => SystemKey::Refused(check.message.clone().unwrap_or_else(|| "set a new key".into())),
            None => SystemKey::Usable,
        }
    }

    /// Whether issuance would hand out the system key for `provider`: set,
    /// and not refused at its last check (what removal reports as remaining).
    pub(in crate::store) fn system_key_usable(&self, provider: Provider, checks: &[SystemKeyCheck]) -> bool {
        matches!(self.system_key(provider, checks), SystemKey::Usable)
    }
}

impl Store {
    /// One batch of issuances: one read of the users and their credentials,
    /// then every grant audited and leased in one transaction.
    pub(super) async fn issue_batch(self, requests: Vec<IssueRequest>) -> Vec<ApiResult<Decision>> {
        let count = requests.len();
        match self.try_issue_batch(requests).await {
            Ok(decisions) => decisions,
            Err(e) => crate::store::batch::fail_all(count, &e),
        }
    }

    async fn try_issue_batch(&self, requests: Vec<IssueRequest>) -> ApiResult<Vec<ApiResult<Decision>>> {
        // Reads beside the writer; `commit_grants` re-checks what matters
        // (version, claim, lease) in its transaction.
        let db = self.reader();
        let now = self.clock().now();
        let mut user_ids: Vec<&str> = requests.iter().map(|r| r.user_id.as_str()).collect();
        user_ids.sort_unstable();
        user_ids.dedup();
        let found = users_with_credentials(db, &user_ids).await?;
        let users: Vec<&str> = found.iter().map(|(u, _)| u.id.as_str()).collect();
        let rows: Vec<&credential::Model> = found.iter().flat_map(|(_, creds)| creds).collect();
        let system_key_checks = self.system_key_checks().await?;

        let mut answers: Vec<Option<ApiResult<Decision>>> = Vec::with_capacity(requests.len());
        let mut grants = Vec::new();
        let mut granted = Vec::new(); // answers[granted[k]] is grants[k]
        for request in requests {
            if !users.contains(&request.user_id.as_str()) {
                answers.push(Some(Err(ApiError::not_found("user"))));
                continue;
            }
            if found.iter().any(|(u, _)| u.id == request.user_id && u.disabled_at.is_some()) {
                answers.push(Some(Err(person_disabled(&request.user_id))));
                continue;
            }
            let system_key = self.system_key(request.provider, &system_key_checks);
            let ahead = self.refresh_ahead(&request);
            let (source, row) =
                match choose(rows.iter().copied(), &request, now, true, &system_key, self.refreshes(), ahead) {
                    Choice::Wait | Choice::Refresh(_) => {
                        answers.push(Some(Ok(Decision::Alone(request))));
                        continue;
                    }
                    Choice::Nothing(e) => {
                        answers.push(Some(Err(e)));
                        continue;
                    }
                    Choice::Use(source, row) => (source, row.cloned()),
                };
            match row.as_ref().map(|r| self.open_secret(r)).transpose() {
                Ok(secret) => {
                    granted.push(answers.len());
                    answers.push(None);
                    grants.push(Grant::new(request, source, row, secret, now));
                }
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        let committed = self.commit_grants(&mut grants, now).await;
        tracing::debug!(requests = answers.len(), grants = grants.len(), "task issuance batch");
        match committed {
            Ok(kept) => {
                for ((grant, kept), at) in grants.into_iter().zip(kept).zip(granted) {
                    answers[at] = Some(Ok(if kept {
                        Decision::Granted(Box::new(grant))
                    } else {
                        Decision::Alone(grant.request)
                    }));
                }
            }
            Err(e) => {
                for at in granted {
                    answers[at] = Some(Err(crate::store::batch::copy_error(&e)));
                }
            }
        }
        Ok(answers.into_iter().map(|a| a.expect("every request of the batch is answered")).collect())
    }

    /// The one-at-a-time path: refreshes an expired subscription first, waits
    /// out a refresher's claim, and retries when the credential changes.
    pub(super) async fn issue_alone(&self, mut request: IssueRequest) -> ApiResult<Issued> {
        let system_key = self.system_key(request.provider, &self.system_key_checks().await?);
        let mut tried_refresh = false;
        for _ in 0..ISSUE_ATTEMPTS {
            let now = self.clock().now();
            let found = users_with_credentials(self.db(), &[request.user_id.as_str()]).await?;
            let Some((person, rows)) = found.first() else { return Err(ApiError::not_found("user")) };
            if person.disabled_at.is_some() {
                return Err(person_disabled(&person.id));
            }
            let ahead = self.refresh_ahead(&request);
            let (source, row) = match choose(
                rows.iter(),
                &request,
                now,
                !tried_refresh,
                &system_key,
                self.refreshes(),
                ahead,
            ) {
                Choice::Wait => {
                    tokio::time::sleep(CLAIM_WAIT).await;
                    continue;
                }
                // Whatever the outcome, the rows are read again.
                Choice::Refresh(row) => {
                    tried_refresh = true;
                    let expired = row.expires_at.is_some_and(|t| t <= now);
                    match self.refresh_credential(row.clone(), now).await {
                        Ok(_) => {}
                        Err(e) if expired => return Err(e),
                        // Ahead of expiry: the token still works for now, and
                        // the proxy refreshes it when it must.
                        Err(e) => tracing::warn!(
                            credential_id = row.id.as_str(),
                            error = ?e,
                            "refreshing a login ahead of a proxy task failed; the task starts with the current token"
                        ),
                    }
                    continue;
                }
                Choice::Nothing(e) => return Err(e),
                Choice::Use(source, row) => (source, row.cloned()),
            };
            let secret = row.as_ref().map(|r| self.open_secret(r)).transpose()?;
            let mut grants = [Grant::new(request, source, row, secret, now)];
            let held = self.commit_grants(&mut grants, now).await?[0];
            let [grant] = grants;
            if held {
                return self.deliver(grant);
            }
            request = grant.request;
        }
        Err(ApiError::Unavailable("the credential is being refreshed right now; try again in a few seconds".into()))
    }

    /// Audits and leases `grants` in one transaction; if it fails, nothing
    /// is recorded and no plaintext is built. A grant whose credential
    /// changed since it was read (a refresher claimed it, it was replaced,
    /// or a task took its single-use refresh token) is left out: `false`.
    async fn commit_grants(&self, grants: &mut [Grant], now: DateTime<Utc>) -> ApiResult<Vec<bool>> {
        let mut kept = vec![true; grants.len()];
        if grants.is_empty() {
            return Ok(kept);
        }
        let txn = self.db().begin().await?;
        // From the commit's clock, not the (older) read's.
        let lease_end = self.clock().now() + self.task_lease();
        let mut credential_ids: Vec<String> = Vec::new();
        for grant in grants.iter().filter(|g| g.proxy.is_none()) {
            if let Some(row) = &grant.row {
                if !credential_ids.contains(&row.id) {
                    credential_ids.push(row.id.clone());
                }
            }
        }
        for id in credential_ids {
            let members: Vec<usize> = (0..grants.len())
                .filter(|&i| grants[i].proxy.is_none() && grants[i].row.as_ref().is_some_and(|r| r.id == id))
                .collect();
            let held = self.lease_credential(&txn, grants, &members, now, lease_end).await?;
            for i in members {
                kept[i] = held;
            }
        }
        let kept_grants = || grants.iter().zip(&kept).filter(|(_, kept)| **kept).map(|(g, _)| g);
        if kept_grants().next().is_none() {
            txn.rollback().await?;
            return Ok(kept);
        }
        // A refresh of this process that claimed a row just before our lease
        // (its claim counts as lapsed in SQL once it is no longer in flight,
        // so only this look tells): start over and wait for its tokens.
        if kept_grants().any(|g| g.proxy.is_none() && g.row.as_ref().is_some_and(|r| self.refreshes().in_flight(&r.id)))
        {
            txn.rollback().await?;
            return Ok(vec![false; grants.len()]);
        }
        record_grants(&txn, kept_grants(), now, lease_end).await?;
        txn.commit().await?;
        Ok(kept)
    }

    /// Leases one credential to the grants `members` (all of it) until
    /// `lease_end`; false when they must start over.
    ///
    /// Guarded by the version read and by the refresh claim: if a refresher
    /// got there first, these grants start over (and wait for its new
    /// tokens). Setting `leased_until` on the same row is what keeps
    /// refreshers away while the tasks run. Every lease ends by now + LEASE:
    /// another task's lease set at or before now ends no later, so ours
    /// covers it; a later one was set by a clock that ran ahead and is cut
    /// back (issue 21: a task issued while the clock was ahead held its
    /// credential 26 h).
    async fn lease_credential(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        grants: &mut [Grant],
        members: &[usize],
        now: DateTime<Utc>,
        lease_end: DateTime<Utc>,
    ) -> ApiResult<bool> {
        let row = grants[members[0]].row.clone().expect("members hold a row");
        // OpenAI refresh tokens are single-use: when another task already
        // holds this login, this one gets the access token only, so two
        // agents can never both spend the refresh token.
        let single_use = crate::providers::single_use_refresh(grants[members[0]].request.provider)
            && row.kind == CredentialKind::Subscription.as_str();
        let mut leased = row.leased_until.is_some_and(|t| t > now);
        if self.refreshes().in_flight(&row.id) {
            // This process is refreshing it: wait for the new tokens.
            return Ok(false);
        }
        let mut update = credential::Entity::update_many()
            .col_expr(credential::Column::LastUsedAt, Expr::value(now))
            .col_expr(credential::Column::LeasedUntil, Expr::value(lease_end))
            .filter(credential::Column::Id.eq(row.id.as_str()))
            .filter(credential::Column::Version.eq(row.version))
            .filter(self.refreshes().no_live_claim(now))
            .filter(usable(now));
        if single_use && !leased {
            // The first task here gets the refresh token: only if no
            // other task took the login since the read.
            update = update.filter(
                Condition::any()
                    .add(credential::Column::LeasedUntil.is_null())
                    .add(credential::Column::LeasedUntil.lte(now)),
            );
        }
        let held = update.exec(txn).await?.rows_affected == 1;
        if held && single_use {
            for &i in members {
                if leased {
                    if let Some(StoredSecret::Subscription(s)) = grants[i].secret.as_mut() {
                        s.refresh_token = None;
                    }
                }
                leased = true;
            }
        }
        Ok(held)
    }

    /// Builds the plaintext of an audited, leased grant.
    pub(super) fn deliver(&self, grant: Grant) -> ApiResult<Issued> {
        let Grant { request, source, row, secret, now, proxy } = grant;
        let (agent, provider) = (request.agent, request.provider);
        let system_key: Option<&SecretValue> = self.system_keys().get(provider);
        let issued = match (&secret, system_key) {
            (Some(StoredSecret::Subscription(s)), _) => IssuedSecret::Subscription(s),
            (Some(StoredSecret::ApiKey { key }), _) => IssuedSecret::ApiKey(key.expose()),
            (None, Some(key)) => IssuedSecret::ApiKey(key.expose()),
            (None, None) => return Err(no_credentials(agent, provider, &[])),
        };
        let expires_at = row.as_ref().and_then(|r| r.expires_at);
        let materialized = match &proxy {
            None => agents::materialize(agent, provider, issued, expires_at, now),
            Some(grant) => {
                let Some(access) = &self.delivery().proxy else {
                    return Err(ApiError::Unavailable("the egress proxy stopped; issue with delivery FILES".into()));
                };
                // Placeholders go through the agent's own materialising, so
                // each file and variable has the shape the CLI insists on.
                let mut materialized = match issued {
                    IssuedSecret::Subscription(real) => {
                        let placeholders = crate::store::proxy::placeholders_for(grant, provider, real);
                        agents::materialize(agent, provider, IssuedSecret::Subscription(&placeholders), expires_at, now)
                    }
                    IssuedSecret::ApiKey(real) => {
                        let placeholder = crate::store::proxy::api_key_placeholder(grant, provider, real);
                        agents::materialize(agent, provider, IssuedSecret::ApiKey(&placeholder), expires_at, now)
                    }
                };
                agents::proxy_setup(agent, access, &mut materialized);
                materialized
            }
        };
        Ok(Issued {
            source,
            credential_id: row.map(|r| r.id),
            provider,
            materialized,
            expires_at,
            delivery: request.delivery,
        })
    }
}

/// A disabled person's tasks get nothing, not even the system key.
fn person_disabled(user_id: &str) -> ApiError {
    ApiError::NoCredentials(format!(
        "no credentials for user {user_id}: the person is disabled; an admin must enable them (enableUser) first"
    ))
}

fn no_credentials(agent: Agent, provider: Provider, passed_over: &[String]) -> ApiError {
    let why = if passed_over.is_empty() { String::new() } else { format!(" ({})", passed_over.join("; ")) };
    let subscription = if !agents::takes_subscriptions(agent) {
        String::new()
    } else {
        format!(", connect a subscription in Agent Credentials → {}", crate::agents::spec(agent).name)
    };
    ApiError::NoCredentials(format!(
        "no usable credentials for {} with {}{why}: add a {} API key in Settings → API Keys{subscription}, or ask an admin to set {}",
        crate::agents::spec(agent).name,
        crate::providers::spec(provider).name,
        crate::providers::spec(provider).name,
        crate::providers::spec(provider).api_key_env
    ))
}

/// The audit entry of every kept grant and the task lease of each that
/// holds a stored credential, in the grants' transaction.
async fn record_grants<'a>(
    txn: &sea_orm::DatabaseTransaction,
    kept: impl Iterator<Item = &'a Grant> + Clone,
    now: DateTime<Utc>,
    lease_end: DateTime<Utc>,
) -> ApiResult<()> {
    let entries = kept
        .clone()
        .map(|g| {
            let r = &g.request;
            audit::entry_model(
                Actor::Principal(&r.principal),
                Action::TaskCredentialsIssued,
                audit::Entry {
                    owner_id: Some(&r.user_id),
                    credential_id: g.row.as_ref().map(|row| row.id.as_str()),
                    provider: Some(r.provider),
                    agent: Some(r.agent),
                    task_id: Some(r.task.as_str()),
                    detail: Some(match r.principal.runner_label() {
                        Some(runner) => format!("source {}; delivery {}; {runner}", g.source, r.delivery),
                        None => format!("source {}; delivery {}", g.source, r.delivery),
                    }),
                },
            )
        })
        .collect();
    audit::record_many(txn, entries).await?;
    let grants: Vec<proxy_grant::ActiveModel> = kept
        .clone()
        .filter_map(|g| {
            let r = &g.request;
            Some(Store::grant_model(crate::store::proxy::NewGrant {
                id: g.proxy.as_ref()?,
                task_id: r.task.as_str(),
                runner_token_id: r.principal.actor_id(),
                owner_id: &r.user_id,
                credential_id: g.row.as_ref().map(|row| row.id.as_str()),
                agent: r.agent,
                provider: r.provider,
                source: g.source,
                now,
                expires_at: lease_end,
            }))
        })
        .collect();
    if !grants.is_empty() {
        proxy_grant::Entity::insert_many(grants).exec_without_returning(txn).await?;
    }
    let leases: Vec<task_lease::ActiveModel> = kept
        .filter(|g| g.proxy.is_none())
        .filter_map(|g| {
            let row = g.row.as_ref()?;
            let r = &g.request;
            Some(task_lease::ActiveModel {
                id: Set(new_id()),
                task_id: Set(r.task.as_str().to_owned()),
                runner_token_id: Set(r.principal.actor_id().to_owned()),
                owner_id: Set(r.user_id.clone()),
                credential_id: Set(row.id.clone()),
                agent: Set(r.agent.as_str().to_owned()),
                provider: Set(r.provider.as_str().to_owned()),
                credential_version: Set(row.version),
                issued_at: Set(now),
                expires_at: Set(lease_end),
                returned_at: Set(None),
            })
        })
        .collect();
    if !leases.is_empty() {
        task_lease::Entity::insert_many(leases).exec_without_returning(txn).await?;
    }
    Ok(())
}
