//! The one HTTP client policy towards providers: no redirects (a provider
//! URL must not become a way to reach other hosts), a timeout on every
//! request and on connecting, and one logged, counted way to send.

use std::time::Duration;

use serde_json::Value;

/// The largest answer read as JSON; providers' answers are a few KiB.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A client following the policy, timing out after `timeout`.
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("sesame-vault/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends a request; returns (status, JSON body or Null). Each call is
/// logged at INFO and counted: host, path, status, duration — never the
/// query string, a header or a body (they carry codes and tokens).
pub async fn send(request: reqwest::RequestBuilder) -> Result<(u16, Value), String> {
    let (client, request) = request.header("accept", "application/json").build_split();
    let request = request.map_err(|_| "the provider URL is not valid".to_owned())?;
    let host = request.url().host_str().unwrap_or("").to_owned();
    let path = request.url().path().to_owned();
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let sent = client.execute(request).await;
    let took = started.elapsed();
    let duration_ms = took.as_secs_f64() * 1000.0;
    let response = match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            tracing::info!(%method, host, path, status, duration_ms, "provider call");
            crate::metrics::provider_request(&host, &status.to_string(), took);
            response
        }
        Err(e) => {
            let why = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "error"
            };
            tracing::info!(%method, host, path, status = why, duration_ms, "provider call failed");
            crate::metrics::provider_request(&host, why, took);
            return Err(if e.is_timeout() {
                "the request timed out".to_owned()
            } else {
                "the provider could not be reached".to_owned()
            });
        }
    };
    let status = response.status().as_u16();
    Ok((status, read_bounded(response).await?))
}

/// The answer's JSON, read a chunk at a time and given up (Null) as soon as
/// it passes [`MAX_ANSWER_BYTES`]: a huge answer is never held in memory.
async fn read_bounded(response: reqwest::Response) -> Result<Value, String> {
    match read_at_most(response, MAX_ANSWER_BYTES).await.map_err(|_| "the answer was cut off".to_owned())? {
        Some(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null)),
        None => Ok(Value::Null),
    }
}

/// A body read a chunk at a time; `None` as soon as it passes `limit`
/// bytes (a declared length over it is not read at all), so a huge or
/// endless body is never held in memory. Also reads the IdP's key set.
pub(crate) async fn read_at_most(mut response: reqwest::Response, limit: usize) -> reqwest::Result<Option<Vec<u8>>> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if bytes.len() + chunk.len() > limit {
            return Ok(None);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(bytes))
}
