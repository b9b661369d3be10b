//! Where the store (and the flows engine) announce what they recorded. The
//! store is handed a sink when it is built and knows only this trait: the
//! PostgreSQL relay (`crate::relay`) and the in-process bus
//! (`crate::events::EventBus`) implement it, so the store imports neither.

use sea_orm::Statement;

use crate::events::CredentialEvent;

/// What an announcement is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    CredentialEvents,
    FlowUpdates,
}

pub trait EventSink: Send + Sync + 'static {
    /// The statement that announces `payload` on `channel` when run in the
    /// caller's transaction (it goes out if and only if that commits), or
    /// `None` when announcements stay in this process.
    fn announce(&self, channel: Channel, payload: &str) -> Option<Statement>;

    /// After commit: hands events to this process's subscribers. A sink that
    /// announced them in the transaction does nothing here (they come back
    /// to every instance, this one included, through its listener).
    fn publish(&self, events: Vec<CredentialEvent>);
}
