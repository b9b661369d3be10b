//! The schema behind its gate: steps 1–4 before async-graphql sees a
//! request, the time budget on queries, and every error scrubbed on its way
//! out, for HTTP and WebSocket alike (it is the `Executor` the socket's
//! protocol driver runs).
//!
//! The gate runs around the schema, not as an async-graphql extension: with
//! any extension installed, async-graphql runs every field of every
//! response through the extension chain (a `ResolveInfo`, a registry
//! lookup and a boxed future per field), which was the largest single cost
//! of a listing (BENCHMARKS.md, issue 25). The schema therefore has none.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::parser::types::{Directive, DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::registry::{MetaDirective, Registry};
use async_graphql::{
    BatchRequest, BatchResponse, ContextDirective, CustomDirective, CustomDirectiveFactory, Data, ErrorExtensions,
    Executor, Pos, Request, Response, ServerError, ServerResult,
};
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;

use super::spec::{apply_variable_defaults, chosen_operation};
use super::{
    check_enum_literals, check_required_variables, check_structure, parse, prescan, sanitize, DocumentLimits, Refusal,
    SchemaNames,
};
use crate::auth::Principal;
use crate::graphql::documents::DocumentCache;
use crate::graphql::{GraphqlConfig, VaultSchema};

/// The schema and the gate every request passes first.
#[derive(Clone)]
pub struct GatedSchema {
    schema: VaultSchema,
    gate: Arc<Gate>,
}

/// What a request was admitted as.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The operation's name, when the document or the request names one.
    pub name: Option<String>,
    pub kind: OperationType,
}

struct Gate {
    signed_in: DocumentLimits,
    anonymous: DocumentLimits,
    timeout: Duration,
    cache: DocumentCache,
    names: SchemaNames,
    /// The schema's types, as the enum-literal check reads them.
    registry: Registry,
}

impl GatedSchema {
    /// Builds the schema from `builder` with the gate in front of it.
    pub fn new(
        builder: async_graphql::SchemaBuilder<
            crate::graphql::QueryRoot,
            crate::graphql::MutationRoot,
            crate::graphql::SubscriptionRoot,
        >,
        config: &GraphqlConfig,
    ) -> GatedSchema {
        let copy = RegistryCopy::default();
        let slot = copy.0.clone();
        let schema = builder.directive(copy).finish();
        let registry = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .expect("async-graphql hands its registry to a directive's `register`");
        let gate = Gate {
            signed_in: DocumentLimits::signed_in(config),
            anonymous: DocumentLimits::anonymous(config),
            timeout: config.request_timeout,
            cache: DocumentCache::default(),
            names: SchemaNames::from_registry(&registry),
            registry,
        };
        GatedSchema { schema, gate: Arc::new(gate) }
    }

    /// The schema without its gate: its SDL, and the load tool's
    /// measurement of what the gate costs. Never serve a request through it.
    #[doc(hidden)]
    pub fn ungated(&self) -> &VaultSchema {
        &self.schema
    }

    /// Runs one request: admitted (the principal, if any, is in its data),
    /// executed (a query within the time budget), its errors scrubbed.
    /// `admitted` hears what the request was admitted as, before it runs.
    pub async fn execute_noted(&self, mut request: Request, admitted: impl FnOnce(&Admitted)) -> Response {
        let signed_in = request.data.contains_key(&std::any::TypeId::of::<Principal>());
        let response = match self.gate.admit(&mut request, signed_in) {
            Err(refusal) => Response::from_errors(vec![refusal.into_server_error()]),
            Ok(op) => {
                if let Some(op) = &op {
                    admitted(op);
                }
                if op.is_none_or(|op| op.kind == OperationType::Query) {
                    self.gate.within_budget(self.schema.execute(request)).await
                } else {
                    self.schema.execute(request).await
                }
            }
        };
        self.gate.scrub(response)
    }

