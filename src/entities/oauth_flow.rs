use sea_orm::entity::prelude::*;

/// A sign-in flow. `secret` is a ciphertext bound to (owner_id, id,
/// "flow"): the device code, PKCE verifier and `state` never sit in
/// plaintext. A device flow's user code and the link that carries it are
/// ciphertexts too (`sealed_*`, bound to their field names), decrypted only
/// to show them to their owner; the plain columns they replace stay empty
/// (rows from before are sealed at start-up, see `FlowEngine::seal_plain_text_rows`).
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_flows")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub owner_id: String,
    pub agent: String,
    pub provider: String,
    /// "DEVICE" or "AUTHORIZATION".
    pub kind: String,
    pub status: String,
    /// Plain text in rows from before the user code was sealed; empty since.
    pub user_code: String,
    #[sea_orm(column_type = "Text")]
    pub verification_uri: String,
    /// Plain text in rows from before; `None` since.
    #[sea_orm(column_type = "Text", nullable)]
    pub verification_uri_complete: Option<String>,
    /// No longer written: the URL carries the `state`. (The client gets it
    /// once, from `startAuthorizationFlow`.)
    #[sea_orm(column_type = "Text", nullable)]
    pub authorize_url: Option<String>,
    /// The user code, encrypted (bound to owner_id, id, "user_code").
    #[sea_orm(column_type = "Text", nullable)]
    pub sealed_user_code: Option<String>,
    /// `verification_uri_complete`, encrypted (bound to owner_id, id,
    /// "verification_uri_complete").
    #[sea_orm(column_type = "Text", nullable)]
    pub sealed_verification_uri_complete: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub secret: String,
    pub interval_secs: i32,
    pub expires_at: DateTimeUtc,
    pub next_poll_at: DateTimeUtc,
    pub failures: i32,
    #[sea_orm(column_type = "Text", nullable)]
    pub message: Option<String>,
    pub credential_id: Option<String>,
    /// Bumped on every visible change, so subscribers never see one twice.
    pub revision: i64,
    /// The instance polling this flow, until `lease_until`.
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("oauth_flow::Model")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("secret", &"***")
            .field("user_code", &"***")
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
