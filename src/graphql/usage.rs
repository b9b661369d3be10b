//! What tasks spent through the egress proxy: per task (`taskUsage`, for
//! the runner, admins and the task's person) and a person's summary by
//! agent and credential source (`myUsage`). Counts only: never a prompt or
//! an answer.

use std::collections::BTreeMap;

use async_graphql::{Context, SimpleObject};
use chrono::{DateTime, Utc};

use super::{principal, store};
use crate::domain::{Agent, CredentialSource, Provider};
use crate::error::ApiResult;
use crate::store::{TaskId, TaskUsage};

/// What one task spent with one provider (one issuance with delivery PROXY).
#[derive(SimpleObject)]
pub struct ProxyUsage {
    pub task_id: String,
    pub agent: Agent,
    pub provider: Provider,
    pub source: CredentialSource,
    /// Requests the proxy sent on for the task.
    pub requests: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Tokens as the provider reported them in its answers.
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub issued_at: DateTime<Utc>,
    /// When its placeholders stopped working early (returned, replaced, …).
    pub ended_at: Option<DateTime<Utc>>,
}

impl From<TaskUsage> for ProxyUsage {
    fn from(t: TaskUsage) -> Self {
        ProxyUsage {
            task_id: t.task_id,
            agent: t.agent,
            provider: t.provider,
            source: t.source,
            requests: t.usage.requests,
            bytes_sent: t.usage.bytes_sent,
            bytes_received: t.usage.bytes_received,
            input_tokens: t.usage.input_tokens,
            output_tokens: t.usage.output_tokens,
            issued_at: t.issued_at,
            ended_at: t.ended_at,
        }
    }
}

/// A person's spending with one agent, provider and source.
#[derive(SimpleObject)]
pub struct UsageSummary {
    pub agent: Agent,
    pub provider: Provider,
    /// SUBSCRIPTION, USER_API_KEY or SYSTEM_KEY.
    pub source: CredentialSource,
    pub tasks: u64,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub last_task_at: DateTime<Utc>,
}

/// Every principal may ask; a person sees only their own tasks.
pub async fn task_usage(ctx: &Context<'_>, task_id: &str) -> ApiResult<Vec<ProxyUsage>> {
    let task = TaskId::parse(task_id)?;
    let who = principal(ctx)?;
    let store = store(ctx);
    let rows = if let Ok(runner) = store.runner(who) {
        runner.task_usage(&task).await?
    } else if let Ok(admin) = store.admin(who) {
        admin.task_usage(task.as_str()).await?
    } else {
        store.owner(who)?.task_usage(task.as_str()).await?
    };
    Ok(rows.into_iter().map(ProxyUsage::from).collect())
}

/// The signed-in person's last 30 days through the proxy, by agent,
/// provider and source.
pub async fn my_usage(ctx: &Context<'_>) -> ApiResult<Vec<UsageSummary>> {
    let rows = store(ctx).owner(principal(ctx)?)?.recent_usage().await?;
    let mut sums: BTreeMap<(Agent, Provider, CredentialSource), UsageSummary> = BTreeMap::new();
    for t in rows {
        let s = sums.entry((t.agent, t.provider, t.source)).or_insert(UsageSummary {
            agent: t.agent,
            provider: t.provider,
            source: t.source,
            tasks: 0,
            requests: 0,
            input_tokens: 0,
            output_tokens: 0,
            last_task_at: t.issued_at,
        });
        s.tasks += 1;
        s.requests += t.usage.requests;
        s.input_tokens += t.usage.input_tokens;
        s.output_tokens += t.usage.output_tokens;
        s.last_task_at = s.last_task_at.max(t.issued_at);
    }
    Ok(sums.into_values().collect())
}
