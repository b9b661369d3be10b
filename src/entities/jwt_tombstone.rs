use sea_orm::entity::prelude::*;

/// A person who signed in with the platform's JWTs and was deleted by an
/// admin: their next JWT is refused instead of creating them again, until
/// `sesame-vault user readmit` removes the row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "jwt_tombstones")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub issuer: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub subject: String,
    /// Their email when they were deleted (to find the row again).
    pub email: String,
    pub deleted_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
