//! What the engine shows of a flow: plain views, decrypted for their owner.

use chrono::{DateTime, Utc};

use crate::crypto::{Binding, Keyring};
use crate::domain::{Agent, FlowStatus, Provider};
use crate::error::{ApiError, ApiResult};
pub(super) use crate::store::seal_flow_text as seal_text;
use crate::store::{FlowRecord, FLOW_USER_CODE_FIELD, FLOW_VERIFICATION_URI_FIELD};

/// A device sign-in, as its owner sees it (user code and link decrypted).
/// Also the payload of a flow notification, without those two.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DeviceFlow {
    pub id: String,
    pub agent: Agent,
    pub provider: Provider,
    pub status: FlowStatus,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// Current poll interval in seconds (grows on slow_down).
    pub interval: i32,
    /// Why the flow failed or was denied, in words a person understands.
    pub message: Option<String>,
    /// Set once status is AUTHORIZED.
    pub credential_id: Option<String>,
}

/// A started authorization-code sign-in: the URL is shown once.
#[derive(Clone, Debug)]
pub struct AuthorizationFlow {
    pub id: String,
    pub agent: Agent,
    pub provider: Provider,
    pub status: FlowStatus,
    pub authorize_url: String,
    pub expires_at: DateTime<Utc>,
}

/// The sealed value if there is one; otherwise the plain column of a row
/// written before values were sealed (or by an older instance).
fn unseal(
    keys: &Keyring,
    row: &FlowRecord,
    sealed: Option<&str>,
    field: &str,
    plain: Option<&str>,
) -> ApiResult<Option<String>> {
    match sealed {
        Some(stored) => {
            let binding = Binding { owner_id: &row.owner_id, record_id: &row.id, field };
            Ok(Some(keys.decrypt_string(stored, binding)?.to_string()))
        }
        None => Ok(plain.map(str::to_owned)),
    }
}

/// The owner's view of a device flow; the user code and link are decrypted.
pub(super) fn view(keys: &Keyring, row: &FlowRecord) -> ApiResult<DeviceFlow> {
    let user_code = unseal(keys, row, row.sealed_user_code.as_deref(), FLOW_USER_CODE_FIELD, Some(&row.user_code))?;
    let verification_uri_complete = unseal(
        keys,
        row,
        row.sealed_verification_uri_complete.as_deref(),
        FLOW_VERIFICATION_URI_FIELD,
        row.verification_uri_complete.as_deref(),
    )?;
    Ok(DeviceFlow {
        id: row.id.clone(),
        agent: row.agent.parse().map_err(ApiError::internal)?,
        provider: row.provider.parse().map_err(ApiError::internal)?,
        status: row.status.parse().map_err(ApiError::internal)?,
        user_code: user_code.unwrap_or_default(),
        verification_uri: row.verification_uri.clone(),
        verification_uri_complete,
        expires_at: row.expires_at,
        interval: row.interval_secs,
        message: row.message.clone(),
        credential_id: row.credential_id.clone(),
    })
}
