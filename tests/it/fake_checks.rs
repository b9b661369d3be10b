//! A fake of the provider APIs the vault checks credentials against: a real
//! HTTP server on 127.0.0.1:0 answering as Anthropic, OpenAI (API and
//! ChatGPT's backend), Gemini and GitHub do, per credential, and counting
//! every request (with everything it carried, so a test can assert what
//! was never sent).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{handler, EndpointExt, Request, Response, Route, Server};
use serde_json::{json, Value};
use sesame_test_support::api_url_var;
use sesame_vault::domain::Provider;

/// How the fake answers for one credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Valid,
    /// Refused: 401 as documented (Gemini: 400 `API_KEY_INVALID`).
    Invalid,
    /// Authenticated without access (GitHub: `/copilot_internal/user` 404).
    NoAccess,
    /// 503 (Anthropic: 529 overloaded).
    Down,
    /// 429.
    Limited,
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    /// The credential it carried (`x-api-key`, `x-goog-api-key` or Bearer).
    pub credential: String,
    /// Method, path, query, every header and the body, as one text.
    pub everything: String,
}

#[derive(Default)]
pub struct State {
    /// Unlisted credentials are valid.
    pub answers: HashMap<String, Answer>,
    pub seen: Vec<Seen>,
    /// Added to every answer, so concurrent requests overlap.
    pub delay: Duration,
    /// Requests in progress and the most at once, by provider (first path segment).
    pub in_flight: HashMap<String, usize>,
    pub most_in_flight: HashMap<String, usize>,
    /// Claude logins (by access token) whose profile names an account: a
    /// valid one gets a 200 profile with this `account.uuid`.
    pub accounts: HashMap<String, String>,
}

#[derive(Clone)]
pub struct FakeChecks {
    pub url: String,
    pub state: Arc<Mutex<State>>,
}

impl FakeChecks {
    pub async fn start() -> FakeChecks {
        let state = Arc::new(Mutex::new(State::default()));
        let app = Route::new().at("/*path", respond).data(state.clone());
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
        tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(app).await;
        });
        FakeChecks { url: format!("http://{addr}"), state }
    }

    /// The settings that point a server's checks at this fake.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (api_url_var(Provider::Anthropic), format!("{}/anthropic", self.url)),
            (api_url_var(Provider::Openai), format!("{}/openai", self.url)),
            ("SESAME_PROVIDERS__OPENAI__CHATGPT_URL".into(), format!("{}/chatgpt/backend-api", self.url)),
            (api_url_var(Provider::Google), format!("{}/google", self.url)),
            (api_url_var(Provider::Github), format!("{}/github", self.url)),
        ]
    }

    pub fn set(&self, credential: &str, answer: Answer) {
        self.state.lock().unwrap().answers.insert(credential.to_owned(), answer);
    }

    /// Makes `access_token` a Claude OAuth login of `account` (its profile answers 200).
    pub fn claude_account(&self, access_token: &str, account: &str) {
        self.state.lock().unwrap().accounts.insert(access_token.to_owned(), account.to_owned());
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Requests that carried `credential`.
    pub fn hits(&self, credential: &str) -> usize {
        self.state.lock().unwrap().seen.iter().filter(|s| s.credential == credential).count()
    }

    /// Whether any request carried `text` anywhere (header, query, body).
    pub fn ever_saw(&self, text: &str) -> bool {
        self.state.lock().unwrap().seen.iter().any(|s| s.everything.contains(text))
    }

    pub fn most_in_flight(&self, provider: &str) -> usize {
        self.state.lock().unwrap().most_in_flight.get(provider).copied().unwrap_or(0)
    }
}

fn reply(status: u16, body: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .content_type("application/json")
        .body(body.to_string())
}

fn credential_of(req: &Request) -> String {
    sesame_test_support::credential_in(|name| req.header(name).map(str::to_owned))
}

fn anthropic_error(status: u16, kind: &str, message: &str) -> Response {
    reply(status, json!({ "type": "error", "error": { "type": kind, "message": message } }))
}

