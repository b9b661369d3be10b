//! The operator's `webhook create|list|delete` commands, on the vault's
//! host (like `user` and `token`): they open the server's data and act
//! through the operator's handle, audited as the system's. The signing
//! secret is printed once, at creation.

use clap::{Args, Subcommand};
use serde_json::json;

use crate::app::App;
use crate::domain::CredentialEventKind;
use crate::error::api_to_anyhow;
use crate::ids::parse_id;
use crate::store::{NewWebhook, Webhook};
use crate::webhooks::generate_secret;

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// Register a receiver for credential events and print its signing secret (shown once).
    Create {
        /// https URL (plain http and private addresses only with SESAME_WEBHOOKS__ALLOW_PRIVATE=true).
        #[arg(long)]
        url: String,
        /// An event kind to send (repeat it; none: every kind), e.g. NEEDS_REAUTH.
        #[arg(long = "event")]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        output: Json,
    },
    /// List the endpoints, their health and queue.
    List {
        #[command(flatten)]
        output: Json,
    },
    /// Delete an endpoint and its queued deliveries.
    Delete { id: String },
}

#[derive(Args)]
pub struct Json {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn webhook_json(w: &Webhook) -> serde_json::Value {
    json!({
        "id": w.id,
        "url": w.url,
        "events": w.events,
        "description": w.description,
        "enabled": w.enabled,
        "disabledReason": w.disabled_reason,
        "failingSince": w.failing_since,
        "pending": w.pending,
        "dropped": w.dropped,
        "createdAt": w.created_at,
    })
}

pub async fn run(app: &App, command: WebhookCommand) -> anyhow::Result<()> {
    let operator = app.store.operator_unchecked();
    match command {
        WebhookCommand::Create { url, events, description, output } => {
            let url = app.webhooks.parse_url(&url).map_err(api_to_anyhow)?;
            let events = events
                .iter()
                .map(|e| {
                    e.trim().to_ascii_uppercase().parse::<CredentialEventKind>().map_err(|_| {
                        anyhow::anyhow!(
                            "unknown event kind {e:?}; one of {}",
                            CredentialEventKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let description = description.as_deref().map(str::trim).filter(|d| !d.is_empty());
            if description.is_some_and(|d| d.chars().count() > 500 || d.chars().any(char::is_control)) {
                anyhow::bail!("description must be at most 500 characters, without control characters");
            }
            let secret = generate_secret();
            let webhook = operator
                .create_webhook(NewWebhook {
                    url: url.as_str(),
                    events: &events,
                    description,
                    secret: &secret,
                    max_endpoints: app.webhooks.config().max_endpoints,
                })
                .await
                .map_err(api_to_anyhow)?;
            if output.json {
                let mut out = webhook_json(&webhook);
                out["secret"] = json!(secret);
                println!("{out}");
            } else {
                println!("created webhook {} to {}", webhook.id, webhook.url);
                println!("signing secret (shown once): {secret}");
            }
        }
        WebhookCommand::List { output } => {
            let hooks = operator.webhooks().await.map_err(api_to_anyhow)?;
            if output.json {
                println!("{}", json!(hooks.iter().map(webhook_json).collect::<Vec<_>>()));
            } else if hooks.is_empty() {
                println!("no webhook endpoints");
            } else {
                for w in &hooks {
                    let events = if w.events.is_empty() {
                        "every kind".to_owned()
                    } else {
                        w.events.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(",")
                    };
                    let health = match (&w.disabled_reason, w.enabled, w.failing_since) {
                        (Some(reason), false, _) => format!("disabled: {reason}"),
                        (None, false, _) => "disabled".to_owned(),
                        (_, true, Some(since)) => format!("failing since {}", since.to_rfc3339()),
                        (_, true, None) => "healthy".to_owned(),
                    };
                    println!("{}  {}  [{events}]  {health}  pending {}  dropped {}", w.id, w.url, w.pending, w.dropped);
                }
            }
        }
        WebhookCommand::Delete { id } => {
            let id = parse_id("webhook id", &id).map_err(api_to_anyhow)?;
            if operator.delete_webhook(&id).await.map_err(api_to_anyhow)? {
                println!("deleted webhook {id}");
            } else {
                anyhow::bail!("no webhook endpoint has id {id}");
            }
        }
    }
    Ok(())
}
