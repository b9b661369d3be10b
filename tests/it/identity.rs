//! People and tokens (issue 14): the platform's JWTs against a real JWKS
//! server this test starts (keys generated here), and the token and person
//! lifecycle through GraphQL and the CLI.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

use crate::common::{cli_in, Server, ANTHROPIC_KEY};
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
}

#[handler]
fn jwks(Data(idp): Data<&Idp>) -> Response {
    idp.fetches.fetch_add(1, Ordering::SeqCst);
    if idp.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys = idp.keys.lock().unwrap().clone();
    Response::builder().content_type("application/json").body(json!({ "keys": keys }).to_string())
}

#[handler]
fn discovery(Data(idp): Data<&Idp>) -> Response {
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
                        "iat": now(), "exp": now() + 600 });
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
const SET_KEY: &str = "mutation($k: String!) { setApiKey(provider: ANTHROPIC, key: $k) { id } }";
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

    // An admin: anyone's tokens, runner tokens, any revocation.
    let theirs = server.ok(&admin, "query($u: ID) { tokens(userId: $u) { id kind } }", json!({ "u": alice_id })).await;
    assert_eq!(theirs["tokens"].as_array().unwrap().len(), 1, "{theirs}");
    let runner = server
        .ok(&admin, "mutation { createRunnerToken(name: \"ci\") { token accessToken { id kind } } }", json!({}))
        .await;
    assert_eq!(runner["createRunnerToken"]["accessToken"]["kind"], "RUNNER");
    let runner = runner["createRunnerToken"]["token"].as_str().unwrap().to_owned();
    let (code, _) = server.err(&alice, "mutation { createRunnerToken(name: \"x\") { token } }", json!({})).await;
    assert_eq!(code, "FORBIDDEN");

    // Disable: tokens refused, live socket closed, tasks get nothing; nothing deleted.
    server.ok(&alice, SET_KEY, json!({ "k": ANTHROPIC_KEY })).await;
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
