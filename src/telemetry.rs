//! Logs: the subscriber (`RUST_LOG` filtering, text or JSON with
//! `SESAME_LOG__FORMAT`), and one INFO line per GraphQL request over HTTP.
//!
//! The request line (target `sesame_vault::request`) carries the method,
//! the operation's name and type, the principal's kind and id (a user id
//! or a runner token's id — never the token), the result code (`OK` or the
//! first error's `extensions.code`), the HTTP status, the duration and the
//! request id the client also got. Nothing of the document, the variables
//! or the headers is logged.
//!
//! How the pieces meet: [`around_requests`] wraps the `/graphql` route and
//! scopes a [`Record`] over the request's task; the handlers note the
//! principal and codes into it ([`note_principal`], [`note_code`],
//! [`note_responses`], and [`note_operation`] once the document gate has
//! admitted an operation).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_graphql::parser::types::OperationType;
use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

use crate::auth::Principal;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default) or `json` (one object per line).
    pub format: LogFormat,
}

/// Installs the log subscriber on stderr: `RUST_LOG` filters (default
/// `info`), `format` chooses text or one JSON object per line.
pub fn init(format: LogFormat) {
    // The scheduler crate logs every job run at INFO: noise, filtered by default.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tokio_cron_scheduler=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(false).init(),
        // Colour only on a terminal: log files and collectors get plain text.
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
    }
}

/// One operation of a request.
#[derive(Debug, Default, Clone)]
struct Operation {
    name: Option<String>,
    kind: &'static str,
    code: Option<String>,
}

