//! The document gate: every GraphQL operation, over HTTP or WebSocket,
//! passes it before async-graphql does any work that grows with the
//! document, and every error leaves through it.
//!
//! In order, each step bounding what the next may cost:
//! 1. a lexical pre-scan of the text (one pass, no recursion) refuses
//!    bracket nesting beyond [`MAX_NESTING`] and documents of more than
//!    `max_tokens` tokens, so the recursive parser never sees deep input;
//! 2. the parse (or the cached tree of the same text);
//! 3. a structural check: aliases and fragment spreads written, and the
//!    selections and depth the document has once fragments are expanded —
//!    computed once per fragment in dependency order, so twelve fragments
//!    that each spread the previous one four times cost twelve steps here
//!    instead of 4¹² in the validator; fragment cycles are refused here too;
//! 4. what the library lets through and the spec does not: a quoted string
//!    where an enum value belongs, a required variable not provided.
//!
//! Execution then runs under a time budget (the last guard), and every
//! error leaving the schema gets a stable code and a message that says
//! where (line, column, argument) without quoting the document's text or
//! a value: a client that inlines a secret never gets it echoed back.
//!
//! One file a step: `prescan.rs` (1), `parse.rs` (2), `structure.rs` (3),
//! `spec.rs` (4), `scrub.rs` (errors leaving the schema) and `gated.rs`
//! (the schema behind the gate: it runs them around every execution).

mod gated;
mod parse;
mod prescan;
mod scrub;
mod spec;
mod structure;

use async_graphql::{ErrorExtensions, Pos, ServerError};

pub use gated::{Admitted, GatedSchema};
pub use parse::parse;
pub use prescan::{prescan, prescan_counted};
pub use scrub::{sanitize, SchemaNames};
pub use spec::{check_enum_literals, check_required_variables};
pub use structure::{check_structure, MAX_INTROSPECTION_LISTS};

use crate::graphql::GraphqlConfig;

/// Brackets (`{`, `[`, `(`) open at once, and selection sets nested once
/// fragments are expanded. The parser and the validators recurse once per
/// level; a thread's stack holds well over a thousand levels, so this
/// leaves a wide margin while no real operation comes near it.
pub const MAX_NESTING: usize = 64;

/// What one caller's documents may hold.
#[derive(Debug, Clone, Copy)]
pub struct DocumentLimits {
    pub tokens: usize,
    pub selections: usize,
    pub aliases: usize,
    pub fragment_spreads: usize,
}

impl DocumentLimits {
    pub fn signed_in(config: &GraphqlConfig) -> Self {
        DocumentLimits {
            tokens: config.max_tokens,
            selections: config.max_selections,
            aliases: config.max_aliases,
            fragment_spreads: config.max_fragment_spreads,
        }
    }

    pub fn anonymous(config: &GraphqlConfig) -> Self {
        DocumentLimits {
            tokens: config.max_tokens_anonymous.min(config.max_tokens),
            selections: config.max_selections_anonymous.min(config.max_selections),
            aliases: config.max_aliases_anonymous.min(config.max_aliases),
            fragment_spreads: config.max_fragment_spreads,
        }
    }
}

/// A document refused by the gate: what to fix, and where.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub pos: Option<Pos>,
}

impl Refusal {
    fn new(message: impl Into<String>, pos: Option<Pos>) -> Self {
        Refusal { message: message.into(), pos }
    }

    pub fn into_server_error(self) -> ServerError {
        let mut error = ServerError::new(self.message, self.pos);
        error.extensions = bad_user_input().extensions;
        error
    }
}

fn bad_user_input() -> async_graphql::Error {
    async_graphql::Error::new(String::new()).extend_with(|_, e| e.set("code", "BAD_USER_INPUT"))
}

/// The signed-in limits of the default configuration, for the sections' tests.
#[cfg(test)]
fn test_limits() -> DocumentLimits {
    DocumentLimits::signed_in(&GraphqlConfig::default())
}