    /// [`Self::execute_noted`] for each operation of a batch, in order;
    /// `admitted` hears each one's index in the batch too.
    pub async fn execute_batch_noted(
        &self,
        batch: BatchRequest,
        mut admitted: impl FnMut(usize, &Admitted),
    ) -> BatchResponse {
        match batch {
            BatchRequest::Single(request) => {
                BatchResponse::Single(self.execute_noted(request, |op| admitted(0, op)).await)
            }
            BatchRequest::Batch(requests) => {
                let mut responses = Vec::with_capacity(requests.len());
                for (i, request) in requests.into_iter().enumerate() {
                    responses.push(self.execute_noted(request, |op| admitted(i, op)).await);
                }
                BatchResponse::Batch(responses)
            }
        }
    }
}

impl Executor for GatedSchema {
    async fn execute(&self, request: Request) -> Response {
        self.execute_noted(request, |_| ()).await
    }

    /// An operation over the WebSocket: the principal is in the session's
    /// data (`connection_init`), a subscription's every response is
    /// scrubbed, and a query still runs within the time budget.
    fn execute_stream(&self, mut request: Request, session_data: Option<Arc<Data>>) -> BoxStream<'static, Response> {
        let key = std::any::TypeId::of::<Principal>();
        let signed_in =
            request.data.contains_key(&key) || session_data.as_ref().is_some_and(|data| data.contains_key(&key));
        let kind = match self.gate.admit(&mut request, signed_in) {
            Ok(op) => op.map_or(OperationType::Query, |op| op.kind),
            Err(refusal) => {
                let response = Response::from_errors(vec![refusal.into_server_error()]);
                return stream::once(std::future::ready(self.gate.scrub(response))).boxed();
            }
        };
        let responses = Executor::execute_stream(&self.schema, request, session_data);
        let gate = self.gate.clone();
        if kind == OperationType::Query {
            // One response; the budget covers it.
            let once = async move {
                let mut responses = responses;
                gate.scrub(gate.within_budget(async move { responses.next().await.unwrap_or_default() }).await)
            };
            return stream::once(once).boxed();
        }
        responses.map(move |response| gate.scrub(response)).boxed()
    }
}

impl Gate {
    /// Steps 1–4 for one request; the parsed tree goes into the request.
    /// `None` when the document has no operation to run (the name matches
    /// none, or it holds several and names none): async-graphql refuses it
    /// with its own message.
    fn admit(&self, request: &mut Request, signed_in: bool) -> Result<Option<Admitted>, Refusal> {
        let limits = if signed_in { &self.signed_in } else { &self.anonymous };
        check_operation_name(request.operation_name.as_deref())?;
        let document = match signed_in.then(|| self.cache.get(&request.query)).flatten() {
            Some(document) => document,
            None => {
                prescan(&request.query, limits)?;
                let document = parse(&request.query)?;
                check_structure(&document, limits)?;
                check_enum_literals(&document, &self.registry)?;
                let document = Arc::new(document);
                if signed_in {
                    self.cache.insert(&request.query, document.clone());
                }
                document
            }
        };
        check_required_variables(&document, request)?;
        apply_variable_defaults(&document, request);
        let admitted = chosen(&document, request.operation_name.as_deref());
        request.set_parsed_query(ExecutableDocument::clone(&document));
        Ok(admitted)
    }

    /// Runs a query within the time budget (the last guard). Mutations are
    /// not stopped halfway: one could have committed and not yet announced
    /// its change; they are bounded by the database's and the providers'
    /// own timeouts instead.
    async fn within_budget(&self, execution: impl std::future::Future<Output = Response>) -> Response {
        match tokio::time::timeout(self.timeout, execution).await {
            Ok(response) => response,
            Err(_) => {
                let message = format!(
                    "the request ran longer than {} and was stopped (SESAME_GRAPHQL__REQUEST_TIMEOUT)",
                    humantime::format_duration(self.timeout)
                );
                let error = async_graphql::Error::new(message).extend_with(|_, e| e.set("code", "LIMIT_EXCEEDED"));
                Response::from_errors(vec![error.into_server_error(Pos::default())])
            }
        }
    }

