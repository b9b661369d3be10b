//! HTTP wiring: poem routes around the GraphQL schema.
//!
//! - `POST /graphql`: JSON only (a browser cannot send it cross-site without
//!   a CORS preflight, which this server never grants), size- and
//!   batch-limited.
//! - `GET /graphql`: queries only; mutations and subscriptions get 405.
//! - `GET /graphql/ws`: subscriptions (graphql-transport-ws and graphql-ws),
//!   in `crate::ws`.
//! - `GET /health`, and `GET /` the offline playground (`crate::playground`).

use async_graphql::parser::types::OperationType;
use async_graphql::BatchRequest;
use poem::http::{header, StatusCode};
use poem::web::Data as PoemData;
use poem::{get, handler, Body, Endpoint, EndpointExt, Request, Response, Route};

use crate::auth::Principal;
use crate::error::{ApiError, REQUEST_ID};
use crate::graphql::GraphqlConfig;
use crate::graphql::{gate, GatedSchema};
use crate::identity::Authenticator;
use crate::store::Store;

#[derive(Clone)]
struct AppState {
    schema: GatedSchema,
    store: Store,
    limits: GraphqlConfig,
    /// How long a request body may take to arrive (`SESAME_HTTP__BODY_TIMEOUT`).
    body_timeout: std::time::Duration,
    /// `sv_` tokens and, when configured, JWTs (`crate::identity`).
    auth: Authenticator,
}

/// All routes of the service. `connection_cap` is the public listener's
/// (`crate::edge`): WebSockets waiting for `connection_init` get a share of it.
pub fn routes(
    schema: GatedSchema,
    auth: Authenticator,
    limits: GraphqlConfig,
    body_timeout: std::time::Duration,
    connection_cap: Option<usize>,
) -> impl Endpoint {
    let store = auth.store().clone();
    Route::new()
        .at("/health", get(health))
        .at("/graphql", get(graphql_get).post(graphql_post).to_response().with(no_store()))
        .at(
            "/graphql/ws",
            crate::ws::endpoint(schema.clone(), auth.clone(), &limits, connection_cap).to_response().with(no_store()),
        )
        .nest("/", crate::playground::endpoint())
        .data(AppState { schema, store, limits, body_timeout, auth })
}

/// `/graphql` answers carry tokens and plaintext: never cached, never
/// sniffed as another type (every answer, errors included).
fn no_store() -> poem::middleware::SetHeader {
    poem::middleware::SetHeader::new()
        .overriding(header::CACHE_CONTROL, "no-store")
        .overriding(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
}

/// A GraphQL-shaped error response with a code, outside normal execution.
fn error_response(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response {
    crate::telemetry::note_code(code);
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code, "requestId": request_id } }]
    });
    Response::builder()
        .status(status)
        .content_type("application/json")
        .header("x-request-id", request_id)
        .body(body.to_string())
}

/// A refusal sent before the body was read whole: the connection closes
/// after it (the rest of the body is never read), and says so, so a client
/// that pools connections does not send its next request on it.
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    response
}

fn api_error_response(e: ApiError, request_id: &str) -> Response {
    let status = match e {
        ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let code = e.code();
    let gql: async_graphql::Error = REQUEST_ID.sync_scope(request_id.to_owned(), || e.into());
    error_response(status, code, &gql.message, request_id)
}

/// The caller's principal from the `Authorization` header; `None` when
/// there is no header (introspection works anonymously, data does not).
async fn authenticate(auth: &Authenticator, req: &Request) -> Result<Option<Principal>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthenticated("the Authorization header must be `Bearer <token>`".into()))?;
    auth.authenticate_header(value).await.map(|(principal, _)| Some(principal))
}

async fn execute(state: &AppState, batch: BatchRequest, principal: Option<Principal>, request_id: String) -> Response {
    crate::telemetry::note_principal(principal.as_ref());
    let batch = match principal {
        Some(p) => batch.data(p),
        None => batch,
    };
    // Limits, parsing and error codes: `crate::graphql::gate`, in front of the schema.
    let executed = state.schema.execute_batch_noted(batch, |i, op| {
        crate::telemetry::note_operation(i, op.name.as_deref(), op.kind);
    });
    let response = REQUEST_ID.scope(request_id.clone(), executed).await;
    crate::telemetry::note_responses(&response);
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
        return closing(error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "BAD_USER_INPUT",
            "send GraphQL requests with `Content-Type: application/json`",
            &request_id,
        ));
    }
    // A busy connection is never evicted at the connection cap
    // (`crate::edge`), so a body that trickles in has a deadline.
    let read = tokio::time::timeout(state.body_timeout, body.into_bytes_limit(state.limits.max_body_bytes)).await;
    let Ok(read) = read else {
        tracing::info!(request_id, timeout = ?state.body_timeout, "request body too slow; connection closed");
        return closing(error_response(
            StatusCode::REQUEST_TIMEOUT,
            "BAD_USER_INPUT",
            &format!("the request body did not arrive within {}", humantime::format_duration(state.body_timeout)),
            &request_id,
        ));
    };
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(poem::error::ReadBodyError::PayloadTooLarge) => {
            return closing(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "BAD_USER_INPUT",
                &format!("the request body is larger than {} bytes", state.limits.max_body_bytes),
                &request_id,
            ))
        }
        Err(_) => {
            return closing(error_response(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                "the request body could not be read",
                &request_id,
            ))
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
    let principal = match authenticate(&state.auth, req).await {
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

pub(crate) fn parse_get(query_string: &str) -> Result<async_graphql::Request, String> {
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
pub(crate) fn writes_over_get(request: &async_graphql::Request, limits: &GraphqlConfig) -> Option<OperationType> {
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
    let principal = match authenticate(&state.auth, req).await {
        Ok(p) => p,
        Err(e) => return api_error_response(e, &request_id),
    };
    execute(state, BatchRequest::Single(request), principal, request_id).await
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
