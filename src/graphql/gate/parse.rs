//! Step 2, parsing, with errors that do not quote the text.

use async_graphql::parser::types::ExecutableDocument;

use super::{Refusal, MAX_NESTING};

/// Parses a document that passed [`prescan`]. Parse errors say where and
/// what was expected, never the source line (which may hold a secret).
pub fn parse(text: &str) -> Result<ExecutableDocument, Refusal> {
    use async_graphql::parser::Error;
    async_graphql::parser::parse_query(text).map_err(|e| match e {
        Error::Syntax { message, start, .. } => {
            // pest's message ends with "= expected <rules>": grammar, not text.
            let expected = message
                .lines()
                .rev()
                .find_map(|line| line.trim_start().strip_prefix("= "))
                .filter(|what| what.starts_with("expected") || what.starts_with("unexpected"))
                .map(|what| format!(": {}", what.replace('_', " ")))
                .unwrap_or_default();
            Refusal::new(format!("syntax error at line {}, column {}{expected}", start.line, start.column), Some(start))
        }
        Error::MultipleOperations { operation, .. } => Refusal::new(
            "a document with several operations must name each of them (and the request must say which to run)",
            Some(operation),
        ),
        Error::OperationDuplicated { second, .. } => {
            Refusal::new("two operations have the same name; rename one", Some(second))
        }
        Error::FragmentDuplicated { second, .. } => {
            Refusal::new("two fragments have the same name; rename one", Some(second))
        }
        Error::MissingOperation => Refusal::new("the document holds no operation", None),
        Error::RecursionLimitExceeded => {
            Refusal::new(format!("the document nests more than {MAX_NESTING} deep; flatten it"), None)
        }
        _ => Refusal::new("the document is not a valid GraphQL operation", None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_do_not_quote_the_text() {
        let refusal = parse("mutation { setApiKey(key: \"sk-ant-secret\" provider: ) }").unwrap_err();
        assert!(!refusal.message.contains("sk-ant"), "{}", refusal.message);
        assert!(refusal.message.starts_with("syntax error at line 1, column"), "{}", refusal.message);
    }
}
