//! Parsed operations, kept by their text. Clients send the same few
//! operations over and over (with different variables); parsing one with
//! async-graphql's parser costs more than the rest of a simple request, so
//! each distinct text is parsed once and the tree reused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;

/// Distinct operations kept; when full (by count or by total text), the
/// cache starts over: cheap, and bounded whatever clients send.
const MAX_DOCUMENTS: usize = 256;
/// Total text of the kept operations. A parsed tree is many times its
/// text, so this bounds the cache's memory to a few MiB.
const MAX_TOTAL_TEXT: usize = 64 * 1024;
/// Longer texts are parsed every time rather than kept.
const MAX_TEXT: usize = 4 * 1024;

#[derive(Default)]
pub struct DocumentCache {
    documents: Mutex<Documents>,
}

#[derive(Default)]
struct Documents {
    by_text: HashMap<String, Arc<ExecutableDocument>>,
    total_text: usize,
}

impl DocumentCache {
    /// Gives `request` its parsed document, from the cache or parsed now.
    /// Only signed-in callers' operations are kept (`signed_in`), so an
    /// anonymous client cannot fill it. Text that does not parse is left
    /// for the executor to report.
    pub fn prepare(&self, request: &mut async_graphql::Request, signed_in: bool) {
        if !signed_in || !cacheable(&request.query) {
            return;
        }
        let cached = self.lock().by_text.get(&request.query).cloned();
        let document = match cached {
            Some(document) => document,
            None => {
                let Ok(parsed) = async_graphql::parser::parse_query(&request.query) else { return };
                let parsed = Arc::new(parsed);
                let mut documents = self.lock();
                if documents.by_text.len() >= MAX_DOCUMENTS
                    || documents.total_text + request.query.len() > MAX_TOTAL_TEXT
                {
                    *documents = Documents::default();
                }
                documents.total_text += request.query.len();
                documents.by_text.insert(request.query.clone(), parsed.clone());
                parsed
            }
        };
        request.set_parsed_query(ExecutableDocument::clone(&document));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Documents> {
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
        cache.prepare(&mut a, true);
        assert!(a.parsed_query().is_ok());
        let mut b = async_graphql::Request::new("query($x: ID!) { user(id: $x) { id } }");
        cache.prepare(&mut b, true);
        assert_eq!(cache.lock().by_text.len(), 1);
        cache.prepare(&mut async_graphql::Request::new("{ anonymous: __typename }"), false);
        assert_eq!(cache.lock().by_text.len(), 1, "anonymous callers' operations are not kept");

        let mut secret = async_graphql::Request::new(r#"mutation { setApiKey(provider: OPENAI, key: "sk-x") { id } }"#);
        cache.prepare(&mut secret, true);
        let mut broken = async_graphql::Request::new("{ user(");
        cache.prepare(&mut broken, true);
        assert_eq!(cache.lock().by_text.len(), 1, "literals and broken text are not kept");
        assert!(broken.parsed_query().is_err(), "the executor still reports the parse error");

        for i in 0..MAX_DOCUMENTS + 10 {
            cache.prepare(&mut async_graphql::Request::new(format!("{{ f{i}: __typename }}")), true);
        }
        assert!(cache.lock().by_text.len() <= MAX_DOCUMENTS);
        let big = format!("{{ {} }}", "a ".repeat(MAX_TEXT / 2 - 10));
        for i in 0..40 {
            cache.prepare(&mut async_graphql::Request::new(format!("{big} # {i}")), true);
            let documents = cache.lock();
            assert!(documents.total_text <= MAX_TOTAL_TEXT && !documents.by_text.is_empty());
        }
    }
}
