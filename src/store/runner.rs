//! The task runner's handle: the only code path that decrypts a credential
//! for use. Every issuance is audited durably before plaintext leaves.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait};

use super::audit::{self, Action, Actor};
use super::credentials::{no_live_claim, slot, StoredSecret};
use super::{CredentialMeta, RefreshOutcome, Store};
use crate::auth::Principal;
use crate::config::SecretValue;
use crate::credential_input::SubscriptionSecret;
use crate::domain::{Agent, CredentialEventKind, CredentialKind, CredentialSource, CredentialStatus, Provider};
use crate::entities::{credential, task_lease, user};
use crate::error::{ApiError, ApiResult};
use crate::ids::new_id;
use crate::materialize::{self, IssuedSecret, Materialized};

/// Attempts before giving up on a credential that keeps changing.
const ISSUE_ATTEMPTS: usize = 40;
/// Pause while another party holds the credential's refresh token.
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// A task id as the runner names it: 1–200 characters of `[A-Za-z0-9._:/-]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskId(String);

impl TaskId {
    pub fn parse(raw: &str) -> ApiResult<TaskId> {
        let ok = (1..=200).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'));
        if ok {
            Ok(TaskId(raw.to_owned()))
        } else {
            Err(ApiError::bad_input("taskId must be 1 to 200 characters of letters, digits and . _ : / -"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a task receives.
#[derive(Debug)]
pub struct Issued {
    pub source: CredentialSource,
    pub credential_id: Option<String>,
    pub provider: Provider,
    pub materialized: Materialized,
    pub expires_at: Option<DateTime<Utc>>,
}

pub struct RunnerHandle {
    store: Store,
    principal: Principal,
}

/// Why a stored credential is passed over, in words for the person.
fn unusable_reason(row: &credential::Model, now: DateTime<Utc>) -> Option<&'static str> {
    if row.status == CredentialStatus::NeedsReauth.as_str() {
        Some("needs you to sign in again")
    } else if row.expires_at.is_some_and(|t| t <= now) || row.status == CredentialStatus::Expired.as_str() {
        Some("has expired")
    } else {
        None
    }
}

/// A returned file, checked and ready to store.
struct Update {
    lease: task_lease::Model,
    secret: SubscriptionSecret,
    expires_at: Option<DateTime<Utc>>,
}

impl RunnerHandle {
    pub(super) fn new(store: Store, principal: Principal) -> RunnerHandle {
        RunnerHandle { store, principal }
    }

    fn token_id(&self) -> &str {
        self.principal.actor_id()
    }

    /// Resolves by priority (subscription, the user's API key, the system
    /// key), audits, leases, and only then materialises the plaintext.
    pub async fn issue(
        &self,
        user_id: &str,
        agent: Agent,
        provider: Option<Provider>,
        task: &TaskId,
    ) -> ApiResult<Issued> {
        let provider = match provider.or(agent.default_provider()) {
            Some(p) if agent.providers().contains(&p) => p,
            Some(p) => {
                let valid: Vec<&str> = agent.providers().iter().map(|p| p.as_str()).collect();
                return Err(ApiError::bad_input(format!(
                    "{} does not run against {}; use one of: {}",
                    agent.display_name(),
                    p.as_str(),
                    valid.join(", ")
                )));
            }
            None => {
                return Err(ApiError::bad_input(format!(
                    "{} needs a provider: ANTHROPIC or OPENAI",
                    agent.display_name()
                )))
            }
        };
        let db = self.store.db();
        if user::Entity::find_by_id(user_id).one(db).await?.is_none() {
            return Err(ApiError::not_found("user"));
        }
        // Retries when a refresher claims the credential meanwhile (its
        // version moves); each attempt re-reads the rows.
        let mut tried_refresh = false;
        for _ in 0..ISSUE_ATTEMPTS {
            let now = Utc::now();
            let rows = credential::Entity::find()
                .filter(credential::Column::OwnerId.eq(user_id))
                .filter(credential::Column::Slot.is_in([
                    slot(CredentialKind::Subscription, Some(agent), provider),
                    slot(CredentialKind::ApiKey, None, provider),
                ]))
                .all(db)
                .await?;
            let subscription = rows.iter().find(|r| r.kind == CredentialKind::Subscription.as_str());
            let api_key = rows.iter().find(|r| r.kind == CredentialKind::ApiKey.as_str());

            // Never hand out a refresh token that is being used right now.
            if subscription.is_some_and(|r| r.refresh_claimed_until.is_some_and(|t| t > now)) {
                tokio::time::sleep(CLAIM_WAIT).await;
                continue;
            }
            // An expired subscription that can be refreshed is refreshed
            // first, once: whatever the outcome, the rows are read again.
            if let Some(row) = subscription.filter(|r| {
                !tried_refresh
                    && r.has_refresh_token
                    && r.status != CredentialStatus::NeedsReauth.as_str()
                    && r.expires_at.is_some_and(|t| t <= now)
            }) {
                tried_refresh = true;
                if self.store.refresh_credential(row.clone(), now).await? != RefreshOutcome::Skipped {
                    continue;
                }
            }

            let mut passed_over = Vec::new();
            let mut chosen = None;
            for (row, source, what) in [
                (subscription, CredentialSource::Subscription, "subscription"),
                (api_key, CredentialSource::UserApiKey, "API key"),
            ] {
                let Some(row) = row else { continue };
                match unusable_reason(row, now) {
                    None => {
                        chosen = Some((row, source));
                        break;
                    }
                    Some(reason) => passed_over.push(format!("your {} {what} {reason}", provider.display_name())),
                }
            }

            let system_key: Option<&SecretValue> = self.store.system_keys().get(provider);
            let (source, row, mut secret) = match chosen {
                Some((row, source)) => (source, Some(row), Some(self.store.open_secret(row)?)),
                None if system_key.is_some() => (CredentialSource::SystemKey, None, None),
                None => return Err(no_credentials(agent, provider, &passed_over)),
            };

            // Durable audit (and lease) first; if this fails nothing is returned.
            let txn = db.begin().await?;
            audit::record(
                &txn,
                Actor::Principal(&self.principal),
                Action::TaskCredentialsIssued,
                audit::Entry {
                    owner_id: Some(user_id),
                    credential_id: row.map(|r| r.id.as_str()),
                    provider: Some(provider),
                    agent: Some(agent),
                    task_id: Some(task.as_str()),
                    detail: Some(format!("source {source}")),
                },
            )
            .await?;
            if let Some(row) = row {
                // Guarded by the version read above and by the refresh claim:
                // if a refresher got there first, start over (and wait for
                // its new tokens). Setting `leased_until` here, on the same
                // row, is what keeps refreshers away while the task runs.
                let lease_end = now + self.store.task_lease();
                let unchanged = credential::Entity::update_many()
                    .col_expr(credential::Column::LastUsedAt, Expr::value(now))
                    .col_expr(credential::Column::LeasedUntil, Expr::value(row.leased_until.max(Some(lease_end))))
                    .filter(credential::Column::Id.eq(row.id.as_str()))
                    .filter(credential::Column::Version.eq(row.version))
                    .filter(no_live_claim(now))
                    .exec(&txn)
                    .await?
                    .rows_affected
                    == 1;
                if !unchanged {
                    txn.rollback().await?;
                    continue;
                }
                task_lease::ActiveModel {
                    id: Set(new_id()),
                    task_id: Set(task.as_str().to_owned()),
                    runner_token_id: Set(self.token_id().to_owned()),
                    owner_id: Set(user_id.to_owned()),
                    credential_id: Set(row.id.clone()),
                    agent: Set(agent.as_str().to_owned()),
                    provider: Set(provider.as_str().to_owned()),
                    credential_version: Set(row.version),
                    issued_at: Set(now),
                    expires_at: Set(lease_end),
                    returned_at: Set(None),
                }
                .insert(&txn)
                .await?;
                // OpenAI refresh tokens are single-use: when another task
                // already holds this login, this one gets the access token
                // only, so two agents can never both spend the refresh token.
                if provider == Provider::Openai && row.leased_until.is_some_and(|t| t > now) {
                    if let Some(StoredSecret::Subscription(s)) = secret.as_mut() {
                        s.refresh_token = None;
                    }
                }
            }
            txn.commit().await?;

            let issued = match (&secret, system_key) {
                (Some(StoredSecret::Subscription(s)), _) => IssuedSecret::Subscription(s),
                (Some(StoredSecret::ApiKey { key }), _) => IssuedSecret::ApiKey(key.expose()),
                (None, Some(key)) => IssuedSecret::ApiKey(key.expose()),
                (None, None) => return Err(no_credentials(agent, provider, &passed_over)),
            };
            let expires_at = row.and_then(|r| r.expires_at);
            return Ok(Issued {
                source,
                credential_id: row.map(|r| r.id.clone()),
                provider,
                materialized: materialize::materialize(agent, provider, issued, expires_at, now),
                expires_at,
            });
        }
        Err(ApiError::Unavailable("the credential is being refreshed right now; try again in a few seconds".into()))
    }

    /// Takes back the login files a task's agent may have refreshed and
    /// stores newer tokens. All files are checked before anything is
    /// written; any stale or foreign file refuses the whole return.
    pub async fn return_files(&self, task: &TaskId, files: Vec<(String, String)>) -> ApiResult<Vec<CredentialMeta>> {
        let db = self.store.db();
        let now = Utc::now();
        let leases = task_lease::Entity::find()
            .filter(task_lease::Column::TaskId.eq(task.as_str()))
            .filter(task_lease::Column::RunnerTokenId.eq(self.token_id()))
            .filter(task_lease::Column::ReturnedAt.is_null())
            .filter(task_lease::Column::ExpiresAt.gt(now))
            .all(db)
            .await?;
        if leases.is_empty() {
            return Err(ApiError::bad_input(format!(
                "task {} has no credentials out with this runner: the task id is unknown, was already returned, or its lease ran out",
                task.as_str()
            )));
        }

        let mut updates: Vec<Update> = Vec::new();
        for (path, content) in &files {
            let lease = leases.iter().find(|l| {
                let (Ok(agent), Ok(provider)) = (l.agent.parse::<Agent>(), l.provider.parse::<Provider>()) else {
                    return false;
                };
                materialize::returnable_paths(agent, provider).contains(&path.as_str())
            });
            let Some(lease) = lease else {
                if path == materialize::CLAUDE_STATE_PATH {
                    continue; // issued with Claude's login, but holds no tokens
                }
                return Err(ApiError::bad_input(format!(
                    "{} is not a login file of a credential issued to task {}",
                    printable(path),
                    task.as_str()
                )));
            };
            let agent: Agent = lease.agent.parse().map_err(ApiError::internal)?;
            let provider: Provider = lease.provider.parse().map_err(ApiError::internal)?;
            let returned = materialize::parse_returned(agent, provider, path, content)?;
            let row = credential::Entity::find_by_id(lease.credential_id.as_str())
                .filter(credential::Column::OwnerId.eq(lease.owner_id.as_str()))
                .one(db)
                .await?
                .ok_or_else(|| {
                    ApiError::bad_input(format!(
                        "the credential behind {} was removed while the task ran",
                        printable(path)
                    ))
                })?;
            let StoredSecret::Subscription(stored) = self.store.open_secret(&row)? else {
                return Err(ApiError::bad_input(format!(
                    "{} belongs to an API key, which a task cannot change",
                    printable(path)
                )));
            };
            // Tokens of another account are foreign, however new.
            if let (Some(theirs), Some(ours)) = (&returned.secret.account_id, &stored.account_id) {
                if theirs != ours {
                    return Err(ApiError::bad_input(format!(
                        "{} holds a login of a different account than the one issued to task {}; nothing was stored",
                        printable(path),
                        task.as_str()
                    )));
                }
            }
            // No new access token, no refresh happened (a task given the
            // access token only sends back an empty refresh token).
            if returned.secret.access_token == stored.access_token {
                continue;
            }
            let stale = || {
                ApiError::bad_input(format!(
                    "{} holds older tokens than the vault (the credential was replaced or refreshed since task {} started); nothing was stored",
                    printable(path),
                    task.as_str()
                ))
            };
            if row.version != lease.credential_version {
                return Err(stale());
            }
            let newer = match (returned.refreshed_at, stored.last_refresh) {
                (Some(r), Some(s)) if r != s => r > s,
                _ => match (returned.expires_at, row.expires_at) {
                    (Some(r), Some(s)) => r > s,
                    (Some(_), None) => true,
                    _ => returned.refreshed_at.is_some() && stored.last_refresh.is_none(),
                },
            };
            if !newer {
                return Err(stale());
            }
            if updates.iter().any(|u| u.lease.credential_id == lease.credential_id) {
                return Err(ApiError::bad_input(format!(
                    "two files were sent for the same credential ({})",
                    printable(path)
                )));
            }
            updates.push(Update {
                lease: lease.clone(),
                secret: returned.merged_with(&stored),
                expires_at: returned.expires_at,
            });
        }

        let txn = db.begin().await?;
        let mut refreshed = Vec::new();
        for update in updates {
            let meta = self
                .store
                .swap_secret(
                    &txn,
                    &update.lease.credential_id,
                    &update.lease.owner_id,
                    update.lease.credential_version,
                    StoredSecret::Subscription(update.secret),
                    update.expires_at,
                )
                .await?
                .ok_or_else(|| {
                    ApiError::bad_input(
                        "the credential changed while the files were being returned; nothing was stored",
                    )
                })?;
            audit::record(
                &txn,
                Actor::Principal(&self.principal),
                Action::TaskCredentialsReturned,
                audit::Entry {
                    owner_id: Some(&meta.owner_id),
                    credential_id: Some(&meta.id),
                    provider: Some(meta.provider),
                    agent: meta.agent,
                    task_id: Some(task.as_str()),
                    detail: Some("refreshed tokens stored".into()),
                },
            )
            .await?;
            let event = meta.event(CredentialEventKind::Refreshed, Some("tokens refreshed during a task".into()));
            refreshed.push(self.store.record_event(&txn, event).await?);
        }
        let lease_ids: Vec<String> = leases.iter().map(|l| l.id.clone()).collect();
        task_lease::Entity::update_many()
            .col_expr(task_lease::Column::ReturnedAt, Expr::value(now))
            .filter(task_lease::Column::Id.is_in(lease_ids))
            .exec(&txn)
            .await?;
        // The credentials are free for refresh again, unless another task
        // still holds them.
        let mut credential_ids: Vec<&str> = leases.iter().map(|l| l.credential_id.as_str()).collect();
        credential_ids.sort_unstable();
        credential_ids.dedup();
        for id in credential_ids {
            let still_out = task_lease::Entity::find()
                .filter(task_lease::Column::CredentialId.eq(id))
                .filter(task_lease::Column::ReturnedAt.is_null())
                .filter(task_lease::Column::ExpiresAt.gt(now))
                .order_by_desc(task_lease::Column::ExpiresAt)
                .one(&txn)
                .await?
                .map(|l| l.expires_at);
            credential::Entity::update_many()
                .col_expr(credential::Column::LeasedUntil, Expr::value(still_out))
                .filter(credential::Column::Id.eq(id))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        self.store.publish_all(refreshed);

        // Report every credential the task held, refreshed or not.
        let mut ids: Vec<&str> = leases.iter().map(|l| l.credential_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let rows = credential::Entity::find().filter(credential::Column::Id.is_in(ids)).all(db).await?;
        rows.iter().map(CredentialMeta::try_from).collect()
    }
}

/// A client-supplied path, quoted and cut short for an error message.
fn printable(path: &str) -> String {
    let cut: String = path.chars().filter(|c| !c.is_control()).take(100).collect();
    format!("{cut:?}")
}

fn no_credentials(agent: Agent, provider: Provider, passed_over: &[String]) -> ApiError {
    let why = if passed_over.is_empty() { String::new() } else { format!(" ({})", passed_over.join("; ")) };
    let subscription = if agent == Agent::Gemini {
        String::new()
    } else {
        format!(", connect a subscription in Agent Credentials → {}", agent.display_name())
    };
    ApiError::NoCredentials(format!(
        "no usable credentials for {} with {}{why}: add a {} API key in Settings → API Keys{subscription}, or ask an admin to set {}",
        agent.display_name(),
        provider.display_name(),
        provider.display_name(),
        provider.system_env_var()
    ))
}
