//! Private files and directories: the data directory 0700, its files 0600,
//! whatever the umask. Used by start-up (`app`), the key file (`keys`) and
//! the SQLite files (`store::db`); it imports nothing of the crate.

use std::path::Path;

use anyhow::Context;

/// Creates `dir` (and missing parents) as 0700 whatever the umask; an
/// existing directory that group or others may access is tightened to 0700
/// with a warning naming it, or, if that fails, start-up stops with a
/// message saying what to fix. The files in it are made private by whoever
/// opens them: the key file in `keys`, the SQLite files in `store::db`.
pub(crate) fn private_data_dir(dir: &Path) -> anyhow::Result<()> {
    create_private_dir(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
    make_private(dir)
}

/// `create_dir_all`, with mode 0700 for every directory it creates.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Takes group and other permissions off `path` (a file or a directory) if
/// it has any, logging at WARN what it changed; an error (naming the path,
/// its mode and the fix) if it cannot. A missing path is fine.
pub(crate) fn make_private(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading the permissions of {}", path.display())),
        };
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 == 0 {
            return Ok(());
        }
        let private = mode & 0o700;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(private)).with_context(|| {
            let fix = if metadata.is_dir() { "chmod 700" } else { "chmod 600" };
            let shown = path.display();
            format!(
                "{shown} is open to group or other users (mode {mode:04o}) and could not be made private; \
                 run `{fix} {shown}` as its owner and start again"
            )
        })?;
        tracing::warn!(
            path = %path.display(),
            from = %format!("{mode:04o}"),
            to = %format!("{private:04o}"),
            "tightened permissions: group or other users could access the vault's data here"
        );
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
