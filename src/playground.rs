//! Two pages built from `playground/` (React, GraphiQL, graphql-ws;
//! `npm ci && npm run build`) into `playground/dist/`, which is checked in and
//! embedded here, so `cargo build` needs no Node:
//!
//! - the explorer at `/`: GraphiQL with a token field;
//! - the Credentials app at `/settings`: Sign in, API Keys, Agent
//!   Credentials, sign-in flows, live events, Admin, all through the public
//!   GraphQL API.
//!
//! The pages load nothing from any other host: their HTML, content-hashed JS
//! chunks and one stylesheet each (GraphiQL's fonts are `data:` URLs inside
//! it). The HTML carries a Content-Security-Policy that allows only this
//! origin (plus WebSocket connections for subscriptions).
//!
//! - `GET /` and `GET /index.html`: the explorer, `Cache-Control: no-cache`.
//! - `GET /settings` and `GET /settings.html`: the Credentials app, likewise.
//! - `GET /assets/<name>-<hash>.<ext>`: content-hashed, cached as immutable.
//! - anything else: 404; methods other than GET and HEAD: 405.

use std::borrow::Cow;

use poem::http::{header, HeaderValue, Method, StatusCode};
use poem::{Body, Endpoint, Request, Response};

/// The built playground (`playground/dist`).
#[derive(rust_embed::Embed)]
#[folder = "playground/dist"]
struct Assets;

/// Policy for the HTML page. GraphiQL (CodeMirror 5, React) needs no eval and
/// no workers; React and CodeMirror set inline styles; GraphiQL's stylesheet
/// inlines its fonts and icons as `data:` URLs.
/// Without a usable `Host`, connections go to `'self'` only; with one, also
/// to the WebSocket origin of the same host ([`content_security_policy`]).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
     style-src 'self' 'unsafe-inline'; font-src 'self' data:; script-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's policy: `'self'` does not cover `ws:`/`wss:` in every browser,
/// so the page's own host is named for WebSockets (`ws://host wss://host`),
/// and no other host. The host is the one the browser asked for (`Host`),
/// taken only if it is a plain host name or address with an optional port.
pub fn content_security_policy(host: Option<&str>) -> String {
    let plain = |h: &str| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    };
    match host.filter(|h| plain(h)) {
        Some(host) => CONTENT_SECURITY_POLICY.replacen(
            "connect-src 'self'",
            &format!("connect-src 'self' ws://{host} wss://{host}"),
            1,
        ),
        None => CONTENT_SECURITY_POLICY.to_owned(),
    }
}

const INDEX: &str = "index.html";
const SETTINGS: &str = "settings.html";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The playground endpoint; mount it with `Route::new().nest("/", playground::endpoint())`.
pub fn endpoint() -> impl Endpoint<Output = Response> {
    Playground
}

struct Playground;

impl Endpoint for Playground {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
        Ok(serve(req.method(), req.uri().path(), req.headers().get(header::IF_NONE_MATCH), host))
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(text)
}

/// Whether `If-None-Match` names this entity tag (or is `*`).
fn matches_etag(if_none_match: Option<&HeaderValue>, etag: &str) -> bool {
    let Some(value) = if_none_match.and_then(|v| v.to_str().ok()) else { return false };
    value.split(',').map(|tag| tag.trim().trim_start_matches("W/")).any(|tag| tag == "*" || tag == etag)
}

/// Content-hashed build output (`assets/playground-<hash>.js`): safe to cache forever.
fn is_hashed_asset(path: &str) -> bool {
    path.starts_with("assets/") && path.rsplit('/').next().is_some_and(|name| name.contains('-'))
}

