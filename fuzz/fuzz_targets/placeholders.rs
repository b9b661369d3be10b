//! Proxy delivery's placeholder finder and replacer (`crate::delivery`) on
//! arbitrary text: what the egress proxy runs over every header value, query
//! string and token-endpoint body a task sends.
//!
//! Never panics; spans are in bounds, on character boundaries, in order and
//! disjoint, and each holds the marker and a whole grant id; replacing every
//! span by its own text gives the text back; a minted placeholder embedded
//! anywhere between separators is found whole.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sesame_vault::fuzzing::{find_all, has_marker, replace_all, Field, GrantId, GRANT_ID_LEN, MARKER};

#[derive(Arbitrary, Debug)]
struct Input {
    text: String,
    /// Embed a minted placeholder between `before` and `after`.
    embed: Option<(String, String, u8)>,
}

fn check(text: &str) {
    let found = find_all(text);
    let mut last = 0;
    for f in &found {
        assert!(f.span.start >= last && f.span.start < f.span.end && f.span.end <= text.len(), "{f:?}");
        let span = &text[f.span.clone()];
        assert!(span.contains(MARKER) && span.len() >= MARKER.len() + 1 + GRANT_ID_LEN, "{span:?}");
        last = f.span.end;
    }
    if !found.is_empty() {
        assert!(has_marker(text));
    }
    let same = replace_all(text, |f| Some(text[f.span.clone()].to_owned())).expect("every span has a value");
    assert_eq!(same, text);
    assert!(replace_all(text, |_| None).is_none() == !found.is_empty());
}

fuzz_target!(|input: Input| {
    check(&input.text);
    if let Some((before, after, field)) = input.embed {
        let field = [Field::ApiKey, Field::Access, Field::Refresh, Field::IdToken][usize::from(field % 4)];
        let grant = GrantId::mint();
        let placeholder = grant.placeholder("github_pat_", field);
        // Separated from the fuzzer's text by a byte that ends a token.
        let text = format!("{before} {placeholder}&{after}");
        check(&text);
        let ours: Vec<_> = find_all(&text).into_iter().filter(|f| f.grant == grant).collect();
        assert_eq!(ours.len(), 1, "{text:?}");
        assert_eq!(&text[ours[0].span.clone()], placeholder);
        assert_eq!(ours[0].field, field);
    }
});
