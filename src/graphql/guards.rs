//! Field guards: the second wall. The first is the store's role handles.

use async_graphql::{Context, Guard, Result};

use super::principal;
use crate::auth::Principal;
use crate::error::ApiError;

/// A person (USER or ADMIN), not a runner.
pub struct PersonGuard;

impl Guard for PersonGuard {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        match principal(ctx)? {
            Principal::Person { .. } => Ok(()),
            Principal::Runner { .. } => Err(ApiError::forbidden("a runner token cannot do this").into()),
        }
    }
}

pub struct AdminGuard;

impl Guard for AdminGuard {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        if principal(ctx)?.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs the ADMIN role").into())
        }
    }
}

pub struct RunnerGuard;

impl Guard for RunnerGuard {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        match principal(ctx)? {
            Principal::Runner { .. } => Ok(()),
            Principal::Person { .. } => Err(ApiError::forbidden("only the task runner's token may do this").into()),
        }
    }
}

/// Any authenticated caller.
pub struct SignedIn;

impl Guard for SignedIn {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        principal(ctx).map(|_| ()).map_err(Into::into)
    }
}
