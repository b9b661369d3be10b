//! Upkeep of stored flows: sealing rows left in plain text by older
//! versions, deleting finished ones (the writes are the store's).

use chrono::{DateTime, Utc};

use super::FlowEngine;
use crate::error::ApiResult;

impl FlowEngine {
    /// Seals what rows written before sealing (or by an older instance)
    /// hold in plain text: the user code and the link that carries it move
    /// into their encrypted columns, and the authorize URL (it carries the
    /// state) is cleared. Runs at every start-up; returns how many rows
    /// changed. On SQLite the write-ahead log is then checkpointed and
    /// truncated, so the old plain text is not left in it.
    pub async fn seal_plain_text_rows(&self) -> ApiResult<usize> {
        self.store().seal_plain_text_flows().await
    }

    /// Deletes finished flows last changed before `cutoff` (housekeeping).
    pub async fn delete_finished_before(&self, cutoff: DateTime<Utc>) -> ApiResult<u64> {
        self.store().delete_finished_flows_before(cutoff).await
    }
}
