//! The egress proxy's handle: it can only lend the real value behind a live
//! placeholder (`crate::delivery`), answer a refresh with new placeholders,
//! and add to a grant's usage. It is not a principal: what it may reach is
//! decided by the grant the placeholder names, checked on every request.

use zeroize::Zeroizing;

use crate::delivery::Found;
use crate::domain::{Agent, CredentialSource, Provider};
use crate::error::ApiResult;
use crate::store::Store;

#[derive(Clone)]
pub struct ProxyHandle {
    store: Store,
}

impl Store {
    /// The egress proxy's handle (built once by `app`, never from a request).
    pub fn proxy(&self) -> ProxyHandle {
        ProxyHandle { store: self.clone() }
    }
}

/// A live grant as the proxy sees it: nothing secret.
#[derive(Clone, Debug)]
pub struct GrantView {
    /// The grant's key (SHA-256 of its id): usage is added under it.
    pub key: String,
    pub task_id: String,
    pub owner_id: String,
    pub agent: Agent,
    pub provider: Provider,
    pub source: CredentialSource,
}

/// A real value lent for one request; zeroised when dropped.
pub struct Loan {
    pub grant: GrantView,
    pub secret: Zeroizing<String>,
}

/// Why the proxy refuses a placeholder: a short text for the 403 body (never
/// a secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

/// The proxy's own answer at a token endpoint: new placeholders (never a
/// real token) and the real access token's expiry.
#[derive(Debug)]
pub struct TokenAnswer {
    pub grant: GrantView,
    pub access_token: String,
    pub refresh_token: String,
    pub id_token: Option<String>,
    /// Seconds until the real access token expires (None: not known).
    pub expires_in: Option<i64>,
}

/// What a task spent through the proxy, added up per grant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub requests: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl ProxyHandle {
    /// The real value behind `found`, if its grant is live: issued and not
    /// ended (returned, lease over, credential removed or replaced, person
    /// disabled or deleted, runner token revoked). A refresh-token
    /// placeholder is never lent: [`ProxyHandle::refresh`] answers it.
    pub async fn lend(&self, found: &Found) -> Result<Loan, Refusal> {
        let _ = (&self.store, found);
        Err(Refusal("proxy delivery is not ready yet".into()))
    }

    /// Answers a refresh at the provider's token endpoint for the grant of
    /// the refresh placeholder `found`: refreshes for real only when the
    /// real access token needs it (through the single-use claim), then
    /// hands out placeholders.
    pub async fn refresh(&self, found: &Found) -> Result<TokenAnswer, Refusal> {
        let _ = found;
        Err(Refusal("proxy delivery is not ready yet".into()))
    }

    /// Adds `usage` to the grant with key `grant_key`.
    pub async fn add_usage(&self, grant_key: &str, usage: Usage) -> ApiResult<()> {
        let _ = (grant_key, usage);
        Ok(())
    }
}
