//! One request inside a tunnel: placeholders found in its headers and query
//! string (`crate::delivery`), each lent by the store (a live grant), all of
//! one grant, the host one of that grant's provider's; then the real values
//! put in their place, the request forwarded and its answer streamed back.
//! Anything else is refused with a short 403 and nothing is sent anywhere.

use std::convert::Infallible;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT_ENCODING, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE,
    HOST, UPGRADE,
};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use zeroize::Zeroizing;

use super::body::{Counted, Metered, Record};
use super::tunnel::{plain, Tunnel};
use super::usage::Meter;
use super::{ProxyBody, Shared};
use crate::delivery::{self, Field, Found, MARKER};
use crate::domain::Provider;
use crate::store::Loan;

/// Placeholders one request may carry (a CLI sends one or two).
const MAX_PLACEHOLDERS: usize = 8;
/// The longest path written to the log.
const LOGGED_PATH: usize = 256;

/// Why a request is not forwarded: its status and a short text (never a
/// secret), and what is known of it for the log.
pub(crate) struct Refused {
    pub status: StatusCode,
    pub text: String,
    pub outcome: &'static str,
    pub provider: Option<Provider>,
    pub task: Option<String>,
    /// The connection is closed after this answer.
    pub close: bool,
}

pub(crate) fn refused(status: StatusCode, text: impl Into<String>) -> Refused {
    Refused { status, text: text.into(), outcome: "refused", provider: None, task: None, close: false }
}

/// The refusal when a task holds its cap of connections already.
pub(crate) fn too_many_connections(shared: &Shared) -> Refused {
    let mut r = refused(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "this task has {} connections open through the proxy already; reuse one (keep-alive) or close one, \
             then retry; this connection is closed",
            shared.config.max_connections_per_task.max(1)
        ),
    );
    r.outcome = "too_many_connections";
    r.close = true;
    r
}

const NO_PLACEHOLDER: &str =
    "no task placeholder in this request; the vault's proxy sends only requests that carry one";
const DAMAGED: &str =
    "this request holds a damaged task placeholder; the vault's proxy sends only requests whose placeholders are whole";

/// Serves one request inside a tunnel.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    tunnel: Arc<Tunnel>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let path: String = req.uri().path().chars().take(LOGGED_PATH).collect();
    let result = if super::token::is_token_endpoint(&tunnel.host, req.uri().path()) {
        super::token::answer(&shared, &tunnel, req, started).await
    } else {
        forward(&shared, &tunnel, req, started).await
    };
    Ok(match result {
        Ok(res) => res,
        Err(r) => {
            crate::metrics::proxy_request(r.provider.map_or("none", Provider::as_str), r.outcome);
            tracing::info!(
                task = r.task.as_deref().unwrap_or("-"),
                host = %tunnel.host,
                path = %path,
                status = r.status.as_u16(),
                took_ms = started.elapsed().as_millis() as u64,
                reason = %r.text,
                "proxy refused a request"
            );
            let mut res = plain(r.status, &r.text);
            if r.close || (r.status.is_client_error() && tunnel.refuse()) {
                res.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
            }
            res
        }
    })
}

/// The host a request names (its `Host` header or absolute URI) must be
/// the tunnel's.
pub(crate) fn check_host(tunnel: &Tunnel, req: &Request<Incoming>) -> Result<(), Refused> {
    let named = |authority: &str| {
        let host = match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        };
        host.trim_end_matches('.').eq_ignore_ascii_case(&tunnel.host)
    };
    let header_ok = match req.headers().get(HOST) {
        Some(v) => v.to_str().is_ok_and(named),
        None => true,
    };
    let uri_ok = req.uri().authority().is_none_or(|a| named(a.as_str()));
    if header_ok && uri_ok {
        Ok(())
    } else {
        Err(refused(StatusCode::BAD_REQUEST, "the request names another host than the one its tunnel was opened to"))
    }
}

