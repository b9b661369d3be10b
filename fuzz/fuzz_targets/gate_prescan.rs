//! The document gate's lexical pre-scan, the parse it guards and the
//! structural check after it, on any text, with both callers' limits.
//! Never panics; the scan takes at most two steps per byte (a count, not a
//! time); a document that passes parses without overflowing the stack; no
//! refusal quotes the document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_vault::fuzzing::{check_structure, document_limits, parse, prescan_counted};
use sesame_vault_fuzz::assert_no_secret;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for signed_in in [true, false] {
        let limits = document_limits(signed_in);
        let (scanned, steps) = prescan_counted(&text, &limits);
        assert!(steps <= 2 * text.len(), "{steps} steps for {} bytes", text.len());
        let outcome = scanned.and_then(|()| parse(&text)).and_then(|doc| check_structure(&doc, &limits));
        if let Err(refusal) = outcome {
            assert_no_secret(&refusal.message, &[]);
        }
    }
});
