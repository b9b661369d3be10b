//! The operator's handle: what the commands on the vault's host (`user`,
//! `token`, `rotate-key`), the process's own start-up and the scheduler's
//! jobs do.

use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use zeroize::Zeroizing;

use super::audit::Actor;
use super::{AccessToken, DeletedPerson, Person, RefreshReport, ScanReport, Store};
use crate::domain::Role;
use crate::error::ApiResult;

/// The operator's power over the whole vault: any person, any token, every
/// secret re-encrypted. It passes none of the per-person rules the role
/// handles (`OwnerHandle`, `AdminHandle`, `RunnerHandle`) enforce, and its
/// changes are audited as the system's. Only the process's own operator
/// commands (`main.rs`, `people_cli.rs`), start-up and the scheduler's jobs
/// hold one; never build
/// one from a request or a principal.
pub struct OperatorHandle {
    store: Store,
}

impl Store {
    /// The operator's handle, unchecked: nothing about a caller is asked.
    /// For the operator's own commands and jobs only (see [`OperatorHandle`]).
    pub fn operator_unchecked(&self) -> OperatorHandle {
        OperatorHandle { store: self.clone() }
    }
}

impl OperatorHandle {
    /// Creates a person and their first token (shown once, stored hashed).
    pub async fn create_user(&self, email: &str, role: Role) -> ApiResult<(Person, Zeroizing<String>)> {
        self.store.create_user(Actor::System, email, role).await
    }

    /// On first start, creates an admin so someone can sign in at all.
    pub async fn bootstrap_admin(&self) -> ApiResult<Option<(Person, Zeroizing<String>)>> {
        self.store.bootstrap_admin().await
    }

    /// A person by id or email (what the CLI takes everywhere).
    pub async fn find_person(&self, id_or_email: &str) -> ApiResult<Person> {
        self.store.find_person(id_or_email).await
    }

    /// Every person, oldest first.
    pub async fn people(&self) -> ApiResult<Vec<Person>> {
        self.store.people().await
    }

    /// Disables or enables a person (never the last enabled admin).
    pub async fn set_disabled(&self, user_id: &str, disabled: bool) -> ApiResult<Person> {
        self.store.set_disabled(Actor::System, user_id, disabled).await
    }

    /// Deletes a person with their credentials, sign-ins and tokens.
    pub async fn delete_person(&self, user_id: &str) -> ApiResult<DeletedPerson> {
        self.store.delete_person(Actor::System, user_id).await
    }

    /// Lets people deleted while signing in with the IdP back in; returns
    /// (email, issuer, subject) of each.
    pub async fn readmit(&self, who: &str) -> ApiResult<Vec<(String, String, String)>> {
        self.store.readmit(who).await
    }

    /// Live tokens of one person, or every live token (runner tokens too).
    pub async fn tokens(&self, user_id: Option<&str>) -> ApiResult<Vec<AccessToken>> {
        self.store.tokens(user_id).await
    }

    /// A new token for a person (how one with a lost token gets back in).
    pub async fn create_user_token(&self, user_id: &str, name: &str) -> ApiResult<(AccessToken, Zeroizing<String>)> {
        self.store.create_user_token(Actor::System, user_id, name, None).await
    }

    /// Creates a RUNNER token; returns its id and the token.
    pub async fn create_runner_token(&self, name: &str) -> ApiResult<(String, Zeroizing<String>)> {
        self.store.create_runner_token(name).await
    }

    /// Revokes any token by id; false when no live token has that id.
    pub async fn revoke_token(&self, id: &str) -> ApiResult<bool> {
        self.store.revoke_token(id).await
    }

    /// Re-encrypts every stored secret under the current key; returns how
    /// many records were rewritten.
    pub async fn rotate_keys(&self) -> ApiResult<usize> {
        self.store.rotate_keys().await
    }

    // The jobs' futures own their handle, so a caller may drop the handle
    // (`store.operator_unchecked().scan_expiry(…)`) before awaiting them.

    /// The expiry scan job: EXPIRING / EXPIRED (and back after a clock that
    /// ran ahead), for every person's credentials.
    pub fn scan_expiry(&self, now: DateTime<Utc>, within: Duration) -> impl Future<Output = ApiResult<ScanReport>> {
        let store = self.store.clone();
        async move { store.scan_expiry(now, within).await }
    }

    /// The refresh job: every person's refreshable credentials due within
    /// `before`, except those leased to a running task.
    pub fn refresh_due(&self, now: DateTime<Utc>, before: Duration) -> impl Future<Output = ApiResult<RefreshReport>> {
        let store = self.store.clone();
        async move { store.refresh_due(now, before).await }
    }

    /// The housekeeping job: old outbox events and ended task leases.
    pub fn housekeeping(
        &self,
        now: DateTime<Utc>,
        events_before: DateTime<Utc>,
    ) -> impl Future<Output = ApiResult<u64>> {
        let store = self.store.clone();
        async move { store.housekeeping(now, events_before).await }
    }

    /// `webhook create`: registers an endpoint, audited as the system's.
    pub async fn create_webhook(&self, new: super::NewWebhook<'_>) -> ApiResult<super::Webhook> {
        self.store.create_webhook(Actor::System, new).await
    }

    /// `webhook list`.
    pub async fn webhooks(&self) -> ApiResult<Vec<super::Webhook>> {
        self.store.webhooks().await
    }

    /// `webhook delete`: false when there was none.
    pub async fn delete_webhook(&self, id: &str) -> ApiResult<bool> {
        self.store.delete_webhook(Actor::System, id).await
    }
}
