//! `task-env` / `task-return`: the runner's side for shell-based executors.
//! Talks to a running server over HTTP like any other client.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::agents;

/// A GraphQL client with a bearer token; follows no redirects.
pub struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Client {
    pub fn new(server: &str, token: &str) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Client { http, url: format!("{}/graphql", server.trim_end_matches('/')), token: token.to_owned() })
    }

    async fn call(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .with_context(|| format!("calling {}", self.url))?;
        let body: Value = response.json().await.context("the server's answer is not JSON")?;
        if let Some(error) = body["errors"].as_array().and_then(|e| e.first()) {
            bail!(
                "{} ({})",
                error["message"].as_str().unwrap_or("error"),
                error["extensions"]["code"].as_str().unwrap_or("?")
            );
        }
        Ok(body["data"].clone())
    }
}

/// Quotes a value for a POSIX shell: single quotes, with `'` as `'\''`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Joins a server-supplied relative path under `home`, refusing anything
/// that would escape it.
fn under(home: &Path, relative: &str) -> anyhow::Result<PathBuf> {
    let rel = Path::new(relative);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        bail!("refusing to write outside the home directory: {relative:?}");
    }
    Ok(home.join(rel))
}

fn write_private(path: &Path, content: &str, mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    file.write_all(content.as_bytes())?;
    Ok(())
}

/// `claude-code` and `CLAUDE_CODE` alike: the GraphQL enum's spelling.
fn enum_value(raw: &str) -> String {
    raw.trim().to_ascii_uppercase().replace('-', "_")
}

pub struct TaskEnv<'a> {
    pub user: &'a str,
    pub agent: &'a str,
    pub provider: Option<&'a str>,
    pub task: &'a str,
    pub home: &'a Path,
}

/// Fetches the task's credentials, writes its files under `home`, and
/// returns `export NAME='value'` lines.
pub async fn task_env(client: &Client, req: TaskEnv<'_>) -> anyhow::Result<String> {
    let data = client
        .call(
            "mutation($u: ID!, $a: Agent!, $p: Provider, $t: String!) { issueTaskCredentials(userId: $u, agent: $a, provider: $p, taskId: $t) { source env { name value } files { path mode content } } }",
            json!({ "u": req.user, "a": enum_value(req.agent), "p": req.provider.map(enum_value), "t": req.task }),
        )
        .await?;
    let issued = &data["issueTaskCredentials"];
    for file in issued["files"].as_array().into_iter().flatten() {
        let path = under(req.home, file["path"].as_str().unwrap_or_default())?;
        let mode = file["mode"].as_u64().unwrap_or(0o600) as u32 & 0o777;
        write_private(&path, file["content"].as_str().unwrap_or_default(), mode)?;
    }
    let mut out = String::new();
    for var in issued["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap_or_default();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("the server sent an invalid variable name");
        }
        out.push_str(&format!("export {name}={}\n", shell_quote(var["value"].as_str().unwrap_or_default())));
    }
    Ok(out)
}

/// Sends back every agent login file present under `home`; returns how
/// many credentials the task held.
pub async fn task_return(client: &Client, task: &str, home: &Path) -> anyhow::Result<usize> {
    let mut files = Vec::new();
    for path in agents::login_files() {
        let full = home.join(path);
        if full.is_file() {
            let content = std::fs::read_to_string(&full).with_context(|| format!("reading {}", full.display()))?;
            files.push(json!({ "path": path, "content": content }));
        }
    }
    let data = client
        .call(
            "mutation($t: String!, $f: [CredentialFileInput!]!) { returnTaskCredentials(taskId: $t, files: $f) { id } }",
            json!({ "t": task, "f": files }),
        )
        .await?;
    Ok(data["returnTaskCredentials"].as_array().map_or(0, Vec::len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(shell_quote("$HOME `x`"), "'$HOME `x`'");
    }

    #[test]
    fn paths_cannot_escape_home() {
        let home = Path::new("/tmp/h");
        assert!(under(home, ".codex/auth.json").is_ok());
        for bad in ["../x", "/etc/passwd", ".codex/../../x"] {
            assert!(under(home, bad).is_err(), "{bad}");
        }
    }
}
