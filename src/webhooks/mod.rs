//! Signed webhooks (issue 24, Standard Webhooks format): the settings, the
//! URL policy applied at the edge, signing, and the delivery worker that
//! turns outbox events into POSTs. Rows are read and written by the store
//! (`store/webhooks.rs`); this module only talks to receivers.

mod guard;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use url::Url;

use crate::error::{ApiError, ApiResult};
use crate::store::{AttemptEnd, AttemptResult, DueDelivery, Store};

/// Most of a receiver's answer read (and then dropped): it is untrusted.
const MAX_ANSWER: usize = 4 * 1024;
/// Longest wait between two attempts of one delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);

/// `[webhooks]` (`SESAME_WEBHOOKS__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Allow receivers on loopback, private and link-local addresses, and
    /// plain http (tests, a receiver inside the cluster).
    pub allow_private: bool,
    /// First retry after this long; each next one waits twice as long (with jitter).
    #[serde(with = "humantime_serde")]
    pub retry_min: Duration,
    /// A delivery still failing this long after its event is given up (FAILED).
    #[serde(with = "humantime_serde")]
    pub retry_for: Duration,
    /// Endpoints per deployment.
    pub max_endpoints: u64,
    /// Connect timeout towards a receiver.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Whole-attempt timeout towards a receiver.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How often the worker looks for new events and due retries.
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            allow_private: false,
            retry_min: Duration::from_secs(30),
            retry_for: Duration::from_secs(3 * 24 * 3600),
            max_endpoints: 20,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            poll: Duration::from_secs(1),
        }
    }
}

/// The settings and the one HTTP client towards receivers.
#[derive(Clone)]
pub struct Webhooks {
    config: WebhooksConfig,
    client: reqwest::Client,
}

impl Webhooks {
    pub fn new(config: &WebhooksConfig) -> anyhow::Result<Webhooks> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            // An HTTP(S)_PROXY from the environment would resolve and connect
            // for us, past the address check below.
            .no_proxy()
            // The address actually connected to is checked, not only the name
            // at creation (DNS rebinding).
            .dns_resolver(Arc::new(guard::Resolver { allow_private: config.allow_private }))
            .build()?;
        Ok(Webhooks { config: config.clone(), client })
    }

    pub fn config(&self) -> &WebhooksConfig {
        &self.config
    }

    /// Parses a receiver's URL at the edge: https (unless private receivers
    /// are allowed), no credentials in it, no private address literal.
    pub fn parse_url(&self, raw: &str) -> ApiResult<Url> {
        let url = Url::parse(raw.trim())
            .map_err(|_| ApiError::bad_input("url must be an absolute URL such as https://example.com/hooks"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.config.allow_private => {}
            _ => return Err(ApiError::bad_input("url must use https")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ApiError::bad_input("url must not carry a user name or password"));
        }
        if raw.len() > 2048 {
            return Err(ApiError::bad_input("url must be at most 2048 characters"));
        }
        if !self.config.allow_private && guard::host_is_private(&url) {
            return Err(ApiError::bad_input(
                "url points to a loopback, private or link-local address; the operator may allow those \
                 with SESAME_WEBHOOKS__ALLOW_PRIVATE=true",
            ));
        }
        Ok(url)
    }

    /// Starts the delivery worker (every instance runs one; claims share the work).
    pub fn start(&self, store: Store) {
        let hooks = self.clone();
        tokio::spawn(async move {
            let owner = crate::ids::new_id();
            let mut tick = tokio::time::interval(hooks.config.poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = hooks.round(&store, &owner).await {
                    tracing::warn!(error = ?e, "webhook delivery round failed; trying again");
                }
            }
        });
    }

    /// Queues new events, then sends every delivery claimed, side by side.
    async fn round(&self, store: &Store, owner: &str) -> ApiResult<()> {
        store.queue_webhook_deliveries().await?;
        // Held a little longer than an attempt may last.
        let claim_for = chrono::Duration::from_std(self.config.timeout + Duration::from_secs(30))
            .unwrap_or(chrono::Duration::minutes(1));
        let due = store.claim_webhook_deliveries(owner, claim_for).await?;
        let attempts = due.into_iter().map(|delivery| async move {
            let result = self.attempt(store, &delivery).await;
            if let Err(e) = store.finish_webhook_attempt(&delivery, owner, result).await {
                tracing::warn!(error = ?e, delivery = delivery.id, "recording a webhook attempt failed");
            }
        });
        futures_util::future::join_all(attempts).await;
        Ok(())
    }

    async fn attempt(&self, store: &Store, delivery: &DueDelivery) -> AttemptResult {
        let now = store.clock().now();
        let timestamp = now.timestamp();
        let signature = match sign(&delivery.secret, &delivery.message_id, timestamp, &delivery.payload) {
            Ok(signature) => signature,
            Err(e) => {
                tracing::error!(error = %e, endpoint = %delivery.endpoint_id, "webhook secret unusable");
                return AttemptResult { status: None, duration_ms: 0, end: AttemptEnd::Failed };
            }
        };
        let started = Instant::now();
        let sent = self
            .client
            .post(&delivery.url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.payload.clone())
            .send()
            .await;
        let status = match sent {
            Ok(mut response) => {
                let status = response.status().as_u16();
                // Read a bounded part of the answer so the connection can be reused; the rest is dropped.
                let mut read = 0;
                while read < MAX_ANSWER {
                    match response.chunk().await {
                        Ok(Some(chunk)) => read += chunk.len(),
                        _ => break,
                    }
                }
                Some(status)
            }
            Err(e) => {
                tracing::info!(endpoint = %delivery.endpoint_id, error = %without_url(e), "webhook receiver unreachable");
                None
            }
        };
        let duration_ms = started.elapsed().as_millis() as i64;
        let end = match status {
            Some(200..=299) => AttemptEnd::Delivered,
            Some(410) => AttemptEnd::Gone,
            _ => {
                let next = now + chrono::Duration::from_std(self.backoff(delivery.attempt)).unwrap_or_default();
                let give_up = delivery.created_at
                    + chrono::Duration::from_std(self.config.retry_for).unwrap_or(chrono::Duration::days(3));
                if next > give_up {
                    AttemptEnd::Failed
                } else {
                    AttemptEnd::Retry(next)
                }
            }
        };
        tracing::info!(
            endpoint = %delivery.endpoint_id,
            webhook_id = %delivery.message_id,
            attempt = delivery.attempt + 1,
            status = status.unwrap_or(0),
            duration_ms,
            outcome = ?end,
            "webhook attempt"
        );
        AttemptResult { status, duration_ms, end }
    }

    /// Wait before the next attempt after `before` earlier ones failed:
    /// `retry_min`·2^before, at most a day, ±20 % so receivers that come
    /// back are not hit by every endpoint at once.
    fn backoff(&self, before: i32) -> Duration {
        let base = self.config.retry_min.saturating_mul(1u32 << before.clamp(0, 20)).min(MAX_BACKOFF);
        base.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
    }
}

/// A new endpoint secret: `whsec_` and base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// `webhook-signature` for one message: `v1,` and base64 of
/// HMAC-SHA256(key, "id.timestamp.body"), the key being the secret's bytes.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> anyhow::Result<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap_or(secret))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// A reqwest error's text without the URL (it may carry a path token).
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}
