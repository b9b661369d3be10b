use sea_orm::entity::prelude::*;

/// A webhook receiver an admin registered. `secret` is sealed with the
/// keyring, bound to the endpoint's id.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub url: String,
    /// Comma-separated event kinds; empty means every kind.
    pub events: String,
    pub description: Option<String>,
    pub secret: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Outbox id up to which deliveries were queued.
    pub last_event_id: i64,
    pub created_at: DateTimeUtc,
    pub failing_since: Option<DateTimeUtc>,
    /// The secret before the last rotation, sealed like `secret`: deliveries
    /// carry a signature with it too until `previous_secret_until`.
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTimeUtc>,
    /// Deliveries dropped, oldest first, past the endpoint's queue bound.
    pub dropped: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