fn serve(method: &Method, path: &str, if_none_match: Option<&HeaderValue>, host: Option<&str>) -> Response {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = match path {
        "" => INDEX,
        "settings" => SETTINGS,
        other => other,
    };
    // Embedded names are plain relative paths; refuse anything that is not.
    let suspicious = path.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") || path.contains('\\');
    let file = if suspicious { None } else { Assets::get(path) };
    let Some(file) = file else {
        return plain(StatusCode::NOT_FOUND, "not found: the explorer is at /, the Credentials app at /settings\n");
    };
    if method != Method::GET && method != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "the playground serves GET only\n");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }

    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let is_html = path.ends_with(".html");
    let content_type =
        if is_html { "text/html; charset=utf-8".to_owned() } else { content_type_of(file.metadata.mimetype()) };
    let cache_control = if is_hashed_asset(path) { IMMUTABLE } else { "no-cache" };

    let mut builder = Response::builder()
        .header(header::CACHE_CONTROL, cache_control)
        .header(header::ETAG, etag.as_str())
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer");
    if is_html {
        builder = builder
            .header(header::CONTENT_SECURITY_POLICY, content_security_policy(host))
            .header(header::X_FRAME_OPTIONS, "DENY");
    }
    if matches_etag(if_none_match, &etag) {
        return builder.status(StatusCode::NOT_MODIFIED).finish();
    }
    let builder = builder.header(header::CONTENT_TYPE, content_type);
    if method == Method::HEAD {
        return builder.header(header::CONTENT_LENGTH, file.data.len()).finish();
    }
    // Release builds embed the files (borrowed, served without copying);
    // debug builds read them from playground/dist (owned).
    match file.data {
        Cow::Borrowed(bytes) => builder.body(Body::from(bytes)),
        Cow::Owned(bytes) => builder.body(Body::from(bytes)),
    }
}

