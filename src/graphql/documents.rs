//! Parsed operations, kept by their text. Clients send the same few
//! operations over and over (with different variables); parsing one with
//! async-graphql's parser costs more than the rest of a simple request, so
//! each distinct text is parsed once and the tree reused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;

/// Distinct operations kept; when full, the cache starts over (cheap, and
/// bounded whatever clients send).
const MAX_DOCUMENTS: usize = 512;
/// Longer texts are parsed every time rather than kept.
const MAX_TEXT: usize = 16 * 1024;

#[derive(Default)]
pub struct DocumentCache {
    documents: Mutex<HashMap<String, Arc<ExecutableDocument>>>,
}

impl DocumentCache {
    /// Gives `request` its parsed document, from the cache or parsed now.
    /// Text that does not parse is left for the executor to report.
    pub fn prepare(&self, request: &mut async_graphql::Request) {
        if !cacheable(&request.query) {
            return;
        }
        let cached = self.lock().get(&request.query).cloned();
        let document = match cached {
            Some(document) => document,
            None => {
                let Ok(parsed) = async_graphql::parser::parse_query(&request.query) else { return };
                let parsed = Arc::new(parsed);
                let mut documents = self.lock();
                if documents.len() >= MAX_DOCUMENTS {
                    documents.clear();
                }
                documents.insert(request.query.clone(), parsed.clone());
                parsed
            }
        };
        request.set_parsed_query(ExecutableDocument::clone(&document));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ExecutableDocument>>> {
        // The map is valid whatever a panicking holder did.
        self.documents.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Only operations without string literals are kept: a client that inlines
/// a secret (`setApiKey(key: "sk-…")`) instead of passing it as a variable
/// must not have it held in memory beyond its request.
fn cacheable(text: &str) -> bool {
    text.len() <= MAX_TEXT && !text.contains('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_documents_and_skips_literals() {
        let cache = DocumentCache::default();
        let mut a = async_graphql::Request::new("query($x: ID!) { user(id: $x) { id } }");
        cache.prepare(&mut a);
        assert!(a.parsed_query().is_ok());
        let mut b = async_graphql::Request::new("query($x: ID!) { user(id: $x) { id } }");
        cache.prepare(&mut b);
        assert_eq!(cache.lock().len(), 1);

        let mut secret = async_graphql::Request::new(r#"mutation { setApiKey(provider: OPENAI, key: "sk-x") { id } }"#);
        cache.prepare(&mut secret);
        let mut broken = async_graphql::Request::new("{ user(");
        cache.prepare(&mut broken);
        assert_eq!(cache.lock().len(), 1, "literals and broken text are not kept");
        assert!(broken.parsed_query().is_err(), "the executor still reports the parse error");

        for i in 0..MAX_DOCUMENTS + 10 {
            cache.prepare(&mut async_graphql::Request::new(format!("{{ f{i}: __typename }}")));
        }
        assert!(cache.lock().len() <= MAX_DOCUMENTS);
    }
}
