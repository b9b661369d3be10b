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
    /// The parsed tree of `text`, if it is kept. Only documents that passed
    /// the gate (`super::gate`) for a signed-in caller are ever inserted.
    pub fn get(&self, text: &str) -> Option<Arc<ExecutableDocument>> {
        if !cacheable(text) {
            return None;
        }
        self.lock().by_text.get(text).cloned()
    }

    /// Keeps `document` as the tree of `text` (if `text` may be kept).
    pub fn insert(&self, text: &str, document: Arc<ExecutableDocument>) {
        if !cacheable(text) {
            return;
        }
        let mut documents = self.lock();
        if documents.by_text.len() >= MAX_DOCUMENTS || documents.total_text + text.len() > MAX_TOTAL_TEXT {
            *documents = Documents::default();
        }
        if documents.by_text.insert(text.to_owned(), document).is_none() {
            documents.total_text += text.len();
        }
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

    fn parsed(text: &str) -> Arc<ExecutableDocument> {
        Arc::new(async_graphql::parser::parse_query(text).expect("parses"))
    }

    #[test]
    fn keeps_documents_and_skips_literals() {
        let cache = DocumentCache::default();
        let text = "query($x: ID!) { user(id: $x) { id } }";
        cache.insert(text, parsed(text));
        cache.insert(text, parsed(text));
        assert!(cache.get(text).is_some());
        assert_eq!(cache.lock().by_text.len(), 1);
        assert_eq!(cache.lock().total_text, text.len());

        let secret = r#"mutation { setApiKey(provider: OPENAI, key: "sk-x") { id } }"#;
        cache.insert(secret, parsed(secret));
        assert!(cache.get(secret).is_none(), "texts with literals are not kept");

        for i in 0..MAX_DOCUMENTS + 10 {
            let text = format!("{{ f{i}: __typename }}");
            cache.insert(&text, parsed(&text));
        }
        assert!(cache.lock().by_text.len() <= MAX_DOCUMENTS);
        let big = format!("{{ {} }}", "a ".repeat(MAX_TEXT / 2 - 10));
        for i in 0..40 {
            let text = format!("{big} # {i}");
            cache.insert(&text, parsed(&text));
            let documents = cache.lock();
            assert!(documents.total_text <= MAX_TOTAL_TEXT && !documents.by_text.is_empty());
        }
    }
}
