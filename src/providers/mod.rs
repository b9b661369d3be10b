//! The providers, one file each: the formats of their keys and tokens and
//! the refusals that name them, their sign-in protocol and refresh, how a
//! credential is checked with them, and their settings. The rest of the service asks this registry ([`spec`])
//! what a provider is, instead of matching on [`Provider`].
//!
//! Shared once: JWT reading ([`jwt`]), the HTTP client policy ([`http`]),
//! the sign-in types and routing (`signin.rs`), what a check is given and
//! concludes ([`check`]), the settings aggregates ([`settings`]).
//!
//! Adding a provider:
//! 1. add its value to `Provider` in `crate::domain` (the name the API
//!    shows; in lower case, its settings sections' name);
//! 2. write `src/providers/<name>.rs` (copy the nearest existing provider)
//!    with its [`ProviderSpec`] as `SPEC`: name, the variable its API key is
//!    read from, key formats with their refusals and hint prefixes, its
//!    subscription plans, `check_with_provider` (its cheapest free call),
//!    `revocation` (where a person revokes by hand, and its revoke call if it
//!    offers one), and, if people sign in with it, a unit struct
//!    implementing [`SignIn`] (device code or authorization code, and
//!    refresh) and `login_account` if its logins name an account; in the
//!    same file its `ApiSettings` (`[providers.<name>]`, the API URL default)
//!    and, with a sign-in, its OAuth settings (`[oauth.<name>]`, endpoints
//!    and client id defaults);
//! 3. add one line for it to `REGISTERED` below, and one field to
//!    `ProvidersConfig` (and, with a sign-in, to `OauthConfig`) in
//!    `settings.rs`, named after it;
//! 4. only if its device sign-in must remember something no existing
//!    variant holds between polls: a [`FlowSecret`] variant in `signin.rs`
//!    (stored encrypted; never rename one);
//! 5. give `samples.rs` a sample key for the unit tests, and list it in the
//!    `providers` of each agent that runs against it (`crate::agents`).
//!
//! The registry and settings tests then fail until each piece is there; its
//! API URL variable is [`api_url_env`] (every address: [`url_envs`]), which
//! the test harness points at a closed port.

pub mod anthropic;
pub mod check;
pub mod github;
pub mod google;
pub mod http;
pub mod jwt;
pub mod openai;
pub mod revoke;
#[cfg(test)]
pub(crate) mod samples;
pub mod settings;
mod signin;

pub use check::{Outcome, Probe};
pub use settings::{api_url_env, url_envs, OauthConfig, ProvidersConfig};
pub use signin::{DeviceStart, FlowSecret, Poll, ProviderError, Providers, Refresh, SignIn, Tokens};

use crate::credential_input::{clean, InputError, InputResult, Secret, SubscriptionSecret, MAX_INPUT_BYTES};
use crate::domain::Provider;

/// Every provider, one line each.
static REGISTERED: &[&ProviderSpec] = &[&anthropic::SPEC, &openai::SPEC, &google::SPEC, &github::SPEC];

/// What the service knows about one provider.
pub struct ProviderSpec {
    pub provider: Provider,
    /// How people see it named, e.g. "OpenAI".
    pub name: &'static str,
    /// The environment variable holding the system-wide key (and the one
    /// the agents read an API key from).
    pub api_key_env: &'static str,
    /// Where a subscription token handed over as one variable goes.
    pub token_env: &'static str,
    /// Checks the shape of an API key already trimmed and cleaned.
    pub check_api_key: fn(&str) -> InputResult<()>,
    /// What a value starting with each prefix is, for refusals that say
    /// what was pasted instead.
    pub kinds: &'static [(&'static str, &'static str)],
    /// Prefixes a masked hint may show.
    pub hint_prefixes: &'static [&'static str],
    /// Its subscription plans an agent can run on, as people know them
    /// (the agents catalog lists them for each agent that takes them).
    pub subscription_plans: &'static [&'static str],
    pub refresh: RefreshTokens,
    /// Its sign-in and refresh (`signin.rs`); `None` for API keys only.
    pub sign_in: Option<&'static dyn SignIn>,
    /// Whose login a subscription's tokens are (see [`login_account`]);
    /// `None` where its logins name no account.
    pub login_account: Option<AccountFn>,
    /// Asks the provider whether a credential works: the cheapest call
    /// that proves it and costs nothing (`crate::checks`).
    pub check_with_provider: CheckFn,
    /// Revoking at the provider what its sign-in issued, and where a person
    /// revokes the rest by hand (`revoke.rs`).
    pub revocation: revoke::Revocation,
    /// What the egress proxy may do with its credentials (`crate::proxy`).
    pub egress: Egress,
}

