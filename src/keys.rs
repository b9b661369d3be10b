//! Where the encryption key comes from: `ENCRYPTION_KEY`, or on a machine
//! with no configuration a generated key in `<data_dir>/encryption.key`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::crypto::{Key, Keyring};
use crate::secret::SecretValue;

const KEY_FILE: &str = "encryption.key";

/// Loads the keyring. With no `ENCRYPTION_KEY`, uses (or creates, mode 0600)
/// the key file in the data directory and warns loudly. A key file others
/// may read is tightened to 0600 first (with a warning), or refused.
/// `key` and `old` are the settings `ENCRYPTION_KEY` and `ENCRYPTION_KEYS_OLD`.
pub fn load_keyring(key: Option<&SecretValue>, old: Option<&SecretValue>, data_dir: &Path) -> anyhow::Result<Keyring> {
    let current = match key {
        Some(value) => Key::parse("ENCRYPTION_KEY", value.expose())?,
        None => {
            let path = data_dir.join(KEY_FILE);
            let text = if path.exists() {
                crate::private_fs::make_private(&path)?;
                std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?
            } else {
                let text = Key::generate();
                write_private(&path, &text)?;
                text
            };
            let key = Key::parse(&path.display().to_string(), &text)?;
            tracing::warn!(
                path = %path.display(),
                fingerprint = key.fingerprint(),
                "ENCRYPTION_KEY is not set: using a key generated into the data directory. \
                 Production must set ENCRYPTION_KEY (64 hex chars, e.g. `openssl rand -hex 32`) \
                 and keep it outside the data directory; whoever has both can read every credential."
            );
            key
        }
    };
    let old = match old {
        Some(list) => list
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
            .map(|(i, text)| Key::parse(&format!("ENCRYPTION_KEYS_OLD (entry {})", i + 1), text))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    Ok(Keyring::new(current, old))
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        crate::private_fs::create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
