use sea_orm::entity::prelude::*;

/// Who did what to which credential, and when. Never secret material.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub at: DateTimeUtc,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub owner_id: Option<String>,
    pub credential_id: Option<String>,
    pub provider: Option<String>,
    pub agent: Option<String>,
    pub task_id: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub detail: Option<String>,
    /// Filled in when the person is deleted, so the trail keeps their email.
    pub owner_email: Option<String>,
    pub actor_email: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
