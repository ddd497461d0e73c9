//! TLS for the API: a certificate and key the operator gives (PEM), or a
//! self-signed pair generated into the data directory — a local CA kept
//! across restarts (clients trust it once, e.g. `aws --ca-bundle`) and a
//! server certificate it signs for the listen address at each start.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A TLS server configuration from a PEM certificate chain and its key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let pem_err = |path: &Path, e: rustls::pki_types::pem::Error| match e {
        rustls::pki_types::pem::Error::Io(source) => TlsError::Read {
            path: path.to_path_buf(),
            source,
        },
        other => TlsError::Pem {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_err(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Where a self-signed setup keeps its files.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The CA certificate clients trust (`--ca-bundle`).
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

const CA_NAME: &str = "Wharf local CA";

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.distinguished_name.push(DnType::CommonName, CA_NAME);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(3650);
    Ok(p)
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `contents`, readable by the owner only when `secret`.
fn write(path: &Path, contents: &str, secret: bool) -> Result<(), TlsError> {
    use std::io::Write;
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, if secret { 0o600 } else { 0o644 });
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(contents.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}

/// The names a certificate for `listen` must carry: its address (every
/// loopback one, and this host's name, when it listens on all addresses)
/// and `localhost`.
fn names_for(listen: SocketAddr) -> Vec<SanType> {
    let mut ips: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    if !listen.ip().is_unspecified() && !ips.contains(&listen.ip()) {
        ips.push(listen.ip());
    }
    let mut names: Vec<SanType> = ips.into_iter().map(SanType::IpAddress).collect();
    let mut dns = vec!["localhost".to_string()];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() && h != "localhost" {
            dns.push(h.to_string());
        }
    }
    for d in dns {
        if let Ok(name) = d.try_into() {
            names.push(SanType::DnsName(name));
        }
    }
    names
}

/// A CA in `dir` (created once, then reused) and a server certificate for
/// `listen` signed by it (made anew each time).
pub fn self_signed(dir: &Path, listen: SocketAddr) -> Result<SelfSigned, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let files = SelfSigned {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    let ca_key_path = dir.join("ca.key");
    let ca_key = if ca_key_path.exists() && files.ca.exists() {
        KeyPair::from_pem(&read(&ca_key_path)?)?
    } else {
        let key = KeyPair::generate()?;
        write(&ca_key_path, &key.serialize_pem(), true)?;
        write(&files.ca, &ca_params()?.self_signed(&key)?.pem(), false)?;
        key
    };
    // The same name and key as the CA on disk: what it signs chains to it.
    let issuer = ca_params()?.self_signed(&ca_key)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Wharf API");
    params.subject_alt_names = names_for(listen);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(397);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer, &ca_key)?;
    write(&files.key, &key.serialize_pem(), true)?;
    write(&files.cert, &cert.pem(), false)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_reuses_its_ca_and_loads_as_a_server_config() {
        let dir = tempfile::tempdir().unwrap();
        let listen: SocketAddr = "127.0.0.1:9443".parse().unwrap();
        let first = self_signed(dir.path(), listen).unwrap();
        let ca = std::fs::read(&first.ca).unwrap();
        server_config(&first.cert, &first.key).unwrap();
        let second = self_signed(dir.path(), listen).unwrap();
        assert_eq!(ca, std::fs::read(&second.ca).unwrap(), "the CA is kept");
        server_config(&second.cert, &second.key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&second.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is the owner's alone");
        }
    }

    #[test]
    fn bad_pem_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        assert!(matches!(
            server_config(&junk, &junk),
            Err(TlsError::NoCertificate { .. })
        ));
        assert!(server_config(&dir.path().join("missing"), &junk).is_err());
    }
}
