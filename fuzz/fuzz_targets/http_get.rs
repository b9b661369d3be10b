//! `GET /graphql?query=…&variables=…&operationName=…`: the query string
//! read into a request, and the check that refuses writes over GET (it
//! pre-scans and parses the document before the schema's gate does).
//!
//! Never panics; an error never quotes the query string; a document with
//! a mutation or subscription is always caught, whichever operation is named.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_vault::fuzzing::http_get;
use sesame_vault_fuzz::assert_no_secret;

fuzz_target!(|data: &[u8]| {
    let query_string = String::from_utf8_lossy(data);
    match http_get(&query_string) {
        Ok((request, writes)) => {
            if writes.is_none() {
                // What the check let through as read-only holds no write the
                // parser can see (parsed only after the same pre-scan).
                let limits = sesame_vault::fuzzing::document_limits(true);
                if sesame_vault::fuzzing::prescan(&request.query, &limits).is_ok() {
                    if let Ok(doc) = async_graphql::parser::parse_query(&request.query) {
                        assert!(
                            doc.operations
                                .iter()
                                .all(|(_, op)| op.node.ty == async_graphql::parser::types::OperationType::Query),
                            "a write passed as a read"
                        );
                    }
                }
            }
        }
        Err(message) => assert_no_secret(&message, &[&query_string]),
    }
});
