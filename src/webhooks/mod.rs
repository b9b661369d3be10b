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
use crate::store::{AttemptEnd, AttemptResult, DueDelivery, Health, Store, WebhookBounds};

/// Most of a receiver's answer read (and then dropped): it is untrusted.
const MAX_ANSWER: usize = 4 * 1024;
/// Bytes of an answer the delivery log keeps (scrubbed).
const EXCERPT: usize = 160;
/// A run of token-like characters at least this long is masked in an excerpt.
const TOKEN_RUN: usize = 20;
/// A claim outlives the attempt's timeout by this much (time to record it).
const CLAIM_MARGIN: Duration = Duration::from_secs(5);
/// How often finished deliveries older than `keep_log` are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
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
    /// Pending deliveries per endpoint; past it the oldest are dropped (and counted).
    pub max_queue: u64,
    /// An endpoint whose deliveries fail for this long is disabled.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
    /// After `rotateWebhookSecret`, the old secret signs too for this long.
    #[serde(with = "humantime_serde")]
    pub secret_grace: Duration,
    /// Finished deliveries are kept in the delivery log this long.
    #[serde(with = "humantime_serde")]
    pub keep_log: Duration,
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
            max_queue: 10_000,
            disable_after: Duration::from_secs(24 * 3600),
            secret_grace: Duration::from_secs(24 * 3600),
            keep_log: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The settings and the one HTTP client towards receivers.
#[derive(Clone)]
pub struct Webhooks {
    config: WebhooksConfig,
    client: reqwest::Client,
    /// The people's Credentials app (`SESAME_PUBLIC_URL` + `/settings`), linked from each body.
    app_url: Option<String>,
}

impl Webhooks {
    /// `public_url`: where people reach the vault (`SESAME_PUBLIC_URL`), if set.
    pub fn new(config: &WebhooksConfig, public_url: Option<&str>) -> anyhow::Result<Webhooks> {
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
        let app_url = match public_url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => {
                let parsed = Url::parse(url).map_err(|e| anyhow::anyhow!("public_url: {e}"))?;
                anyhow::ensure!(
                    matches!(parsed.scheme(), "http" | "https"),
                    "public_url: expected an http(s) URL such as https://vault.example.com"
                );
                Some(format!("{}/settings", url.trim_end_matches('/')))
            }
            None => None,
        };
        Ok(Webhooks { config: config.clone(), client, app_url })
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