/// A provider's facts for proxy delivery (`../shared/reference/agents.md`,
/// "Egress injection").
pub struct Egress {
    /// Hosts its credentials may be sent to through the proxy (each agent's
    /// requests for this provider go to these).
    pub hosts: &'static [&'static str],
    /// Its OAuth token endpoints as the CLIs call them (host, path): the
    /// proxy answers a refresh there itself; the refresh token never leaves.
    pub token_endpoints: &'static [(&'static str, &'static str)],
    /// Public prefixes of its keys and tokens, kept on a placeholder for a
    /// real value that starts with one (Copilot refuses a token that does
    /// not start `github_pat_` or `gho_`). Longest first.
    pub placeholder_prefixes: &'static [&'static str],
}

impl Egress {
    /// The prefix a placeholder for `real` keeps (never more than the
    /// listed public prefix).
    pub fn prefix_of(&self, real: &str) -> &'static str {
        self.placeholder_prefixes.iter().copied().find(|p| real.starts_with(p)).unwrap_or("")
    }

    /// Whether a request to `host` may carry this provider's credentials.
    pub fn allows_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
            || self.token_endpoints.iter().any(|(h, _)| h.eq_ignore_ascii_case(host))
    }

    /// Whether `host` and `path` are one of its token endpoints.
    pub fn is_token_endpoint(&self, host: &str, path: &str) -> bool {
        self.token_endpoints.iter().any(|(h, p)| h.eq_ignore_ascii_case(host) && *p == path)
    }
}

/// A provider's check: the HTTP client, where the providers are, and the
/// credential (never a refresh token).
pub type CheckFn =
    for<'a> fn(&'a reqwest::Client, &'a ProvidersConfig, Probe<'a>) -> futures_util::future::BoxFuture<'a, Outcome>;

/// A provider's reading of whose login a subscription's tokens are.
pub type AccountFn =
    for<'a> fn(ProviderApis<'a>, &'a SubscriptionSecret) -> futures_util::future::BoxFuture<'a, Account>;

/// Whether and how a provider's logins are refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshTokens {
    None,
    Reusable,
    /// Each refresh token works once: a second holder must never spend it.
    SingleUse,
}

/// Every registered provider, in the order people see them listed.
pub fn registered() -> impl Iterator<Item = &'static ProviderSpec> {
    REGISTERED.iter().copied()
}

/// The registry entry of a provider.
pub fn spec(provider: Provider) -> &'static ProviderSpec {
    REGISTERED.iter().find(|s| s.provider == provider).expect("every provider is registered")
}

/// Providers whose logins the scheduler refreshes, as stored.
pub fn refreshable_names() -> Vec<&'static str> {
    REGISTERED.iter().filter(|s| s.refresh != RefreshTokens::None).map(|s| s.provider.as_str()).collect()
}

/// Whether a provider's refresh tokens work once only, so two holders
/// must never both be given one.
pub fn single_use_refresh(provider: Provider) -> bool {
    spec(provider).refresh == RefreshTokens::SingleUse
}

/// Whose login an access token is, as the provider tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Account {
    /// The provider's id for the account (ChatGPT's account id, Claude's
    /// account uuid).
    Known(String),
    /// The provider did not say (why, never the token).
    Unknown(String),
    /// The provider could not be asked; asking again later may tell.
    Unreachable(String),
}

/// The HTTP client and the provider API URLs, for the calls that ask a
/// provider about a credential.
#[derive(Clone, Copy)]
pub struct ProviderApis<'a> {
    pub http: &'a reqwest::Client,
    pub config: &'a ProvidersConfig,
}

