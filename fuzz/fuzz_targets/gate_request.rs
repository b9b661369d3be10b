//! A whole request through the real schema (the gate installed as in
//! production, over an in-memory store), as an anonymous caller: a GraphQL
//! document, variables JSON and an operation name, separated by NUL bytes.
//! Never panics; every error carries a code; no error shows a secret the
//! request carried (the seeds put the marker in strings and variables).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sesame_vault::fuzzing::{check_required_variables, check_structure, document_limits, parse, prescan, Schema};
use sesame_vault_fuzz::{assert_no_secret, field, fields};

static SCHEMA: LazyLock<Schema> = LazyLock::new(Schema::open);

fuzz_target!(|data: &[u8]| {
    let parts = fields(data, 3);
    let query = field(&parts, 0).unwrap_or_default();
    let variables = field(&parts, 1).and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok());
    let operation_name = field(&parts, 2);

    // The signed-in limits, through the steps the gate runs before the
    // schema's own validation (a signed-in request would also run resolvers
    // that write; anonymous ones below cannot).
    let limits = document_limits(true);
    if prescan(query, &limits).is_ok() {
        if let Ok(doc) = parse(query) {
            let _ = check_structure(&doc, &limits);
            let mut request = async_graphql::Request::new(query);
            if let Some(v) = variables.clone() {
                request = request.variables(async_graphql::Variables::from_json(v));
            }
            if let Some(name) = operation_name {
                request = request.operation_name(name);
            }
            let _ = check_required_variables(&doc, &request);
        }
    }

    let response = SCHEMA.execute(query, variables, operation_name);
    for error in &response.errors {
        assert_no_secret(&error.message, &[]);
        let code = error.extensions.as_ref().and_then(|e| e.get("code"));
        assert!(code.is_some(), "an error without a code: {}", error.message);
    }
});
