//! HTTP wiring: poem routes around the GraphQL schema.
//!
//! - `POST /graphql`: JSON only (a browser cannot send it cross-site without
//!   a CORS preflight, which this server never grants), size- and
//!   batch-limited.
//! - `GET /graphql`: queries only; mutations and subscriptions get 405.
//! - `GET /graphql/ws`: subscriptions (graphql-transport-ws and graphql-ws).
//! - `GET /health`, and `GET /` the offline playground (`crate::playground`).

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::parser::types::OperationType;
use async_graphql::{BatchRequest, Data};
use async_graphql_poem::{GraphQLProtocol, GraphQLWebSocket};
use futures_util::{SinkExt, StreamExt};
use poem::http::{header, StatusCode};
use poem::web::websocket::{Message, WebSocket, WebSocketConfig};
use poem::web::Data as PoemData;
use poem::{get, handler, Body, Endpoint, EndpointExt, IntoResponse, Request, Response, Route};

use crate::auth::{BearerToken, Principal};
use crate::config::GraphqlConfig;
use crate::error::{ApiError, REQUEST_ID};
use crate::graphql::{gate, VaultSchema};
use crate::store::Store;

/// Per-socket read/write buffer.
const WS_BUFFER: usize = 4 * 1024;
/// The largest WebSocket message accepted (a subscribe is a few hundred bytes).
const WS_MAX_MESSAGE: usize = 64 * 1024;

#[derive(Clone)]
struct AppState {
    schema: VaultSchema,
    store: Store,
    limits: GraphqlConfig,
}

/// All routes of the service.
pub fn routes(schema: VaultSchema, store: Store, limits: GraphqlConfig) -> impl Endpoint {
    Route::new()
        .at("/health", get(health))
        .at("/graphql", get(graphql_get).post(graphql_post))
        .at("/graphql/ws", get(graphql_ws))
        .nest("/", crate::playground::endpoint())
        .data(AppState { schema, store, limits })
}

/// A GraphQL-shaped error response with a code, outside normal execution.
fn error_response(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code, "requestId": request_id } }]
    });
    Response::builder()
        .status(status)
        .content_type("application/json")
        .header("x-request-id", request_id)
        .body(body.to_string())
}

fn api_error_response(e: ApiError, request_id: &str) -> Response {
    let status = match e {
        ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let code = e.code();
    let gql: async_graphql::Error = REQUEST_ID.sync_scope(request_id.to_owned(), || e.into());
    error_response(status, code, &gql.message, request_id)
}

/// The caller's principal from the `Authorization` header; `None` when
/// there is no header (introspection works anonymously, data does not).
async fn authenticate(store: &Store, req: &Request) -> Result<Option<Principal>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthenticated("the Authorization header must be `Bearer <token>`".into()))?;
    let token = BearerToken::from_header(value)?;
    store.authenticate(&token).await.map(Some)
}

async fn execute(state: &AppState, batch: BatchRequest, principal: Option<Principal>, request_id: String) -> Response {
    let batch = match principal {
        Some(p) => batch.data(p),
        None => batch,
    };
    // Limits, parsing and error codes: `crate::graphql::gate`, inside the schema.
    let response = REQUEST_ID.scope(request_id.clone(), state.schema.execute_batch(batch)).await;
    let body = serde_json::to_vec(&response).unwrap_or_default();
    Response::builder().content_type("application/json").header("x-request-id", request_id).body(body)
}

fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[handler]
async fn graphql_post(req: &Request, body: Body, PoemData(state): PoemData<&AppState>) -> Response {
    let request_id = new_request_id();
    let is_json = req
        .content_type()
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "BAD_USER_INPUT",
            "send GraphQL requests with `Content-Type: application/json`",
            &request_id,
        );
    }
    let bytes = match body.into_bytes_limit(state.limits.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(poem::error::ReadBodyError::PayloadTooLarge) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "BAD_USER_INPUT",
                &format!("the request body is larger than {} bytes", state.limits.max_body_bytes),
                &request_id,
            )
        }
        Err(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                "the request body could not be read",
                &request_id,
            )
        }
    };
    let batch: BatchRequest = match serde_json::from_slice(&bytes) {
        Ok(batch) => batch,
        Err(e) => {
            // Only the position: serde's message can quote the (secret) value.
            let message = format!(
                "the body is not a GraphQL request: expected JSON like {{\"query\": \"…\", \"variables\": {{…}}}} \
                 (problem at line {} column {})",
                e.line(),
                e.column()
            );
            return error_response(StatusCode::BAD_REQUEST, "BAD_USER_INPUT", &message, &request_id);
        }
    };
    if let BatchRequest::Batch(requests) = &batch {
        if requests.is_empty() || requests.len() > state.limits.max_batch {
            let message = format!("a batch must hold 1 to {} operations", state.limits.max_batch);
            return error_response(StatusCode::BAD_REQUEST, "BAD_USER_INPUT", &message, &request_id);
        }
    }
    let principal = match authenticate(&state.store, req).await {
        Ok(p) => p,
        Err(e) => return api_error_response(e, &request_id),
    };
    execute(state, batch, principal, request_id).await
}

/// A GraphQL request in a query string. async-graphql's own parser reads
/// `operation_name`; clients send `operationName`, so accept both.
#[derive(serde::Deserialize)]
struct GetRequest {
    #[serde(default)]
    query: String,
    #[serde(rename = "operationName", alias = "operation_name")]
    operation_name: Option<String>,
    variables: Option<String>,
}

fn parse_get(query_string: &str) -> Result<async_graphql::Request, String> {
    let get: GetRequest =
        serde_urlencoded::from_str(query_string).map_err(|_| "the query string is malformed".to_owned())?;
    if get.query.trim().is_empty() {
        return Err("GET /graphql needs ?query=…; or POST JSON to /graphql".into());
    }
    let mut request = async_graphql::Request::new(get.query);
    if let Some(name) = get.operation_name {
        request = request.operation_name(name);
    }
    if let Some(variables) = get.variables {
        let value: serde_json::Value = serde_json::from_str(&variables)
            .map_err(|e| format!("variables is not JSON (problem at line {} column {})", e.line(), e.column()))?;
        request = request.variables(async_graphql::Variables::from_json(value));
    }
    Ok(request)
}

/// Whether a GET would carry anything but queries. Any mutation or
/// subscription in the document refuses the request, whichever operation
/// is named: GET must never change state.
/// The text is pre-scanned first (the gate's bounds): it is parsed here,
/// before the schema's own gate runs.
fn writes_over_get(request: &async_graphql::Request, limits: &GraphqlConfig) -> Option<OperationType> {
    gate::prescan(&request.query, &gate::DocumentLimits::signed_in(limits)).ok()?;
    let doc = async_graphql::parser::parse_query(&request.query).ok()?;
    doc.operations.iter().map(|(_, op)| op.node.ty).find(|ty| *ty != OperationType::Query)
}

#[handler]
async fn graphql_get(req: &Request, PoemData(state): PoemData<&AppState>) -> Response {
    let request_id = new_request_id();
    let request = match parse_get(req.uri().query().unwrap_or_default()) {
        Ok(r) => r,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, "BAD_USER_INPUT", &message, &request_id),
    };
    if let Some(ty) = writes_over_get(&request, &state.limits) {
        let message = match ty {
            OperationType::Mutation => "mutations must be sent with POST",
            _ => "subscriptions must use the WebSocket endpoint /graphql/ws",
        };
        let mut response = error_response(StatusCode::METHOD_NOT_ALLOWED, "BAD_USER_INPUT", message, &request_id);
        response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return response;
    }
    let principal = match authenticate(&state.store, req).await {
        Ok(p) => p,
        Err(e) => return api_error_response(e, &request_id),
    };
    execute(state, BatchRequest::Single(request), principal, request_id).await
}

/// The next text frame, skipping pings; `None` when the socket closes.
async fn next_text<S>(stream: &mut S) -> Option<String>
where
    S: futures_util::Stream<Item = std::io::Result<Message>> + Unpin,
{
    while let Some(Ok(message)) = stream.next().await {
        match message {
            Message::Text(text) => return Some(text),
            Message::Binary(bytes) => return String::from_utf8(bytes).ok(),
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => return None,
        }
    }
    None
}

