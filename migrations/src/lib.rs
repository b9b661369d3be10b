//! Schema migrations, applied at start-up by `sesame-vault serve` and by
//! `sesame-vault migrate`. One code path for SQLite and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_core;
mod m20261127_000002_task_leases;
mod m20261127_000003_oauth_flows;
mod m20261127_000004_lifecycle;
mod m20261127_000005_claims;
mod m20261127_000006_sealed_flow_codes;
mod m20261201_000007_people;
mod m20261202_000008_checks;
mod m20261202_000009_origin;
mod m20261206_000010_identity_edges;
mod m20261206_230000_claim_owner_event_order;
mod m20261207_000011_webhooks;
mod m20261207_000012_proxy_grants;
mod m20261207_000013_webhook_upkeep;
mod m20261207_000014_lease_ends;
mod m20261208_000015_proxy_grant_watch;
mod m20261208_000016_proxy_grant_leases;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_core::Migration),
            Box::new(m20261127_000002_task_leases::Migration),
            Box::new(m20261127_000003_oauth_flows::Migration),
            Box::new(m20261127_000004_lifecycle::Migration),
            Box::new(m20261127_000005_claims::Migration),
            Box::new(m20261127_000006_sealed_flow_codes::Migration),
            Box::new(m20261201_000007_people::Migration),
            Box::new(m20261202_000008_checks::Migration),
            Box::new(m20261202_000009_origin::Migration),
            Box::new(m20261206_000010_identity_edges::Migration),
            Box::new(m20261206_230000_claim_owner_event_order::Migration),
            Box::new(m20261207_000011_webhooks::Migration),
            Box::new(m20261207_000012_proxy_grants::Migration),
            Box::new(m20261207_000013_webhook_upkeep::Migration),
            Box::new(m20261207_000014_lease_ends::Migration),
            Box::new(m20261208_000015_proxy_grant_watch::Migration),
            Box::new(m20261208_000016_proxy_grant_leases::Migration),
        ]
    }
}