/// Every placeholder in `text`, or a refusal if it holds a marker that is
/// not part of one.
pub(crate) fn placeholders_in(text: &str, found: &mut Vec<Found>) -> Result<(), Refused> {
    if !delivery::has_marker(text) {
        return Ok(());
    }
    let here = delivery::find_all(text);
    let whole = text.match_indices(MARKER).all(|(at, _)| here.iter().any(|f| f.span.contains(&at)));
    if !whole {
        return Err(refused(StatusCode::FORBIDDEN, DAMAGED));
    }
    found.extend(here);
    if found.len() > MAX_PLACEHOLDERS {
        return Err(refused(StatusCode::FORBIDDEN, "too many task placeholders in one request"));
    }
    Ok(())
}

fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

/// Header names the `Connection` header lists (hop-by-hop too).
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .take(32)
        .collect()
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers.get(UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Percent-encodes a real value for a query string.
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn forward(
    shared: &Arc<Shared>,
    tunnel: &Arc<Tunnel>,
    mut req: Request<Incoming>,
    started: Instant,
) -> Result<Response<ProxyBody>, Refused> {
    check_host(tunnel, &req)?;
    // Where the placeholders may be: every header value and the query.
    let mut found = Vec::new();
    for value in req.headers().values() {
        match std::str::from_utf8(value.as_bytes()) {
            Ok(text) => placeholders_in(text, &mut found)?,
            Err(_) if value.as_bytes().windows(MARKER.len()).any(|w| w == MARKER.as_bytes()) => {
                return Err(refused(StatusCode::FORBIDDEN, DAMAGED));
            }
            Err(_) => {}
        }
    }
    if let Some(query) = req.uri().query() {
        placeholders_in(query, &mut found)?;
    }
    if found.is_empty() {
        return Err(refused(StatusCode::FORBIDDEN, NO_PLACEHOLDER));
    }
    if found.iter().any(|f| f.field == Field::Refresh) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "a refresh token placeholder is answered only at its provider's token endpoint; it is never sent on",
        ));
    }

    // All of one grant (checked before the store is asked), within the
    // task's requests in flight (keyed by the grant id's hash, as the
    // store keys grants).
    if found.iter().any(|f| f.grant != found[0].grant) {
        return Err(refused(StatusCode::FORBIDDEN, "this request holds placeholders of more than one task"));
    }
    let key = found[0].grant.hash();
    let Some(in_flight) = shared.enter(&key) else {
        let mut r = refused(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "this task has {} requests in flight through the proxy already; wait for one to finish",
                shared.config.max_requests_per_task
            ),
        );
        r.outcome = "too_many";
        return Err(r);
    };

    // Each distinct placeholder lent once.
    let mut loans: Vec<(Field, Found, Loan)> = Vec::new();
    for f in &found {
        if loans.iter().any(|(field, _, _)| *field == f.field) {
            continue;
        }
        let loan = shared.handle.lend(f).await.map_err(|r| refused(StatusCode::FORBIDDEN, r.0))?;
        loans.push((f.field, f.clone(), loan));
    }
    let grant = loans[0].2.grant.clone();
    let known = |mut r: Refused| {
        r.provider = Some(grant.provider);
        r.task = Some(grant.task_id.clone());
        r
    };
    if !crate::providers::spec(grant.provider).egress.allows_host(&tunnel.host) {
        return Err(known(refused(
            StatusCode::FORBIDDEN,
            format!("this task's {} credential is not sent to this host", grant.provider.as_str()),
        )));
    }
    // The connection counts for the task from its first valid request on.
    if !tunnel.attribute(shared, &grant.key) {
        return Err(known(too_many_connections(shared)));
    }

    // The real values in place; the loans dropped (zeroised) right after.
    let real = |f: &Found| {
        loans.iter().find(|(field, g, _)| *field == f.field && g.grant == f.grant).map(|(_, _, l)| l.secret.to_string())
    };
    let websocket = is_websocket(req.headers());
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let listed = connection_listed(&parts.headers);
    let mut headers = HeaderMap::with_capacity(parts.headers.len() + 2);
    // Each real value sent and the placeholder it replaced: an error
    // answer that quotes the real value gets the placeholder back instead.
    let mut sent_values: Vec<(Zeroizing<String>, String)> = Vec::new();
    let mut swap = |text: &str, f: &Found| {
        let value = real(f)?;
        if !sent_values.iter().any(|(_, p)| p.as_str() == &text[f.span.clone()]) {
            sent_values.push((Zeroizing::new(value.clone()), text[f.span.clone()].to_owned()));
        }
        Some(value)
    };
    for (name, value) in &parts.headers {
        if hop_by_hop(name) || listed.iter().any(|l| l == name.as_str()) {
            continue;
        }
        // No compressed frames: the provider's events are read for usage.
        if websocket && name.as_str().eq_ignore_ascii_case("sec-websocket-extensions") {
            continue;
        }
        let text = std::str::from_utf8(value.as_bytes()).ok();
        match text.filter(|t| delivery::has_marker(t)) {
            Some(text) => {
                let swapped = Zeroizing::new(
                    delivery::replace_all(text, |f| swap(text, f))
                        .ok_or_else(|| known(refused(StatusCode::FORBIDDEN, NO_PLACEHOLDER)))?,
                );
                let mut value = HeaderValue::from_str(&swapped).map_err(|_| {
                    known(refused(StatusCode::BAD_GATEWAY, "the credential cannot be sent in this header"))
                })?;
                value.set_sensitive(true);
                headers.append(name.clone(), value);
            }
            None => {
                headers.append(name.clone(), value.clone());
            }
        }
    }
    // Answers uncompressed, so the usage in them can be read as they pass
    // (providers' answers are text; the task's own request body is left as is).
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    if websocket {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    }
    let authority = tunnel.authority();
    headers.insert(
        HOST,
        HeaderValue::from_str(&authority).map_err(|_| known(refused(StatusCode::BAD_REQUEST, "bad host")))?,
    );
    let path = parts.uri.path();
    let path_and_query = Zeroizing::new(match parts.uri.query() {
        Some(q) => {
            let q = Zeroizing::new(
                delivery::replace_all(q, |f| swap(q, f).map(|s| query_escape(&Zeroizing::new(s))))
                    .ok_or_else(|| known(refused(StatusCode::FORBIDDEN, NO_PLACEHOLDER)))?,
            );
            format!("{path}?{}", q.as_str())
        }
        None => path.to_owned(),
    });
    let target = Zeroizing::new(match shared.upstreams.get(&tunnel.host) {
        Some(base) => format!("{base}{}", path_and_query.as_str()),
        None => format!("https://{authority}{}", path_and_query.as_str()),
    });
    let uri: hyper::Uri = target
        .parse()
        .map_err(|_| known(refused(StatusCode::BAD_REQUEST, "the request's path cannot be forwarded")))?;
    drop(loans);

    let sent = Arc::new(AtomicU64::new(0));
    let mut upstream = Request::new(Counted { inner: body, count: sent.clone() }.boxed_unsync());
    *upstream.method_mut() = parts.method;
    *upstream.uri_mut() = uri;
    *upstream.headers_mut() = headers;
    let deadline = tokio::time::Instant::now() + shared.config.request_timeout;
    let mut res = match tokio::time::timeout_at(deadline, shared.client.request(upstream)).await {
        Ok(Ok(res)) => res,
        Ok(Err(e)) => {
            tracing::warn!(host = %tunnel.host, task = %grant.task_id, error = %e, "the proxy could not reach the provider");
            let mut r = known(refused(StatusCode::BAD_GATEWAY, "the provider could not be reached"));
            r.outcome = "upstream_error";
            return Err(r);
        }
        Err(_) => {
            let mut r = known(refused(StatusCode::GATEWAY_TIMEOUT, "the provider did not answer in time"));
            r.outcome = "upstream_error";
            return Err(r);
        }
    };
    crate::metrics::proxy_request(grant.provider.as_str(), "forwarded");
    let record = Record {
        ledger: shared.ledger.clone(),
        grant_key: grant.key.clone(),
        task_id: grant.task_id.clone(),
        provider: grant.provider,
        host: tunnel.host.clone(),
        path: path.chars().take(LOGGED_PATH).collect(),
        status: res.status().as_u16(),
        started,
        sent,
        received: 0,
        meter: Meter::Off,
        _in_flight: Some(in_flight),
    };

    if let Some(client_upgrade) = client_upgrade {
        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream_upgrade = hyper::upgrade::on(&mut res);
            // The spliced WebSocket keeps the tunnel (and what it counts for).
            tokio::spawn(splice(client_upgrade, upstream_upgrade, record, deadline, tunnel.clone()));
            let mut answer = Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
            *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            *answer.headers_mut() = res.headers().clone();
            return Ok(answer);
        }
    }

    let (parts, body) = res.into_parts();
    let header = |name| parts.headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let meter = Meter::for_answer(header(CONTENT_TYPE), header(CONTENT_ENCODING));
    let listed = connection_listed(&parts.headers);
    let mut record = record;
    record.meter = meter;
    // An error answer that quotes a real value gets the placeholder back.
    let scrub_it = scrubbable(&parts, &sent_values);
    let (body, length) = if scrub_it {
        let bytes = scrub(body, &sent_values, deadline).await;
        let length = bytes.len();
        let whole = Full::new(bytes).map_err(|never| -> super::BoxError { match never {} });
        let deadline = Box::pin(tokio::time::sleep_until(deadline));
        (Metered { inner: whole, record, deadline }.boxed_unsync(), Some(length))
    } else {
        let deadline = Box::pin(tokio::time::sleep_until(deadline));
        (Metered { inner: body, record, deadline }.boxed_unsync(), None)
    };
    drop(sent_values);
    let mut answer = Response::new(body);
    *answer.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) && !listed.iter().any(|l| l == name.as_str()) {
            answer.headers_mut().append(name.clone(), value.clone());
        }
    }
    if let Some(length) = length {
        answer.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    Ok(answer)
}