/// Whose login `secret` is, judged by its tokens alone (never by an
/// account id stored beside them): ChatGPT's account id from the JWT
/// (`openai::login_account`, the derivation saves use), Claude's account
/// uuid from Anthropic's profile of the access token.
pub async fn login_account(apis: ProviderApis<'_>, provider: Provider, secret: &SubscriptionSecret) -> Account {
    let spec = spec(provider);
    match spec.login_account {
        Some(account_of) => account_of(apis, secret).await,
        None => Account::Unknown(format!("{} logins name no account", spec.name)),
    }
}

/// A provider API key whose shape has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    provider: Provider,
    key: Secret,
}

impl ApiKey {
    /// Parses a key typed into Settings → API Keys (or `setApiKey`).
    pub fn parse(provider: Provider, raw: &str) -> InputResult<Self> {
        let key = clean(raw, "key", MAX_INPUT_BYTES)?;
        (spec(provider).check_api_key)(key)?;
        Ok(ApiKey { provider, key: Secret::new(key.to_owned()) })
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    pub fn secret(&self) -> &Secret {
        &self.key
    }

    pub fn into_secret(self) -> Secret {
        self.key
    }
}

/// The longest of the registered prefixes that `value` starts with.
fn longest_prefix<'a, T>(value: &str, items: impl Iterator<Item = (&'a str, T)>) -> Option<(&'a str, T)> {
    items.filter(|(prefix, _)| value.starts_with(prefix)).max_by_key(|(prefix, _)| prefix.len())
}

/// What a value resembles, judged by its prefix alone.
fn looks_like(value: &str) -> Option<&'static str> {
    let kinds = REGISTERED.iter().flat_map(|s| s.kinds.iter().copied());
    longest_prefix(value, kinds).map(|(_, kind)| kind)
}

/// "X starts with P; that looks like Y." — naming what the value resembles
/// (never the value) is the most useful hint when the wrong thing was pasted.
pub fn wrong_prefix(expected: &str, prefixes: &[&str], value: &str) -> InputError {
    let list = match prefixes {
        [one] => (*one).to_owned(),
        many => many.join(", "),
    };
    let starts = if prefixes.len() == 1 { "starts with" } else { "starts with one of" };
    let mut msg = format!("{expected} {starts} {list}");
    if let Some(kind) = looks_like(value) {
        msg.push_str(&format!("; that looks like {kind}"));
    }
    msg.push('.');
    InputError::new(msg)
}

/// Secrets shorter than this show no characters at all.
const HINT_MIN_CHARS: usize = 12;
/// How many characters a hint shows at the end.
const HINT_TAIL: usize = 4;
/// Characters that must stay hidden between the shown prefix and tail; with
/// fewer, the prefix is dropped so a short secret is not mostly revealed.
const HINT_MIN_HIDDEN: usize = 8;

