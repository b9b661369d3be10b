//! Step 1, the lexical pre-scan: brackets open at once and tokens, before anything
//! recurses.

use async_graphql::Pos;

use super::{DocumentLimits, Refusal, MAX_NESTING};

/// One pass over the text: brackets open at once and tokens, skipping
/// strings and comments as the GraphQL lexer does. No recursion, no
/// allocation; runs before anything that recurses.
pub fn prescan(text: &str, limits: &DocumentLimits) -> Result<(), Refusal> {
    prescan_counted(text, limits).0
}

/// [`prescan`] and the steps it took: one per loop turn, each moving past
/// at least one byte (a token's first byte may be looked at twice), so
/// never more than two per byte. The fuzz targets assert that bound (a
/// count, not a time).
#[doc(hidden)]
pub fn prescan_counted(text: &str, limits: &DocumentLimits) -> (Result<(), Refusal>, usize) {
    let mut steps = 0;
    let result = scan(text, limits, &mut steps);
    (result, steps)
}

fn scan(text: &str, limits: &DocumentLimits, steps: &mut usize) -> Result<(), Refusal> {
    let bytes = text.as_bytes();
    let position = |at: usize| {
        let before = &bytes[..at.min(bytes.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = at - before.iter().rposition(|&b| b == b'\n').map_or(0, |nl| nl + 1) + 1;
        Some(Pos { line, column })
    };
    let mut depth = 0usize;
    let mut tokens = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        *steps += 1;
        let start = i;
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    *steps += 1;
                    i += 1;
                }
                continue;
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                // Block string: ends at the first `"""` not escaped as `\"""`.
                // Unterminated, the grammar would read `""` and go on parsing
                // what follows: so it is refused here, never skipped.
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    *steps += 1;
                    i += if bytes[i..].starts_with(b"\\\"\"\"") { 4 } else { 1 };
                }
                if i >= bytes.len() {
                    return Err(Refusal::new("a block string (\"\"\") is not closed", position(start)));
                }
                i += 3;
            }
            b'"' => {
                // String: ends at an unescaped quote on the same line. The scan
                // is never more lenient than the grammar: unterminated is refused.
                i += 1;
                while i < bytes.len() && !matches!(bytes[i], b'"' | b'\n' | b'\r') {
                    *steps += 1;
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if i >= bytes.len() || bytes[i] != b'"' {
                    return Err(Refusal::new("a string is not closed on its line", position(start)));
                }
                i += 1;
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                i += 1;
                if depth > MAX_NESTING {
                    return Err(Refusal::new(
                        format!("the document nests brackets more than {MAX_NESTING} deep; flatten it"),
                        position(start),
                    ));
                }
            }
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'.') => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'-' | b'+' | b'.'))
                {
                    *steps += 1;
                    i += 1;
                }
            }
            _ => i += 1,
        }
        tokens += 1;
        if tokens > limits.tokens {
            return Err(Refusal::new(
                format!("the document has more than {} tokens; send a smaller one", limits.tokens),
                position(start),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphql::gate::test_limits as limits;

    #[test]
    fn prescan_refuses_deep_nesting_outside_strings_only() {
        let deep = format!("{{ __typename(x: {}{}) }}", "[".repeat(2000), "]".repeat(2000));
        let refusal = prescan(&deep, &limits()).unwrap_err();
        assert!(refusal.message.contains("nests brackets"), "{refusal:?}");
        assert_eq!(refusal.pos, Some(Pos { line: 1, column: 17 + MAX_NESTING - 2 }));
        let in_string = format!("{{ a(x: \"{}\") }}", "[".repeat(2000));
        assert!(prescan(&in_string, &limits()).is_ok());
        let in_block = format!("{{ a(x: \"\"\"\\\"\"\" {} \"\"\") }}", "{".repeat(2000));
        assert!(prescan(&in_block, &limits()).is_ok());
        let in_comment = format!("# {}\n{{ a }}", "(".repeat(2000));
        assert!(prescan(&in_comment, &limits()).is_ok());
        // An escaped quote does not end the string early.
        let escaped = format!("{{ a(x: \"\\\" {} \") }}", "[".repeat(100));
        assert!(prescan(&escaped, &limits()).is_ok());
        // Unterminated strings are refused, never skipped: the grammar reads an
        // unclosed `"""` as `""` and parses what follows.
        let cut = format!("{{ a(x: \"oops\n{}) }}", "[".repeat(100));
        assert!(prescan(&cut, &limits()).unwrap_err().message.contains("not closed"));
        let unclosed_block = format!("{{ __typename(x: [\"\"\"x\" {}{} ]) }}", "[".repeat(3000), "]".repeat(3000));
        assert!(prescan(&unclosed_block, &limits()).unwrap_err().message.contains("not closed"));
        assert!(prescan("{ a(x: \"open", &limits()).is_err());
    }

    #[test]
    fn prescan_counts_tokens() {
        let many = format!("{{ {} }}", "a ".repeat(20_000));
        assert!(prescan(&many, &limits()).unwrap_err().message.contains("tokens"));
        let long_string = format!("{{ a(x: \"{}\") }}", "x".repeat(200_000));
        assert!(prescan(&long_string, &limits()).is_ok());
    }
}
