//! What an agent's Remove answers (`disconnectAgent`): the plain
//! `store::Removal`, as the API shows it.

use async_graphql::{Object, SimpleObject, ID};

use crate::domain::{Agent, CredentialKind, CredentialSource, Provider, RevocationResult};
use crate::store;

/// What an agent's Remove took away, and what the agent would still be handed.
pub struct AgentRemoval(pub store::Removal);

#[Object]
impl AgentRemoval {
    /// The agent whose credentials were removed.
    async fn agent(&self) -> Agent {
        self.0.agent
    }

    /// Every credential removed, with what came of revoking it at its provider.
    async fn removed(&self) -> Vec<RemovedCredential> {
        self.0.removed.iter().map(RemovedCredential::from).collect()
    }

    /// What `issueTaskCredentials` would now use for this agent, per provider in the order it tries them
    /// (a shared API key that was kept, a system key); empty when a task would get NO_CREDENTIALS.
    async fn remaining(&self) -> Vec<RemainingSource> {
        self.0
            .remaining
            .iter()
            .map(|r| RemainingSource {
                source: r.source,
                provider: r.provider,
                credential_id: r.credential_id.clone().map(ID),
                env_var: r.env_var.map(str::to_owned),
            })
            .collect()
    }
}

/// A credential that was removed (it no longer exists).
#[derive(SimpleObject)]
pub struct RemovedCredential {
    /// The id it had.
    pub id: ID,
    /// Its provider.
    pub provider: Provider,
    /// API key or subscription.
    pub kind: CredentialKind,
    /// The agent of a subscription; null for an API key.
    pub agent: Option<Agent>,
    /// Whether it was revoked at the provider too, and what is left to do there.
    pub revocation: Revocation,
}

impl From<&store::Removed> for RemovedCredential {
    fn from(removed: &store::Removed) -> Self {
        let meta = &removed.credential;
        RemovedCredential {
            id: ID(meta.id.clone()),
            provider: meta.provider,
            kind: meta.kind,
            agent: meta.agent,
            revocation: Revocation { result: removed.revocation.result, message: removed.revocation.message.clone() },
        }
    }
}

/// Revoking a removed credential at its provider.
#[derive(SimpleObject)]
pub struct Revocation {
    /// REVOKED, FAILED or NOT_OFFERED.
    pub result: RevocationResult,
    /// For the person: done, or where to revoke it by hand (the provider's settings page).
    pub message: String,
}

/// A source a task of the agent would still get credentials from.
#[derive(SimpleObject)]
pub struct RemainingSource {
    /// USER_API_KEY (a key kept, e.g. one shared with another agent) or SYSTEM_KEY (the administrator's).
    pub source: CredentialSource,
    /// The provider it is for.
    pub provider: Provider,
    /// The person's credential; null for a system key.
    pub credential_id: Option<ID>,
    /// The environment variable a system key comes from; null otherwise.
    pub env_var: Option<String>,
}
