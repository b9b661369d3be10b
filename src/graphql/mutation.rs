use async_graphql::{Context, Object, ID};
use chrono::{DateTime, Utc};

use super::guards::{AdminGuard, PersonGuard, RunnerGuard, SignedIn};
use super::people::Person;
use super::removal::AgentRemoval;
use super::types::{
    AuthorizationFlow, Credential, CredentialFileInput, DeviceFlow, NewToken, NewUser, SubscriptionCredentialInput,
    TaskCredentials,
};
use super::{checks, principal, store};
use crate::agents::{parse_subscription, SubscriptionInput};
use crate::auth::Principal;
use crate::domain::{Agent, Provider, Role};
use crate::error::ApiError;
use crate::ids::parse_id;
use crate::providers::{ApiKey, Probe};
use async_graphql::Result;

pub struct MutationRoot;

/// Counts one write of the caller against their rate (`crate::limits`),
/// before any work: over it, LIMIT_EXCEEDED and nothing is written.
fn count_write(ctx: &Context<'_>) -> Result<()> {
    let owner = store(ctx).owner(principal(ctx)?)?;
    Ok(crate::limits::check_write(owner.user_id())?)
}

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Sets (or replaces, keeping its id) the caller's API key for a provider.
    #[graphql(guard = "PersonGuard")]
    async fn set_api_key(
        &self,
        ctx: &Context<'_>,
        provider: Provider,
        #[graphql(secret)] key: String,
        expires_at: Option<DateTime<Utc>>,
        #[graphql(
            desc = "Check the key with its provider before saving it; a refused key is not saved. Null: the server's default (SESAME_CHECKS__ON_SAVE, on unless set to false)."
        )]
        check_on_save: Option<bool>,
    ) -> Result<Credential> {
        let owner = store(ctx).owner(principal(ctx)?)?;
        crate::limits::check_write(owner.user_id())?;
        let key = ApiKey::parse(provider, &key)?;
        let probe = Probe::ApiKey(key.secret().expose());
        let check = checks::before_save(ctx, &owner, check_on_save, (provider, None), probe).await?;
        Ok(owner.set_api_key_checked(key, expires_at, check.as_ref()).await.map(Credential)?)
    }

    /// Saves (or replaces) the caller's subscription credential for an agent.
    #[graphql(guard = "PersonGuard")]
    async fn save_subscription_credential(
        &self,
        ctx: &Context<'_>,
        input: SubscriptionCredentialInput,
    ) -> Result<Credential> {
        let owner = store(ctx).owner(principal(ctx)?)?;
        crate::limits::check_write(owner.user_id())?;
        let parsed = parse_subscription(
            SubscriptionInput {
                agent: input.agent,
                provider: input.provider,
                token: input.token.as_deref(),
                access_token: input.access_token.as_deref(),
                refresh_token: input.refresh_token.as_deref(),
                auth_json: input.auth_json.as_deref(),
                expires_at: input.expires_at,
            },
            Utc::now(),
        )?;
        let probe = Probe::Subscription {
            access_token: parsed.secret.access_token.expose(),
            account_id: parsed.secret.account_id.as_deref(),
        };
        // An access token past its expiry says nothing about the login: with a
        // refresh token (a Codex auth.json pasted a day later) it is saved
        // unchecked, and the refresher renews it; a check would refuse it.
        let stale = parsed.expires_at.is_some_and(|t| t <= Utc::now()) && parsed.secret.refresh_token.is_some();
        let check_on_save = if stale { Some(false) } else { input.check_on_save };
        let check =
            checks::before_save(ctx, &owner, check_on_save, (parsed.provider, Some(input.agent)), probe).await?;
        Ok(owner.save_subscription_checked(input.agent, parsed, check.as_ref()).await.map(Credential)?)
    }

    /// Owner only: checks one of the caller's credentials with its provider now (no refresh, no lease).
    /// An EXPIRED or NEEDS_REAUTH credential is returned as it is: its status already says what to do.
    /// So is one checked less than `SESAME_CHECKS__COOLDOWN` ago (30 s by default), with its last check:
    /// nothing is sent to the provider.
    #[graphql(guard = "PersonGuard")]
    async fn check_credential(&self, ctx: &Context<'_>, id: ID) -> Result<Credential> {
        let id = parse_id("id", &id)?;
        let owner = store(ctx).owner(principal(ctx)?)?;
        crate::limits::check_write(owner.user_id())?;
        Ok(crate::checks::check_own(checks::checker(ctx), &owner, &id).await.map(Credential)?)
    }

    /// Owner only: checks every one of the caller's credentials with its provider, a few at a time.
    /// Those checked less than `SESAME_CHECKS__COOLDOWN` ago are returned as they are, with their last check.
    #[graphql(guard = "PersonGuard")]
    async fn check_my_credentials(&self, ctx: &Context<'_>) -> Result<Vec<Credential>> {
        let owner = store(ctx).owner(principal(ctx)?)?;
        crate::limits::check_write(owner.user_id())?;
        let checked = crate::checks::check_all_own(checks::checker(ctx), &owner).await?;
        Ok(checked.into_iter().map(Credential).collect())
    }

    /// Owner only. A token the vault's own sign-in obtained is revoked at its provider too (best effort).
    #[graphql(guard = "PersonGuard")]
    async fn remove_credential(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        count_write(ctx)?;
        let id = parse_id("id", &id)?;
        store(ctx).owner(principal(ctx)?)?.remove(&id).await?;
        Ok(true)
    }

    /// Owner only: the caller's API key for a provider. True when it was removed, false when there was none.
    #[graphql(guard = "PersonGuard")]
    async fn remove_api_key(&self, ctx: &Context<'_>, provider: Provider) -> Result<bool> {
        count_write(ctx)?;
        Ok(store(ctx).owner(principal(ctx)?)?.remove_api_key(provider).await?)
    }

    /// Owner only (Agent Credentials -> Remove Credentials): everything of the caller's that only serves that
    /// agent, as disconnectAgent does; returns how many credentials were removed.
    #[graphql(guard = "PersonGuard")]
    async fn remove_agent_credentials(
        &self,
        ctx: &Context<'_>,
        agent: Agent,
        #[graphql(default = false, desc = "As in disconnectAgent: also the API keys shared with other agents.")]
        include_shared_api_keys: bool,
    ) -> Result<i32> {
        count_write(ctx)?;
        let removal = store(ctx).owner(principal(ctx)?)?.disconnect(agent, include_shared_api_keys).await?;
        Ok(i32::try_from(removal.removed.len()).unwrap_or(i32::MAX))
    }

    /// Owner only: removes everything of the caller's that only serves that agent (its subscription credentials,
    /// and an API key no other agent takes: GitHub for Copilot, Google for Gemini), in one change; tokens the
    /// vault's own sign-in obtained are revoked at the provider (best effort). Says what was removed and what
    /// the agent would still use.
    #[graphql(guard = "PersonGuard")]
    async fn disconnect_agent(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The agent to disconnect.")] agent: Agent,
        #[graphql(
            default = false,
            desc = "Also the caller's API keys this agent shares with other agents (Anthropic: Claude Code and \
                    OpenCode; OpenAI: Codex and OpenCode)."
        )]
        include_shared_api_keys: bool,
    ) -> Result<AgentRemoval> {
        count_write(ctx)?;
        let removal = store(ctx).owner(principal(ctx)?)?.disconnect(agent, include_shared_api_keys).await?;
        Ok(AgentRemoval(removal))
    }

    #[graphql(guard = "PersonGuard")]
    async fn start_device_flow(&self, ctx: &Context<'_>, agent: Agent, provider: Provider) -> Result<DeviceFlow> {
        count_write(ctx)?;
        Ok(super::flows::start_device_flow(ctx, agent, provider).await?)
    }

    #[graphql(guard = "PersonGuard")]
    async fn start_authorization_flow(
        &self,
        ctx: &Context<'_>,
        agent: Agent,
        provider: Provider,
    ) -> Result<AuthorizationFlow> {
        count_write(ctx)?;
        Ok(super::flows::start_authorization_flow(ctx, agent, provider).await?)
    }

    /// code is what the provider showed, e.g. 'abc#state'.
    #[graphql(guard = "PersonGuard")]
    async fn complete_authorization_flow(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(secret)] code: String,
    ) -> Result<Credential> {
        count_write(ctx)?;
        Ok(super::flows::complete_authorization_flow(ctx, &id, &code).await?)
    }

    #[graphql(guard = "PersonGuard")]
    async fn cancel_flow(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        count_write(ctx)?;
        Ok(super::flows::cancel_flow(ctx, &id).await?)
    }

    /// ADMIN only.
    #[graphql(guard = "AdminGuard")]
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        email: String,
        #[graphql(default_with = "Some(Role::User)")] role: Option<Role>,
    ) -> Result<NewUser> {
        let admin = store(ctx).admin(principal(ctx)?)?;
        let (user, token) = admin.create_user(&email, role.unwrap_or(Role::User)).await?;
        Ok(NewUser { user: user.into(), token: token.to_string() })
    }

    /// A new token for the caller, shown once (only its hash is stored). A person holds at most 25 live tokens
    /// (LIMIT_EXCEEDED: revoke one). People who sign in with the IdP's JWTs get none (FORBIDDEN): they act only
    /// with the IdP's tokens, so a role the IdP takes away is gone at once.
    #[graphql(guard = "PersonGuard")]
    async fn create_token(
        &self,
        ctx: &Context<'_>,
        name: String,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<NewToken> {
        count_write(ctx)?;
        let (access_token, token) = store(ctx).owner(principal(ctx)?)?.create_token(&name, expires_at).await?;
        Ok(NewToken { access_token: access_token.into(), token: token.to_string() })
    }

    /// Revokes a token: a person their own (anyone else's is NOT_FOUND), an admin any person's, a runner
    /// any runner token (an admin cannot revoke a runner token: the operator's CLI does, `token revoke ID`).
    #[graphql(guard = "SignedIn")]
    async fn revoke_token(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let principal = principal(ctx)?;
        let store = store(ctx);
        if let Principal::Runner { .. } = principal {
            store.runner(principal)?.revoke_runner_token(&id).await?;
            return Ok(true);
        }
        match store.admin(principal) {
            Ok(admin) => admin.revoke_token(&id).await?,
            Err(_) => store.owner(principal)?.revoke_token(&id).await?,
        }
        Ok(true)
    }

    /// RUNNER only: a new RUNNER token (to rotate its own: create one, then revokeToken the old), shown once.
    /// Runner tokens are made by the operator on the vault's host (`sesame-vault token create --runner`) or by
    /// a runner (a runner token, or a JWT with the IdP's runner role); never by an admin, who could otherwise
    /// become the runner and be issued anyone's credentials. Every issuance's audit entry names the runner token
    /// and who created it.
    #[graphql(guard = "SignedIn")]
    async fn create_runner_token(&self, ctx: &Context<'_>, name: String) -> Result<NewToken> {
        let principal = principal(ctx)?;
        if !matches!(principal, Principal::Runner { .. }) {
            return Err(ApiError::forbidden(
                "runner tokens are not created through the API by people (admins included): the operator creates \
                 one on the vault's host with `sesame-vault token create --runner --name NAME`, or a runner \
                 (a runner token, or a JWT with the IdP's runner role) creates the next one",
            )
            .into());
        }
        let (access_token, token) = store(ctx).runner(principal)?.create_runner_token(&name).await?;
        Ok(NewToken { access_token: access_token.into(), token: token.to_string() })
    }

    /// ADMIN only: their tokens and JWTs are refused and their credentials not issued; nothing is deleted.
    /// The last enabled admin cannot be disabled.
    #[graphql(guard = "AdminGuard")]
    async fn disable_user(&self, ctx: &Context<'_>, id: ID) -> Result<Person> {
        let id = parse_id("id", &id)?;
        Ok(store(ctx).admin(principal(ctx)?)?.set_disabled(&id, true).await?.into())
    }

    /// ADMIN only.
    #[graphql(guard = "AdminGuard")]
    async fn enable_user(&self, ctx: &Context<'_>, id: ID) -> Result<Person> {
        let id = parse_id("id", &id)?;
        Ok(store(ctx).admin(principal(ctx)?)?.set_disabled(&id, false).await?.into())
    }

    /// ADMIN only: removes their credentials and sign-ins in progress and revokes their tokens; the audit
    /// trail keeps their id and email (and how many credentials and tokens went). The last enabled admin
    /// cannot be deleted. Boolean, as the public contract has it.
    #[graphql(guard = "AdminGuard")]
    async fn delete_user(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let id = parse_id("id", &id)?;
        store(ctx).admin(principal(ctx)?)?.delete_user(&id).await?;
        Ok(true)
    }

    /// ADMIN only: delete without reading.
    #[graphql(guard = "AdminGuard")]
    async fn delete_credential(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let id = parse_id("id", &id)?;
        store(ctx).admin(principal(ctx)?)?.delete_credential(&id).await?;
        Ok(true)
    }

    /// ADMIN only.
    #[graphql(guard = "AdminGuard")]
    async fn delete_user_credentials(&self, ctx: &Context<'_>, user_id: ID) -> Result<i32> {
        let user_id = parse_id("userId", &user_id)?;
        let removed = store(ctx).admin(principal(ctx)?)?.delete_user_credentials(&user_id).await?;
        Ok(i32::try_from(removed).unwrap_or(i32::MAX))
    }

    /// RUNNER only: resolve by priority, record an audit entry, return what the agent needs.
    #[graphql(guard = "RunnerGuard")]
    async fn issue_task_credentials(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        agent: Agent,
        provider: Option<Provider>,
        task_id: String,
        #[graphql(
            desc = "FILES (the real credential) or PROXY (placeholders for the egress proxy); default: the vault's SESAME_TASKS__DEFAULT_DELIVERY, FILES unless set"
        )]
        delivery: Option<crate::domain::Delivery>,
    ) -> Result<TaskCredentials> {
        Ok(super::tasks::issue(ctx, &user_id, agent, provider, &task_id, delivery).await?)
    }

    /// RUNNER only: after a run, hand back credential files the agent may have refreshed.
    #[graphql(guard = "RunnerGuard")]
    async fn return_task_credentials(
        &self,
        ctx: &Context<'_>,
        task_id: String,
        files: Vec<CredentialFileInput>,
    ) -> Result<Vec<Credential>> {
        Ok(super::tasks::return_files(ctx, &task_id, files).await?)
    }

    /// Admin only: registers a webhook endpoint. The answer carries its signing secret, shown this once.
    #[graphql(guard = "AdminGuard")]
    async fn create_webhook(
        &self,
        ctx: &Context<'_>,
        input: super::webhooks::WebhookInput,
    ) -> Result<super::webhooks::CreatedWebhook> {
        Ok(super::webhooks::create(ctx, input).await?)
    }

    /// Admin only: changes a webhook endpoint's URL, event kinds, description, or re-enables it.
    #[graphql(guard = "AdminGuard")]
    async fn update_webhook(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: super::webhooks::WebhookUpdate,
    ) -> Result<super::webhooks::Webhook> {
        Ok(super::webhooks::update(ctx, &id, input).await?)
    }

    /// Admin only: a new signing secret, shown this once. Deliveries carry a signature with the old
    /// secret too (two `v1,` signatures) for `SESAME_WEBHOOKS__SECRET_GRACE` (a day).
    #[graphql(guard = "AdminGuard")]
    async fn rotate_webhook_secret(&self, ctx: &Context<'_>, id: ID) -> Result<super::webhooks::CreatedWebhook> {
        Ok(super::webhooks::rotate_secret(ctx, &id).await?)
    }

    /// Admin only: deletes a webhook endpoint and its queued deliveries. False when there was none.
    #[graphql(guard = "AdminGuard")]
    async fn delete_webhook(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        Ok(super::webhooks::delete(ctx, &id).await?)
    }

    /// Admin only: sends a TEST event to the endpoint (queued, then delivered like any event).
    /// Returns the delivery's `webhook-id`.
    #[graphql(guard = "AdminGuard")]
    async fn send_test_webhook(&self, ctx: &Context<'_>, id: ID) -> Result<String> {
        Ok(super::webhooks::send_test(ctx, &id).await?)
    }
}
