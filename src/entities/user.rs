use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    #[sea_orm(unique)]
    pub email: String,
    pub role: String,
    pub created_at: DateTimeUtc,
    /// Set while an admin has disabled the person: their tokens and JWTs
    /// are refused and their credentials are not issued.
    pub disabled_at: Option<DateTimeUtc>,
    /// For people who sign in with the platform's JWTs: who they are there
    /// (`iss`, and the user claim). Unique together.
    pub issuer: Option<String>,
    pub subject: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::credential::Entity")]
    Credentials,
}

impl Related<super::credential::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Credentials.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
