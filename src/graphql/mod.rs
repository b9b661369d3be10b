//! The GraphQL schema, independent of any HTTP framework: tests and the
//! `schema` command use it directly; `crate::http` serves it.

pub(crate) mod checks;
mod documents;
mod event_stream;
mod flows;
pub mod gate;
mod guards;
mod mutation;
mod people;
mod query;
mod removal;
mod settings;
mod subscription;
pub mod subscription_limits;
mod tasks;
pub mod types;
mod usage;
mod webhooks;

use async_graphql::{Context, SDLExportOptions, Schema};

pub use gate::GatedSchema;
pub use mutation::MutationRoot;
pub use query::QueryRoot;
pub use settings::GraphqlConfig;
pub use subscription::SubscriptionRoot;

use crate::auth::Principal;
use crate::checks::Checker;
use crate::error::{ApiError, ApiResult};
use crate::flows::FlowEngine;
use crate::store::Store;

pub type VaultSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Builds the schema with its safety limits, behind the document gate. The
/// caller's `Principal`, if any, goes into each request's data.
pub fn build_schema(
    store: Store,
    flows: FlowEngine,
    checker: Checker,
    webhooks: crate::webhooks::Webhooks,
    config: &GraphqlConfig,
) -> GatedSchema {
    let mut builder = Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .data(store)
        .data(flows)
        .data(checker)
        .data(webhooks)
        .limit_depth(config.max_depth)
        .limit_complexity(config.max_complexity)
        .limit_recursive_depth(32)
        .limit_directives(16);
    if !config.introspection {
        builder = builder.disable_introspection();
    }
    GatedSchema::new(builder, config)
}

/// The SDL as checked in under `schema/schema.graphql`.
pub fn sdl(schema: &GatedSchema) -> String {
    schema.ungated().sdl_with_options(SDLExportOptions::new().sorted_fields().sorted_arguments().sorted_enum_items())
}

pub(crate) fn store<'a>(ctx: &Context<'a>) -> &'a Store {
    ctx.data_unchecked::<Store>()
}

pub(crate) fn principal<'a>(ctx: &Context<'a>) -> ApiResult<&'a Principal> {
    ctx.data_opt::<Principal>().ok_or_else(|| {
        ApiError::Unauthenticated("sign in first: send the header `Authorization: Bearer <token>`".into())
    })
}
