//! Returned files: the login files a task's agent refreshed come back and
//! their newer tokens are stored, under the task's lease.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait};

use super::{RunnerHandle, TaskId};
use crate::agents;
use crate::credential_input::SubscriptionSecret;
use crate::domain::{Agent, CredentialEventKind, Provider};
use crate::entities::{credential, task_lease};
use crate::error::{ApiError, ApiResult};
use crate::providers::{self, Account, ProviderApis};
use crate::store::audit::{self, Action, Actor};
use crate::store::credentials::StoredSecret;
use crate::store::CredentialMeta;

/// A returned file, checked and ready to store.
struct Update {
    lease: task_lease::Model,
    secret: SubscriptionSecret,
    expires_at: Option<DateTime<Utc>>,
}

impl RunnerHandle {
    /// Takes back the login files a task's agent may have refreshed and
    /// stores newer tokens. All files are checked before anything is
    /// written; any stale or foreign file refuses the whole return.
    ///
    /// A file with new tokens is taken only when they are of the account
    /// the credential was issued for ([`same_account`]): asked of the
    /// provider where the tokens do not say it themselves, before anything
    /// is written.
    pub async fn return_files(
        &self,
        task: &TaskId,
        files: Vec<(String, String)>,
        apis: ProviderApis<'_>,
    ) -> ApiResult<Vec<CredentialMeta>> {
        let now = self.store.clock().now();
        // Proxy delivery: the task's placeholders stop working now, here
        // and on every instance (the grant cache hears of it).
        let ended = self.store.end_grants_of_task(self.store.db(), task.as_str(), self.token_id()).await?;
        if ended > 0 {
            self.store.grants_changed();
        }
        let leases = match self.open_leases(task, now).await {
            Ok(leases) => leases,
            // Issued with PROXY only: its login files hold placeholders (the
            // vault refreshed for it), so there is nothing to take back.
            Err(_) if ended > 0 => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut updates: Vec<Update> = Vec::new();
        for (path, content) in &files {
            if let Some(update) = self.check_returned(task, &leases, &updates, path, content, apis).await? {
                updates.push(update);
            }
        }
        self.store_returned(task, &leases, updates, now).await?;
        self.held_credentials(&leases).await
    }

    /// The task's leases still out with this runner; refused when none is.
    async fn open_leases(&self, task: &TaskId, now: DateTime<Utc>) -> ApiResult<Vec<task_lease::Model>> {
        let leases = task_lease::Entity::find()
            .filter(task_lease::Column::TaskId.eq(task.as_str()))
            .filter(task_lease::Column::RunnerTokenId.eq(self.token_id()))
            .filter(task_lease::Column::ReturnedAt.is_null())
            .filter(task_lease::Column::ExpiresAt.gt(now))
            .all(self.store.db())
            .await?;
        if leases.is_empty() {
            return Err(ApiError::bad_input(format!(
                "task {} has no credentials out with this runner: the task id is unknown, was already returned, or its lease ran out",
                task.as_str()
            )));
        }
        Ok(leases)
    }

    /// Checks one returned file against the lease it belongs to and the
    /// login stored: `None` when there is nothing to store (a file handed
    /// out only, or no refresh happened), the update when it holds newer
    /// tokens of the same account, an error (refusing the whole return)
    /// when it is foreign, stale or a second file for one credential.
    async fn check_returned(
        &self,
        task: &TaskId,
        leases: &[task_lease::Model],
        updates: &[Update],
        path: &str,
        content: &str,
        apis: ProviderApis<'_>,
    ) -> ApiResult<Option<Update>> {
        let lease = leases.iter().find(|l| {
            let (Ok(agent), Ok(provider)) = (l.agent.parse::<Agent>(), l.provider.parse::<Provider>()) else {
                return false;
            };
            agents::returnable_paths(agent, provider).contains(&path)
        });
        let Some(lease) = lease else {
            if agents::is_handed_out_only(path) {
                return Ok(None); // issued with Claude's login, but holds no tokens
            }
            return Err(ApiError::bad_input(format!(
                "{} is not a login file of a credential issued to task {}",
                printable(path),
                task.as_str()
            )));
        };
        let agent: Agent = lease.agent.parse().map_err(ApiError::internal)?;
        let provider: Provider = lease.provider.parse().map_err(ApiError::internal)?;
        let returned = agents::parse_returned(agent, provider, path, content)?;
        let row = credential::Entity::find_by_id(lease.credential_id.as_str())
            .filter(credential::Column::OwnerId.eq(lease.owner_id.as_str()))
            .one(self.store.db())
            .await?
            .ok_or_else(|| {
                ApiError::bad_input(format!("the credential behind {} was removed while the task ran", printable(path)))
            })?;
        let StoredSecret::Subscription(stored) = self.store.open_secret(&row)? else {
            return Err(ApiError::bad_input(format!(
                "{} belongs to an API key, which a task cannot change",
                printable(path)
            )));
        };
        // No new access token, no refresh happened (a task given the
        // access token only sends back an empty refresh token).
        if returned.secret.access_token == stored.access_token {
            return Ok(None);
        }
        if row.version != lease.credential_version || !newer(&returned, &stored, &row) {
            return Err(ApiError::bad_input(format!(
                "{} holds older tokens than the vault (the credential was replaced or refreshed since task {} started); nothing was stored",
                printable(path),
                task.as_str()
            )));
        }
        if updates.iter().any(|u| u.lease.credential_id == lease.credential_id) {
            return Err(ApiError::bad_input(format!(
                "two files were sent for the same credential ({})",
                printable(path)
            )));
        }
        // Tokens of another account are foreign, however new.
        let account = same_account(apis, provider, &stored, &returned, path, task).await?;
        let mut secret = returned.merged_with(&stored);
        secret.account_id = Some(account);
        Ok(Some(Update { lease: lease.clone(), secret, expires_at: returned.expires_at }))
    }

    /// One transaction: the newer tokens (each a compare-and-swap on the
    /// version issued, with its audit entry), the leases marked returned,
    /// the credentials freed for refresh, and the REFRESHED events last
    /// (see `Store::record_event`); published after commit.
    async fn store_returned(
        &self,
        task: &TaskId,
        leases: &[task_lease::Model],
        updates: Vec<Update>,
        now: DateTime<Utc>,
    ) -> ApiResult<()> {
        let txn = self.store.db().begin().await?;
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
            refreshed.push(meta.event(CredentialEventKind::Refreshed, Some("tokens refreshed during a task".into())));
        }
        let lease_ids: Vec<String> = leases.iter().map(|l| l.id.clone()).collect();
        task_lease::Entity::update_many()
            .col_expr(task_lease::Column::ReturnedAt, Expr::value(now))
            .filter(task_lease::Column::Id.is_in(lease_ids))
            .exec(&txn)
            .await?;
        free_for_refresh(&txn, leases, now).await?;
        // Events last, after every row write (see `Store::record_event`);
        // one per credential, as two files for one were refused above.
        let refreshed = self.store.record_events(&txn, refreshed).await?;
        txn.commit().await?;
        self.store.publish_all(refreshed);
        Ok(())
    }

