//! TLS for the HTTP listeners: a configured certificate and key (PEM), or a
//! self-signed certificate generated on first start and kept in the state
//! directory, so clients can pin it across restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A PEM file held nothing usable.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Certificate generation failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Where a generated certificate and its key live.
#[derive(Debug, Clone)]
pub struct CertPaths {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::File {
        path: path.to_path_buf(),
        source,
    }
}

/// Make sure `dir/<stem>.crt` and `dir/<stem>.key` exist, generating a
/// self-signed certificate for `names` (DNS names or IP addresses) when they
/// do not. The key file is created with mode 0600.
pub fn ensure_self_signed(dir: &Path, stem: &str, names: &[String]) -> Result<CertPaths, TlsError> {
    let paths = CertPaths {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
    };
    if paths.cert.exists() && paths.key.exists() {
        return Ok(paths);
    }
    std::fs::create_dir_all(dir).map_err(file_err(dir))?;
    // Self-signed and marked as a CA, so clients can trust it directly as
    // an anchor (OpenSSL-based ones refuse a non-CA self-signed leaf).
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().map_or("hvsim", |n| n.as_str()),
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "hvsim simulated host");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write_private(&paths.key, key.serialize_pem().as_bytes())?;
    std::fs::write(&paths.cert, cert.pem()).map_err(file_err(&paths.cert))?;
    log::info!(
        "generated a self-signed certificate {} for {}",
        paths.cert.display(),
        names.join(", ")
    );
    Ok(paths)
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("key.tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(file_err(&tmp))?;
    f.write_all(data).map_err(file_err(&tmp))?;
    f.sync_all().map_err(file_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(file_err(path))
}

/// A rustls server configuration from PEM files.
pub fn server_config(paths: &CertPaths) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&paths.cert)
        .map_err(|e| TlsError::Pem {
            path: paths.cert.clone(),
            what: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: paths.cert.clone(),
            what: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: paths.cert.clone(),
            what: "no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&paths.key).map_err(|e| TlsError::Pem {
        path: paths.key.clone(),
        what: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let p = ensure_self_signed(dir.path(), "server", &["localhost".into()]).unwrap();
        let first = std::fs::read(&p.cert).unwrap();
        server_config(&p).unwrap();
        let p2 = ensure_self_signed(dir.path(), "server", &["localhost".into()]).unwrap();
        assert_eq!(std::fs::read(&p2.cert).unwrap(), first);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&p.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn garbage_pem_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = CertPaths {
            cert: dir.path().join("c.pem"),
            key: dir.path().join("k.pem"),
        };
        std::fs::write(&p.cert, "nope").unwrap();
        std::fs::write(&p.key, "nope").unwrap();
        assert!(server_config(&p).is_err());
    }
}
