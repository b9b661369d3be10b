use sea_orm::entity::prelude::*;

/// One event to send to one endpoint, with its latest attempt.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub endpoint_id: String,
    /// The outbox row; none for a test delivery.
    pub event_id: Option<i64>,
    /// `webhook-id`: the event's id as clients see it.
    pub message_id: String,
    /// The JSON body, built when the delivery was queued (metadata only).
    pub payload: String,
    pub attempt: i32,
    pub next_attempt_at: DateTimeUtc,
    pub claim_owner: Option<String>,
    pub claimed_until: Option<DateTimeUtc>,
    pub status_code: Option<i32>,
    pub duration_ms: Option<i64>,
    /// PENDING, DELIVERED, FAILED, GONE, DROPPED.
    pub outcome: String,
    pub created_at: DateTimeUtc,
    /// The first bytes of the receiver's last answer, scrubbed (printable
    /// ASCII, anything that looks like a token masked).
    pub answer_excerpt: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
