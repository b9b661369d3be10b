use sea_orm::entity::prelude::*;

/// A credential handed to a task: the task may return refreshed files for
/// it until `expires_at`, and the scheduler leaves it alone meanwhile.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "task_leases")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub task_id: String,
    pub runner_token_id: String,
    pub owner_id: String,
    pub credential_id: String,
    pub agent: String,
    pub provider: String,
    /// The credential's version when issued; a return against another
    /// version is stale.
    pub credential_version: i64,
    pub issued_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub returned_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
