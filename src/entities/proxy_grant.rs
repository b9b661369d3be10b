use sea_orm::entity::prelude::*;

/// A task's proxy delivery: its placeholders carry the grant id whose
/// SHA-256 is `id_hash`; the egress proxy lends the real value behind them
/// while the grant lives, and counts what the task spent.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "proxy_grants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id_hash: String,
    pub task_id: String,
    pub runner_token_id: String,
    pub owner_id: String,
    /// None: the system-wide key of `provider`.
    pub credential_id: Option<String>,
    pub agent: String,
    pub provider: String,
    pub source: String,
    pub issued_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub ended_at: Option<DateTimeUtc>,
    /// Why it ended early, in words (returned, replaced, removed, …).
    pub end_reason: Option<String>,
    pub first_used_at: Option<DateTimeUtc>,
    pub requests: i64,
    pub bytes_sent: i64,
    pub bytes_received: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