/// A masked preview a person recognises their credential by, e.g.
/// `sk-ant-…9f2c`: a known prefix and the last four characters.
pub fn hint(secret: &str) -> String {
    let secret = secret.trim();
    let len = secret.chars().count();
    if len < HINT_MIN_CHARS {
        return "…".to_owned();
    }
    let tail: String = secret.chars().skip(len - HINT_TAIL).collect();
    let prefixes = REGISTERED.iter().flat_map(|s| s.hint_prefixes.iter().map(|p| (*p, ())));
    let prefix = longest_prefix(secret, prefixes)
        .map(|(p, ())| p)
        .filter(|p| len >= p.len() + HINT_TAIL + HINT_MIN_HIDDEN)
        .unwrap_or("");
    format!("{prefix}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::samples::*;
    use super::*;

    #[test]
    fn one_entry_per_provider() {
        for &provider in Provider::ALL {
            assert_eq!(spec(provider).provider, provider);
        }
        assert_eq!(REGISTERED.len(), Provider::ALL.len());
        let mut names = refreshable_names();
        names.sort();
        assert_eq!(names, ["ANTHROPIC", "OPENAI"]);
    }

    #[test]
    fn accepts_valid_api_keys_and_trims() {
        let cases = [
            (Provider::Anthropic, anthropic_key()),
            (Provider::Openai, openai_key()),
            (Provider::Openai, format!("sk-{MARK}0123456789abcdef")),
            (Provider::Google, google_key()),
            (Provider::Github, github_pat()),
            (Provider::Github, format!("gho_{MARK}0123456789abcdef")),
            (Provider::Github, format!("ghu_{MARK}0123456789abcdef")),
        ];
        for (provider, key) in cases {
            let parsed = ApiKey::parse(provider, &format!("  {key}\n")).unwrap();
            assert_eq!(parsed.provider(), provider);
            assert_eq!(parsed.secret().expose(), key);
            assert!(!format!("{parsed:?}").contains(MARK));
            assert_eq!(parsed.into_secret().expose(), key);
        }
    }

    #[test]
    fn generic_refusals() {
        let msg = refused(ApiKey::parse(Provider::Anthropic, "   \n"), "");
        assert!(msg.contains("empty"), "{msg}");

        let huge = format!("sk-ant-api03-{}", "a".repeat(MAX_INPUT_BYTES));
        let msg = refused(ApiKey::parse(Provider::Anthropic, &huge), &huge);
        assert!(msg.contains("8192"), "{msg}");

        let key = anthropic_key();
        for broken in [
            format!("{}\n{}", &key[..20], &key[20..]),
            format!("{} {}", &key[..20], &key[20..]),
            format!("{}\t{}", &key[..20], &key[20..]),
            format!("{}\u{7}{}", &key[..20], &key[20..]),
        ] {
            let msg = refused(ApiKey::parse(Provider::Anthropic, &broken), &broken);
            assert!(msg.contains("the token contains spaces or line breaks; copy it again without them"), "{msg}");
        }

        let curly = format!("“{key}”");
        let msg = refused(ApiKey::parse(Provider::Anthropic, &curly), &curly);
        assert!(msg.contains("curly quotes"), "{msg}");

        let quoted = format!("{key}\"");
        let msg = refused(ApiKey::parse(Provider::Anthropic, &quoted), &quoted);
        assert!(msg.contains("quotes"), "{msg}");

        let msg = refused(ApiKey::parse(Provider::Openai, r#"{"a":"b"}"#), "");
        assert!(msg.contains("JSON"), "{msg}");
    }

    // ---- Hints -------------------------------------------------------------

    #[test]
    fn hints_show_known_prefix_and_last_four() {
        assert_eq!(hint("sk-ant-api03-abcdefghijklmnop9f2c"), "sk-ant-…9f2c");
        assert_eq!(hint("sk-ant-oat01-abcdefghijklmnop9f2c"), "sk-ant-…9f2c");
        assert_eq!(hint("sk-proj-abcdefghijklmnopqrsta1b2"), "sk-proj-…a1b2");
        assert_eq!(hint("sk-abcdefghijklmnopqrstuvwxyz1234"), "sk-…1234");
        assert_eq!(hint(&format!("github_pat_11AAAA{}a1b2", "x".repeat(60))), "github_pat_…a1b2");
        assert_eq!(hint("gho_abcdefghijklmnopqrstuvwxyz0123"), "gho_…0123");
        assert_eq!(hint("ghu_abcdefghijklmnopqrstuvwxyz0123"), "ghu_…0123");
        assert_eq!(hint("AIzaSyA-abcdefghijklmnopqrstuvwxyz1"), "AIza…xyz1");
        let access = codex_access(now());
        assert_eq!(hint(&access), format!("eyJ…{}", &access[access.len() - 4..]));
    }

    #[test]
    fn hints_for_short_and_unknown_secrets() {
        assert_eq!(hint(""), "…");
        assert_eq!(hint("abc"), "…");
        assert_eq!(hint("abcdefghijk"), "…"); // 11 chars
        assert_eq!(hint("abcdefghijkl"), "…ijkl"); // 12 chars
        assert_eq!(hint("rt_opaque-refresh-token-wxyz"), "…wxyz");
        // A known prefix on a short secret is dropped so little is revealed.
        assert_eq!(hint("github_pat_abcd"), "…abcd");
        assert_eq!(hint("sk-ant-12345"), "…2345");
        // Never more than four trailing characters, even for multi-byte text.
        assert_eq!(hint("ééééééééééééééé"), "…éééé");
        for s in [claude_token(), github_pat(), google_key(), openai_key()] {
            assert!(!hint(&s).contains(MARK));
            let tail: String = hint(&s).chars().skip_while(|c| *c != '…').skip(1).collect();
            assert_eq!(tail.chars().count(), 4);
        }
    }
}
