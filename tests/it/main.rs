//! Integration tests: one binary, each test against a real server process.

mod admin;
mod checks;
mod cli;
mod common;
mod credentials;
mod edges;
mod fake_checks;
mod fake_provider;
mod floods;
mod flows;
mod hardening;
mod hostile;
mod identity;
mod lifecycle;
mod operable;
mod postgres;
mod recovery;
mod removal;
mod replicas;
mod safety;
mod schema;
mod tasks;
mod ws;
mod ws_limits;