    fn scrub(&self, mut response: Response) -> Response {
        response.errors.iter_mut().for_each(|e| sanitize(e, &self.names));
        response
    }
}

/// The operation a request runs, by the name a log may show: an anonymous
/// operation has none.
fn chosen(document: &ExecutableDocument, requested: Option<&str>) -> Option<Admitted> {
    let op = chosen_operation(document, requested)?;
    let name = match &document.operations {
        DocumentOperations::Single(_) => None,
        DocumentOperations::Multiple(ops) => match requested {
            Some(name) => Some(name.to_owned()),
            None => ops.keys().next().map(|name| name.to_string()),
        },
    };
    Some(Admitted { name, kind: op.node.ty })
}

/// The operation to run is named by the request, not the document: a name
/// that is not a GraphQL name can match no operation, and async-graphql's
/// "Unknown operation named \"…\"" would quote it whole, past
/// [`super::sanitize`] when it holds quotes itself (found by the
/// `gate_request` fuzz target).
fn check_operation_name(name: Option<&str>) -> Result<(), Refusal> {
    let Some(name) = name else { return Ok(()) };
    let mut chars = name.chars();
    let is_name = chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric());
    if is_name {
        Ok(())
    } else {
        Err(Refusal::new("operationName is not a GraphQL name ([_A-Za-z][_0-9A-Za-z]*)", None))
    }
}

/// async-graphql keeps a schema's registry to itself; the one place its
/// builder hands it out is a custom directive's `register`. This factory
/// registers no directive (the schema, its SDL and its introspection are
/// unchanged, and a document naming it is refused as an unknown directive
/// by validation): it only lets the gate copy the types it checks against.
#[derive(Default)]
struct RegistryCopy(Arc<Mutex<Option<Registry>>>);

impl CustomDirectiveFactory for RegistryCopy {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("sesameGateRegistryCopy")
    }

    fn register(&self, registry: &mut Registry) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(copy_registry(registry));
    }

    fn create(&self, _: &ContextDirective<'_>, _: &Directive) -> ServerResult<Box<dyn CustomDirective>> {
        Err(ServerError::new("unknown directive", None))
    }
}

fn copy_registry(registry: &Registry) -> Registry {
    Registry {
        types: registry.types.clone(),
        // `MetaDirective` is not `Clone`; its parts are.
        directives: registry
            .directives
            .iter()
            .map(|(name, d)| {
                let copy = MetaDirective {
                    name: d.name.clone(),
                    description: d.description.clone(),
                    locations: d.locations.clone(),
                    args: d.args.clone(),
                    is_repeatable: d.is_repeatable,
                    visible: d.visible,
                    composable: d.composable.clone(),
                };
                (name.clone(), copy)
            })
            .collect(),
        implements: registry.implements.clone(),
        query_type: registry.query_type.clone(),
        mutation_type: registry.mutation_type.clone(),
        subscription_type: registry.subscription_type.clone(),
        ..Registry::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_are_graphql_names() {
        assert_eq!(check_operation_name(None), Ok(()));
        assert_eq!(check_operation_name(Some("Q_1")), Ok(()));
        assert_eq!(check_operation_name(Some("_q")), Ok(()));
        for bad in ["", "1Q", "a b", "a\"sk-ant-secret\"b", "ü"] {
            let refusal = check_operation_name(Some(bad)).unwrap_err();
            assert!(!refusal.message.contains("secret"), "{refusal:?}");
        }
        // What the check keeps out: a quoted name holding quotes escapes the scrub.
        let names = SchemaNames::default();
        let leaked = names.scrub(r#"Unknown operation named "a"sk-ant-secret"b""#);
        assert!(leaked.contains("secret"), "{leaked}");
    }
}
