//! API object types. They wrap store views; no database row is exposed.

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::checks::CredentialCheck;
use super::guards::PersonGuard;
use super::{principal, store};
use crate::agents::catalog;
use crate::domain::{
    Agent, AuthMethod, CredentialEventKind, CredentialKind, CredentialSource, CredentialStatus, FlowStatus, Provider,
};
use async_graphql::Result;

use super::people::{AccessToken, AuditEntry, User};
use crate::error::ApiError;
use crate::store::CredentialMeta;

/// A stored credential's metadata. The secret itself is never a field.
pub struct Credential(pub CredentialMeta);

#[Object]
impl Credential {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn owner(&self, ctx: &Context<'_>) -> Result<User> {
        Ok(store(ctx).user(&self.0.owner_id).await?.ok_or_else(|| ApiError::not_found("user"))?.into())
    }

    async fn provider(&self) -> Provider {
        self.0.provider
    }

    /// Null for API keys: an API key serves every agent of its provider.
    async fn agent(&self) -> Option<Agent> {
        self.0.agent
    }

    async fn kind(&self) -> CredentialKind {
        self.0.kind
    }

    async fn status(&self) -> CredentialStatus {
        self.0.status
    }

    /// Why the credential needs attention (e.g. sign in again), when it does.
    async fn status_message(&self) -> Option<&str> {
        self.0.status_message.as_deref()
    }

    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }

    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }

    /// Masked preview such as sk-ant-…9f2c. Owner only: anyone else, admins included, gets a FORBIDDEN error.
    #[graphql(guard = "PersonGuard")]
    async fn hint(&self, ctx: &Context<'_>) -> Result<String> {
        let principal = principal(ctx)?;
        if principal.user_id() != Some(self.0.owner_id.as_str()) {
            return Err(ApiError::forbidden("only the credential's owner may see its hint").into());
        }
        // The owner handle itself filters by owner: a second check, in the data layer.
        Ok(store(ctx).owner(principal)?.hint(&self.0)?)
    }

    async fn has_refresh_token(&self) -> bool {
        self.0.has_refresh_token
    }

    /// When the credential was last checked with its provider; null until it is.
    async fn last_checked_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_checked_at
    }

    /// The last check with the provider (result, what to do, when); null until checked.
    async fn check(&self) -> Option<CredentialCheck> {
        CredentialCheck::of(&self.0)
    }
}

/// A credential event (`crate::events`), as subscribers see it.
pub struct CredentialEvent(pub crate::events::CredentialEvent);

/// Metadata only: an event never carries secret material.
#[Object]
impl CredentialEvent {
    /// The event's id: pass the last one you received as
    /// `credentialEvents(after:)` to get what you missed while away. Opaque:
    /// it does not say how many events (of other people) came between two.
    async fn id(&self, ctx: &Context<'_>) -> ID {
        ID(crate::graphql::event_stream::event_id(store(ctx), self.0.seq))
    }

    async fn kind(&self) -> CredentialEventKind {
        self.0.kind
    }

    async fn credential_id(&self) -> ID {
        ID(self.0.credential_id.clone())
    }

    async fn owner_id(&self) -> ID {
        ID(self.0.owner_id.clone())
    }

    async fn provider(&self) -> Provider {
        self.0.provider
    }

    async fn agent(&self) -> Option<Agent> {
        self.0.agent
    }

    async fn status(&self) -> Option<CredentialStatus> {
        self.0.status
    }

    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }

    async fn message(&self) -> Option<&str> {
        self.0.message.as_deref()
    }
}

