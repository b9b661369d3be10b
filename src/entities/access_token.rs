use sea_orm::entity::prelude::*;

/// A bearer token: only its SHA-256 is stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "access_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// "USER" (acts as its user) or "RUNNER" (the task executor).
    pub kind: String,
    pub user_id: Option<String>,
    pub name: Option<String>,
    #[sea_orm(unique)]
    pub token_hash: String,
    pub created_at: DateTimeUtc,
    pub last_used_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    /// After this the token is refused (none: it lasts until revoked).
    pub expires_at: Option<DateTimeUtc>,
    /// Who created it, in words for the audit trail: "operator CLI", a
    /// runner (token or IdP role) or a person (none: before this was kept).
    pub created_by: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The person a USER token acts for (none for RUNNER tokens).
    #[sea_orm(belongs_to = "super::user::Entity", from = "Column::UserId", to = "super::user::Column::Id")]
    User,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
