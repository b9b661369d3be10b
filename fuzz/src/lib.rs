//! What the targets share: the marker every secret sample carries, the
//! checks that no secret reaches a message, and the fuzz input formats.

/// The run of characters placed in every secret of the seed corpora (the
/// unit tests' `providers::samples::MARK`): no message may ever show it.
pub const MARK: &str = "Zq7XsEcReTmArK9";

/// Panics (a finding) when `message` shows the marker, or a whole secret
/// that carries it. Only the marker is searched for in fuzzed text: the
/// fuzzer learns the messages' own words (it once pasted "…is empty; paste
/// the valu…" as a token), so a secret without the marker proves nothing.
pub fn assert_no_secret(message: &str, secrets: &[&str]) {
    assert!(!message.contains(MARK), "a message shows a secret's marker: {message}");
    for secret in secrets.iter().map(|s| s.trim()).filter(|s| s.contains(MARK)) {
        assert!(!message.contains(secret), "a message shows a secret: {message}");
    }
}

/// Splits raw fuzz input at NUL bytes into at most `n` text fields
/// (invalid UTF-8 replaced), the format of the seed corpora.
pub fn fields(data: &[u8], n: usize) -> Vec<String> {
    data.splitn(n, |&b| b == 0).map(|part| String::from_utf8_lossy(part).into_owned()).collect()
}

/// A field as a form sends it: absent when not in the input.
pub fn field(fields: &[String], i: usize) -> Option<&str> {
    fields.get(i).map(String::as_str)
}

/// `jwt:{…claims…}` stands for an unsigned-looking JWT carrying those
/// claims, so the fuzzer reaches the claim readers through plain text.
pub fn expand_jwt(value: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    match value.strip_prefix("jwt:") {
        Some(claims) => format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims.as_bytes()),
            URL_SAFE_NO_PAD.encode(format!("signature-{MARK}").as_bytes())
        ),
        None => value.to_owned(),
    }
}
