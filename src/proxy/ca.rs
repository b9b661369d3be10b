//! The proxy's certificate authority: generated once per vault in the data
//! directory (`proxy-ca.pem` 0644, `proxy-ca.key` 0600) or loaded from
//! `SESAME_PROXY__CA_CERT` / `__CA_KEY`; a leaf certificate per intercepted
//! host, minted with rcgen and cached (the hosts are the providers' egress
//! hosts, so the cache is bounded by that list, and by [`CACHE_CAP`]).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The files a generated CA is kept in, in the data directory.
pub const CERT_FILE: &str = "proxy-ca.pem";
pub const KEY_FILE: &str = "proxy-ca.key";
/// Leaf certificates kept at most (the intercepted hosts are far fewer).
const CACHE_CAP: usize = 1000;
/// A leaf is valid this long, and minted again after half of it.
const LEAF_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);

pub struct Ca {
    /// The CA as rcgen signs with it (same name, key and key identifier as
    /// the PEM tasks trust).
    issuer: Certificate,
    key: KeyPair,
    /// The public certificate, as tasks receive it.
    pem: String,
    leaves: Mutex<HashMap<String, (Instant, Arc<rustls::ServerConfig>)>>,
}

impl Ca {
    /// The configured CA, or the vault's own (generated on first use).
    pub fn load_or_generate(cert: Option<&Path>, key: Option<&Path>, data_dir: &Path) -> anyhow::Result<Ca> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ca::load(cert, key),
            (None, None) => {
                let (cert, key) = (data_dir.join(CERT_FILE), data_dir.join(KEY_FILE));
                match (cert.exists(), key.exists()) {
                    (true, true) => Ca::load(&cert, &key),
                    (false, false) => Ca::generate(data_dir, &cert, &key),
                    _ => bail!(
                        "the proxy's CA is incomplete in {}: {CERT_FILE} and {KEY_FILE} go together; \
                         restore the missing one, or remove both to generate a new CA (tasks must then trust the new one)",
                        data_dir.display()
                    ),
                }
            }
            _ => bail!("SESAME_PROXY__CA_CERT and SESAME_PROXY__CA_KEY go together: set both or neither"),
        }
    }

    /// A CA certificate alone (PEM), checked to be one: what `serve` hands
    /// tasks when the proxy that holds the key runs elsewhere.
    pub fn public_only(cert: &Path) -> anyhow::Result<String> {
        let pem = std::fs::read_to_string(cert).with_context(|| format!("reading the proxy CA {}", cert.display()))?;
        let params = CertificateParams::from_ca_cert_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", cert.display()))?;
        if !matches!(params.is_ca, IsCa::Ca(_)) {
            bail!("{} is not a CA certificate (basicConstraints CA:TRUE)", cert.display());
        }
        Ok(pem)
    }

    fn load(cert: &Path, key: &Path) -> anyhow::Result<Ca> {
        let pem = std::fs::read_to_string(cert).with_context(|| format!("reading the proxy CA {}", cert.display()))?;
        let key_pem = zeroize::Zeroizing::new(
            std::fs::read_to_string(key).with_context(|| format!("reading the proxy CA key {}", key.display()))?,
        );
        crate::private_fs::make_private(key)?;
        let key = KeyPair::from_pem(&key_pem).context("the proxy CA key is not a PEM private key rcgen can use")?;
        let params = CertificateParams::from_ca_cert_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", cert.display()))?;
        if !matches!(params.is_ca, IsCa::Ca(_)) {
            bail!("{} is not a CA certificate (basicConstraints CA:TRUE)", cert.display());
        }
        let issuer = params.self_signed(&key).context("the proxy CA key does not fit its certificate")?;
        Ok(Ca::new(issuer, key, pem))
    }

    fn generate(data_dir: &Path, cert_path: &Path, key_path: &Path) -> anyhow::Result<Ca> {
        crate::private_fs::private_data_dir(data_dir)?;
        let key = KeyPair::generate().context("generating the proxy CA key")?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "sesame-vault");
        let tag: String = {
            use rand::Rng;
            rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(8).map(char::from).collect()
        };
        name.push(DnType::CommonName, format!("sesame-vault egress proxy CA {tag}"));
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3650);
        let issuer = params.self_signed(&key).context("signing the proxy CA")?;
        let pem = issuer.pem();
        write_file(key_path, &key.serialize_pem(), 0o600)?;
        write_file(cert_path, &pem, 0o644)?;
        tracing::info!(cert = %cert_path.display(), "generated the egress proxy's CA (tasks trust its public certificate)");
        Ok(Ca::new(issuer, key, pem))
    }

    fn new(issuer: Certificate, key: KeyPair, pem: String) -> Ca {
        Ca { issuer, key, pem, leaves: Mutex::default() }
    }

    /// The CA's public certificate (PEM).
    pub fn public_pem(&self) -> &str {
        &self.pem
    }

    /// The TLS configuration that presents `host`'s leaf (minted on first
    /// use, cached).
    pub fn server_config(&self, host: &str) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut leaves = self.leaves.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((minted, config)) = leaves.get(host) {
            if minted.elapsed() < LEAF_VALIDITY / 2 {
                return Ok(config.clone());
            }
        }
        let config = Arc::new(self.mint(host)?);
        if leaves.len() >= CACHE_CAP {
            // Far more hosts than any provider lists: start over.
            leaves.clear();
        }
        leaves.insert(host.to_owned(), (Instant::now(), config.clone()));
        Ok(config)
    }

    fn mint(&self, host: &str) -> anyhow::Result<rustls::ServerConfig> {
        let key = KeyPair::generate().context("generating a leaf key")?;
        let mut params = CertificateParams::new(vec![host.to_owned()]).context("a leaf certificate's name")?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, host);
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::try_from(LEAF_VALIDITY).unwrap_or(time::Duration::days(30));
        let leaf = params.signed_by(&key, &self.issuer, &self.key).context("signing a leaf certificate")?;
        let chain = vec![CertificateDer::from(leaf.der().to_vec())];
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .context("TLS versions")?
                .with_no_client_auth()
                .with_single_cert(chain, private)
                .context("the leaf certificate")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn write_file(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    #[cfg(unix)]
    {
        // Whatever the umask: the key 0600, the certificate 0644.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_loads_the_same_ca_and_mints_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_generate(None, None, dir.path()).unwrap();
        let again = Ca::load_or_generate(None, None, dir.path()).unwrap();
        assert_eq!(ca.public_pem(), again.public_pem());
        assert!(!ca.public_pem().contains("PRIVATE"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |f| std::fs::metadata(dir.path().join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(KEY_FILE), 0o600);
            assert_eq!(mode(CERT_FILE), 0o644);
        }
        let a = again.server_config("api.anthropic.com").unwrap();
        let b = again.server_config("api.anthropic.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b), "cached");
        std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        assert!(Ca::load_or_generate(None, None, dir.path()).is_err(), "half a CA is refused");
    }
}
