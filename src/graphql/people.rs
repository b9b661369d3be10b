//! API objects for people, their tokens and the audit trail. The store
//! returns plain structs; these are how the API shows them.

use async_graphql::{SimpleObject, ID};
use chrono::{DateTime, Utc};

use crate::domain::Role;
use crate::store::{self, TokenKind};

/// A person, as the API shows them.
#[derive(Clone, Debug, SimpleObject)]
pub struct User {
    pub id: ID,
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

impl From<store::Person> for User {
    fn from(p: store::Person) -> User {
        User { id: ID(p.id), email: p.email, role: p.role, created_at: p.created_at }
    }
}

/// A person as an admin manages them: with whether they are disabled and
/// how they sign in.
#[derive(Clone, Debug, SimpleObject)]
pub struct Person {
    pub id: ID,
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// The JWT issuer they sign in through; null for people with `sv_` tokens only.
    pub issuer: Option<String>,
}

impl From<store::Person> for Person {
    fn from(p: store::Person) -> Person {
        Person {
            id: ID(p.id),
            email: p.email,
            role: p.role,
            created_at: p.created_at,
            disabled_at: p.disabled_at,
            issuer: p.issuer,
        }
    }
}

/// A token's metadata; the token itself is shown once, when it is created.
/// `TokenInfo` in the API, as the contract names it.
#[derive(Clone, Debug, SimpleObject)]
#[graphql(name = "TokenInfo")]
pub struct AccessToken {
    pub id: ID,
    pub kind: TokenKind,
    /// The person a USER token acts for.
    pub user_id: Option<ID>,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Null: it lasts until revoked.
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<store::AccessToken> for AccessToken {
    fn from(t: store::AccessToken) -> AccessToken {
        AccessToken {
            id: ID(t.id),
            kind: t.kind,
            user_id: t.user_id.map(ID),
            name: t.name,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            expires_at: t.expires_at,
        }
    }
}

/// One audit entry, as admins page through them.
#[derive(Clone, Debug, SimpleObject)]
pub struct AuditEntry {
    pub id: ID,
    pub at: DateTime<Utc>,
    /// USER, ADMIN, RUNNER or SYSTEM.
    pub actor_kind: String,
    pub actor_id: Option<ID>,
    /// The acting person's email (kept after they are deleted).
    pub actor_email: Option<String>,
    pub action: String,
    pub owner_id: Option<ID>,
    /// The owner's email (kept after they are deleted).
    pub owner_email: Option<String>,
    pub credential_id: Option<ID>,
    pub provider: Option<String>,
    pub agent: Option<String>,
    pub task_id: Option<String>,
    pub detail: Option<String>,
}

impl From<store::AuditEntry> for AuditEntry {
    fn from(e: store::AuditEntry) -> AuditEntry {
        AuditEntry {
            id: ID(e.id),
            at: e.at,
            actor_kind: e.actor_kind,
            actor_id: e.actor_id.map(ID),
            actor_email: e.actor_email,
            action: e.action,
            owner_id: e.owner_id.map(ID),
            owner_email: e.owner_email,
            credential_id: e.credential_id.map(ID),
            provider: e.provider,
            agent: e.agent,
            task_id: e.task_id,
            detail: e.detail,
        }
    }
}
