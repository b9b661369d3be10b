//! OAuth token endpoints (`Egress::token_endpoints`): the proxy answers a
//! refresh itself, with new placeholders and the real token's expiry
//! (`ProxyHandle::refresh`); nothing goes to the provider from here and the
//! refresh token never leaves the vault. Sign-in (any other grant type) is
//! refused.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::exchange::{check_host, refused, Refused};
use super::tunnel::Tunnel;
use super::{ProxyBody, Shared};
use crate::delivery::{self, Field};
use crate::domain::Provider;

/// The largest token request body read.
const MAX_BODY: usize = 64 * 1024;

/// Whether `host` and `path` are a provider's token endpoint.
pub(crate) fn is_token_endpoint(host: &str, path: &str) -> bool {
    Provider::ALL.iter().any(|&p| crate::providers::spec(p).egress.is_token_endpoint(host, path))
}

pub(crate) async fn answer(
    shared: &Arc<Shared>,
    tunnel: &Arc<Tunnel>,
    req: Request<Incoming>,
    started: Instant,
) -> Result<Response<ProxyBody>, Refused> {
    check_host(tunnel, &req)?;
    if req.method() != Method::POST {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "the vault's proxy answers only refreshes (POST) at a token endpoint",
        ));
    }
    let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let form = content_type.starts_with("application/x-www-form-urlencoded");
    if !form && !content_type.starts_with("application/json") {
        return Err(refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a token request is JSON or application/x-www-form-urlencoded",
        ));
    }
    let path = req.uri().path().to_owned();
    let body = Limited::new(req.into_body(), MAX_BODY).collect();
    let body = match tokio::time::timeout(shared.config.header_timeout, body).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => return Err(refused(StatusCode::PAYLOAD_TOO_LARGE, "a token request body is at most 64 KiB")),
        Err(_) => return Err(refused(StatusCode::REQUEST_TIMEOUT, "the token request body did not arrive in time")),
    };
    let (grant_type, refresh_token) =
        params(&body, form).ok_or_else(|| refused(StatusCode::BAD_REQUEST, "the token request body cannot be read"))?;
    if grant_type.as_deref() != Some("refresh_token") {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "signing in through the vault's proxy is not supported: the proxy answers refreshes only; \
             sign in through the vault (its Credentials app) instead",
        ));
    }
    let refresh_token = refresh_token.unwrap_or_default();
    let found = delivery::find_all(&refresh_token);
    let whole = found.len() == 1 && found[0].span == (0..refresh_token.len()) && found[0].field == Field::Refresh;
    if !whole {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "no task refresh placeholder in this token request; the vault's proxy answers only refreshes of tokens it issued",
        ));
    }
    // The store refuses another provider's endpoint before it refreshes.
    let answer = shared
        .handle
        .refresh(&found[0], (&tunnel.host, &path))
        .await
        .map_err(|r| refused(StatusCode::FORBIDDEN, r.0))?;
    let grant = answer.grant.clone();
    if !tunnel.attribute(shared, &grant.key) {
        let mut r = super::exchange::too_many_connections(shared);
        r.provider = Some(grant.provider);
        r.task = Some(grant.task_id.clone());
        return Err(r);
    }
    let mut doc = json!({
        "access_token": answer.access_token,
        "refresh_token": answer.refresh_token,
        "token_type": "Bearer",
    });
    if let Some(id_token) = &answer.id_token {
        doc["id_token"] = Value::String(id_token.clone());
    }
    if let Some(expires_in) = answer.expires_in {
        doc["expires_in"] = json!(expires_in);
    }
    crate::metrics::proxy_request(grant.provider.as_str(), "refresh_answered");
    tracing::info!(
        task = %grant.task_id,
        provider = grant.provider.as_str(),
        host = %tunnel.host,
        path = %path,
        status = 200,
        took_ms = started.elapsed().as_millis() as u64,
        "proxy answered a refresh"
    );
    let mut res = Response::new(Full::new(Bytes::from(doc.to_string())).map_err(|never| match never {}).boxed_unsync());
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// `grant_type` and `refresh_token` of a JSON or form body.
pub fn params(body: &[u8], form: bool) -> Option<(Option<String>, Option<String>)> {
    if form {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Some((get("grant_type"), get("refresh_token")))
    } else {
        let v: Value = serde_json::from_slice(body).ok()?;
        let get = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        v.is_object().then(|| (get("grant_type"), get("refresh_token")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_and_forms() {
        let (g, r) = params(br#"{"grant_type":"refresh_token","refresh_token":"x","client_id":"c"}"#, false).unwrap();
        assert_eq!((g.as_deref(), r.as_deref()), (Some("refresh_token"), Some("x")));
        let (g, r) = params(b"refresh_token=y&client_id=c&grant_type=refresh_token", true).unwrap();
        assert_eq!((g.as_deref(), r.as_deref()), (Some("refresh_token"), Some("y")));
        assert!(params(b"[1]", false).is_none());
        assert!(is_token_endpoint("platform.claude.com", "/v1/oauth/token"));
        assert!(is_token_endpoint("oauth2.googleapis.com", "/token"));
        assert!(!is_token_endpoint("api.anthropic.com", "/v1/oauth/token"));
    }
}
