//! Reading the event outbox back: how a subscriber that reconnects with
//! `credentialEvents(after:)` gets what it missed, and how a PostgreSQL
//! listener that lost its connection catches up. Events are the outbox
//! rows themselves (`credential_events`), kept for `EVENT_RETENTION`.
//!
//! Ids are in commit order on both databases (SQLite has one writer; on
//! PostgreSQL a trigger draws each id under a lock held until commit), so
//! reading "after id N" never steps past an event that commits later.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::Store;
use crate::entities::credential_event;
use crate::error::{ApiError, ApiResult};
use crate::events::CredentialEvent;

/// Whose events a reader sees: one person's, or everyone's (admins).
#[derive(Clone, Copy, Debug)]
pub enum EventScope<'a> {
    Owner(&'a str),
    Everyone,
}

impl Store {
    /// Up to `limit` events after `after` (by id, oldest first) in `scope`.
    pub async fn events_after(&self, scope: EventScope<'_>, after: i64, limit: u64) -> ApiResult<Vec<CredentialEvent>> {
        let mut query = credential_event::Entity::find().filter(credential_event::Column::Id.gt(after));
        if let EventScope::Owner(owner) = scope {
            query = query.filter(credential_event::Column::OwnerId.eq(owner));
        }
        let rows = query.order_by_asc(credential_event::Column::Id).limit(limit).all(self.reader()).await?;
        rows.into_iter().map(event_from_row).collect()
    }

    /// Whether event `id` is still kept and visible in `scope`: a client
    /// may resume only after an event it could have received.
    pub async fn event_is_kept(&self, scope: EventScope<'_>, id: i64) -> ApiResult<bool> {
        let mut query = credential_event::Entity::find_by_id(id);
        if let EventScope::Owner(owner) = scope {
            query = query.filter(credential_event::Column::OwnerId.eq(owner));
        }
        Ok(query.one(self.reader()).await?.is_some())
    }

    /// The newest event id (0 when there is none).
    pub async fn latest_event_id(&self) -> ApiResult<i64> {
        let newest = credential_event::Entity::find()
            .order_by_desc(credential_event::Column::Id)
            .one(self.db())
            .await?
            .map_or(0, |row| row.id);
        Ok(newest)
    }
}

pub(super) fn event_from_row(row: credential_event::Model) -> ApiResult<CredentialEvent> {
    let parse = |what: &str, e: crate::domain::UnknownVariant| {
        ApiError::internal(anyhow::anyhow!("event {}: {what}: {e}", row.id))
    };
    Ok(CredentialEvent {
        seq: row.id,
        kind: row.kind.parse().map_err(|e| parse("kind", e))?,
        credential_id: row.credential_id.clone(),
        owner_id: row.owner_id.clone(),
        provider: row.provider.parse().map_err(|e| parse("provider", e))?,
        agent: row.agent.as_deref().map(str::parse).transpose().map_err(|e| parse("agent", e))?,
        status: row.status.as_deref().map(str::parse).transpose().map_err(|e| parse("status", e))?,
        at: row.at,
        message: row.message.clone(),
    })
}
