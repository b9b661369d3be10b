//! `task-env` / `task-return`: the runner's side for shell-based executors.
//! Talks to a running server over HTTP like any other client.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use anyhow::{anyhow, bail, Context};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
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

// ---------------------------------------------------------------------------
// Files under the task's home directory
// ---------------------------------------------------------------------------
//
// Whatever runs in the task owns its home directory and can plant links
// there: a link at `.claude` would have the person's token written outside
// it, one at `.claude.json` a host file truncated and chmod-ed, one at a
// login file that host file (or `/proc/self/environ`, with the runner's own
// token) sent to the vault. So nothing under the home directory is ever
// reached through a link: the directory (as the operator named it) is
// opened once, and every path under it is walked one component at a time
// with `openat(…, O_NOFOLLOW)`; directories are made with `mkdirat` (0700)
// and files opened with `O_NOFOLLOW | O_NONBLOCK` (a FIFO never blocks),
// then checked on the open descriptor: only a regular file with a single
// name is written (chmod-ed 0600 through the descriptor) or read (at most
// `MAX_RETURNED_BYTES`). Anything else refuses the whole command, naming
// the path relative to the home directory and what was found there.

/// The task's home directory, opened once.
struct Home {
    fd: OwnedFd,
}

/// Every directory made under the home directory: owner only.
const DIR_MODE: u32 = 0o700;

impl Home {
    fn open(path: &Path) -> anyhow::Result<Home> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rfs::open(path, flags, Mode::empty())
            .with_context(|| format!("opening the home directory {}", path.display()))?;
        Ok(Home { fd })
    }

    /// The directory holding `relative`'s last component, walked without
    /// following links; made (0700) where missing when `create`, else
    /// `None` when missing.
    fn parent_of<'p>(&self, relative: &'p str, create: bool) -> anyhow::Result<Option<(OwnedFd, &'p str)>> {
        let parts = components(relative)?;
        let (name, dirs) = parts.split_last().expect("components() returns at least one");
        let mut dir = self.fd.try_clone().context("duplicating the home directory's descriptor")?;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        for (i, part) in dirs.iter().enumerate() {
            let shown = dirs[..=i].join("/");
            let next = match rfs::openat(&dir, *part, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rfs::mkdirat(&dir, *part, Mode::from_raw_mode(DIR_MODE)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => {
                            return Err(anyhow!("creating the directory {shown:?} under the home directory: {e}"))
                        }
                    }
                    rfs::openat(&dir, *part, flags, Mode::empty())
                        .map_err(|e| refusal(&dir, part, &shown, e, "a directory"))?
                }
                Err(Errno::NOENT) => return Ok(None),
                Err(e) => return Err(refusal(&dir, part, &shown, e, "a directory")),
            };
            dir = next;
        }
        Ok(Some((dir, name)))
    }

    /// Writes `content` to `relative` (0600), creating its directories.
    fn write(&self, relative: &str, content: &[u8]) -> anyhow::Result<()> {
        let (dir, name) = self.parent_of(relative, true)?.expect("created on the way");
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = rfs::openat(&dir, name, flags, Mode::from_raw_mode(agents::handover::FILE_MODE))
            .map_err(|e| refusal(&dir, name, relative, e, "a regular file"))?;
        regular_file(&fd, relative)?;
        // Through the descriptor: only ever the file just checked.
        rfs::fchmod(&fd, Mode::from_raw_mode(agents::handover::FILE_MODE))
            .with_context(|| format!("restricting {relative:?} to its owner"))?;
        rfs::ftruncate(&fd, 0).with_context(|| format!("emptying {relative:?}"))?;
        std::fs::File::from(fd).write_all(content).with_context(|| format!("writing {relative:?}"))?;
        Ok(())
    }

    /// The content of `relative`, if it is there: a regular file of at most
    /// `MAX_RETURNED_BYTES`, read without following any link.
    fn read(&self, relative: &str) -> anyhow::Result<Option<String>> {
        let Some((dir, name)) = self.parent_of(relative, false)? else {
            return Ok(None);
        };
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match rfs::openat(&dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(refusal(&dir, name, relative, e, "a regular file")),
        };
        let stat = regular_file(&fd, relative)?;
        let max = agents::handover::MAX_RETURNED_BYTES;
        let too_big =
            || anyhow!("refusing {relative:?}: it is larger than {} KiB, more than any login file", max / 1024);
        if u64::try_from(stat.st_size).map_or(true, |size| size > max as u64) {
            return Err(too_big());
        }
        let mut content = Vec::with_capacity(max.min(stat.st_size as usize + 1));
        std::fs::File::from(fd)
            .take(max as u64 + 1)
            .read_to_end(&mut content)
            .with_context(|| format!("reading {relative:?}"))?;
        if content.len() > max {
            return Err(too_big());
        }
        String::from_utf8(content).map(Some).map_err(|_| anyhow!("refusing {relative:?}: it is not UTF-8 text"))
    }
}