#[derive(SimpleObject)]
pub struct CredentialConnection {
    pub nodes: Vec<Credential>,
    /// Opaque cursor for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct UserConnection {
    pub nodes: Vec<User>,
    pub next_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct AuditEntryConnection {
    pub nodes: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct NewToken {
    pub access_token: AccessToken,
    /// Shown once; only its hash is stored.
    pub token: String,
}

#[derive(SimpleObject)]
pub struct NewUser {
    pub user: User,
    /// Shown once; only its hash is stored.
    pub token: String,
}

/// One way to give an agent credentials for one provider.
#[derive(SimpleObject)]
pub struct AgentAuthMethod {
    /// The provider the credential is for.
    pub provider: Provider,
    /// How it is given: an API key, a pasted token or a sign-in.
    pub method: AuthMethod,
    /// The method's button or tab label, e.g. "Sign in with Claude".
    pub label: String,
    /// Environment variable the agent reads, where there is one.
    pub env_var: Option<String>,
    /// Accepted token prefixes, e.g. sk-ant-oat01-.
    pub token_prefixes: Vec<String>,
    /// Setup steps a person follows, in plain text.
    pub instructions: String,
    /// The paste field's label, e.g. "Setup token"; null unless the method takes a pasted token (PASTE_TOKEN).
    pub token_label: Option<String>,
    /// A file the person may paste whole instead of the token (saved as authJson), e.g. "~/.codex/auth.json"; null otherwise.
    pub auth_file: Option<String>,
    /// Whether a refresh token may be pasted beside the token (saved as refreshToken).
    pub accepts_refresh_token: bool,
}

/// A subscription plan an agent can run on.
#[derive(SimpleObject)]
pub struct SubscriptionPlan {
    /// Whose plan it is.
    pub provider: Provider,
    /// The plan as people know it, e.g. "Claude Pro ($20/mo)".
    pub name: String,
}

/// An agent in the catalog: its name, what to show on its card and how to give it credentials.
#[derive(SimpleObject)]
pub struct AgentInfo {
    /// The agent.
    pub agent: Agent,
    /// Its name as people see it, e.g. "Claude Code".
    pub name: String,
    /// The subscription plans it can run on; empty for an agent that takes API keys only.
    pub subscription_plans: Vec<SubscriptionPlan>,
    /// Shown on the agent's card when there is something to say (e.g. why it takes API keys only); null otherwise.
    pub note: Option<String>,
    /// The ways to give it credentials, in the order to offer them.
    pub methods: Vec<AgentAuthMethod>,
}

impl From<&catalog::AgentEntry> for AgentInfo {
    fn from(entry: &catalog::AgentEntry) -> Self {
        AgentInfo {
            agent: entry.agent,
            name: crate::agents::spec(entry.agent).name.to_owned(),
            subscription_plans: entry
                .subscription_plans()
                .into_iter()
                .map(|p| SubscriptionPlan { provider: p.provider, name: p.name.to_owned() })
                .collect(),
            note: entry.note.map(str::to_owned),
            methods: entry
                .methods
                .iter()
                .map(|m| AgentAuthMethod {
                    provider: m.provider,
                    method: m.method,
                    label: m.label.to_owned(),
                    env_var: m.env_var.map(str::to_owned),
                    token_prefixes: m.token_prefixes.iter().map(|p| (*p).to_owned()).collect(),
                    instructions: m.instructions.to_owned(),
                    token_label: m.paste.map(|p| p.token_label.to_owned()),
                    auth_file: m.paste.and_then(|p| p.auth_file).map(str::to_owned),
                    accepts_refresh_token: m.paste.is_some_and(|p| p.accepts_refresh_token),
                })
                .collect(),
        }
    }
}

/// A provider, as the app lists it.
#[derive(SimpleObject)]
pub struct ProviderInfo {
    /// The provider.
    pub provider: Provider,
    /// Its name as people see it, e.g. "OpenAI".
    pub name: String,
    /// The environment variable holding the system-wide key, also the one agents read the key from, e.g. OPENAI_API_KEY.
    pub api_key_env_var: String,
}

impl From<&crate::providers::ProviderSpec> for ProviderInfo {
    fn from(spec: &crate::providers::ProviderSpec) -> Self {
        ProviderInfo {
            provider: spec.provider,
            name: spec.name.to_owned(),
            api_key_env_var: spec.api_key_env.to_owned(),
        }
    }
}

#[derive(SimpleObject)]
pub struct SystemKey {
    pub provider: Provider,
    pub env_var: String,
    pub configured: bool,
    /// The key's last check with its provider (never the value); null until checked.
    pub check: Option<CredentialCheck>,
}

/// A device sign-in (`crate::flows`), as its owner sees it.
pub struct DeviceFlow(pub crate::flows::DeviceFlow);

/// A device sign-in in progress (RFC 8628 or OpenAI's device login).
#[Object]
impl DeviceFlow {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn agent(&self) -> Agent {
        self.0.agent
    }

    async fn provider(&self) -> Provider {
        self.0.provider
    }

    async fn status(&self) -> FlowStatus {
        self.0.status
    }

    async fn user_code(&self) -> &str {
        &self.0.user_code
    }

    async fn verification_uri(&self) -> &str {
        &self.0.verification_uri
    }

    async fn verification_uri_complete(&self) -> Option<&str> {
        self.0.verification_uri_complete.as_deref()
    }

    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }

    /// Current poll interval in seconds (grows on slow_down).
    async fn interval(&self) -> i32 {
        self.0.interval
    }

    /// Why the flow failed or was denied, in words a person understands.
    async fn message(&self) -> Option<&str> {
        self.0.message.as_deref()
    }

    /// Set once status is AUTHORIZED.
    async fn credential(&self, ctx: &Context<'_>) -> Result<Option<Credential>> {
        let Some(id) = &self.0.credential_id else { return Ok(None) };
        let owner = store(ctx).owner(principal(ctx)?)?;
        Ok(owner.credential(id).await?.map(Credential))
    }
}

#[derive(SimpleObject, Clone)]
pub struct AuthorizationFlow {
    pub id: ID,
    pub agent: Agent,
    pub provider: Provider,
    pub status: FlowStatus,
    pub authorize_url: String,
    pub expires_at: DateTime<Utc>,
}

impl From<crate::flows::AuthorizationFlow> for AuthorizationFlow {
    fn from(f: crate::flows::AuthorizationFlow) -> AuthorizationFlow {
        AuthorizationFlow {
            id: ID(f.id),
            agent: f.agent,
            provider: f.provider,
            status: f.status,
            authorize_url: f.authorize_url,
            expires_at: f.expires_at,
        }
    }
}

#[derive(SimpleObject, Clone)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
    /// The value is a path relative to the task's home (a file in `files`,
    /// e.g. the proxy's CA certificate): make it absolute before exporting.
    pub home_path: bool,
}

