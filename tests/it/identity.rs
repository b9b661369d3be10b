//! People and tokens (issue 14): the platform's JWTs against a real JWKS
//! server this test starts (keys generated here), and the token and person
//! lifecycle through GraphQL and the CLI.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{get, handler, EndpointExt, IntoResponse, Response, Route, Server as PoemServer};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{cli_in, Provider, Server, ANTHROPIC_KEY};
use crate::ws::{connect, recv, send, Socket};

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "sesame-vault";

// ---- the IdP: keys and a JWKS server --------------------------------------

struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    /// The public key's bytes (for the HS256-with-the-public-key attack).
    public: Vec<u8>,
}

fn ed25519(kid: &str) -> TestKey {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let der = signing.to_pkcs8_der().unwrap();
    let public = signing.verifying_key().to_bytes().to_vec();
    TestKey {
        kid: kid.into(),
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        jwk: json!({ "kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "alg": "EdDSA", "x": URL_SAFE_NO_PAD.encode(&public) }),
        public,
    }
}

fn p256(kid: &str) -> TestKey {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::EncodePrivateKey;
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let der = secret.to_pkcs8_der().unwrap();
    let point = secret.public_key().to_encoded_point(false);
    TestKey {
        kid: kid.into(),
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(der.as_bytes()),
        jwk: json!({ "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                     "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()), "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()) }),
        public: point.as_bytes().to_vec(),
    }
}

fn rsa(kid: &str) -> TestKey {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let der = private.to_pkcs1_der().unwrap();
    let n = private.n().to_bytes_be();
    TestKey {
        kid: kid.into(),
        alg: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        jwk: json!({ "kty": "RSA", "kid": kid, "alg": "RS256", "n": URL_SAFE_NO_PAD.encode(&n),
                     "e": URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()) }),
        public: n,
    }
}

#[derive(Clone)]
struct Idp {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    /// Each answer waits this long (a slow IdP).
    delay_ms: Arc<AtomicU64>,
}

#[handler]
async fn jwks(Data(idp): Data<&Idp>) -> Response {
    idp.fetches.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(idp.delay_ms.load(Ordering::SeqCst))).await;
    if idp.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys = idp.keys.lock().unwrap().clone();
    Response::builder().content_type("application/json").body(json!({ "keys": keys }).to_string())
}

#[handler]
async fn discovery(Data(idp): Data<&Idp>) -> Response {
    tokio::time::sleep(Duration::from_millis(idp.delay_ms.load(Ordering::SeqCst))).await;
    let doc = json!({ "issuer": ISSUER, "jwks_uri": format!("{}/jwks.json", idp.url) });
    Response::builder().content_type("application/json").body(doc.to_string())
}

impl Idp {
    async fn start(keys: &[&TestKey]) -> Idp {
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
        let idp = Idp {
            url: format!("http://{addr}"),
            keys: Arc::new(Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect())),
            fetches: Arc::default(),
            down: Arc::default(),
            delay_ms: Arc::default(),
        };
        let app = Route::new()
            .at("/jwks.json", get(jwks))
            .at("/.well-known/openid-configuration", get(discovery))
            .data(idp.clone());
        tokio::spawn(PoemServer::new_with_acceptor(acceptor).run(app));
        idp
    }

    fn publish(&self, key: &TestKey) {
        self.keys.lock().unwrap().push(key.jwk.clone());
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a valid token for `sub`, with `extra` merged in.
fn claims(sub: &str, extra: Value) -> Value {
    let mut c = json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "email": format!("{sub}@example.com"),
                        "email_verified": true, "iat": now(), "exp": now() + 600 });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

/// A token with a hand-made header and signature (for the attacks).
fn raw_token(header: Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fn hs256_with(secret: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

async fn vault(idp: &Idp, extra: &[(&str, &str)]) -> Server {
    let jwks_url = format!("{}/jwks.json", idp.url);
    let mut env = vec![
        ("SESAME_AUTH__JWT__JWKS_URL", jwks_url.as_str()),
        ("SESAME_AUTH__JWT__ISSUER", ISSUER),
        ("SESAME_AUTH__JWT__AUDIENCE", AUDIENCE),
        ("SESAME_AUTH__JWT__ADMIN_ROLE", "vault-admin"),
        ("SESAME_AUTH__JWT__RUNNER_ROLE", "vault-runner"),
        ("SESAME_AUTH__JWT__LEEWAY", "0s"),
        ("SESAME_AUTH__JWT__REFETCH_INTERVAL", "2s"),
    ];
    env.extend_from_slice(extra);
    Server::start_with(&env).await
}

const ME: &str = "{ me { id email role } }";

// ---- JWT sign-in ----------------------------------------------------------

#[tokio::test]
async fn identity_jwt_signs_in_creates_the_person_once_and_takes_the_role_each_request() {
    let (ed, ec, rs) = (ed25519("ed-1"), p256("ec-1"), rsa("rs-1"));
    let idp = Idp::start(&[&ed, &ec, &rs]).await;
    let server = vault(&idp, &[]).await;

    let first = server.ok(&sign(&ed, &claims("alice", json!({}))), ME, json!({})).await;
    assert_eq!(first["me"]["email"], "alice@example.com");
    assert_eq!(first["me"]["role"], "USER");
    // ES256 and RS256 keys of the same IdP: the same person, once.
    for key in [&ec, &rs] {
        let again = server.ok(&sign(key, &claims("alice", json!({}))), ME, json!({})).await;
        assert_eq!(again["me"]["id"], first["me"]["id"]);
    }
    // The email follows the token; the person is keyed by (issuer, subject).
    let moved = server.ok(&sign(&ed, &claims("alice", json!({ "email": "alice@new.example" }))), ME, json!({})).await;
    assert_eq!(moved["me"]["id"], first["me"]["id"]);
    assert_eq!(moved["me"]["email"], "alice@new.example");
    let people = server.ok(&server.admin_token, "{ people { email issuer } }", json!({})).await;
    let alices: Vec<_> = people["people"].as_array().unwrap().iter().filter(|p| p["issuer"] == ISSUER).collect();
    assert_eq!(alices.len(), 1, "{people}");

    // The role comes from the token on every request.
    let admin_jwt = sign(&ed, &claims("alice", json!({ "roles": ["vault-admin"] })));
    server.ok(&admin_jwt, "{ users { nodes { id } } }", json!({})).await;
    let (code, _) = server.err(&sign(&ed, &claims("alice", json!({}))), "{ users { nodes { id } } }", json!({})).await;
    assert_eq!(code, "FORBIDDEN");

    // A runner JWT is the task runner; `sv_` tokens keep working beside JWTs.
    let runner_jwt = sign(&ed, &claims("ci", json!({ "roles": "vault-runner" })));
    let (code, message) = server
        .err(
            &runner_jwt,
            "mutation { issueTaskCredentials(userId: \"alice@example.com\", agent: GEMINI, taskId: \"t-1\") { source } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "NO_CREDENTIALS", "{message}");
    server.ok(&server.admin_token, ME, json!({})).await;
}

#[tokio::test]
async fn identity_jwt_refusals_say_which_check_failed_and_never_echo_the_token() {
    let key = ed25519("good-kid");
    let idp = Idp::start(&[&key]).await;
    let server = vault(&idp, &[]).await;
    let stranger = ed25519("good-kid"); // same kid, another key

    let valid = sign(&key, &claims("bob", json!({})));
    let mut parts: Vec<&str> = valid.split('.').collect();
    let forged_payload = URL_SAFE_NO_PAD.encode(claims("mallory", json!({ "roles": ["vault-admin"] })).to_string());
    parts[1] = &forged_payload;
    let tampered = parts.join(".");

    let cases = [
        ("expired", sign(&key, &claims("bob", json!({ "exp": now() - 120 }))), "expired"),
        ("not yet valid", sign(&key, &claims("bob", json!({ "nbf": now() + 600 }))), "not valid yet"),
        ("wrong issuer", sign(&key, &claims("bob", json!({ "iss": "https://evil.test" }))), "wrong issuer"),
        ("wrong audience", sign(&key, &claims("bob", json!({ "aud": "another-app" }))), "wrong audience"),
        ("unknown kid", sign(&ed25519("nobody-knows"), &claims("bob", json!({}))), "unknown key"),
        (
            "alg none",
            raw_token(json!({ "alg": "none", "kid": "good-kid" }), &claims("bob", json!({})), b""),
            "alg none",
        ),
        ("HS256 with the public key", hs256_with(&key.public, "good-kid", &claims("bob", json!({}))), "HMAC"),
        ("tampered payload", tampered, "signature does not verify"),
        ("another key, same kid", sign(&stranger, &claims("bob", json!({}))), "signature does not verify"),
    ];
    let mut messages = Vec::new();
    for (what, token, expect) in &cases {
        let (status, body) = server.post_json(token, &json!({ "query": ME })).await;
        let error = &body["errors"][0];
        let message = error["message"].as_str().unwrap_or_default().to_owned();
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(error["extensions"]["code"], "UNAUTHENTICATED", "{what}: {body}");
        assert!(message.contains(expect), "{what}: {message}");
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(!message.contains(part), "{what}: the message quotes the token");
        }
        assert!(!message.contains("nobody-knows"), "{what}: the message quotes the kid");
        messages.push(message);
    }
    let mut distinct = messages.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), messages.len() - 1, "each check has its own message: {messages:?}");
    assert!(!server.log().contains(&valid[valid.len() - 20..]), "a token reached the log");
    // None of them created anyone.
    let people = server.ok(&server.admin_token, "{ people { email } }", json!({})).await;
    assert_eq!(people["people"].as_array().unwrap().len(), 1, "{people}");
}

#[tokio::test]
async fn identity_jwks_rotation_outage_and_a_flood_of_unknown_kids() {
    let old = ed25519("k-old");
    let idp = Idp::start(&[&old]).await;
    let server = vault(&idp, &[]).await;
    server.ok(&sign(&old, &claims("carol", json!({}))), ME, json!({})).await;

    // Rotation at the IdP: a token with the new kid is accepted.
    let new = p256("k-new");
    idp.publish(&new);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    server.ok(&sign(&new, &claims("carol", json!({}))), ME, json!({})).await;

    // 1,000 requests with random kids cost a handful of fetches.
    let before = idp.fetches();
    let started = std::time::Instant::now();
    let requests = futures_util::stream::iter(0..1000)
        .map(|i| {
            let forged = sign(&ed25519(&format!("forged-{i}-{}", uuid::Uuid::new_v4())), &claims("eve", json!({})));
            let server = &server;
            async move { server.post_json(&forged, &json!({ "query": ME })).await.0 }
        })
        .buffer_unordered(32)
        .collect::<Vec<u16>>()
        .await;
    assert!(requests.iter().all(|s| *s == 401));
    let fetched = idp.fetches() - before;
    let allowed = (started.elapsed().as_secs() / 2) as usize + 2;
    eprintln!("1000 forged kids in {:?}: {fetched} fetches", started.elapsed());
    assert!(fetched <= allowed, "{fetched} fetches for 1000 forged kids (allowed {allowed})");

    // The IdP goes down: known keys keep working.
    idp.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, message) = server.err(&sign(&ed25519("k-later"), &claims("carol", json!({}))), ME, json!({})).await;
    assert!(message.contains("unknown key"), "{message}");
    server.ok(&sign(&old, &claims("carol", json!({}))), ME, json!({})).await;
    server.ok(&sign(&new, &claims("carol", json!({}))), ME, json!({})).await;
}

