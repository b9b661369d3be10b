//! JWTs and key sets through the identity module's own reader, against a
//! fixed issuer, audience and key set (one Ed25519 key), never the network.
//!
//! Structure-aware (`arbitrary`): a raw token; a token signed with the key
//! set's key, its header and claims chosen by the fuzzer (so the claim
//! checks and the person/role reading are reached); or a key set document
//! served in place of the fixed one, then a signed token checked against it.
//!
//! Never panics; no refusal quotes the token or its kid; a token accepted
//! was signed by the key set's key, names the issuer and audience and has
//! not expired.
#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use sesame_vault::fuzzing::{Jwt, JWT_AUDIENCE, JWT_ISSUER};
use sesame_vault_fuzz::{assert_no_secret, MARK};

const KID: &str = "fuzz-key";

struct Fixed {
    jwt: Jwt,
    signing: EncodingKey,
    key_set: Value,
}

static FIXED: LazyLock<Fixed> = LazyLock::new(|| {
    let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let der = signing.to_pkcs8_der().expect("a PKCS#8 key");
    let public = URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
    let key_set = json!({ "keys": [
        { "kty": "OKP", "crv": "Ed25519", "kid": KID, "use": "sig", "alg": "EdDSA", "x": public },
    ]});
    let jwt = Jwt::new("admin", "runner");
    jwt.use_key_set(&key_set);
    Fixed { jwt, signing: EncodingKey::from_ed_der(der.as_bytes()), key_set }
});

/// A JSON value the fuzzer builds, for claims.
#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn value(&self, depth: usize) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => json!(b),
            Json::Int(i) => json!(i),
            Json::Float(f) => json!(f),
            Json::Str(s) => json!(s),
            _ if depth > 8 => Value::Null,
            Json::List(items) => Value::Array(items.iter().map(|i| i.value(depth + 1)).collect()),
            Json::Object(fields) => {
                Value::Object(fields.iter().map(|(k, v)| (k.clone(), v.value(depth + 1))).collect())
            }
        }
    }
}

/// A claim the fuzzer may set to a chosen value, a well-formed one, or leave out.
#[derive(Arbitrary, Debug)]
enum Claim {
    Absent,
    Good,
    Value(Json),
}

#[derive(Arbitrary, Debug)]
struct Claims {
    iss: Claim,
    aud: Claim,
    exp: Claim,
    nbf: Claim,
    sub: Claim,
    email: Claim,
    email_verified: Claim,
    roles: Claim,
    extra: Vec<(String, Json)>,
}

#[derive(Arbitrary, Debug)]
struct Signed {
    /// Use the key set's kid, none, or another.
    kid: Option<Option<String>>,
    claims: Claims,
}

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(String),
    /// A header and payload the fuzzer writes, with any signature.
    Parts {
        header: Json,
        claims: Json,
        signature: Vec<u8>,
    },
    Signed(Signed),
    KeySet {
        document: String,
        token: Signed,
    },
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(c: &Claims) -> Value {
    let mut map = Map::new();
    let mut set = |name: &str, claim: &Claim, good: Value| match claim {
        Claim::Absent => {}
        Claim::Good => {
            map.insert(name.to_owned(), good);
        }
        Claim::Value(v) => {
            map.insert(name.to_owned(), v.value(0));
        }
    };
    set("iss", &c.iss, json!(JWT_ISSUER));
    set("aud", &c.aud, json!(JWT_AUDIENCE));
    set("exp", &c.exp, json!(now() + 3600));
    set("nbf", &c.nbf, json!(now() - 60));
    set("sub", &c.sub, json!(format!("person-{MARK}")));
    set("email", &c.email, json!("person@example.com"));
    set("email_verified", &c.email_verified, json!(true));
    set("roles", &c.roles, json!(["admin"]));
    for (k, v) in &c.extra {
        map.entry(k.clone()).or_insert_with(|| v.value(0));
    }
    Value::Object(map)
}

fn sign(fixed: &Fixed, signed: &Signed) -> (String, Option<String>) {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = match &signed.kid {
        None => Some(KID.to_owned()),
        Some(None) => None,
        Some(Some(kid)) => Some(format!("{kid}{MARK}")),
    };
    let claims = claims(&signed.claims);
    let token = jsonwebtoken::encode(&header, &claims, &fixed.signing).expect("signs");
    (token, header.kid)
}

/// The payload of a token the verifier accepted.
fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("an accepted token has a payload");
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).expect("an accepted payload is base64url");
    serde_json::from_slice(&bytes).expect("an accepted payload is JSON")
}

fn check(fixed: &Fixed, token: &str, kid: Option<&str>) {
    match fixed.jwt.verify(token) {
        Ok(who) => {
            let claims = payload(token);
            assert_eq!(claims["iss"], json!(JWT_ISSUER), "accepted with another issuer: {who}");
            let aud = &claims["aud"];
            assert!(
                aud == &json!(JWT_AUDIENCE) || aud.as_array().is_some_and(|a| a.contains(&json!(JWT_AUDIENCE))),
                "accepted for another audience: {who}"
            );
            let exp = claims["exp"].as_f64().expect("accepted without a numeric exp");
            assert!(exp as i64 + 120 >= now(), "accepted after it expired: {who}");
        }
        Err(message) => {
            assert_no_secret(&message, &[token]);
            if let Some(kid) = kid.filter(|k| k.len() >= 8) {
                assert!(!message.contains(kid), "a refusal quotes the kid: {message}");
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let fixed = &*FIXED;
    match input {
        Input::Raw(token) => check(fixed, &token, None),
        Input::Parts { header, claims, signature } => {
            let token = format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(header.value(0).to_string()),
                URL_SAFE_NO_PAD.encode(claims.value(0).to_string()),
                URL_SAFE_NO_PAD.encode(signature)
            );
            check(fixed, &token, None);
        }
        Input::Signed(signed) => {
            let (token, kid) = sign(fixed, &signed);
            check(fixed, &token, kid.as_deref());
        }
        Input::KeySet { document, token } => {
            let Ok(document) = serde_json::from_str::<Value>(&document) else { return };
            fixed.jwt.use_key_set(&document);
            let (token, kid) = sign(fixed, &token);
            // Another key set may or may not hold the key: only the checks
            // on refusals hold whatever it holds.
            if let Err(message) = fixed.jwt.verify(&token) {
                assert_no_secret(&message, &[&token]);
                if let Some(kid) = kid.filter(|k| k.len() >= 8) {
                    assert!(!message.contains(&kid), "a refusal quotes the kid: {message}");
                }
            }
            fixed.jwt.use_key_set(&fixed.key_set);
        }
    }
});
