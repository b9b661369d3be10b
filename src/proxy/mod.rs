//! The credential-injecting egress proxy: tasks with `delivery: PROXY` hold
//! placeholders (`crate::delivery`); this proxy intercepts TLS for their
//! providers' hosts and swaps each placeholder for the real credential on
//! the way out, answers refreshes itself, and counts usage per task.

mod settings;

pub use settings::ProxyConfig;
