//! Database rows. These are separate from the GraphQL types on purpose: no
//! column reaches the API unless a GraphQL type names it.

pub mod access_token;
pub mod audit_log;
pub mod credential;
pub mod credential_event;
pub mod jwt_tombstone;
pub mod oauth_flow;
pub mod proxy_grant;
pub mod system_key_check;
pub mod task_lease;
pub mod user;
pub mod webhook_delivery;
pub mod webhook_endpoint;
