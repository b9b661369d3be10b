//! Files a task returns, through the pure part of `returnTaskCredentials`:
//! the path check and the agent's parser of the file, the merge with the
//! stored login, and the account check of ChatGPT logins (read from the
//! tokens). Reading the lease and the stored row, Anthropic's account
//! (asked of the provider over HTTP) and the write are not fuzzed.
//!
//! Input: two bytes (agent and provider, path), then the file's content.
//! Never panics; no refusal shows the file's secrets; a file that parses
//! merges without losing its own tokens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_vault::fuzzing::{
    chatgpt_account, parse_returned, returnable_paths, Agent, Provider, Secret, SubscriptionSecret,
};
use sesame_vault_fuzz::{assert_no_secret, MARK};

const OTHER_PATHS: &[&str] = &[".claude.json", ".codex/config.toml", "../.codex/auth.json", ""];

fuzz_target!(|data: &[u8]| {
    let [pair, which, rest @ ..] = data else { return };
    let pairs: Vec<(Agent, Provider)> =
        Agent::ALL.iter().flat_map(|&a| sesame_vault::agents::spec(a).providers.iter().map(move |&p| (a, p))).collect();
    let (agent, provider) = pairs[*pair as usize % pairs.len()];
    let paths = returnable_paths(agent, provider);
    let all: Vec<&str> = paths.iter().copied().chain(OTHER_PATHS.iter().copied()).collect();
    let path = all[*which as usize % all.len()];
    let content = String::from_utf8_lossy(rest);

    match parse_returned(agent, provider, path, &content) {
        Ok(returned) => {
            assert!(paths.contains(&path), "a file at a path the agent does not return was read");
            // Scopes are shown on purpose (they are no secret); the rest never.
            let mut shown = returned.clone();
            shown.secret.scopes.clear();
            assert!(!format!("{shown:?}").contains(MARK), "Debug of a returned login shows a secret");
            let stored = SubscriptionSecret {
                access_token: Secret::new(format!("stored-access-{MARK}")),
                refresh_token: Some(Secret::new(format!("stored-refresh-{MARK}"))),
                id_token: None,
                account_id: Some("stored-account".into()),
                last_refresh: None,
                scopes: vec!["user:inference".into()],
            };
            let merged = returned.merged_with(&stored);
            assert!(merged.access_token == returned.secret.access_token);
            if returned.secret.refresh_token.is_some() {
                assert!(merged.refresh_token == returned.secret.refresh_token);
            }
            if provider == Provider::Openai {
                if let Some(account) = chatgpt_account(&returned.secret) {
                    assert!(!account.is_empty() && account.trim() == account, "an account id untrimmed");
                }
            }
        }
        Err(e) => assert_no_secret(&e.to_string(), &[&content]),
    }
});
