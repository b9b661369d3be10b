//! What the fuzz targets (`fuzz/`) reach of the crate's internals: the real
//! parsers, re-exported or thinly wrapped, so the paths the targets depend
//! on are written here only. Not an API; nothing in the service calls it.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use async_graphql::http::{ClientMessage, WebSocketProtocols};
use async_graphql::parser::types::OperationType;
use async_graphql::Executor;
use futures_util::{FutureExt, StreamExt};
use poem::web::websocket::Message;
use serde_json::Value;

use crate::auth::Principal;
pub use crate::graphql::subscription_limits::SubscriptionLimits;
pub use crate::graphql::GraphqlConfig;

use crate::config::{Config, SecretValue};
use crate::domain::Role;
use crate::graphql::GatedSchema;
use crate::identity::jwt::JwtVerifier;
use crate::identity::JwtConfig;

// ---------------------------------------------------------------------------
// The document gate

pub use crate::graphql::gate::{
    check_required_variables, check_structure, parse, prescan, prescan_counted, DocumentLimits, Refusal, MAX_NESTING,
};

/// The limits of a signed-in or an anonymous caller under the default settings.
pub fn document_limits(signed_in: bool) -> DocumentLimits {
    let config = GraphqlConfig::default();
    if signed_in {
        DocumentLimits::signed_in(&config)
    } else {
        DocumentLimits::anonymous(&config)
    }
}

/// The real schema (the gate installed as in production) over an in-memory
/// store, and a runtime to run requests on.
pub struct Schema {
    runtime: tokio::runtime::Runtime,
    schema: GatedSchema,
}

impl Schema {
    pub fn open() -> Schema {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let config = Config {
            database_url: Some(SecretValue::new("sqlite::memory:")),
            encryption_key: Some(SecretValue::new(crate::crypto::Key::generate())),
            ..Config::default()
        };
        let app = runtime.block_on(crate::app::App::open(config)).expect("the in-memory app opens");
        Schema { runtime, schema: app.schema }
    }

    /// Runs one anonymous request (no principal: nothing is written) through
    /// the whole schema, the gate first. The response's errors are what a
    /// client would read.
    pub fn execute(
        &self,
        query: &str,
        variables: Option<Value>,
        operation_name: Option<&str>,
    ) -> async_graphql::Response {
        let mut request = async_graphql::Request::new(query);
        if let Some(variables) = variables {
            request = request.variables(async_graphql::Variables::from_json(variables));
        }
        if let Some(name) = operation_name {
            request = request.operation_name(name);
        }
        self.runtime.block_on(self.schema.execute(request))
    }
}

// ---------------------------------------------------------------------------
// HTTP edges

/// `GET /graphql?…`: the request read from the query string, and whether
/// the document would write (which refuses the GET).
pub fn http_get(query_string: &str) -> Result<(async_graphql::Request, Option<OperationType>), String> {
    let request = crate::http::parse_get(query_string)?;
    let writes = crate::http::writes_over_get(&request, &GraphqlConfig::default());
    Ok((request, writes))
}

// ---------------------------------------------------------------------------
// WebSocket

/// A frame as the socket's stream hands it over.
#[derive(Debug, Clone)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    Ping,
    Close,
    /// A read error, by tungstenite's message (see `close_for_read_error`).
    Error(String),
}

/// What the session's reader made of the frames.
#[derive(Debug, Default)]
pub struct WsRead {
    /// The first text frame (`connection_init`), or the close it earned.
    pub first: Option<Result<String, (u16, String)>>,
    /// Messages passed on to the protocol driver, by type.
    pub passed: Vec<&'static str>,
    /// Refusals sent on an operation's id (`error` messages).
    pub refused: Vec<String>,
    /// Operations live when the stream ended.
    pub live: usize,
    /// The close the server decided on, if any.
    pub close: Option<(u16, String)>,
}

fn message(frame: Frame) -> io::Result<Message> {
    match frame {
        Frame::Text(text) => Ok(Message::Text(text)),
        Frame::Binary(bytes) => Ok(Message::Binary(bytes)),
        Frame::Ping => Ok(Message::Ping(Vec::new())),
        Frame::Close => Ok(Message::Close(None)),
        Frame::Error(text) => Err(io::Error::other(text)),
    }
}

