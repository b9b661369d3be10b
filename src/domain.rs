//! Domain vocabulary shared by the store, the GraphQL API and the task
//! materialiser. Every enum here round-trips through a stable upper-case
//! string, which is also how it is stored in the database.

use std::fmt;
use std::str::FromStr;

use async_graphql::Enum;

/// Declares a fieldless enum with a stable string form (`as_str`/`FromStr`).
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(into = "&'static str", try_from = "String")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<$name> for &'static str {
            fn from(v: $name) -> &'static str {
                v.as_str()
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownVariant;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownVariant { kind: stringify!($name), value: s.chars().take(40).collect() }),
                }
            }
        }
    };
}

/// A stored string that names no known variant (a corrupt row or a newer
/// schema); it is an internal error, never user input.
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} value {value:?}")]
pub struct UnknownVariant {
    kind: &'static str,
    value: String,
}

string_enum!(
    /// A person's role. Runners are service tokens, not people, so they are
    /// not a `Role`.
    Role { User => "USER", Admin => "ADMIN" }
);

string_enum!(Agent {
    ClaudeCode => "CLAUDE_CODE",
    Codex => "CODEX",
    Copilot => "COPILOT",
    Gemini => "GEMINI",
    Opencode => "OPENCODE",
    Aider => "AIDER",
    Crush => "CRUSH",
});

string_enum!(Provider {
    Anthropic => "ANTHROPIC",
    Openai => "OPENAI",
    Google => "GOOGLE",
    Github => "GITHUB",
});

string_enum!(
    /// How a task receives its credentials: the real values in its env and
    /// files (`FILES`), or task-scoped placeholders that only the vault's
    /// egress proxy turns into the real ones (`PROXY`).
    Delivery { Files => "FILES", Proxy => "PROXY" }
);

string_enum!(CredentialKind { ApiKey => "API_KEY", Subscription => "SUBSCRIPTION" });

string_enum!(CredentialStatus {
    Active => "ACTIVE",
    Expiring => "EXPIRING",
    Expired => "EXPIRED",
    NeedsReauth => "NEEDS_REAUTH",
    Invalid => "INVALID",
});

string_enum!(
    /// What the provider said when a credential was last checked with it:
    /// VALID (accepted), INVALID (refused: statusMessage and the check's
    /// message say what to do), NO_ACCESS (authenticated, but without access,
    /// e.g. no Copilot on this GitHub account), UNREACHABLE (network,
    /// timeout, 5xx, 429 or an unknown answer: nothing was concluded).
    CheckResult {
        Valid => "VALID",
        Invalid => "INVALID",
        NoAccess => "NO_ACCESS",
        Unreachable => "UNREACHABLE",
    }
);

string_enum!(
    /// What came of revoking a removed credential at its provider: REVOKED
    /// (the provider confirmed it), FAILED (the vault tried, for a token its
    /// own sign-in obtained, and it did not work: revoke it by hand),
    /// NOT_OFFERED (a pasted token or key, or a provider without a revoke
    /// endpoint: the message says where the person revokes it).
    RevocationResult {
        Revoked => "REVOKED",
        Failed => "FAILED",
        NotOffered => "NOT_OFFERED",
    }
);

string_enum!(CredentialSource {
    Subscription => "SUBSCRIPTION",
    UserApiKey => "USER_API_KEY",
    SystemKey => "SYSTEM_KEY",
});

string_enum!(AuthMethod {
    ApiKey => "API_KEY",
    PasteToken => "PASTE_TOKEN",
    DeviceCode => "DEVICE_CODE",
    AuthorizationCode => "AUTHORIZATION_CODE",
});

string_enum!(FlowStatus {
    Pending => "PENDING",
    Authorized => "AUTHORIZED",
    Denied => "DENIED",
    Expired => "EXPIRED",
    Cancelled => "CANCELLED",
    Failed => "FAILED",
});

string_enum!(CredentialEventKind {
    Created => "CREATED",
    Updated => "UPDATED",
    Expiring => "EXPIRING",
    Expired => "EXPIRED",
    Refreshed => "REFRESHED",
    NeedsReauth => "NEEDS_REAUTH",
    Removed => "REMOVED",
    Invalid => "INVALID",
});

impl FlowStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, FlowStatus::Pending)
    }
}