    /// Starts the delivery worker (every instance runs one; claims share
    /// the work). Each attempt runs in its own task, so a receiver that
    /// hangs holds only its own endpoint (one delivery in flight per
    /// endpoint, so at most one task per endpoint). On SIGTERM the attempts
    /// in flight are cut short and their claims released, so another
    /// instance takes them at once instead of after the claim runs out.
    pub fn start(&self, store: Store) {
        let hooks = self.clone();
        // Counted from now until its claims are released: the shutdown
        // sequence waits for it (entered only after the signal, a busy
        // machine let the process exit first, claims still held).
        let running = crate::shutdown::JOBS.enter();
        tokio::spawn(async move {
            let _running = running;
            let owner = crate::ids::new_id();
            let mut in_flight = tokio::task::JoinSet::new();
            let mut tick = tokio::time::interval(hooks.config.poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_prune: Option<Instant> = None;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = crate::shutdown::triggered() => break,
                }
                while in_flight.try_join_next().is_some() {}
                if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                    last_prune = Some(Instant::now());
                    let keep = chrono::Duration::from_std(hooks.config.keep_log).unwrap_or(chrono::Duration::days(7));
                    if let Err(e) = store.prune_webhook_deliveries(keep).await {
                        tracing::warn!(error = ?e, "pruning the webhook delivery log failed; trying again later");
                    }
                }
                if let Err(e) = hooks.round(&store, &owner, &mut in_flight).await {
                    tracing::warn!(error = ?e, "webhook delivery round failed; trying again");
                }
            }
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
            match store.release_webhook_claims(&owner).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(released = n, "shutting down: webhook attempts in flight released"),
                Err(e) => tracing::warn!(error = ?e, "releasing webhook claims failed; they run out on their own"),
            }
        });
    }

    /// Queues new events, then starts an attempt for every delivery claimed.
    async fn round(&self, store: &Store, owner: &str, in_flight: &mut tokio::task::JoinSet<()>) -> ApiResult<()> {
        let (_, dropped) = store.queue_webhook_deliveries(self.app_url.as_deref(), self.config.max_queue).await?;
        if dropped > 0 {
            crate::metrics::webhooks_dropped(dropped);
            tracing::warn!(dropped, "webhook queue bound reached: the oldest pending deliveries were dropped");
        }
        crate::metrics::webhook_queue_depth(store.webhook_queue_depth().await?);
        // Held a little longer than an attempt may last (`timeout` bounds the
        // whole attempt, the answer's body included): after a kill -9 another
        // instance takes the delivery once this has passed.
        let claim_for =
            chrono::Duration::from_std(self.config.timeout + CLAIM_MARGIN).unwrap_or(chrono::Duration::minutes(1));
        let bounds = WebhookBounds {
            max_queue: self.config.max_queue,
            disable_after: chrono::Duration::from_std(self.config.disable_after).unwrap_or(chrono::Duration::days(1)),
        };
        for delivery in store.claim_webhook_deliveries(owner, claim_for).await? {
            let (hooks, store, owner) = (self.clone(), store.clone(), owner.to_owned());
            in_flight.spawn(async move {
                let result = hooks.attempt(&store, &delivery).await;
                match store.finish_webhook_attempt(&delivery, &owner, result, bounds).await {
                    Ok(Health::Disabled(reason)) => {
                        tracing::warn!(endpoint = %delivery.endpoint_id, %reason, "webhook endpoint disabled");
                    }
                    Ok(Health::Unchanged) => {}
                    Err(e) => tracing::warn!(error = ?e, delivery = delivery.id, "recording a webhook attempt failed"),
                }
            });
        }
        Ok(())
    }

    async fn attempt(&self, store: &Store, delivery: &DueDelivery) -> AttemptResult {
        let now = store.clock().now();
        let timestamp = now.timestamp();
        let signed = std::iter::once(&delivery.secret)
            .chain(&delivery.previous_secret)
            .map(|secret| sign(secret, &delivery.message_id, timestamp, &delivery.payload))
            .collect::<anyhow::Result<Vec<String>>>();
        let signature = match signed {
            // Standard Webhooks: several signatures, space-separated; any one verifies.
            Ok(signatures) => signatures.join(" "),
            Err(e) => {
                tracing::error!(error = %e, endpoint = %delivery.endpoint_id, "webhook secret unusable");
                return AttemptResult { status: None, duration_ms: 0, end: AttemptEnd::Failed, excerpt: None };
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
        let (status, excerpt) = match sent {
            Ok(mut response) => {
                let status = response.status().as_u16();
                // A bounded part of the answer; the rest is dropped with the connection.
                let mut answer = Vec::new();
                while answer.len() < MAX_ANSWER {
                    match response.chunk().await {
                        Ok(Some(chunk)) => {
                            answer.extend_from_slice(&chunk[..chunk.len().min(MAX_ANSWER - answer.len())])
                        }
                        _ => break,
                    }
                }
                (Some(status), excerpt(&answer))
            }
            Err(e) => {
                let why = without_url(e);
                tracing::info!(endpoint = %delivery.endpoint_id, error = %why, "webhook receiver unreachable");
                (None, excerpt(why.as_bytes()))
            }
        };
        let took = started.elapsed();
        let duration_ms = took.as_millis() as i64;
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
        crate::metrics::webhook_attempt(end.outcome(), took);
        tracing::info!(
            endpoint = %delivery.endpoint_id,
            webhook_id = %delivery.message_id,
            attempt = delivery.attempt + 1,
            status = status.unwrap_or(0),
            duration_ms,
            outcome = end.outcome(),
            "webhook attempt"
        );
        AttemptResult { status, duration_ms, end, excerpt }
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

/// The first bytes of a receiver's answer as the delivery log keeps them:
/// printable ASCII only, and any long run of token-like characters masked
/// (the receiver is untrusted and its answer may echo a secret).
fn excerpt(answer: &[u8]) -> Option<String> {
    let mut out = String::new();
    let mut run = String::new();
    let flush = |out: &mut String, run: &mut String| {
        if run.len() >= TOKEN_RUN {
            out.push_str("[…]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for &b in answer.iter().take(EXCERPT) {
        let c = if (0x20..0x7f).contains(&b) { b as char } else { ' ' };
        if c.is_ascii_alphanumeric() || "-_.+/=".contains(c) {
            run.push(c);
        } else {
            flush(&mut out, &mut run);
            out.push(c);
        }
    }
    flush(&mut out, &mut run);
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    (!out.is_empty()).then_some(out)
}

/// A reqwest error's text without the URL (it may carry a path token).
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the Standard Webhooks specification.
    #[test]
    fn signs_as_the_specification_does() {
        let signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn an_excerpt_is_short_printable_and_masks_tokens() {
        assert_eq!(excerpt(b"ok").as_deref(), Some("ok"));
        assert_eq!(excerpt(b"").as_deref(), None);
        let echoed =
            excerpt(b"{\"error\":\"bad signature\",\"token\":\"sv_abcdefghijklmnopqrstuvwxyz0123\"}\n\x00\xff")
                .unwrap();
        assert!(!echoed.contains("abcdefghijklmnop"), "{echoed}");
        assert!(echoed.contains("bad signature") && echoed.contains("[…]"), "{echoed}");
        let long = excerpt(&b"word ".repeat(1000)).unwrap();
        assert!(long.len() <= EXCERPT, "{}", long.len());
    }
}