/// Issue 25: a verified token is remembered (its signature checked once),
/// but never past what a per-request check would refuse: its person
/// disabled, its key gone from the IdP's set.
#[tokio::test]
async fn identity_a_remembered_jwt_stops_counting_when_its_person_is_disabled_or_its_key_is_dropped() {
    let (kept, dropped) = (ed25519("k-kept"), rsa("k-dropped"));
    let idp = Idp::start(&[&kept, &dropped]).await;
    let server = vault(&idp, &[("SESAME_AUTH__JWT__CACHE_TTL", "1s")]).await;
    let token = sign(&dropped, &claims("dana", json!({})));
    let me = server.ok(&token, ME, json!({})).await;
    server.ok(&token, ME, json!({})).await;

    let id = me["me"]["id"].clone();
    let disable = "mutation($id: ID!) { disableUser(id: $id) { id } }";
    server.ok(&server.admin_token, disable, json!({ "id": id })).await;
    let (code, _) = server.err(&token, ME, json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED", "a disabled person's remembered token is refused");
    server.ok(&server.admin_token, "mutation($id: ID!) { enableUser(id: $id) { id } }", json!({ "id": id })).await;
    server.ok(&token, ME, json!({})).await;

    // The IdP drops the key: once the set is refetched (it is older than
    // cache_ttl, and the refetch interval has passed) the token is refused.
    idp.keys.lock().unwrap().retain(|k| k["kid"] != "k-dropped");
    let fetches = idp.fetches();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut refused = None;
    for _ in 0..50 {
        let (status, body) = server.post_json(&token, &json!({ "query": ME })).await;
        if status == 401 {
            refused = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = refused.expect("the token of a dropped key is refused once the set is refetched");
    assert!(body.to_string().contains("unknown key"), "{body}");
    assert!(idp.fetches() > fetches);
    server.ok(&sign(&kept, &claims("dana", json!({}))), ME, json!({})).await;
}

async fn close_frame(socket: &mut Socket) -> Option<(u16, String)> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.next()).await.ok()? {
            Some(Ok(Message::Close(Some(frame)))) => return Some((frame.code.into(), frame.reason.to_string())),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

async fn init(socket: &mut Socket, token: &str) {
    send(socket, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })).await;
}

#[tokio::test]
async fn identity_jwt_websocket_closes_4403_when_the_token_expires() {
    let key = ed25519("ws");
    let idp = Idp::start(&[&key]).await;
    let server = vault(&idp, &[]).await;

    let mut socket = connect(&server.url, "graphql-transport-ws").await;
    init(&mut socket, &sign(&key, &claims("dave", json!({ "exp": now() + 3 })))).await;
    assert_eq!(recv(&mut socket).await.unwrap()["type"], "connection_ack");
    let started = std::time::Instant::now();
    let (code, reason) = close_frame(&mut socket).await.expect("a close frame");
    assert_eq!(code, 4403, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // A refused JWT over connection_init: 4403 with the failed check.
    let mut socket = connect(&server.url, "graphql-transport-ws").await;
    init(&mut socket, &sign(&key, &claims("dave", json!({ "aud": "other" })))).await;
    let (code, reason) = close_frame(&mut socket).await.expect("a close frame");
    assert_eq!(code, 4403);
    assert!(reason.contains("audience"), "{reason}");
}

#[tokio::test]
async fn identity_audience_is_required_and_discovery_works() {
    let key = ed25519("disc");
    let idp = Idp::start(&[&key]).await;
    let dir = tempfile::tempdir().unwrap();
    let jwks_url = format!("{}/jwks.json", idp.url);
    let env = [("SESAME_AUTH__JWT__JWKS_URL", jwks_url.as_str()), ("SESAME_AUTH__JWT__ISSUER", ISSUER)];
    let out = cli_in(dir.path(), &env, &["migrate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("audience") && stderr.contains("SESAME_AUTH__JWT__AUDIENCE"), "{stderr}");

    let discovery_url = format!("{}/.well-known/openid-configuration", idp.url);
    let server = Server::start_with(&[
        ("SESAME_AUTH__JWT__OIDC_DISCOVERY_URL", discovery_url.as_str()),
        ("SESAME_AUTH__JWT__AUDIENCE", AUDIENCE),
    ])
    .await;
    let me = server.ok(&sign(&key, &claims("erin", json!({}))), ME, json!({})).await;
    assert_eq!(me["me"]["email"], "erin@example.com");
    let (_, message) = server.err(&sign(&key, &claims("erin", json!({ "iss": "https://other" }))), ME, json!({})).await;
    assert!(message.contains("wrong issuer"), "{message}");
}

// ---- tokens and people through the API ------------------------------------

const MY_TOKENS: &str = "{ myTokens { id name kind createdAt lastUsedAt expiresAt } }";
const CREATE_TOKEN: &str =
    "mutation($n: String!, $e: DateTime) { createToken(name: $n, expiresAt: $e) { token accessToken { id name expiresAt } } }";
const REVOKE: &str = "mutation($id: ID!) { revokeToken(id: $id) }";
const ISSUE: &str =
    "mutation($u: ID!) { issueTaskCredentials(userId: $u, agent: CLAUDE_CODE, taskId: \"t-9\") { source } }";

#[tokio::test]
async fn identity_people_manage_their_tokens_and_admins_manage_people() {
    let server = Server::start_with(&[("SESAME_GRAPHQL__WS_TOKEN_RECHECK", "1s")]).await;
    let admin = server.admin_token.clone();
    let (alice_id, alice) = server.create_user("alice@example.com").await;
    let (_, bob) = server.create_user("bob@example.com").await;

    // A person's own tokens: create (shown once), list, revoke.
    let created = server.ok(&alice, CREATE_TOKEN, json!({ "n": "laptop" })).await["createToken"].clone();
    let laptop = created["token"].as_str().unwrap().to_owned();
    let laptop_id = created["accessToken"]["id"].as_str().unwrap().to_owned();
    server.ok(&laptop, ME, json!({})).await;
    let mine = server.ok(&alice, MY_TOKENS, json!({})).await;
    assert_eq!(mine["myTokens"].as_array().unwrap().len(), 2, "{mine}");
    assert!(!mine.to_string().contains(&laptop), "a listed token shows its secret");
    let (code, message) = server.err(&alice, CREATE_TOKEN, json!({ "n": "old", "e": "2020-01-01T00:00:00Z" })).await;
    assert_eq!(code, "BAD_USER_INPUT", "{message}");
    // Bob can neither see nor revoke it.
    let (code, _) = server.err(&bob, REVOKE, json!({ "id": laptop_id })).await;
    assert_eq!(code, "NOT_FOUND");
    server.ok(&laptop, ME, json!({})).await;
    server.ok(&alice, REVOKE, json!({ "id": laptop_id })).await;
    let (code, _) = server.err(&laptop, ME, json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED");

    // An admin: anyone's tokens, any person's revocation; runner tokens come from the operator's CLI.
    let theirs = server.ok(&admin, "query($u: ID) { tokens(userId: $u) { id kind } }", json!({ "u": alice_id })).await;
    assert_eq!(theirs["tokens"].as_array().unwrap().len(), 1, "{theirs}");
    let runner = server.runner_token();
    let (code, _) = server.err(&alice, "mutation { createRunnerToken(name: \"x\") { token } }", json!({})).await;
    assert_eq!(code, "FORBIDDEN");

    // Disable: tokens refused, live socket closed, tasks get nothing; nothing deleted.
    server.api().set_api_key(&alice, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
    let mut socket = crate::ws::open(&server.url, &alice).await;
    let disabled = server
        .ok(&admin, "mutation($id: ID!) { disableUser(id: $id) { disabledAt } }", json!({ "id": alice_id }))
        .await;
    assert!(!disabled["disableUser"]["disabledAt"].is_null());
    let (code, message) = server.err(&alice, ME, json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED");
    assert!(message.contains("disabled"), "{message}");
    let (code, message) = server.err(&runner, ISSUE, json!({ "u": alice_id })).await;
    assert_eq!(code, "NO_CREDENTIALS", "{message}");
    assert!(message.contains("disabled"), "{message}");
    let (code, reason) = close_frame(&mut socket).await.expect("the disabled person's socket closes");
    assert_eq!(code, 4403, "{reason}");
    server.ok(&admin, "mutation($id: ID!) { enableUser(id: $id) { id } }", json!({ "id": alice_id })).await;
    server.ok(&alice, ME, json!({})).await;
    assert_eq!(
        server.ok(&runner, ISSUE, json!({ "u": alice_id })).await["issueTaskCredentials"]["source"],
        "USER_API_KEY"
    );

    // Delete: credentials gone, tokens refused, the audit trail keeps id and email.
    let deleted = server.ok(&admin, "mutation($id: ID!) { deleteUser(id: $id) }", json!({ "id": alice_id })).await;
    assert_eq!(deleted["deleteUser"], true, "{deleted}");
    let (code, _) = server.err(&alice, ME, json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED");
    let left = server
        .ok(&admin, "query($u: ID) { credentials(ownerId: $u) { nodes { id } } }", json!({ "u": alice_id }))
        .await;
    assert!(left["credentials"]["nodes"].as_array().unwrap().is_empty());
    let audit = server
        .ok(
            &admin,
            "{ auditLog(first: 100, newestFirst: true) { nodes { id action ownerId ownerEmail actorEmail } } }",
            json!({}),
        )
        .await;
    let nodes = audit["auditLog"]["nodes"].as_array().unwrap();
    assert_eq!(nodes[0]["action"], "USER_DELETED", "newest first: {audit}");
    assert_eq!(nodes[0]["ownerEmail"], "alice@example.com");
    assert_eq!(nodes[0]["actorEmail"], "admin@localhost");
    let ids: Vec<i64> = nodes.iter().map(|n| n["id"].as_str().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    for action in [
        "TOKEN_CREATED",
        "TOKEN_REVOKED",
        "RUNNER_TOKEN_CREATED",
        "USER_DISABLED",
        "USER_ENABLED",
        "CREDENTIAL_CREATED",
    ] {
        let entry = nodes.iter().find(|n| n["action"] == action).unwrap_or_else(|| panic!("no {action}: {audit}"));
        if action != "RUNNER_TOKEN_CREATED" {
            assert_eq!(entry["ownerId"], alice_id.as_str(), "{action}");
            assert_eq!(entry["ownerEmail"], "alice@example.com", "{action}");
        }
    }

    // The last enabled admin is protected.
    let me = server.ok(&admin, ME, json!({})).await;
    let admin_id = me["me"]["id"].as_str().unwrap();
    for mutation in ["mutation($id: ID!) { disableUser(id: $id) { id } }", "mutation($id: ID!) { deleteUser(id: $id) }"]
    {
        let (code, message) = server.err(&admin, mutation, json!({ "id": admin_id })).await;
        assert_eq!(code, "BAD_USER_INPUT");
        assert!(message.contains("last enabled admin"), "{message}");
    }
    server.ok(&admin, ME, json!({})).await;
    drop(socket);
}

#[tokio::test]
async fn identity_cli_manages_people_and_tokens_by_email_or_id() {
    let server = Server::start().await;
    let (bob_id, bob) = server.create_user("bob@example.com").await;
    let run = |args: &[&str]| {
        let out = server.cli(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // A lost token: a new one by email.
    let created: Value =
        serde_json::from_str(&run(&["token", "create", "--user", "Bob@Example.com", "--name", "again", "--json"]))
            .unwrap();
    let again = created["token"].as_str().unwrap();
    assert_eq!(server.ok(again, ME, json!({})).await["me"]["id"], bob_id.as_str());
    let listed: Value = serde_json::from_str(&run(&["token", "list", "--user", &bob_id, "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let token_id = created["id"].as_str().unwrap();
    assert!(run(&["token", "list"]).contains(token_id));
    run(&["token", "revoke", token_id]);
    let (code, _) = server.err(again, ME, json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED");

    assert!(run(&["user", "list"]).contains("bob@example.com"));
    run(&["user", "disable", "bob@example.com"]);
    let (_, message) = server.err(&bob, ME, json!({})).await;
    assert!(message.contains("disabled"), "{message}");
    assert!(run(&["user", "list"]).contains("disabled"));
    run(&["user", "enable", &bob_id]);
    server.ok(&bob, ME, json!({})).await;
    run(&["user", "delete", "bob@example.com"]);
    let (code, _) = server.err(&bob, ME, json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED");
    let out = server.cli(&["user", "delete", "admin@localhost"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("last enabled admin"));

    // `--agent claude-code` reaches the server as CLAUDE_CODE (no credentials: NO_CREDENTIALS, not a bad enum).
    let runner = server.runner_token();
    let home = tempfile::tempdir().unwrap();
    let out = server.cli(&[
        "task-env",
        "--server",
        &server.url,
        "--token",
        &runner,
        "--user",
        "admin@localhost",
        "--agent",
        "claude-code",
        "--task",
        "t-1",
        "--home",
        home.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no usable credentials for Claude Code"), "{stderr}");

    // From another folder: refuse, say where it looked and how to point at the data.
    let elsewhere = tempfile::tempdir().unwrap();
    let fresh = elsewhere.path().join("data");
    let out = cli_in(&fresh, &[], &["user", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("SESAME_DATA_DIR") && stderr.contains("--config") && stderr.contains("sesame.db"),
        "{stderr}"
    );
    assert!(!fresh.exists(), "the refused command created a data directory");
}

// ---- first run ------------------------------------------------------------

#[tokio::test]
async fn identity_first_run_keeps_the_admin_token_for_a_bound_port_and_says_what_next() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    // The port is taken: serve fails before anyone is created.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(crate::common::BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SESAME_DATA_DIR", dir.path())
        .env("SESAME_LISTEN", &port)
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Admin token"), "the token went to a server that never ran");
    drop(taken);

    // The next start, on a free port, still creates the admin and shows the token, then what to do.
    let mut child = Command::new(crate::common::BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SESAME_DATA_DIR", dir.path())
        .env("SESAME_LISTEN", "127.0.0.1:0")
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.contains("Lost a token?");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    let lines = tokio::time::timeout(Duration::from_secs(60), lines).await.expect("first-run output").unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let text = lines.join("\n");
    let token_at = text.find("Admin token (shown once").expect("the admin token");
    let listening_at = text.find("listening on http://").expect("the URL");
    let next_at = text.find("What to do next").expect("what to do next");
    assert!(token_at < listening_at && listening_at < next_at, "{text}");
}

// ---- trust at the edges (issue 21) ----------------------------------------

const ISSUE_AS: &str =
    "mutation($u: ID!, $t: String!) { issueTaskCredentials(userId: $u, agent: CLAUDE_CODE, taskId: $t) { source } }";
const MINT_RUNNER: &str = "mutation($n: String!) { createRunnerToken(name: $n) { token accessToken { id kind } } }";

/// The `TASK_CREDENTIALS_ISSUED` entries' details, newest first.
async fn issuance_details(server: &Server) -> Vec<String> {
    let audit = server
        .ok(&server.admin_token, "{ auditLog(first: 100, newestFirst: true) { nodes { action detail } } }", json!({}))
        .await;
    audit["auditLog"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["action"] == "TASK_CREDENTIALS_ISSUED")
        .map(|n| n["detail"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn identity_an_admin_cannot_mint_list_or_revoke_runner_tokens_and_issuance_names_its_runner() {
    let key = ed25519("rn");
    let idp = Idp::start(&[&key]).await;
    let server = vault(&idp, &[]).await;
    let admin = server.admin_token.clone();
    let (alice_id, alice) = server.create_user("alice@example.com").await;
    server.api().set_api_key(&alice, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();

    // An admin, by `sv_` token or by the IdP's admin role, cannot become the runner.
    let admin_jwt = sign(&key, &claims("boss", json!({ "roles": ["vault-admin"] })));
    for who in [&admin, &admin_jwt] {
        let (code, message) = server.err(who, MINT_RUNNER, json!({ "n": "mine" })).await;
        assert_eq!(code, "FORBIDDEN", "{message}");
        assert!(message.contains("sesame-vault token create --runner"), "{message}");
        let (code, _) = server.err(who, ISSUE_AS, json!({ "u": alice_id, "t": "t-admin" })).await;
        assert_eq!(code, "FORBIDDEN");
    }

    // The operator's runner token: admins neither see it listed nor revoke it.
    let out = server.cli(&["token", "create", "--runner", "--name", "ci-runner", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ci = created["token"].as_str().unwrap().to_owned();
    let ci_id = created["id"].as_str().unwrap().to_owned();
    for query in ["{ tokens { id kind name } }", "{ myTokens { id kind name } }"] {
        let listed = server.ok(&admin, query, json!({})).await;
        assert!(!listed.to_string().contains(&ci_id) && !listed.to_string().contains("RUNNER"), "{listed}");
    }
    let (code, message) = server.err(&admin, REVOKE, json!({ "id": ci_id })).await;
    assert_eq!(code, "FORBIDDEN", "{message}");
    assert!(message.contains("token revoke"), "{message}");
    assert_eq!(
        server.ok(&ci, ISSUE_AS, json!({ "u": alice_id, "t": "t-1" })).await["issueTaskCredentials"]["source"],
        "USER_API_KEY"
    );

    // A runner rotates: mints the next token, which revokes the old one; a runner JWT may mint one too.
    let next = server.ok(&ci, MINT_RUNNER, json!({ "n": "ci-2" })).await["createRunnerToken"].clone();
    assert_eq!(next["accessToken"]["kind"], "RUNNER");
    let ci2 = next["token"].as_str().unwrap().to_owned();
    server.ok(&ci2, ISSUE_AS, json!({ "u": alice_id, "t": "t-2" })).await;
    server.ok(&ci2, REVOKE, json!({ "id": ci_id })).await;
    let (code, _) = server.err(&ci, ISSUE_AS, json!({ "u": alice_id, "t": "t-3" })).await;
    assert_eq!(code, "UNAUTHENTICATED");
    let runner_jwt = sign(&key, &claims("ci-bot", json!({ "roles": "vault-runner" })));
    let third = server.ok(&runner_jwt, MINT_RUNNER, json!({ "n": "ci-3" })).await;
    let ci3 = third["createRunnerToken"]["token"].as_str().unwrap().to_owned();
    server.ok(&ci3, ISSUE_AS, json!({ "u": alice_id, "t": "t-4" })).await;
    server.ok(&runner_jwt, ISSUE_AS, json!({ "u": alice_id, "t": "t-5" })).await;
    // A runner does not revoke a person's token.
    let alices = server.ok(&admin, "query($u: ID) { tokens(userId: $u) { id } }", json!({ "u": alice_id })).await;
    let alice_token = alices["tokens"][0]["id"].as_str().unwrap().to_owned();
    let (code, _) = server.err(&ci2, REVOKE, json!({ "id": alice_token })).await;
    assert_eq!(code, "FORBIDDEN");

    // Every issuance names its runner token and who created it.
    let issued = issuance_details(&server).await;
    assert_eq!(issued.len(), 4, "{issued:?}");
    assert!(issued[0].contains("runner token \"jwt:ci-bot\" (created by the IdP's runner role)"), "{issued:?}");
    assert!(issued[1].contains("runner token \"ci-3\" (created by runner \"jwt:ci-bot\""), "{issued:?}");
    assert!(issued[2].contains(&format!("runner token \"ci-2\" (created by runner \"ci-runner\" ({ci_id}))")));
    assert!(
        issued[3].contains("runner token \"ci-runner\" (created by the operator (CLI on the vault's host))"),
        "{issued:?}"
    );
}

/// Writes an `sv_` token row for `user_id` straight into the server's
/// SQLite database, as a previous version let a JWT person mint one.
async fn token_from_before(server: &Server, user_id: &str) -> String {
    use sha2::{Digest, Sha256};
    use sqlx::Connection;
    let token = format!("sv_{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()));
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    let url = format!("sqlite://{}", server.data_dir().join("sesame.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO access_tokens (id, kind, user_id, name, token_hash, created_at) \
         SELECT ?, 'USER', ?, 'from before', ?, created_at FROM access_tokens LIMIT 1",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(user_id)
    .bind(hash)
    .execute(&mut conn)
    .await
    .unwrap();
    token
}

#[tokio::test]
async fn identity_jwt_people_get_no_sv_tokens_so_a_demoted_admin_is_demoted_everywhere() {
    let key = ed25519("sv");
    let idp = Idp::start(&[&key]).await;
    let server = vault(&idp, &[]).await;
    let boss_jwt = sign(&key, &claims("boss", json!({ "roles": ["vault-admin"] })));
    let boss_id = server.ok(&boss_jwt, ME, json!({})).await["me"]["id"].as_str().unwrap().to_owned();

    // A JWT admin cannot mint a token that would outlive the IdP's say.
    let (code, message) = server.err(&boss_jwt, CREATE_TOKEN, json!({ "n": "laptop" })).await;
    assert_eq!(code, "FORBIDDEN", "{message}");
    assert!(message.contains("identity provider"), "{message}");
    let out = server.cli(&["token", "create", "--user", "boss@example.com", "--name", "lost"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("identity provider"));

    // A token of theirs from a previous version is refused, over HTTP and at a WebSocket's init.
    let old = token_from_before(&server, &boss_id).await;
    let (code, message) = server.err(&old, "{ users { nodes { id } } }", json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED", "{message}");
    assert!(message.contains("identity provider"), "{message}");
    let mut socket = connect(&server.url, "graphql-transport-ws").await;
    init(&mut socket, &old).await;
    let (code, _) = close_frame(&mut socket).await.expect("a close frame");
    assert_eq!(code, 4403);

    // Demoted at the IdP: the next JWT is a USER's, and nothing else speaks for them.
    let demoted = sign(&key, &claims("boss", json!({})));
    let (code, _) = server.err(&demoted, "{ users { nodes { id } } }", json!({})).await;
    assert_eq!(code, "FORBIDDEN");
    // A person with only `sv_` tokens keeps them.
    let (_, carol) = server.create_user("carol@example.com").await;
    server.ok(&carol, CREATE_TOKEN, json!({ "n": "laptop" })).await;
}

#[tokio::test]
async fn identity_a_deleted_jwt_person_stays_out_until_readmitted() {
    let key = ed25519("del");
    let idp = Idp::start(&[&key]).await;
    let server = vault(&idp, &[]).await;
    let admin = server.admin_token.clone();
    let bob = sign(&key, &claims("bob", json!({})));
    let first = server.ok(&bob, ME, json!({})).await["me"]["id"].as_str().unwrap().to_owned();
    server.ok(&admin, "mutation($id: ID!) { deleteUser(id: $id) }", json!({ "id": first })).await;

    let (code, message) = server.err(&bob, ME, json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED", "{message}");
    assert!(message.contains("deleted") && message.contains("user readmit"), "{message}");
    let people = server.ok(&admin, "{ people { email } }", json!({})).await;
    assert!(!people.to_string().contains("bob@example.com"), "{people}");

    let out = server.cli(&["user", "readmit", "someone@example.com"]);
    assert!(!out.status.success());
    let out = server.cli(&["user", "readmit", "bob@example.com"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = server.ok(&bob, ME, json!({})).await["me"]["id"].as_str().unwrap().to_owned();
    assert_ne!(again, first, "a new person, not the deleted one");
}

#[tokio::test]
async fn identity_an_email_counts_only_when_verified_and_never_as_a_look_alike() {
    let key = ed25519("mail");
    let idp = Idp::start(&[&key]).await;
    let server = vault(&idp, &[]).await;
    let admin = server.admin_token.clone();

    // No email_verified, or false: the first sign-in is refused.
    let mut unsent = claims("carol", json!({}));
    unsent.as_object_mut().unwrap().remove("email_verified");
    for claims in [unsent.clone(), claims("carol", json!({ "email_verified": false }))] {
        let (code, message) = server.err(&sign(&key, &claims), ME, json!({})).await;
        assert_eq!(code, "UNAUTHENTICATED", "{message}");
        assert!(message.contains("not verified") && message.contains("REQUIRE_EMAIL_VERIFIED"), "{message}");
    }
    // Verified ("true" as a string too, as some IdPs send it): in.
    let me = server.ok(&sign(&key, &claims("carol", json!({ "email_verified": "true" }))), ME, json!({})).await;
    assert_eq!(me["me"]["email"], "carol@example.com");
    // An unverified new email does not replace the verified one.
    let moved = claims("carol", json!({ "email": "admin@example.com", "email_verified": false }));
    assert_eq!(server.ok(&sign(&key, &moved), ME, json!({})).await["me"]["email"], "carol@example.com");

    // Mixed scripts and look-alikes: refused in a JWT and in createUser.
    let cyrillic_a = "\u{430}dmin@example.com";
    let (code, message) =
        server.err(&sign(&key, &claims("mallory", json!({ "email": cyrillic_a }))), ME, json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED", "{message}");
    assert!(message.contains("mixes scripts"), "{message}");
    for (email, why) in [(cyrillic_a, "mixes scripts"), ("\u{445}\u{435}@example.com", "look like Latin")] {
        let (code, message) = server
            .err(&admin, "mutation($e: String!) { createUser(email: $e) { token } }", json!({ "e": email }))
            .await;
        assert_eq!(code, "BAD_USER_INPUT", "{message}");
        assert!(message.contains(why), "{email}: {message}");
    }
    server.ok(&admin, "mutation { createUser(email: \"иван@пример.рф\") { token } }", json!({})).await;

    // For an IdP that never sends email_verified, the operator turns the check off.
    let lenient = vault(&idp, &[("SESAME_AUTH__JWT__REQUIRE_EMAIL_VERIFIED", "false")]).await;
    assert_eq!(lenient.ok(&sign(&key, &unsent), ME, json!({})).await["me"]["email"], "carol@example.com");
}

/// A key set server that answers with an endless JSON-ish body sent chunked
/// (no length), 64 KiB a chunk, up to 64 MiB; records how many bytes each
/// connection got out before the other side stopped reading.
async fn streaming_key_set() -> (String, Arc<Mutex<Vec<usize>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let sent = Arc::new(Mutex::new(Vec::new()));
    let record = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let (mut request, mut buf) = (Vec::new(), [0u8; 4096]);
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let index = {
                    let mut r = record.lock().unwrap();
                    r.push(0);
                    r.len() - 1
                };
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut chunk = format!("{:x}\r\n", 65536).into_bytes();
                chunk.extend(std::iter::repeat_n(b' ', 65536));
                chunk.extend_from_slice(b"\r\n");
                let mut total = 0;
                while total < 64 << 20 {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                    total += 65536;
                    record.lock().unwrap()[index] = total;
                }
                let _ = socket.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    (url, sent)
}

#[tokio::test]
async fn identity_a_chunked_oversized_key_set_is_refused_without_being_read_whole() {
    let (jwks_url, sent) = streaming_key_set().await;
    let server = Server::start_with(&[
        ("SESAME_AUTH__JWT__JWKS_URL", jwks_url.as_str()),
        ("SESAME_AUTH__JWT__ISSUER", ISSUER),
        ("SESAME_AUTH__JWT__AUDIENCE", AUDIENCE),
    ])
    .await;
    let key = ed25519("big");
    let (code, message) = server.err(&sign(&key, &claims("zed", json!({}))), ME, json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED", "{message}");
    // Let the fake push what the socket buffers take after the vault hung up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = sent.lock().unwrap().clone();
    eprintln!("bytes of the 64 MiB key set sent per fetch: {sent:?}");
    assert!(!sent.is_empty(), "the key set was fetched");
    assert!(sent.iter().all(|n| *n < 16 << 20), "the key set was read on past the 1 MiB limit: {sent:?}");
    assert!(server.log().contains("larger than"), "the log says why");
}

#[tokio::test]
async fn identity_http_key_set_urls_are_refused_at_start_up_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    for (key, url) in [
        ("SESAME_AUTH__JWT__JWKS_URL", "http://idp.test/jwks.json"),
        ("SESAME_AUTH__JWT__OIDC_DISCOVERY_URL", "http://idp.test/.well-known/openid-configuration"),
    ] {
        let env = [
            (key, url),
            ("SESAME_AUTH__JWT__ISSUER", ISSUER),
            ("SESAME_AUTH__JWT__AUDIENCE", AUDIENCE),
            ("SESAME_AUTH__JWT__ALLOW_HTTP", "false"),
        ];
        let out = cli_in(dir.path(), &env, &["migrate"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key}: {stderr}");
        assert!(stderr.contains("https://") && stderr.contains("SESAME_AUTH__JWT__ALLOW_HTTP"), "{stderr}");
        let out = cli_in(dir.path(), &env[..3], &["migrate"]);
        assert!(out.status.success(), "allowed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[tokio::test]
async fn identity_a_slow_idp_holds_the_first_jwt_at_most_the_http_timeout() {
    let key = ed25519("slow");
    let idp = Idp::start(&[&key]).await;
    idp.delay_ms.store(6_000, Ordering::SeqCst);
    let discovery_url = format!("{}/.well-known/openid-configuration", idp.url);
    let server = Server::start_with(&[
        ("SESAME_AUTH__JWT__OIDC_DISCOVERY_URL", discovery_url.as_str()),
        ("SESAME_AUTH__JWT__AUDIENCE", AUDIENCE),
        ("SESAME_AUTH__JWT__HTTP_TIMEOUT", "7s"),
    ])
    .await;
    let token = sign(&key, &claims("sam", json!({})));
    // Discovery then the key set, 6 s each: the first request gives up at 7 s, not after both.
    let started = std::time::Instant::now();
    let (status, body) = server.post_json(&token, &json!({ "query": ME })).await;
    let waited = started.elapsed();
    eprintln!("first JWT behind a slow IdP: {status} after {waited:?}");
    assert!(waited < Duration::from_secs(10), "waited {waited:?}: {body}");
    // The IdP failed, not the token: retryable, not a sign-out.
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("in time"), "{body}");
    // The fetch went on without the request: the keys arrive and the next JWT signs in.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (status, body) = server.post_json(&token, &json!({ "query": ME })).await;
        if status == 200 {
            assert_eq!(body["data"]["me"]["email"], "sam@example.com");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the keys never arrived: {body}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn identity_live_tokens_per_person_are_capped() {
    let server = Server::start().await;
    let (alice_id, alice) = server.create_user("alice@example.com").await;
    // createUser made one; 24 more reach the cap of 25.
    let mut last = String::new();
    for i in 1..25 {
        let created = server.ok(&alice, CREATE_TOKEN, json!({ "n": format!("t{i}") })).await;
        last = created["createToken"]["accessToken"]["id"].as_str().unwrap().to_owned();
    }
    let (code, message) = server.err(&alice, CREATE_TOKEN, json!({ "n": "one too many" })).await;
    assert_eq!(code, "LIMIT_EXCEEDED", "{message}");
    assert!(message.contains("25") && message.contains("revoke"), "{message}");
    let out = server.cli(&["token", "create", "--user", &alice_id, "--name", "cli"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoke"));
    server.ok(&alice, REVOKE, json!({ "id": last })).await;
    server.ok(&alice, CREATE_TOKEN, json!({ "n": "after a revoke" })).await;
}

/// Item 3, on upgrade: runner tokens an admin minted through the API before
/// it was closed are revoked by the migration; the operator's stay.
#[tokio::test]
async fn identity_runner_tokens_admins_minted_before_the_upgrade_are_revoked() {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ConnectionTrait, EntityTrait};
    use sesame_vault::entities::access_token;

    let dir = tempfile::tempdir().unwrap();
    let db = sea_orm::Database::connect(format!("sqlite://{}/old.db?mode=rwc", dir.path().display())).await.unwrap();
    // The schema as it was before issue 21 (migrations 1 to 9).
    Migrator::up(&db, Some(9)).await.unwrap();
    for (id, actor) in [("tok-admin", "ADMIN"), ("tok-cli", "SYSTEM")] {
        db.execute_unprepared(&format!(
            "INSERT INTO access_tokens (id, kind, name, token_hash, created_at) \
             VALUES ('{id}', 'RUNNER', 'r', 'hash-{id}', '2026-12-01T00:00:00+00:00')"
        ))
        .await
        .unwrap();
        db.execute_unprepared(&format!(
            "INSERT INTO audit_log (at, actor_kind, action, detail) \
             VALUES ('2026-12-01T00:00:00+00:00', '{actor}', 'RUNNER_TOKEN_CREATED', 'runner token {id}')"
        ))
        .await
        .unwrap();
    }
    Migrator::up(&db, None).await.unwrap();
    let admin_made = access_token::Entity::find_by_id("tok-admin").one(&db).await.unwrap().unwrap();
    assert!(admin_made.revoked_at.is_some(), "{admin_made:?}");
    let operator_made = access_token::Entity::find_by_id("tok-cli").one(&db).await.unwrap().unwrap();
    assert!(operator_made.revoked_at.is_none(), "{operator_made:?}");
}
