//! `[graphql]` settings (`SESAME_GRAPHQL__*`): the API's limits, read by
//! the schema, the document gate, the WebSocket guard and the HTTP routes;
//! `crate::config` composes this section with the others.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphqlConfig {
    pub introspection: bool,
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_batch: usize,
    pub max_body_bytes: usize,
    /// How long a WebSocket may take to send `connection_init`.
    #[serde(with = "humantime_serde")]
    pub ws_init_timeout: std::time::Duration,
    /// How often an open WebSocket's token is checked again: a revoked
    /// token (or a removed user) ends the session with 4403 within this.
    #[serde(with = "humantime_serde")]
    pub ws_token_recheck: std::time::Duration,
    /// Document limits, checked before a document is parsed or validated
    /// (`crate::graphql::gate`): work that grows with a document is bounded
    /// before it is done. Anonymous callers (introspection only) get the
    /// `*_anonymous` limits.
    pub max_tokens: usize,
    pub max_tokens_anonymous: usize,
    /// Fields after fragment expansion (`__typename` and introspection count).
    pub max_selections: usize,
    pub max_selections_anonymous: usize,
    pub max_aliases: usize,
    pub max_aliases_anonymous: usize,
    /// Fragment spreads written in one document.
    pub max_fragment_spreads: usize,
    /// The last guard: a request still running after this is answered
    /// with an error and its work dropped.
    #[serde(with = "humantime_serde")]
    pub request_timeout: std::time::Duration,
    /// Live subscriptions on one WebSocket.
    pub max_subscriptions_per_socket: usize,
    /// Live subscriptions of one principal over all its sockets.
    pub max_subscriptions_per_principal: usize,
    /// Open WebSockets of one principal.
    pub max_sockets_per_principal: usize,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        GraphqlConfig {
            introspection: true,
            max_depth: 16,
            max_complexity: 1000,
            max_batch: 10,
            max_body_bytes: 256 * 1024,
            ws_init_timeout: std::time::Duration::from_secs(5),
            ws_token_recheck: std::time::Duration::from_secs(30),
            max_tokens: 10_000,
            max_tokens_anonymous: 2_000,
            max_selections: 2_000,
            max_selections_anonymous: 1_000,
            max_aliases: 100,
            max_aliases_anonymous: 20,
            max_fragment_spreads: 100,
            request_timeout: std::time::Duration::from_secs(30),
            max_subscriptions_per_socket: 100,
            max_subscriptions_per_principal: 200,
            max_sockets_per_principal: 20,
        }
    }
}
