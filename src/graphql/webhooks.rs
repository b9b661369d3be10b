//! The webhook API (ADMIN only, issue 24): endpoints as admins see them,
//! and the secret shown once at creation.

use async_graphql::{Context, InputObject, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::{principal, store};
use crate::domain::CredentialEventKind;
use crate::error::{ApiError, ApiResult};
use crate::ids::parse_id;
use crate::store::{self as st, NewWebhook};
use crate::webhooks::{generate_secret, Webhooks};

/// Most characters a description may have.
const MAX_DESCRIPTION: usize = 500;

/// A webhook endpoint: where credential events are POSTed, signed.
#[derive(Clone, Debug, SimpleObject)]
pub struct Webhook {
    pub id: ID,
    pub url: String,
    /// The kinds it receives; every kind when empty.
    pub events: Vec<CredentialEventKind>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why it was disabled (a 410 Gone answer, …).
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Since when its deliveries fail; null when the last one succeeded.
    pub failing_since: Option<DateTime<Utc>>,
}

impl From<st::Webhook> for Webhook {
    fn from(w: st::Webhook) -> Webhook {
        Webhook {
            id: ID(w.id),
            url: w.url,
            events: w.events,
            description: w.description,
            enabled: w.enabled,
            disabled_reason: w.disabled_reason,
            created_at: w.created_at,
            failing_since: w.failing_since,
        }
    }
}

/// A new endpoint and its signing secret, shown this once.
#[derive(SimpleObject)]
pub struct CreatedWebhook {
    pub webhook: Webhook,
    /// `whsec_…` (Standard Webhooks): verify `webhook-signature` with it. Never shown again.
    pub secret: String,
}

#[derive(InputObject)]
pub struct WebhookInput {
    /// https (plain http and private addresses only with SESAME_WEBHOOKS__ALLOW_PRIVATE=true).
    pub url: String,
    /// The event kinds to send; left out or empty: every kind.
    pub events: Option<Vec<CredentialEventKind>>,
    pub description: Option<String>,
}

fn hooks<'a>(ctx: &Context<'a>) -> &'a Webhooks {
    ctx.data_unchecked::<Webhooks>()
}

pub async fn create(ctx: &Context<'_>, input: WebhookInput) -> ApiResult<CreatedWebhook> {
    let admin = store(ctx).admin(principal(ctx)?)?;
    let hooks = hooks(ctx);
    let url = hooks.parse_url(&input.url)?;
    let description = input.description.as_deref().map(str::trim).filter(|d| !d.is_empty());
    if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION || d.chars().any(char::is_control)) {
        return Err(ApiError::bad_input(format!(
            "description must be at most {MAX_DESCRIPTION} characters, without control characters"
        )));
    }
    let secret = generate_secret();
    let webhook = admin
        .create_webhook(NewWebhook {
            url: url.as_str(),
            events: input.events.as_deref().unwrap_or_default(),
            description,
            secret: &secret,
            max_endpoints: hooks.config().max_endpoints,
        })
        .await?;
    Ok(CreatedWebhook { webhook: webhook.into(), secret })
}

pub async fn list(ctx: &Context<'_>) -> ApiResult<Vec<Webhook>> {
    let admin = store(ctx).admin(principal(ctx)?)?;
    Ok(admin.webhooks().await?.into_iter().map(Webhook::from).collect())
}

pub async fn delete(ctx: &Context<'_>, id: &ID) -> ApiResult<bool> {
    let id = parse_id("webhook id", id)?;
    store(ctx).admin(principal(ctx)?)?.delete_webhook(&id).await
}

/// Queues a TEST delivery; returns its `webhook-id`.
pub async fn send_test(ctx: &Context<'_>, id: &ID) -> ApiResult<String> {
    let id = parse_id("webhook id", id)?;
    store(ctx).admin(principal(ctx)?)?.send_test_webhook(&id).await
}