    /// Every credential the task held, refreshed or not, as it is now.
    async fn held_credentials(&self, leases: &[task_lease::Model]) -> ApiResult<Vec<CredentialMeta>> {
        let mut ids: Vec<&str> = leases.iter().map(|l| l.credential_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let rows = credential::Entity::find().filter(credential::Column::Id.is_in(ids)).all(self.store.db()).await?;
        rows.iter().map(CredentialMeta::try_from).collect()
    }
}

/// Whether the returned login is newer than the stored one: by when each
/// was last refreshed if both say, else by expiry.
fn newer(returned: &agents::Returned, stored: &SubscriptionSecret, row: &credential::Model) -> bool {
    match (returned.refreshed_at, stored.last_refresh) {
        (Some(r), Some(s)) if r != s => r > s,
        _ => match (returned.expires_at, row.expires_at) {
            (Some(r), Some(s)) => r > s,
            (Some(_), None) => true,
            _ => returned.refreshed_at.is_some() && stored.last_refresh.is_none(),
        },
    }
}

/// The returned credentials are free for refresh again, unless another
/// task still holds them (then leased until that task's lease ends).
async fn free_for_refresh(
    txn: &sea_orm::DatabaseTransaction,
    leases: &[task_lease::Model],
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let mut credential_ids: Vec<&str> = leases.iter().map(|l| l.credential_id.as_str()).collect();
    credential_ids.sort_unstable();
    credential_ids.dedup();
    for id in credential_ids {
        let still_out = task_lease::Entity::find()
            .filter(task_lease::Column::CredentialId.eq(id))
            .filter(task_lease::Column::ReturnedAt.is_null())
            .filter(task_lease::Column::ExpiresAt.gt(now))
            .order_by_desc(task_lease::Column::ExpiresAt)
            .one(txn)
            .await?
            .map(|l| l.expires_at);
        credential::Entity::update_many()
            .col_expr(credential::Column::LeasedUntil, Expr::value(still_out))
            .filter(credential::Column::Id.eq(id))
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// The account both the stored login and the returned one belong to, or
/// why the returned one is refused: its account is missing, cannot be
/// told, or is another (BAD_USER_INPUT); the provider could not be asked
/// (UNAVAILABLE, retryable: the lease stays out). The stored login's
/// account is the one recorded with it (ChatGPT's on save, Claude's with
/// the last return taken), else asked of its own tokens. The returned
/// file's word is never taken: ChatGPT's account comes from its JWTs,
/// Claude's from Anthropic's profile of the returned access token.
async fn same_account(
    apis: ProviderApis<'_>,
    provider: Provider,
    stored: &SubscriptionSecret,
    returned: &agents::Returned,
    path: &str,
    task: &TaskId,
) -> ApiResult<String> {
    let refused = |why: String| {
        ApiError::bad_input(format!("{} {why}; it was not taken back and nothing was stored", printable(path)))
    };
    let unavailable = |why: String| {
        ApiError::Unavailable(format!(
            "{} could not be asked whose login {} holds ({why}); nothing was stored — return the task's files again \
             in a moment",
            crate::providers::spec(provider).name,
            printable(path)
        ))
    };
    if stored.refresh_token.is_none() {
        return Err(refused(format!(
            "holds other tokens than the login issued to task {}, which has no refresh token and so cannot have \
             been refreshed",
            task.as_str()
        )));
    }
    let theirs = match providers::login_account(apis, provider, &returned.secret).await {
        Account::Known(account) => account,
        Account::Unknown(why) => return Err(refused(format!("holds a login whose account cannot be told ({why})"))),
        Account::Unreachable(why) => return Err(unavailable(why)),
    };
    let ours = match &stored.account_id {
        Some(account) => account.clone(),
        None => match providers::login_account(apis, provider, stored).await {
            Account::Known(account) => account,
            Account::Unknown(why) => {
                return Err(refused(format!(
                    "cannot be matched to the account of the login issued to task {}: the vault has not recorded \
                     that account and its stored tokens no longer tell it ({why})",
                    task.as_str()
                )))
            }
            Account::Unreachable(why) => return Err(unavailable(why)),
        },
    };
    if theirs != ours {
        return Err(refused(format!(
            "holds a login of a different account than the one issued to task {}",
            task.as_str()
        )));
    }
    Ok(ours)
}

/// A client-supplied path, quoted and cut short for an error message.
fn printable(path: &str) -> String {
    let cut: String = path.chars().filter(|c| !c.is_control()).take(100).collect();
    format!("{cut:?}")
}