/// The largest error answer read whole to take real values out of it.
const MAX_SCRUBBED: u64 = 64 * 1024;

/// An error answer (4xx, 5xx) of a known length up to [`MAX_SCRUBBED`],
/// not compressed, not a stream, to a request that carried real values: it
/// is read whole and scrubbed.
fn scrubbable(parts: &hyper::http::response::Parts, sent: &[(Zeroizing<String>, String)]) -> bool {
    if sent.is_empty() || !(parts.status.is_client_error() || parts.status.is_server_error()) {
        return false;
    }
    let header = |name| parts.headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    if header(CONTENT_ENCODING).is_some_and(|e| !e.eq_ignore_ascii_case("identity"))
        || header(CONTENT_TYPE).is_some_and(|t| t.to_ascii_lowercase().starts_with("text/event-stream"))
    {
        return false;
    }
    header(CONTENT_LENGTH).and_then(|l| l.trim().parse::<u64>().ok()).is_some_and(|l| l <= MAX_SCRUBBED)
}

/// Reads an error answer whole (before the exchange's deadline) and puts
/// each placeholder back where it quotes the real value (an answer that
/// does not arrive whole becomes an empty one: its status stays).
async fn scrub(body: Incoming, sent: &[(Zeroizing<String>, String)], deadline: tokio::time::Instant) -> Bytes {
    let read = http_body_util::Limited::new(body, MAX_SCRUBBED as usize).collect();
    let Ok(Ok(collected)) = tokio::time::timeout_at(deadline, read).await else { return Bytes::new() };
    let mut text = Zeroizing::new(collected.to_bytes().to_vec());
    for (real, placeholder) in sent {
        if !real.is_empty() {
            text = Zeroizing::new(replace_bytes(&text, real.as_bytes(), placeholder.as_bytes()));
        }
    }
    Bytes::from(text.to_vec())
}

