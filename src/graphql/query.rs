use async_graphql::{Context, Object, ID};

use super::checks::CredentialCheck;
use super::guards::{AdminGuard, PersonGuard, SignedIn};
use super::people::{AccessToken, Person, User};
use super::types::{
    AgentInfo, AuditEntryConnection, AuthorizationFlow, Credential, CredentialConnection, DeviceFlow, ProviderInfo,
    SystemKey, UserConnection,
};
use super::{principal, store};
use crate::agents::catalog;
use crate::domain::{CredentialStatus, Provider};
use crate::ids::{decode_cursor, page_size, parse_id};
use async_graphql::Result;

pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// The signed-in person.
    #[graphql(guard = "PersonGuard")]
    async fn me(&self, ctx: &Context<'_>) -> Result<User> {
        Ok(store(ctx).owner(principal(ctx)?)?.me().await?.into())
    }

    /// Every agent, with the ways to authenticate it and the setup steps.
    #[graphql(guard = "SignedIn")]
    async fn agents(&self) -> Vec<AgentInfo> {
        catalog::catalog().iter().map(AgentInfo::from).collect()
    }

    /// Every provider, in the order to list them, with the variable its system-wide key is set in.
    #[graphql(guard = "SignedIn")]
    async fn providers(&self) -> Vec<ProviderInfo> {
        crate::providers::registered().map(ProviderInfo::from).collect()
    }

    /// The system-wide keys set by environment: configured or not, never the value.
    #[graphql(guard = "SignedIn")]
    async fn system_keys(&self, ctx: &Context<'_>) -> Result<Vec<SystemKey>> {
        let keys = store(ctx).system_keys();
        let checks = store(ctx).system_key_checks().await?;
        Ok(Provider::ALL
            .iter()
            .map(|&provider| SystemKey {
                provider,
                env_var: crate::providers::spec(provider).api_key_env.to_owned(),
                configured: keys.get(provider).is_some(),
                check: CredentialCheck::of_system_key(provider, &checks),
            })
            .collect())
    }

    /// What a task spent through the egress proxy (delivery PROXY), one entry per
    /// issuance: the runner and admins see any task, a person only their own.
    #[graphql(guard = "SignedIn")]
    async fn task_usage(&self, ctx: &Context<'_>, task_id: String) -> Result<Vec<super::usage::ProxyUsage>> {
        Ok(super::usage::task_usage(ctx, &task_id).await?)
    }

    /// The signed-in person's tasks through the egress proxy over the last 30 days,
    /// by agent, provider and source (subscription, API key, system key).
    #[graphql(guard = "PersonGuard")]
    async fn my_usage(&self, ctx: &Context<'_>) -> Result<Vec<super::usage::UsageSummary>> {
        Ok(super::usage::my_usage(ctx).await?)
    }

    #[graphql(guard = "PersonGuard")]
    async fn my_credentials(&self, ctx: &Context<'_>) -> Result<Vec<Credential>> {
        Ok(store(ctx).owner(principal(ctx)?)?.credentials().await?.into_iter().map(Credential).collect())
    }

    /// Owner: everything. Admin: metadata only (hint is FORBIDDEN). Anyone else: null, as if it did not exist.
    #[graphql(guard = "SignedIn")]
    async fn credential(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Credential>> {
        let id = parse_id("id", &id)?;
        let principal = principal(ctx)?;
        let store = store(ctx);
        if principal.user_id().is_none() {
            return Ok(None);
        }
        if let Some(own) = store.owner(principal)?.credential(&id).await? {
            return Ok(Some(Credential(own)));
        }
        match store.admin(principal) {
            Ok(admin) => Ok(admin.credential(&id).await?.map(Credential)),
            Err(_) => Ok(None),
        }
    }

    /// Owner only.
    #[graphql(guard = "PersonGuard")]
    async fn device_flow(&self, ctx: &Context<'_>, id: ID) -> Result<Option<DeviceFlow>> {
        Ok(super::flows::device_flow(ctx, &id).await?)
    }

    /// Owner only: the caller's device sign-ins still in progress, newest first (to resume them).
    #[graphql(guard = "PersonGuard")]
    async fn my_pending_device_flows(&self, ctx: &Context<'_>) -> Result<Vec<DeviceFlow>> {
        Ok(super::flows::pending_device_flows(ctx).await?)
    }

    /// Owner only: the caller's authorization-code sign-ins still in progress, newest first, each
    /// with its authorization URL (to resume them: open it again, then complete with the code).
    #[graphql(guard = "PersonGuard")]
    async fn my_pending_authorization_flows(&self, ctx: &Context<'_>) -> Result<Vec<AuthorizationFlow>> {
        Ok(super::flows::pending_authorization_flows(ctx).await?)
    }

    /// ADMIN only.
    #[graphql(guard = "AdminGuard")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<UserConnection> {
        let admin = store(ctx).admin(principal(ctx)?)?;
        let page = admin.users(page_size(first)?, decode_cursor(after.as_deref())?).await?;
        Ok(UserConnection { nodes: page.nodes.into_iter().map(User::from).collect(), next_cursor: page.next_cursor })
    }

    /// ADMIN only: metadata of every user's credentials.
    #[graphql(guard = "AdminGuard")]
    async fn credentials(
        &self,
        ctx: &Context<'_>,
        owner_id: Option<ID>,
        status: Option<CredentialStatus>,
        #[graphql(default = 50)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<CredentialConnection> {
        let admin = store(ctx).admin(principal(ctx)?)?;
        let owner_id = owner_id.map(|id| parse_id("ownerId", &id)).transpose()?;
        let page = admin.credentials(owner_id, status, page_size(first)?, decode_cursor(after.as_deref())?).await?;
        Ok(CredentialConnection {
            nodes: page.nodes.into_iter().map(Credential).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// The caller's own live tokens (never the tokens themselves).
    #[graphql(guard = "PersonGuard")]
    async fn my_tokens(&self, ctx: &Context<'_>) -> Result<Vec<AccessToken>> {
        Ok(store(ctx).owner(principal(ctx)?)?.my_tokens().await?.into_iter().map(AccessToken::from).collect())
    }

    /// ADMIN only: live tokens of one person, or every person's without userId. Runner tokens are not listed:
    /// the operator manages them on the vault's host (`sesame-vault token list`).
    #[graphql(guard = "AdminGuard")]
    async fn tokens(&self, ctx: &Context<'_>, user_id: Option<ID>) -> Result<Vec<AccessToken>> {
        let admin = store(ctx).admin(principal(ctx)?)?;
        let user_id = user_id.map(|id| parse_id("userId", &id)).transpose()?;
        Ok(admin.tokens(user_id.as_deref()).await?.into_iter().map(AccessToken::from).collect())
    }

    /// ADMIN only: every person, with whether they are disabled and how they sign in.
    #[graphql(guard = "AdminGuard")]
    async fn people(&self, ctx: &Context<'_>) -> Result<Vec<Person>> {
        Ok(store(ctx).admin(principal(ctx)?)?.people().await?.into_iter().map(Person::from).collect())
    }

    /// ADMIN only: who did what to which credential, oldest first. Never secret material.
    #[graphql(guard = "AdminGuard")]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "Newest entries first (the cursor then pages back in time).", default = false)]
        newest_first: bool,
    ) -> Result<AuditEntryConnection> {
        let admin = store(ctx).admin(principal(ctx)?)?;
        let page = admin.audit_log(page_size(first)?, decode_cursor(after.as_deref())?, newest_first).await?;
        Ok(AuditEntryConnection {
            nodes: page.nodes.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// Admin only: the webhook endpoints (never their secrets).
    #[graphql(guard = "AdminGuard")]
    async fn webhooks(&self, ctx: &Context<'_>) -> Result<Vec<super::webhooks::Webhook>> {
        Ok(super::webhooks::list(ctx).await?)
    }

    /// Admin only: an endpoint's deliveries, newest first (`first` at most 100; `after` a cursor).
    /// Never the body sent, and of the receiver's answer only a short scrubbed excerpt.
    #[graphql(guard = "AdminGuard")]
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        id: ID,
        after: Option<String>,
        first: Option<i32>,
    ) -> Result<Vec<super::webhooks::WebhookDelivery>> {
        Ok(super::webhooks::deliveries(ctx, &id, after.as_deref(), first).await?)
    }
}
