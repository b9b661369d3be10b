use sea_orm::entity::prelude::*;

/// The event outbox: written in the transaction of the change it reports,
/// so a transition and its event happen exactly once together.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credential_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub kind: String,
    pub credential_id: String,
    pub owner_id: String,
    pub provider: String,
    pub agent: Option<String>,
    pub status: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub message: Option<String>,
    pub at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