/// WebSocket subscriptions. The token comes in `connection_init` (browsers
/// cannot set headers on a WebSocket); it is checked before the GraphQL
/// protocol starts, so refusals get the graphql-ws close codes: 4401
/// without a token, 4403 with a bad one, 4408 when no `connection_init`
/// arrives in time.
#[handler]
async fn graphql_ws(
    protocol: GraphQLProtocol,
    websocket: WebSocket,
    PoemData(state): PoemData<&AppState>,
) -> impl IntoResponse {
    let schema = state.schema.clone();
    let store = state.store.clone();
    let init_timeout = state.limits.ws_init_timeout;
    let recheck = state.limits.ws_token_recheck;
    // tungstenite's default 128 KiB read buffer per socket would dominate the
    // memory of thousands of idle subscribers; GraphQL messages are small.
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_BUFFER)
        .write_buffer_size(WS_BUFFER)
        .max_message_size(Some(WS_MAX_MESSAGE))
        .max_frame_size(Some(WS_MAX_MESSAGE));
    websocket.config(config).protocols(ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |socket| async move {
        let (mut sink, mut stream) = socket.split();
        let first = match tokio::time::timeout(init_timeout, next_text(&mut stream)).await {
            Ok(Some(first)) => first,
            Ok(None) => return,
            Err(_) => {
                let _ = sink.send(Message::close_with(4408u16, "Connection initialisation timeout")).await;
                return;
            }
        };
        let init: serde_json::Value = serde_json::from_str(&first).unwrap_or_default();
        let header = init["payload"]
            .get("Authorization")
            .or_else(|| init["payload"].get("authorization"))
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let refuse = |code: u16, reason: &'static str| Message::close_with(code, reason);
        let (principal, token_hash) = match (init["type"].as_str(), header) {
            (Some("connection_init"), Some(header)) => {
                let checked = async {
                    let token = BearerToken::from_header(&header)?;
                    store.authenticate(&token).await.map(|principal| (principal, token.hash()))
                };
                match checked.await {
                    Ok(checked) => checked,
                    Err(ApiError::Internal(e)) => {
                        tracing::error!(error = format!("{e:#}"), "authenticating a WebSocket failed");
                        let _ = sink.send(refuse(1011, "Internal error")).await;
                        return;
                    }
                    Err(_) => {
                        let _ = sink.send(refuse(4403, "Forbidden: the token is unknown, revoked or malformed")).await;
                        return;
                    }
                }
            }
            _ => {
                let _ = sink
                    .send(refuse(
                        4401,
                        "Unauthorized: send connection_init with {\"Authorization\": \"Bearer <token>\"}",
                    ))
                    .await;
                return;
            }
        };
        // Hand the connection_init on to the protocol, already authenticated.
        let replay = futures_util::stream::once(async move { Ok(Message::Text(first)) }).chain(stream);
        let session_principal = principal.clone();
        let serve = GraphQLWebSocket::new_with_pair(&mut sink, replay, schema, protocol)
            .on_connection_init(move |_| async move {
                let mut data = Data::default();
                data.insert(session_principal);
                Ok(data)
            })
            .serve();
        let revoked = tokio::select! {
            () = serve => false,
            () = token_revoked(&store, &token_hash, &principal, recheck) => true,
        };
        if revoked {
            let _ = sink.send(Message::close_with(4403u16, "Forbidden: the token was revoked")).await;
        }
    })
}

/// Returns once the token (by its hash) no longer stands for `principal`
/// (revoked, or its user removed or given another role), checking every
/// `every`. A database hiccup is not a revocation: the next check decides.
async fn token_revoked(store: &Store, token_hash: &str, principal: &Principal, every: std::time::Duration) {
    loop {
        tokio::time::sleep(every).await;
        match store.authenticate_hash(token_hash.to_owned()).await {
            Ok(now) if now == *principal => {}
            Err(ApiError::Internal(e)) => {
                tracing::warn!(error = format!("{e:#}"), "re-checking a WebSocket's token failed");
            }
            _ => return,
        }
    }
}

#[handler]
async fn health(PoemData(state): PoemData<&AppState>) -> Response {
    if state.store.ping().await {
        Response::builder().content_type("application/json").body(r#"{"status":"ok"}"#)
    } else {
        Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .content_type("application/json")
            .body(r#"{"status":"unavailable"}"#)
    }
}
