//! sesame-vault: an encrypted credential service for AI coding agents.
//!
//! The GraphQL schema ([`graphql`]) is independent of HTTP; [`http`] wires
//! it to poem routes, and the binary only parses commands.

pub mod agents;
pub mod app;
pub mod auth;
pub mod backup;
pub mod checks;
pub mod clock;
pub mod config;
pub mod credential_input;
pub mod crypto;
pub mod delivery;
pub mod domain;
pub mod edge;
pub mod entities;
pub mod error;
pub mod events;
pub mod flows;
#[doc(hidden)]
pub mod fuzzing;
pub mod graphql;
pub mod http;
pub mod identity;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod ops;
pub mod people_cli;
pub mod playground;
mod private_fs;
pub mod providers;
pub mod proxy;
pub mod relay;
pub mod runner_cli;
pub mod scheduler;
pub mod secret;
pub mod shutdown;
pub mod store;
pub mod system_keys;
pub mod telemetry;
pub mod webhook_cli;
pub mod webhooks;
mod ws;
