use sea_orm::entity::prelude::*;

/// A stored credential. `secret` and `hint` are ciphertexts bound to
/// (owner_id, id, field); everything else is metadata.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credentials")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub owner_id: String,
    pub slot: String,
    pub provider: String,
    pub agent: Option<String>,
    pub kind: String,
    pub status: String,
    pub status_message: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub secret: String,
    #[sea_orm(column_type = "Text")]
    pub hint: String,
    pub has_refresh_token: bool,
    pub expires_at: Option<DateTimeUtc>,
    pub last_used_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Bumped on every change of the secret: refreshes compare-and-swap on it.
    pub version: i64,
    /// Set while one refresher holds the credential's refresh token.
    pub refresh_claimed_until: Option<DateTimeUtc>,
    /// Who holds the refresh claim (a random id per claim).
    pub refresh_claim: Option<String>,
    /// The latest end of a task lease on this credential: no refresh
    /// starts before it.
    pub leased_until: Option<DateTimeUtc>,
    /// `FLOW` when the vault's own sign-in obtained it (it may be revoked at
    /// the provider on removal), `PASTED` otherwise.
    pub origin: String,
    /// When the credential was last checked with its provider, what it
    /// said, and what to do about it (see `crate::checks`).
    pub last_checked_at: Option<DateTimeUtc>,
    pub check_result: Option<String>,
    pub check_message: Option<String>,
    /// Set while one instance checks the credential (the periodic job's claim).
    pub check_claimed_until: Option<DateTimeUtc>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("credential::Model")
            .field("id", &self.id)
            .field("owner_id", &self.owner_id)
            .field("slot", &self.slot)
            .field("status", &self.status)
            .field("secret", &"***")
            .field("hint", &"***")
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(belongs_to = "super::user::Entity", from = "Column::OwnerId", to = "super::user::Column::Id")]
    Owner,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Owner.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