#[derive(SimpleObject, Clone)]
pub struct CredentialFile {
    /// Path relative to the agent's home directory, e.g. .codex/auth.json
    pub path: String,
    /// Unix permission bits, e.g. 384 (0600).
    pub mode: i32,
    pub content: String,
}

#[derive(SimpleObject)]
pub struct TaskCredentials {
    pub source: CredentialSource,
    /// Null when source is SYSTEM_KEY.
    pub credential_id: Option<ID>,
    pub provider: Provider,
    pub env: Vec<EnvVar>,
    pub files: Vec<CredentialFile>,
    pub expires_at: Option<DateTime<Utc>>,
    /// FILES: env and files hold the real credential. PROXY: they hold
    /// task-scoped placeholders, the proxy settings and its CA certificate.
    pub delivery: crate::domain::Delivery,
}

#[derive(InputObject)]
pub struct SubscriptionCredentialInput {
    pub agent: Agent,
    /// Needed where the agent has several providers (OPENCODE).
    pub provider: Option<Provider>,
    /// A pasted token: Claude setup-token, Copilot token.
    #[graphql(secret)]
    pub token: Option<String>,
    #[graphql(secret)]
    pub access_token: Option<String>,
    #[graphql(secret)]
    pub refresh_token: Option<String>,
    /// The whole contents of ~/.codex/auth.json, pasted.
    #[graphql(secret)]
    pub auth_json: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Check the token with its provider before saving it; a refused token is not saved. Null: the server's default (SESAME_CHECKS__ON_SAVE, on unless set to false).
    pub check_on_save: Option<bool>,
}

#[derive(InputObject)]
pub struct CredentialFileInput {
    pub path: String,
    #[graphql(secret)]
    pub content: String,
}