/// What the real provider answers at `path` for a credential that is `answer`.
fn provider_answer(path: &str, req: &Request, credential: &str, answer: Answer) -> Response {
    let shown =
        format!("{}****{}", &credential[..credential.len().min(6)], &credential[credential.len().saturating_sub(4)..]);
    match (path, answer) {
        (_, Answer::Limited) => {
            reply(429, json!({ "error": { "message": "Rate limit reached", "type": "rate_limit" } }))
        }
        ("/anthropic/v1/models" | "/anthropic/api/oauth/profile", Answer::Down) => {
            anthropic_error(529, "overloaded_error", "Overloaded")
        }
        (_, Answer::Down) => reply(503, json!({ "message": "Service Unavailable" })),

        ("/anthropic/v1/models", _) if req.header("anthropic-version").is_none() => {
            anthropic_error(400, "invalid_request_error", "anthropic-version: header is required")
        }
        ("/anthropic/v1/models", Answer::Valid) => {
            reply(200, json!({ "data": [{ "type": "model", "id": "claude-sonnet-4-5" }], "has_more": false }))
        }
        ("/anthropic/v1/models", Answer::Invalid) => anthropic_error(401, "authentication_error", "invalid x-api-key"),
        ("/anthropic/v1/models", Answer::NoAccess) => anthropic_error(
            403,
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        // Setup-tokens carry `user:inference` only: the profile is a 403 that proves the token.
        ("/anthropic/api/oauth/profile", _) if req.header("anthropic-beta") != Some("oauth-2025-04-20") => {
            anthropic_error(401, "authentication_error", "OAuth authentication is currently not supported.")
        }
        ("/anthropic/api/oauth/profile", Answer::Valid | Answer::NoAccess) => {
            anthropic_error(403, "permission_error", "OAuth token does not meet scope requirement user:profile")
        }
        ("/anthropic/api/oauth/profile", Answer::Invalid) => {
            anthropic_error(401, "authentication_error", "OAuth token has expired.")
        }

        ("/openai/v1/models", Answer::Valid | Answer::NoAccess) => {
            reply(200, json!({ "object": "list", "data": [{ "id": "gpt-5", "object": "model" }] }))
        }
        ("/openai/v1/models", Answer::Invalid) => reply(
            401,
            json!({ "error": { "message": format!("Incorrect API key provided: {shown}."), "type": "invalid_request_error", "code": "invalid_api_key" } }),
        ),
        ("/chatgpt/backend-api/wham/usage", _) if req.header("chatgpt-account-id").is_none() => {
            reply(403, json!({ "detail": "missing account" }))
        }
        ("/chatgpt/backend-api/wham/usage", Answer::Valid | Answer::NoAccess) => {
            reply(200, json!({ "plan_type": "plus", "rate_limit": { "allowed": true } }))
        }
        ("/chatgpt/backend-api/wham/usage", Answer::Invalid) => reply(
            401,
            json!({ "error": { "message": "Provided authentication token is expired. Please try signing in again.", "code": "token_expired" } }),
        ),

        ("/google/v1beta/models", Answer::Valid | Answer::NoAccess) => {
            reply(200, json!({ "models": [{ "name": "models/gemini-2.5-pro" }] }))
        }
        ("/google/v1beta/models", Answer::Invalid) => reply(
            400,
            json!({ "error": { "code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
                "details": [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                    "metadata": { "service": "generativelanguage.googleapis.com" } }] } }),
        ),

        ("/github/user", Answer::Valid | Answer::NoAccess) => reply(200, json!({ "login": "octocat", "id": 1 })),
        ("/github/user" | "/github/copilot_internal/user", Answer::Invalid) => reply(
            401,
            json!({ "message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401" }),
        ),
        ("/github/copilot_internal/user", Answer::Valid) => {
            reply(200, json!({ "copilot_plan": "individual", "chat_enabled": true, "login": "octocat" }))
        }
        ("/github/copilot_internal/user", Answer::NoAccess) => {
            reply(404, json!({ "message": "Not Found", "documentation_url": "https://docs.github.com/rest" }))
        }
        _ => reply(404, json!({ "message": "Not Found" })),
    }
}

#[handler]
async fn respond(req: &Request, body: String, Data(state): Data<&Arc<Mutex<State>>>) -> Response {
    let path = req.uri().path().to_owned();
    let provider = path.trim_start_matches('/').split('/').next().unwrap_or_default().to_owned();
    let credential = credential_of(req);
    let mut everything = format!("{} {} {}\n", req.method(), path, req.uri().query().unwrap_or_default());
    for (name, value) in req.headers() {
        everything.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or_default()));
    }
    everything.push_str(&body);
    let answer = {
        let mut s = state.lock().unwrap();
        s.seen.push(Seen { path: path.clone(), credential: credential.clone(), everything });
        let now = {
            let n = s.in_flight.entry(provider.clone()).or_default();
            *n += 1;
            *n
        };
        let most = s.most_in_flight.entry(provider.clone()).or_default();
        *most = (*most).max(now);
        (s.answers.get(&credential).copied().unwrap_or(Answer::Valid), s.delay, s.accounts.get(&credential).cloned())
    };
    let (answer, delay, account) = (answer.0, answer.1, answer.2);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let response = match account {
        Some(uuid) if path == "/anthropic/api/oauth/profile" && answer == Answer::Valid => reply(
            200,
            json!({ "account": { "uuid": uuid, "email": format!("{uuid}@example.com") }, "organization": { "uuid": "org-1" } }),
        ),
        _ => provider_answer(&path, req, &credential, answer),
    };
    *state.lock().unwrap().in_flight.entry(provider).or_default() -= 1;
    response
}
