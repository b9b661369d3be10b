//! The webhook API (ADMIN only, issue 24): endpoints as admins see them,
//! and the secret shown once at creation.

use async_graphql::{Context, Enum, InputObject, MaybeUndefined, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::{principal, store};
use crate::domain::CredentialEventKind;
use crate::error::{ApiError, ApiResult};
use crate::ids::{page_size, parse_id};
use crate::store::{self as st, NewWebhook, WebhookChange};
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
    /// Failing for longer than `SESAME_WEBHOOKS__DISABLE_AFTER` (a day) disables it.
    pub failing_since: Option<DateTime<Utc>>,
    /// After `rotateWebhookSecret`: until when the old secret signs too.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// Deliveries waiting to be sent (due or retrying).
    pub pending: u64,
    /// Deliveries dropped, oldest first, because more than
    /// `SESAME_WEBHOOKS__MAX_QUEUE` were waiting.
    pub dropped: i64,
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
            previous_secret_until: w.previous_secret_until,
            pending: w.pending,
            dropped: w.dropped,
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

/// What `updateWebhook` changes; a field left out stays as it is.
#[derive(InputObject)]
pub struct WebhookUpdate {
    pub url: Option<String>,
    /// Empty: every kind.
    pub events: Option<Vec<CredentialEventKind>>,
    /// null clears it.
    pub description: MaybeUndefined<String>,
    /// true re-enables an endpoint that was disabled (410 Gone, failing for a day), clearing the reason.
    pub enabled: Option<bool>,
}

/// How a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum WebhookDeliveryOutcome {
    /// Waiting for its first attempt or a retry.
    Pending,
    /// A 2xx answer.
    Delivered,
    /// Retried for `SESAME_WEBHOOKS__RETRY_FOR` without a 2xx: given up.
    Failed,
    /// The receiver answered 410 Gone; the endpoint was disabled.
    Gone,
}

/// One delivery of one event to one endpoint, with its latest attempt.
#[derive(Clone, Debug, SimpleObject)]
pub struct WebhookDelivery {
    /// Pass as `after` to read older deliveries.
    pub cursor: String,
    /// The `webhook-id` sent (the event's id as `credentialEvents` shows it; `test_…` for a test).
    pub event_id: String,
    /// The body's `type`: the event kind, or TEST.
    #[graphql(name = "type")]
    pub kind: String,
    /// Attempts made so far.
    pub attempt: i32,
    /// The receiver's last HTTP status; null when it could not be reached.
    pub status_code: Option<i32>,
    /// How long the last attempt took.
    pub duration_ms: Option<i64>,
    pub outcome: WebhookDeliveryOutcome,
    /// When the next attempt is due (pending deliveries only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The first bytes of the last answer (or of why it failed), printable
    /// ASCII with anything token-like masked; never the whole answer.
    pub answer_excerpt: Option<String>,
}

impl TryFrom<st::WebhookDelivery> for WebhookDelivery {
    type Error = ApiError;

    fn try_from(d: st::WebhookDelivery) -> ApiResult<WebhookDelivery> {
        let outcome = match d.outcome.as_str() {
            "PENDING" => WebhookDeliveryOutcome::Pending,
            "DELIVERED" => WebhookDeliveryOutcome::Delivered,
            "FAILED" => WebhookDeliveryOutcome::Failed,
            "GONE" => WebhookDeliveryOutcome::Gone,
            other => return Err(ApiError::internal(anyhow::anyhow!("webhook delivery outcome {other:?}"))),
        };
        Ok(WebhookDelivery {
            cursor: d.id.to_string(),
            event_id: d.message_id,
            kind: d.kind,
            attempt: d.attempt,
            status_code: d.status_code,
            duration_ms: d.duration_ms,
            outcome,
            next_attempt_at: d.next_attempt_at,
            created_at: d.created_at,
            answer_excerpt: d.answer_excerpt,
        })
    }
}

fn hooks<'a>(ctx: &Context<'a>) -> &'a Webhooks {
    ctx.data_unchecked::<Webhooks>()
}

pub async fn create(ctx: &Context<'_>, input: WebhookInput) -> ApiResult<CreatedWebhook> {
    let admin = store(ctx).admin(principal(ctx)?)?;
    let hooks = hooks(ctx);
    let url = hooks.parse_url(&input.url)?;
    let description = parse_description(input.description.as_deref())?;
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

fn parse_description(raw: Option<&str>) -> ApiResult<Option<&str>> {
    let description = raw.map(str::trim).filter(|d| !d.is_empty());
    if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION || d.chars().any(char::is_control)) {
        return Err(ApiError::bad_input(format!(
            "description must be at most {MAX_DESCRIPTION} characters, without control characters"
        )));
    }
    Ok(description)
}

pub async fn update(ctx: &Context<'_>, id: &ID, input: WebhookUpdate) -> ApiResult<Webhook> {
    let id = parse_id("webhook id", id)?;
    let admin = store(ctx).admin(principal(ctx)?)?;
    let url = input.url.as_deref().map(|u| hooks(ctx).parse_url(u)).transpose()?;
    let description = match &input.description {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(d) => Some(parse_description(Some(d))?),
    };
    let change = WebhookChange {
        url: url.as_ref().map(|u| u.as_str()),
        events: input.events.as_deref(),
        description,
        enabled: input.enabled,
    };
    Ok(admin.update_webhook(&id, change).await?.into())
}

/// A new secret, shown this once; the old one signs too for `SESAME_WEBHOOKS__SECRET_GRACE`.
pub async fn rotate_secret(ctx: &Context<'_>, id: &ID) -> ApiResult<CreatedWebhook> {
    let id = parse_id("webhook id", id)?;
    let admin = store(ctx).admin(principal(ctx)?)?;
    let grace = chrono::Duration::from_std(hooks(ctx).config().secret_grace).unwrap_or(chrono::Duration::days(1));
    let secret = generate_secret();
    let webhook = admin.rotate_webhook_secret(&id, &secret, grace).await?;
    Ok(CreatedWebhook { webhook: webhook.into(), secret })
}

pub async fn deliveries(
    ctx: &Context<'_>,
    id: &ID,
    after: Option<&str>,
    first: Option<i32>,
) -> ApiResult<Vec<WebhookDelivery>> {
    let id = parse_id("webhook id", id)?;
    let admin = store(ctx).admin(principal(ctx)?)?;
    let after = after
        .map(|a| {
            a.trim().parse::<i64>().map_err(|_| ApiError::bad_input("after must be a cursor from webhookDeliveries"))
        })
        .transpose()?;
    let rows = admin.webhook_deliveries(&id, after, page_size(first)?).await?;
    rows.into_iter().map(WebhookDelivery::try_from).collect()
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