/// What a `/graphql` request noted about itself.
#[derive(Debug, Default)]
pub struct Record {
    principal: Option<(&'static str, String)>,
    operations: Vec<Operation>,
    /// A refusal before execution (body, content type, token).
    code: Option<String>,
}

type Shared = Arc<Mutex<Record>>;

tokio::task_local! {
    static RECORD: Shared;
}

fn with_record(f: impl FnOnce(&mut Record)) {
    let _ = RECORD.try_with(|record| f(&mut record.lock().unwrap_or_else(PoisonError::into_inner)));
}

/// The principal's kind and id for logs: never the token.
pub fn principal_fields(principal: Option<&Principal>) -> (&'static str, String) {
    match principal {
        None => ("anonymous", String::new()),
        Some(Principal::Person { user_id, .. }) => ("user", user_id.clone()),
        Some(Principal::Runner { token_id, .. }) => ("runner", token_id.clone()),
    }
}

pub fn note_principal(principal: Option<&Principal>) {
    let fields = principal_fields(principal);
    with_record(|r| r.principal = Some(fields));
}

/// A request refused before execution, with its error code.
pub fn note_code(code: &str) {
    with_record(|r| {
        r.code.get_or_insert_with(|| code.to_owned());
    });
}

fn first_code(response: &async_graphql::Response) -> String {
    match response.errors.first() {
        None => "OK".into(),
        Some(e) => e
            .extensions
            .as_ref()
            .and_then(|ext| ext.get("code"))
            .and_then(|v| match v {
                async_graphql::Value::String(s) => Some(s.clone()),
                async_graphql::Value::Enum(n) => Some(n.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| "ERROR".into()),
    }
}

/// The executed operations' results, in order.
pub fn note_responses(response: &async_graphql::BatchResponse) {
    let responses: Vec<&async_graphql::Response> = match response {
        async_graphql::BatchResponse::Single(r) => vec![r],
        async_graphql::BatchResponse::Batch(rs) => rs.iter().collect(),
    };
    with_record(|r| {
        for (i, response) in responses.into_iter().enumerate() {
            if r.operations.len() <= i {
                r.operations.resize(i + 1, Operation::default());
            }
            r.operations[i].code = Some(first_code(response));
        }
    });
}

/// Wraps the public routes: a `/graphql` request is measured, logged
/// (one line per operation) and counted; other paths pass through.
pub async fn around_requests<E: poem::Endpoint>(ep: Arc<E>, req: poem::Request) -> poem::Result<poem::Response> {
    if req.uri().path() != "/graphql" {
        return ep.call(req).await.map(poem::IntoResponse::into_response);
    }
    let started = Instant::now();
    let method = req.method().clone();
    let record: Shared = Arc::default();
    let result =
        RECORD.scope(record.clone(), async { ep.call(req).await.map(poem::IntoResponse::into_response) }).await;
    let took = started.elapsed();
    let record = std::mem::take(&mut *record.lock().unwrap_or_else(PoisonError::into_inner));
    let (status, request_id) = match &result {
        Ok(response) => (
            response.status().as_u16(),
            response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned(),
        ),
        Err(e) => (e.status().as_u16(), String::new()),
    };
    let (principal_kind, principal_id) = record.principal.clone().unwrap_or(("anonymous", String::new()));
    let mut operations = record.operations;
    if operations.is_empty() {
        operations.push(Operation::default());
    }
    let refused = record.code.clone();
    for op in &mut operations {
        let code = op.code.clone().or_else(|| refused.clone()).unwrap_or_else(|| {
            if status < 400 {
                "OK".into()
            } else {
                format!("HTTP_{status}")
            }
        });
        let kind = if op.kind.is_empty() { "unknown" } else { op.kind };
        crate::metrics::request(op.name.as_deref(), kind, &code, took);
        tracing::info!(
            target: "sesame_vault::request",
            request_id = %request_id,
            method = %method,
            operation = op.name.as_deref().unwrap_or("-"),
            operation_type = kind,
            principal_kind,
            principal_id = %principal_id,
            code = %code,
            status,
            duration_ms = took.as_secs_f64() * 1000.0,
            "graphql request"
        );
    }
    result
}

fn kind_name(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

/// The `index`th operation of a request, once the document gate admitted
/// it: its name (none for an anonymous operation) and type.
pub fn note_operation(index: usize, name: Option<&str>, kind: OperationType) {
    with_record(|r| {
        if r.operations.len() <= index {
            r.operations.resize(index + 1, Operation::default());
        }
        r.operations[index].name = name.map(str::to_owned);
        r.operations[index].kind = kind_name(kind);
    });
}

/// What one WebSocket session noted about itself.
#[derive(Debug, Default)]
struct SocketRecord {
    principal: Option<(&'static str, String)>,
    subscriptions: usize,
    code: Option<u16>,
}

tokio::task_local! {
    static SOCKET: Arc<Mutex<SocketRecord>>;
}

fn with_socket(f: impl FnOnce(&mut SocketRecord)) {
    let _ = SOCKET.try_with(|record| f(&mut record.lock().unwrap_or_else(PoisonError::into_inner)));
}

/// Runs one WebSocket session (its own task): counts it as open (for the
/// metrics and for the shutdown, which waits for its close), and logs a
/// line when it is accepted ([`note_socket_principal`]) and one when it
/// ends, with the close code, the duration and how many subscriptions it
/// started.
///
/// The session comes boxed: an async function keeps its argument in its own
/// state beside the inner future it is moved into, so an unboxed session
/// would be held twice for the socket's whole life (issue 25's memory
/// regression, BENCHMARKS.md).
pub async fn websocket_session(session: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) {
    let _open = crate::metrics::GaugeGuard::socket();
    let _tracked = crate::shutdown::WEBSOCKETS.enter();
    let started = Instant::now();
    let record: Arc<Mutex<SocketRecord>> = Arc::default();
    SOCKET.scope(record.clone(), session).await;
    let record = std::mem::take(&mut *record.lock().unwrap_or_else(PoisonError::into_inner));
    // No close frame sent: the connection dropped (1006, as a client sees it).
    let code = record.code.unwrap_or(1006);
    crate::metrics::socket_closed(code);
    let (principal_kind, principal_id) = record.principal.unwrap_or(("anonymous", String::new()));
    tracing::info!(
        target: "sesame_vault::request",
        code,
        principal_kind,
        principal_id = %principal_id,
        subscriptions = record.subscriptions,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "websocket closed"
    );
}

/// The session's principal is known (its `connection_init` was accepted).
pub fn note_socket_principal(principal: &Principal, protocol: &str) {
    let fields = principal_fields(Some(principal));
    tracing::info!(
        target: "sesame_vault::request",
        principal_kind = fields.0,
        principal_id = %fields.1,
        protocol,
        "websocket opened"
    );
    with_socket(|r| r.principal = Some(fields));
}

/// The session started one more subscription.
pub fn note_subscription() {
    with_socket(|r| r.subscriptions += 1);
}

/// The close code the session sent.
pub fn note_socket_close(code: u16) {
    with_socket(|r| {
        r.code.get_or_insert(code);
    });
}

/// Credential changes, at INFO, once committed: kind, credential, owner,
/// provider, agent and status (metadata only; the events carry no secret).
pub fn credential_events(events: &[crate::events::CredentialEvent]) {
    for event in events {
        tracing::info!(
            kind = event.kind.as_str(),
            credential = %event.credential_id.as_str(),
            owner = %event.owner_id.as_str(),
            provider = event.provider.as_str(),
            agent = event.agent.map(|a| a.as_str()).unwrap_or("-"),
            status = event.status.map(|s| s.as_str()).unwrap_or("-"),
            "credential changed"
        );
    }
}