/// Text types get an explicit charset (the bundle is UTF-8).
fn content_type_of(mime: &str) -> String {
    let is_text = mime.starts_with("text/") || mime == "application/javascript" || mime == "application/json";
    if is_text && !mime.contains("charset") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(path: &str) -> String {
        let file = Assets::get(path).unwrap_or_else(|| panic!("{path} is not embedded"));
        String::from_utf8(file.data.into_owned()).expect("UTF-8")
    }

    /// The values of `attr="…"` attributes in an HTML document.
    fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
        let needle = format!(" {attr}=\"");
        html.match_indices(&needle)
            .filter_map(|(at, _)| {
                let rest = &html[at + needle.len()..];
                rest.find('"').map(|end| &rest[..end])
            })
            .collect()
    }

    #[test]
    fn pages_are_embedded_and_load_only_local_files() {
        for page in [INDEX, SETTINGS] {
            page_loads_only_local_files(page);
        }
    }

    fn page_loads_only_local_files(page: &str) {
        let html = text(page);
        let lower = html.to_ascii_lowercase();
        for bad in ["<script src=\"http", "<link href=\"http", "src=\"//", "href=\"//"] {
            assert!(!lower.contains(bad), "{page} loads from another host ({bad}): {html}");
        }
        let refs: Vec<&str> =
            attribute_values(&html, "src").into_iter().chain(attribute_values(&html, "href")).collect();
        assert!(refs.iter().any(|r| r.ends_with(".js")), "{page} has no script: {html}");
        assert!(refs.iter().any(|r| r.ends_with(".css")), "{page} has no stylesheet: {html}");
        for r in refs {
            if r.starts_with("data:") {
                continue;
            }
            assert!(!r.contains(':'), "{page} references {r}, which is not on this host");
            let local = r.trim_start_matches("./").trim_start_matches('/');
            assert!(Assets::get(local).is_some(), "{page} references {r}, which is not embedded");
        }
    }

    #[test]
    fn bundle_names_no_cdn_or_font_host() {
        let files: Vec<String> = Assets::iter().map(|p| p.into_owned()).collect();
        assert!(files.iter().any(|p| p.ends_with(".js")), "no JS bundle embedded: {files:?}");
        for path in &files {
            let Ok(body) = String::from_utf8(Assets::get(path).expect("listed").data.into_owned()) else { continue };
            let lower = body.to_ascii_lowercase();
            for host in [
                "fonts.googleapis",
                "fonts.gstatic",
                "unpkg.com",
                "jsdelivr",
                "cdnjs",
                "//cdn.",
                "esm.sh",
                "skypack",
                "google-analytics",
                "googletagmanager",
                "sentry.io",
                "segment.io",
            ] {
                assert!(!lower.contains(host), "{path} mentions {host}: the playground must load nothing off-host");
            }
            if path.ends_with(".css") {
                // Every url(...) in the stylesheet is inline data or a local file.
                for (at, _) in lower.match_indices("url(") {
                    let arg = lower[at + 4..].trim_start_matches(['"', '\'', ' ']);
                    assert!(
                        arg.starts_with("data:") || !arg.split(')').next().unwrap_or("").contains(':'),
                        "{path} has an off-host url(): {}",
                        &arg[..arg.len().min(80)]
                    );
                }
            }
        }
    }

    async fn get(path: &str) -> Response {
        let req = Request::builder().uri_str(path).finish();
        endpoint().call(req).await.expect("the playground answers every request")
    }

    fn header_of(resp: &Response, name: header::HeaderName) -> &str {
        resp.headers().get(&name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    #[tokio::test]
    async fn serves_index_assets_and_404() {
        let index = get("/").await;
        assert_eq!(index.status(), StatusCode::OK);
        for settings in ["/settings", "/settings.html"] {
            let page = get(settings).await;
            assert_eq!(page.status(), StatusCode::OK, "{settings}");
            assert_eq!(header_of(&page, header::CONTENT_SECURITY_POLICY), CONTENT_SECURITY_POLICY, "{settings}");
        }
        assert_eq!(header_of(&index, header::CONTENT_TYPE), "text/html; charset=utf-8");
        assert_eq!(header_of(&index, header::CONTENT_SECURITY_POLICY), CONTENT_SECURITY_POLICY);
        assert_eq!(header_of(&index, header::CACHE_CONTROL), "no-cache");
        let etag = header_of(&index, header::ETAG).to_owned();

        let html = text(INDEX);
        let script =
            attribute_values(&html, "src").into_iter().find(|s| s.ends_with(".js")).expect("script").to_owned();
        let js = get(script.trim_start_matches('.')).await;
        assert_eq!(js.status(), StatusCode::OK);
        assert!(header_of(&js, header::CONTENT_TYPE).contains("javascript"), "{:?}", js.headers());
        assert_eq!(header_of(&js, header::CACHE_CONTROL), IMMUTABLE);
        assert!(js.headers().get(header::CONTENT_SECURITY_POLICY).is_none());
        let css = attribute_values(&html, "href").into_iter().find(|s| s.ends_with(".css")).expect("css").to_owned();
        assert!(header_of(&get(css.trim_start_matches('.')).await, header::CONTENT_TYPE).starts_with("text/css"));

        for missing in
            ["/settings/", "/nope", "/assets/nope.js", "/../Cargo.toml", "/assets/../index.html", "//index.html"]
        {
            assert_eq!(get(missing).await.status(), StatusCode::NOT_FOUND, "{missing}");
        }

        let req = Request::builder().uri_str("/").header(header::IF_NONE_MATCH, etag).finish();
        assert_eq!(endpoint().call(req).await.unwrap().status(), StatusCode::NOT_MODIFIED);
        let req = Request::builder().method(Method::POST).uri_str("/").finish();
        assert_eq!(endpoint().call(req).await.unwrap().status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn websockets_may_reach_the_pages_own_host_only() {
        let req = Request::builder().uri_str("/").header(header::HOST, "vault.example:8443").finish();
        let page = endpoint().call(req).await.unwrap();
        let csp = header_of(&page, header::CONTENT_SECURITY_POLICY);
        assert!(csp.contains("connect-src 'self' ws://vault.example:8443 wss://vault.example:8443;"), "{csp}");
        assert!(!csp.contains(" ws: ") && !csp.contains(" wss:;"), "no scheme-wide WebSocket source: {csp}");
        // A Host that is not a plain host name adds nothing.
        let req = Request::builder().uri_str("/").header(header::HOST, "evil.example; script-src *").finish();
        let page = endpoint().call(req).await.unwrap();
        assert_eq!(header_of(&page, header::CONTENT_SECURITY_POLICY), CONTENT_SECURITY_POLICY);
    }
}
