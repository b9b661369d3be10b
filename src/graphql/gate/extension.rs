//! The extension: steps 1–4 on each request, the time budget on queries,
//! and every error scrubbed on its way out.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest, NextRequest, NextSubscribe,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{ErrorExtensions, Pos, Request, Response, ServerResult};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use super::spec::{apply_variable_defaults, chosen_operation};
use super::{
    check_enum_literals, check_required_variables, check_structure, parse, prescan, sanitize, DocumentLimits, Refusal,
    SchemaNames,
};
use crate::auth::Principal;
use crate::graphql::documents::DocumentCache;
use crate::graphql::GraphqlConfig;

/// Installs the gate on a schema (see the module doc).
pub struct DocumentGate {
    state: Arc<GateState>,
}

struct GateState {
    signed_in: DocumentLimits,
    anonymous: DocumentLimits,
    timeout: Duration,
    cache: DocumentCache,
    names: OnceLock<SchemaNames>,
}

impl DocumentGate {
    pub fn new(config: &GraphqlConfig) -> Self {
        DocumentGate {
            state: Arc::new(GateState {
                signed_in: DocumentLimits::signed_in(config),
                anonymous: DocumentLimits::anonymous(config),
                timeout: config.request_timeout,
                cache: DocumentCache::default(),
                names: OnceLock::new(),
            }),
        }
    }
}

impl ExtensionFactory for DocumentGate {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GateExtension { state: self.state.clone(), is_query: Default::default() })
    }
}

struct GateExtension {
    state: Arc<GateState>,
    /// Set once the request is admitted: only queries run under the time
    /// budget. A mutation stopped halfway could have committed and not yet
    /// announced its change; mutations are bounded by the database's and
    /// the providers' own timeouts instead.
    is_query: std::sync::atomic::AtomicBool,
}

impl GateState {
    fn names(&self, ctx: &ExtensionContext<'_>) -> &SchemaNames {
        self.names.get_or_init(|| SchemaNames::from_registry(&ctx.schema_env.registry))
    }

    /// Steps 1–4 for one request; the parsed tree goes into the request.
    /// Returns whether the operation it runs is a query.
    fn admit(&self, ctx: &ExtensionContext<'_>, request: &mut Request, signed_in: bool) -> Result<bool, Refusal> {
        let limits = if signed_in { &self.signed_in } else { &self.anonymous };
        check_operation_name(request.operation_name.as_deref())?;
        let document = match signed_in.then(|| self.cache.get(&request.query)).flatten() {
            Some(document) => document,
            None => {
                prescan(&request.query, limits)?;
                let document = parse(&request.query)?;
                check_structure(&document, limits)?;
                check_enum_literals(&document, &ctx.schema_env.registry)?;
                let document = Arc::new(document);
                if signed_in {
                    self.cache.insert(&request.query, document.clone());
                }
                document
            }
        };
        check_required_variables(&document, request)?;
        apply_variable_defaults(&document, request);
        let is_query = chosen_operation(&document, request.operation_name.as_deref())
            .is_some_and(|op| op.node.ty == OperationType::Query);
        request.set_parsed_query(ExecutableDocument::clone(&document));
        Ok(is_query)
    }
}

fn is_signed_in(ctx: &ExtensionContext<'_>, request: &Request) -> bool {
    let key = std::any::TypeId::of::<Principal>();
    request.data.contains_key(&key) || ctx.session_data.contains_key(&key)
}

#[async_graphql::async_trait::async_trait]
impl Extension for GateExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let signed_in = is_signed_in(ctx, &request);
        let is_query = self.state.admit(ctx, &mut request, signed_in).map_err(Refusal::into_server_error)?;
        self.is_query.store(is_query, std::sync::atomic::Ordering::Relaxed);
        next.run(ctx, request).await
    }

    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        let names = self.state.names(ctx);
        response.errors.iter_mut().for_each(|e| sanitize(e, names));
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let state = self.state.clone();
        // Names are built on first use; make sure they exist for the stream.
        state.names(ctx);
        next.run(ctx, stream)
            .map(move |mut response| {
                if let Some(names) = state.names.get() {
                    response.errors.iter_mut().for_each(|e| sanitize(e, names));
                }
                response
            })
            .boxed()
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if !self.is_query.load(std::sync::atomic::Ordering::Relaxed) {
            return next.run(ctx, operation_name).await;
        }
        match tokio::time::timeout(self.state.timeout, next.run(ctx, operation_name)).await {
            Ok(response) => response,
            Err(_) => {
                let message = format!(
                    "the request ran longer than {} and was stopped (SESAME_GRAPHQL__REQUEST_TIMEOUT)",
                    humantime::format_duration(self.state.timeout)
                );
                let error = async_graphql::Error::new(message).extend_with(|_, e| e.set("code", "LIMIT_EXCEEDED"));
                Response::from_errors(vec![error.into_server_error(Pos::default())])
            }
        }
    }
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