/// `haystack` with every `from` replaced by `to`.
fn replace_bytes(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// How long a WebSocket's other side has to end after one side did.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A WebSocket after `101`: bytes both ways until either side closes or
/// the exchange's deadline.
async fn splice(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    mut record: Record,
    deadline: tokio::time::Instant,
    _tunnel: Arc<Tunnel>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (Ok(client), Ok(upstream)) = tokio::join!(client, upstream) else { return };
    let (mut from_client, mut to_client) = tokio::io::split(TokioIo::new(client));
    let (mut from_upstream, mut to_upstream) = tokio::io::split(TokioIo::new(upstream));
    let sent = record.sent.clone();
    let up = async {
        let mut buf = vec![0; 16 * 1024];
        loop {
            let n = from_client.read(&mut buf).await?;
            if n == 0 {
                return to_upstream.shutdown().await;
            }
            to_upstream.write_all(&buf[..n]).await?;
            sent.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
    };
    // The provider's frames, read for the usage its events report.
    let mut meter = Meter::for_answer(Some("text/event-stream"), None);
    let mut frames = super::websocket::Frames::default();
    let mut received = 0u64;
    let down = async {
        let mut buf = vec![0; 16 * 1024];
        loop {
            let n = from_upstream.read(&mut buf).await?;
            if n == 0 {
                return to_client.shutdown().await;
            }
            frames.feed(&buf[..n], &mut meter);
            to_client.write_all(&buf[..n]).await?;
            received += n as u64;
        }
    };
    // An end is passed on (half-close) and the other side gets a few
    // seconds to end too; an error on either side, or the deadline, ends both.
    let both = async {
        tokio::pin!(up, down);
        let (first, up_ended) = tokio::select! {
            r = &mut up => (r, true),
            r = &mut down => (r, false),
        };
        if first.is_ok() {
            let rest = async {
                if up_ended {
                    (&mut down).await
                } else {
                    (&mut up).await
                }
            };
            let _ = tokio::time::timeout(CLOSE_GRACE, rest).await;
        }
    };
    let _ = tokio::time::timeout_at(deadline, both).await;
    record.received += received;
    record.meter = meter;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::GrantId;

    #[test]
    fn markers_outside_placeholders_are_refused() {
        let g = GrantId::mint();
        let mut found = Vec::new();
        placeholders_in(&format!("Bearer {}", g.placeholder("sk-ant-oat01-", Field::Access)), &mut found).ok().unwrap();
        assert_eq!(found.len(), 1);
        for damaged in ["Bearer svp_kshort", "svp_", "x svp_a0123456789012345678901234 svp_"] {
            assert!(placeholders_in(damaged, &mut Vec::new()).is_err(), "{damaged}");
        }
        let jwt = g.jwt_placeholder("eyJh.eyJz.sig", Field::IdToken);
        let mut found = Vec::new();
        assert!(placeholders_in(&jwt, &mut found).is_ok());
        assert_eq!(found[0].span, 0..jwt.len());
        let many: Vec<String> =
            (0..=MAX_PLACEHOLDERS).map(|_| GrantId::mint().placeholder("", Field::ApiKey)).collect();
        assert!(placeholders_in(&many.join(" "), &mut Vec::new()).is_err());
    }

    #[test]
    fn real_values_are_replaced_in_bytes() {
        assert_eq!(replace_bytes(b"key sk-1 and sk-1.", b"sk-1", b"svp_x"), b"key svp_x and svp_x.".to_vec());
        assert_eq!(replace_bytes(b"nothing", b"sk-1", b"svp_x"), b"nothing".to_vec());
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("AIza-_.~"), "AIza-_.~");
        assert_eq!(query_escape("a b&c=d/"), "a%20b%26c%3Dd%2F");
    }
}
