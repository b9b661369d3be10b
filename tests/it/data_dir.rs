//! The data directory is private (issue 12, item 5): 0700, its files 0600
//! whatever the umask, loose modes tightened at start-up.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::*;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub(crate) fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// The data directory is 0700, and it holds the database, its WAL and
/// shared-memory files and the key, each (like anything else in it) 0600.
fn assert_private(data: &Path) {
    assert_eq!(mode(data), 0o700, "data directory {}", data.display());
    for name in ["sesame.db", "sesame.db-wal", "sesame.db-shm", "encryption.key"] {
        assert!(data.join(name).exists(), "{name} exists");
    }
    for file in files_in(data) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

/// A server whose data directory (not yet there) is `<tmp>/data`, under umask 022.
pub(crate) async fn start_in_subdir(extra: &[(String, String)]) -> (Server, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut env = vec![("SESAME_DATA_DIR".to_owned(), data.display().to_string())];
    env.extend(extra.iter().cloned());
    (Server::spawn_with_umask(dir, env, "022", true).await, data)
}

async fn some_writes(server: &Server) {
    let (_, token) = server.create_user(&format!("w{}@example.com", uuid::Uuid::new_v4().simple())).await;
    server.api().set_api_key(&token, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
}

#[tokio::test]
async fn data_directory_and_files_are_private_under_umask_022() {
    let (server, data) = start_in_subdir(&[]).await;
    some_writes(&server).await;
    assert_private(&data);

    // The CLI opens the store the same way (`migrate` starts a new vault;
    // other commands refuse to create one).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cli-data");
    let out = command_with_umask("022", &data, &[]).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = command_with_umask("022", &data, &[])
        .args(["user", "create", "--email", "cli@example.com", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&data), 0o700);
    assert!(data.join("sesame.db").exists() && data.join("encryption.key").exists());
    for file in files_in(&data) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[tokio::test]
async fn loose_permissions_are_tightened_at_start_up() {
    let (server, data) = start_in_subdir(&[]).await;
    let admin = server.admin_token.clone();
    some_writes(&server).await;
    let (dir, env) = server.stop();
    set_mode(&data, 0o755);
    for file in files_in(&data) {
        set_mode(&file, 0o644);
    }

    let mut server = Server::spawn_with_umask(dir, env, "022", false).await;
    server.admin_token = admin;
    assert_private(&data);
    let log = server.log();
    assert!(log.contains("WARN") && log.contains("tightened"), "a warning says what was tightened:\n{log}");
    assert!(log.contains(&data.display().to_string()) && log.contains("encryption.key"), "{log}");
    some_writes(&server).await;
    assert_private(&data);
}
