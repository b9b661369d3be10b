//! The platform's IdP for the `jwt-baseline` scenario: an RSA key (RS256)
//! published as a key set (JWKS) by a local HTTP server, and a token it
//! signed for an admin. The server under test is started with JWT sign-in
//! pointing at it (`settings()`), so one server answers both the `sv_`
//! baseline and the JWT one in the same run.

use std::convert::Infallible;

use anyhow::{Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::net::TcpListener;

const ISSUER: &str = "https://idp.bench.local";
const AUDIENCE: &str = "sesame-vault-bench";
const ADMIN_ROLE: &str = "vault-admin";

pub(crate) struct Idp {
    jwks_url: String,
    encoding: EncodingKey,
}

impl Idp {
    /// A new key and its key set served on 127.0.0.1:0 until the process ends.
    pub(crate) async fn start() -> Result<Idp> {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::traits::PublicKeyParts;
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).context("generating an RSA key")?;
        let der = private.to_pkcs1_der().context("encoding the RSA key")?;
        let jwks = json!({ "keys": [{
            "kty": "RSA", "kid": "bench-1", "alg": "RS256", "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
        }] });
        let body = Bytes::from(jwks.to_string());
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_req| {
                        let body = body.clone();
                        async move { Ok::<_, Infallible>(hyper::Response::new(Full::new(body))) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Idp { jwks_url: format!("http://{addr}/jwks.json"), encoding: EncodingKey::from_rsa_der(der.as_bytes()) })
    }

    /// The server's JWT sign-in settings for this IdP.
    pub(crate) fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SESAME_AUTH__JWT__JWKS_URL", self.jwks_url.clone()),
            ("SESAME_AUTH__JWT__ISSUER", ISSUER.into()),
            ("SESAME_AUTH__JWT__AUDIENCE", AUDIENCE.into()),
            ("SESAME_AUTH__JWT__ADMIN_ROLE", ADMIN_ROLE.into()),
            // A local key set over plain http (this tool's own server).
            ("SESAME_AUTH__JWT__ALLOW_HTTP", "true".into()),
        ]
    }

    /// An admin's token, valid for an hour (RS256, kid `bench-1`).
    pub(crate) fn admin_token(&self) -> Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "bench-admin", "email": "jwt-admin@bench.local",
            "email_verified": true, "roles": [ADMIN_ROLE], "iat": now, "exp": now + 3600,
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("bench-1".into());
        jsonwebtoken::encode(&header, &claims, &self.encoding).context("signing the bench JWT")
    }
}
