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

/// A TLS protocol version a listener may offer, named as `esxcli system
/// wbem set --ssl-protocols` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsProtocol {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsProtocol {
    /// The esxcli name: `tlsv1.2`, `tlsv1.3`.
    pub fn name(self) -> &'static str {
        match self {
            TlsProtocol::Tls12 => "tlsv1.2",
            TlsProtocol::Tls13 => "tlsv1.3",
        }
    }
}

/// Parse a comma-separated protocol list (`tlsv1.2,tlsv1.3`; case and
/// spaces ignored) into a sorted set without duplicates.
pub fn parse_protocols(list: &str) -> Result<Vec<TlsProtocol>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let p = match item.to_ascii_lowercase().as_str() {
            "tlsv1.2" | "tls1.2" => TlsProtocol::Tls12,
            "tlsv1.3" | "tls1.3" => TlsProtocol::Tls13,
            "sslv3" | "tlsv1" | "tlsv1.0" | "tlsv1.1" | "tls1" | "tls1.1" => {
                return Err(format!(
                    "{item} is not offered (insecure, and not supported by the TLS library); use tlsv1.2 and/or tlsv1.3"
                ))
            }
            _ => return Err(format!("unknown SSL protocol {item:?}: use tlsv1.2 and/or tlsv1.3")),
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err("no SSL protocol given: use tlsv1.2 and/or tlsv1.3".into());
    }
    out.sort();
    Ok(out)
}

/// A protocol set as text: `tlsv1.2,tlsv1.3`.
pub fn protocols_text(p: &[TlsProtocol]) -> String {
    p.iter().map(|p| p.name()).collect::<Vec<_>>().join(",")
}

/// A rustls server configuration from PEM files, offering TLS 1.2 and 1.3.
pub fn server_config(paths: &CertPaths) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config_with(paths, &[TlsProtocol::Tls12, TlsProtocol::Tls13])
}

/// A rustls server configuration from PEM files offering only `protocols`
/// (a handshake asking for another version fails).
pub fn server_config_with(
    paths: &CertPaths,
    protocols: &[TlsProtocol],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
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
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = protocols
        .iter()
        .map(|p| match p {
            TlsProtocol::Tls12 => &rustls::version::TLS12,
            TlsProtocol::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)?
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
    fn protocol_lists() {
        use TlsProtocol::*;
        assert_eq!(
            parse_protocols("tlsv1.3, TLSv1.2,tlsv1.3").unwrap(),
            [Tls12, Tls13]
        );
        assert!(parse_protocols("tlsv1.1")
            .unwrap_err()
            .contains("not offered"));
        assert!(parse_protocols("").is_err());
        assert!(parse_protocols("ssl2").is_err());
        assert_eq!(protocols_text(&[Tls12, Tls13]), "tlsv1.2,tlsv1.3");
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
