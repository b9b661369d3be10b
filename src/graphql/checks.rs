//! Checks with the provider, as the API shows them (`crate::checks` runs
//! and records them): the last check of a credential or a system key, and
//! the check a save runs first (`checkOnSave`).

use async_graphql::{Context, SimpleObject};
use chrono::{DateTime, Utc};

use crate::checks::{Checker, Outcome, Probe};
use crate::domain::{Agent, CheckResult, Provider};
use crate::error::{ApiError, ApiResult};
use crate::store::{CredentialMeta, OwnerHandle, SystemKeyCheck};

/// The last check of a credential with its provider. Metadata only: never
/// the credential, never the provider's answer.
#[derive(SimpleObject, Clone, Debug)]
pub struct CredentialCheck {
    pub result: CheckResult,
    /// What to do, unless VALID: in the words of the troubleshooting guide.
    pub message: Option<String>,
    pub at: DateTime<Utc>,
}

impl CredentialCheck {
    pub fn of(meta: &CredentialMeta) -> Option<CredentialCheck> {
        Some(CredentialCheck {
            result: meta.check_result?,
            message: meta.check_message.clone(),
            at: meta.last_checked_at?,
        })
    }

    pub fn of_system_key(provider: Provider, checks: &[SystemKeyCheck]) -> Option<CredentialCheck> {
        let check = checks.iter().find(|c| c.provider == provider)?;
        Some(CredentialCheck { result: check.result, message: check.message.clone(), at: check.at })
    }
}

pub(crate) fn checker<'a>(ctx: &Context<'a>) -> &'a Checker {
    ctx.data_unchecked::<Checker>()
}

/// The check a save runs before anything is stored, unless `check_on_save`
/// (or, when null, the server's `SESAME_CHECKS__ON_SAVE`) says not to: a
/// refused credential is BAD_USER_INPUT saying what to do, audited, and
/// nothing changes; an unreachable provider does not stop the save.
pub(crate) async fn before_save(
    ctx: &Context<'_>,
    owner: &OwnerHandle,
    check_on_save: Option<bool>,
    (provider, agent): (Provider, Option<Agent>),
    probe: Probe<'_>,
) -> ApiResult<Option<Outcome>> {
    let checker = checker(ctx);
    if !check_on_save.unwrap_or(checker.on_save()) {
        return Ok(None);
    }
    let outcome = checker.check_before_save(provider, probe).await;
    match &outcome.message {
        Some(message) if outcome.refuses_save() => {
            owner.audit_refused_save(provider, agent, outcome.result).await?;
            Err(ApiError::bad_input(format!("{message} Nothing was saved; a credential saved before stays.")))
        }
        _ => Ok(Some(outcome)),
    }
}