/// A server-supplied relative path, component by component; refuses
/// anything that would leave the home directory (`..`, absolute, empty).
fn components(relative: &str) -> anyhow::Result<Vec<&str>> {
    let rel = Path::new(relative);
    if relative.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        bail!("refusing to touch a path outside the home directory: {relative:?}");
    }
    Ok(relative.split('/').filter(|p| !p.is_empty() && *p != ".").collect())
}

/// Checks, on the open descriptor, that it is a regular file with one name
/// (a hard link to a file elsewhere is refused like a symbolic link).
fn regular_file(fd: &OwnedFd, relative: &str) -> anyhow::Result<rfs::Stat> {
    let stat = rfs::fstat(fd).with_context(|| format!("inspecting {relative:?}"))?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::RegularFile {
        bail!("refusing {relative:?} under the home directory: it is {}, not a regular file", describe(kind));
    }
    if stat.st_nlink > 1 {
        bail!(
            "refusing {relative:?} under the home directory: it has {} names (hard links), so it may be another file's",
            stat.st_nlink
        );
    }
    Ok(stat)
}

/// Why `name` (shown as `shown`, relative to the home directory) in `dir`
/// could not be opened as `expected`: what is there, when it can be told.
fn refusal(dir: &OwnedFd, name: &str, shown: &str, errno: Errno, expected: &str) -> anyhow::Error {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => {
            let kind = FileType::from_raw_mode(stat.st_mode);
            let links =
                if kind == FileType::Symlink { " (links under the home directory are never followed)" } else { "" };
            anyhow!("refusing {shown:?} under the home directory: it is {}, not {expected}{links}", describe(kind))
        }
        Err(_) => anyhow!("refusing {shown:?} under the home directory: {errno}"),
    }
}

fn describe(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a named pipe (FIFO)",
        FileType::Socket => "a socket",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        FileType::Unknown => "of an unknown kind",
    }
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
    /// `files` or `proxy`; None: the vault's default.
    pub delivery: Option<&'a str>,
}

/// Fetches the task's credentials, writes its files under `home`, and
/// returns `export NAME='value'` lines.
pub async fn task_env(client: &Client, req: TaskEnv<'_>) -> anyhow::Result<String> {
    // Opened first: a missing home directory issues nothing.
    let home = Home::open(req.home)?;
    // Variables naming a handed file (the proxy's CA) get its absolute path.
    let home_dir = std::path::absolute(req.home)?;
    let data = client
        .call(
            "mutation($u: ID!, $a: Agent!, $p: Provider, $t: String!, $d: Delivery) { issueTaskCredentials(userId: $u, agent: $a, provider: $p, taskId: $t, delivery: $d) { source env { name value homePath } files { path mode content } } }",
            json!({ "u": req.user, "a": enum_value(req.agent), "p": req.provider.map(enum_value), "t": req.task, "d": req.delivery.map(enum_value) }),
        )
        .await?;
    let issued = &data["issueTaskCredentials"];
    // Every file holds a secret or sits beside one: 0600, whatever `mode` says.
    for file in issued["files"].as_array().into_iter().flatten() {
        home.write(file["path"].as_str().unwrap_or_default(), file["content"].as_str().unwrap_or_default().as_bytes())?;
    }
    let mut out = String::new();
    for var in issued["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap_or_default();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("the server sent an invalid variable name");
        }
        let value = var["value"].as_str().unwrap_or_default();
        let value = if var["homePath"].as_bool() == Some(true) {
            // The same checks as the files: a plain relative path under home.
            components(value)?;
            home_dir.join(value).to_string_lossy().into_owned()
        } else {
            value.to_owned()
        };
        out.push_str(&format!("export {name}={}\n", shell_quote(&value)));
    }
    Ok(out)
}

/// Sends back every agent login file present under `home`; returns how
/// many credentials the task held. A link, or anything but a regular file,
/// where a login file (or a directory above it) is expected refuses the
/// whole return: nothing is sent.
pub async fn task_return(client: &Client, task: &str, home: &Path) -> anyhow::Result<usize> {
    let home = Home::open(home)?;
    let mut files = Vec::new();
    for path in agents::login_files() {
        if let Some(content) = home.read(path)? {
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
        assert_eq!(components(".codex/auth.json").unwrap(), [".codex", "auth.json"]);
        for bad in ["../x", "/etc/passwd", ".codex/../../x", ""] {
            assert!(components(bad).is_err(), "{bad}");
        }
    }
}
