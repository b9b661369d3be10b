//! Integration tests: one binary, each test against a real server process.

mod admin;
mod cli;
mod common;
mod credentials;
mod postgres;
mod safety;
mod schema;
mod tasks;