/// One session's reading of client messages in `protocol`
/// (`graphql-ws` or `graphql-transport-ws`): the first text frame, then
/// every message through the same checks `/graphql/ws` runs, with a socket
/// slot of `limits` (shared across calls, as one instance's are).
pub fn ws_read(limits: &Arc<SubscriptionLimits>, protocol: &str, frames: Vec<Frame>, max_message: usize) -> WsRead {
    let protocol: WebSocketProtocols = protocol.parse().unwrap_or(WebSocketProtocols::GraphQLWS);
    let mut stream = futures_util::stream::iter(frames.into_iter().map(message));
    let mut read = WsRead::default();
    let first = crate::ws::first_text(&mut stream, max_message).now_or_never().expect("a ready stream");
    read.first = match first {
        Ok(Some(text)) => Some(Ok(text)),
        Ok(None) => return read,
        Err(close) => return WsRead { first: Some(Err((close.code, close.reason))), ..read },
    };
    let principal = Principal::Person { user_id: "fuzz".into(), role: Role::User, token_id: "fuzz".into() };
    let slot = limits.open_socket(&principal).expect("every earlier session released its socket");
    let shared = Mutex::new(crate::ws::Shared::default());
    let mut incoming = crate::ws::Incoming {
        stream: &mut stream,
        shared: &shared,
        slot: &slot,
        protocol,
        max_message,
        init_pending: true,
        done: false,
    };
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    loop {
        match incoming.poll_next_unpin(&mut cx) {
            Poll::Ready(Some(Ok(message))) => read.passed.push(kind(&message)),
            Poll::Ready(Some(Err(_))) => read.passed.push("error"),
            Poll::Ready(None) => break,
            // The stream is always ready: pending means a refusal waits (as
            // `drive` would, send it and read on).
            Poll::Pending => {
                let lock =
                    |s: &Mutex<crate::ws::Shared>| s.lock().unwrap_or_else(PoisonError::into_inner).outbox.take();
                match lock(&shared) {
                    Some(text) => read.refused.push(text),
                    None => break,
                }
            }
        }
    }
    let shared = shared.into_inner().unwrap_or_else(PoisonError::into_inner);
    read.live = shared.live.len();
    read.close = shared.close.map(|c| (c.code, c.reason));
    read
}

fn kind(message: &ClientMessage) -> &'static str {
    match message {
        ClientMessage::ConnectionInit { .. } => "connection_init",
        ClientMessage::Start { .. } => "subscribe",
        ClientMessage::Stop { .. } => "complete",
        ClientMessage::ConnectionTerminate => "connection_terminate",
        ClientMessage::Ping { .. } => "ping",
        ClientMessage::Pong { .. } => "pong",
    }
}

/// The id of a server `complete` message, as the session reads it.
pub fn ws_completed_id(text: &str) -> Option<String> {
    crate::ws::completed_id(text)
}

// ---------------------------------------------------------------------------
// JWTs and key sets (the identity module's reader)

/// A verifier against a fixed issuer and audience whose key set is set by
/// [`Jwt::use_key_set`]; it never reaches the network.
pub struct Jwt {
    runtime: tokio::runtime::Runtime,
    verifier: Arc<JwtVerifier>,
}

pub const JWT_ISSUER: &str = "https://idp.fuzz";
pub const JWT_AUDIENCE: &str = "sesame-vault";

impl Jwt {
    pub fn new(admin_role: &str, runner_role: &str) -> Jwt {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let year = std::time::Duration::from_secs(365 * 24 * 3600);
        let config = JwtConfig {
            jwks_url: Some("https://idp.invalid/jwks.json".into()),
            issuer: Some(JWT_ISSUER.into()),
            audience: Some(JWT_AUDIENCE.into()),
            admin_role: Some(admin_role.into()),
            runner_role: Some(runner_role.into()),
            // The set is never refetched: an unknown kid is refused at once.
            refetch_interval: year,
            cache_ttl: year,
            ..JwtConfig::default()
        };
        let verifier = runtime.block_on(async { JwtVerifier::new(config) }).expect("a verifier");
        Jwt { runtime, verifier: Arc::new(verifier) }
    }

    /// Serves `document` as the IdP's key set from now on.
    pub fn use_key_set(&self, document: &Value) {
        self.verifier.use_key_set(JWT_ISSUER, document);
    }

    /// Verifies `token`: who it stands for (`Debug`) and until when, or the
    /// client's message of the refusal.
    pub fn verify(&self, token: &str) -> Result<String, String> {
        match self.runtime.block_on(self.verifier.verify(token)) {
            Ok(verified) => Ok(format!("{:?} until {}", verified.identity, verified.valid_until)),
            Err(e) => Err(async_graphql::Error::from(e).message),
        }
    }
}

// ---------------------------------------------------------------------------
// Pasted credentials and the login files a task hands back

pub use crate::agents::{
    materialize, parse_returned, parse_subscription, returnable_paths, IssuedSecret, Materialized, ParsedSubscription,
    Returned, SubscriptionInput,
};
pub use crate::credential_input::{InputError, Secret, SubscriptionSecret};
pub use crate::domain::{Agent, Provider};
pub use crate::providers::{hint, ApiKey};

/// The provider's JWT reader (ChatGPT tokens' claims and expiry).
pub mod provider_jwt {
    pub use crate::providers::jwt::{claims, expiry, is_jwt, is_strict_jwt, is_unsigned, unsigned};
}

/// Whose ChatGPT login a returned file holds, as `returnTaskCredentials`
/// asks it of the tokens (the account check; Anthropic's asks the provider
/// over HTTP and is not fuzzed).
pub fn chatgpt_account(secret: &SubscriptionSecret) -> Option<String> {
    crate::providers::openai::login_account(&secret.access_token, secret.id_token.as_ref())
}

// ---------------------------------------------------------------------------
// Proxy delivery's placeholders (every header, query and token body a task
// sends through the egress proxy is searched with these)

pub use crate::delivery::{find_all, has_marker, replace_all, Field, Found, GrantId, GRANT_ID_LEN, MARKER};

// ---------------------------------------------------------------------------
// The egress proxy: token-endpoint bodies a task sends, answers a provider
// streams back (read for token usage)

pub use crate::proxy::{token_request_params, Meter, Tokens};
