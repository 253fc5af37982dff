//! Building rustls configurations: a server's from PEM files or a fresh
//! self-signed certificate, a client's from system roots, a CA file or nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// Why a TLS configuration could not be built; each displays as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("{}: bad PEM: {reason}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A certificate file holds no certificate.
    #[error("{}: no certificate found (expected a PEM `CERTIFICATE` block)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key.
    #[error("{}: no private key found (expected a PEM `PRIVATE KEY` block)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key is not the certificate's.
    #[error("the private key in {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the certificate or key.
    #[error("{}: {reason}", path.display())]
    Rejected {
        /// The file at fault.
        path: PathBuf,
        /// rustls's reason.
        reason: rustls::Error,
    },
    /// The self-signed certificate could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(String),
    /// No trusted root certificate could be loaded from the system.
    #[error("no trusted root certificates found on this system (use --ca FILE)")]
    NoSystemRoots,
    /// Any other refusal from rustls.
    #[error("TLS configuration: {0}")]
    Other(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|source| TlsConfigError::Read {
        path: path.into(),
        source,
    })
}

fn bad_pem(path: &Path, e: rustls::pki_types::pem::Error) -> TlsConfigError {
    match e {
        rustls::pki_types::pem::Error::Io(source) => TlsConfigError::Read {
            path: path.into(),
            source,
        },
        e => TlsConfigError::BadPem {
            path: path.into(),
            reason: e.to_string(),
        },
    }
}

/// Every certificate in the PEM file at `path` (at least one).
pub fn certs_from_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(path, e))?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate { path: path.into() });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in the PEM file at `path`.
pub fn key_from_pem(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let pem = read(path)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Ok(key),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            Err(TlsConfigError::NoKey { path: path.into() })
        }
        Err(e) => Err(bad_pem(path, e)),
    }
}

/// A server configuration (TLS 1.3 and 1.2, no client certificates) for the
/// certificate chain in `cert_path` and the private key in `key_path`, both PEM.
/// Checks that the key matches the certificate.
pub fn server_config_from_pem(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let certs = certs_from_pem(cert_path)?;
    let key = key_from_pem(key_path)?;
    server_config(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsConfigError::KeyMismatch {
            cert: cert_path.into(),
            key: key_path.into(),
        },
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            TlsConfigError::Rejected {
                path: cert_path.into(),
                reason: e,
            }
        }
        e => TlsConfigError::Rejected {
            path: key_path.into(),
            reason: e,
        },
    })
}

/// A server configuration for a DER certificate chain and key (TLS 1.3 and 1.2).
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// A self-signed certificate made now, for the names the server is reached by.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The server configuration using it (TLS 1.3 and 1.2).
    pub config: Arc<ServerConfig>,
    /// The certificate (DER), e.g. to trust it in a test client.
    pub cert: CertificateDer<'static>,
    /// The certificate in PEM.
    pub cert_pem: String,
    /// Its SHA-256 [`fingerprint`].
    pub fingerprint: String,
}

/// Makes a certificate (ECDSA P-256) for `localhost` and `127.0.0.1` and a
/// server configuration using it; print its [`SelfSigned::fingerprint`] so
/// clients can pin it.
pub fn self_signed() -> Result<SelfSigned, TlsConfigError> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| TlsConfigError::SelfSigned(e.to_string()))?;
    let cert = made.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let config = server_config(vec![cert.clone()], key)?;
    Ok(SelfSigned {
        config,
        fingerprint: fingerprint(&cert),
        cert_pem: made.cert.pem(),
        cert,
    })
}

/// The SHA-256 fingerprint of a DER certificate, as `openssl x509 -fingerprint
/// -sha256` prints it: uppercase hex pairs joined by `:`.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ::ring::digest::digest(&::ring::digest::SHA256, cert.as_ref());
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// A client configuration (TLS 1.3 and 1.2) trusting, in order of precedence:
/// nothing at all when `insecure` ([`AcceptAnyServerCert`]), only the
/// certificates in the PEM file `ca`, or the system's root certificates.
pub fn client_config(
    ca: Option<&Path>,
    insecure: bool,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::new()))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        match ca {
            Some(path) => {
                for cert in certs_from_pem(path)? {
                    roots.add(cert).map_err(|reason| TlsConfigError::Rejected {
                        path: path.into(),
                        reason,
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _ignored) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(TlsConfigError::NoSystemRoots);
                }
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The server name to send (SNI) and check the certificate against: the host
/// part of `addr` (`HOST:PORT`, `[IPv6]:PORT`, or a bare host), a DNS name or an
/// IP address.
pub fn server_name(
    addr: &str,
) -> Result<ServerName<'static>, rustls::pki_types::InvalidDnsNameError> {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => addr,
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_string())
}

/// **Checks nothing**: a certificate verifier that accepts any server
/// certificate for any name (`--insecure`). The handshake signature is still
/// verified, so the server does hold the key of the certificate it presents,
/// but that certificate can be anyone's: only for tests and pinned fingerprints.
#[derive(Debug)]
pub struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl AcceptAnyServerCert {
    /// The verifier, using the `ring` provider's signature algorithms.
    pub fn new() -> Self {
        AcceptAnyServerCert {
            provider: provider(),
        }
    }
}

impl Default for AcceptAnyServerCert {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_host_part() {
        let dns = |s: &str| server_name(s).expect("valid").to_str().into_owned();
        assert_eq!(dns("localhost:4433"), "localhost");
        assert_eq!(dns("example.com"), "example.com");
        assert_eq!(dns("127.0.0.1:1"), "127.0.0.1");
        assert_eq!(dns("[::1]:443"), "::1");
        assert!(matches!(
            server_name("127.0.0.1:9").expect("valid"),
            ServerName::IpAddress(_)
        ));
        assert!(server_name("bad_name!:1").is_err());
    }

    #[test]
    fn fingerprints_look_like_openssls() {
        let fp = fingerprint(&CertificateDer::from(b"abc".to_vec()));
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.starts_with("BA:78:16:BF:8F:01:CF:EA"), "{fp}");
    }

    /// A directory with `cert.pem`, `key.pem` (matching), `other.key` and a few
    /// broken files.
    fn files() -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "echochat-tls-config-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let a = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("a");
        let b = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("b");
        let w = |name: &str, text: &str| std::fs::write(dir.join(name), text).expect("write");
        w("cert.pem", &a.cert.pem());
        w("key.pem", &a.signing_key.serialize_pem());
        w("other.key", &b.signing_key.serialize_pem());
        w("both.pem", &(a.cert.pem() + &a.signing_key.serialize_pem()));
        w("empty.pem", "");
        w(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        );
        w(
            "junk.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        dir
    }

    fn server_err(dir: &Path, cert: &str, key: &str) -> String {
        server_config_from_pem(&dir.join(cert), &dir.join(key))
            .expect_err("must fail")
            .to_string()
    }

    #[test]
    fn server_configs_from_pem_files() {
        let dir = files();
        let d = dir.display();
        server_config_from_pem(&dir.join("cert.pem"), &dir.join("key.pem")).expect("valid");
        // One file holding both works too.
        server_config_from_pem(&dir.join("both.pem"), &dir.join("both.pem")).expect("valid");
        assert_eq!(
            server_err(&dir, "nope.pem", "key.pem"),
            format!("cannot read {d}/nope.pem: No such file or directory (os error 2)")
        );
        assert_eq!(
            server_err(&dir, "cert.pem", "nope.pem"),
            format!("cannot read {d}/nope.pem: No such file or directory (os error 2)")
        );
        assert_eq!(
            server_err(&dir, "key.pem", "key.pem"),
            format!("{d}/key.pem: no certificate found (expected a PEM `CERTIFICATE` block)")
        );
        assert_eq!(
            server_err(&dir, "cert.pem", "empty.pem"),
            format!("{d}/empty.pem: no private key found (expected a PEM `PRIVATE KEY` block)")
        );
        assert_eq!(
            server_err(&dir, "cert.pem", "other.key"),
            format!(
                "the private key in {d}/other.key does not match the certificate in {d}/cert.pem"
            )
        );
        assert!(server_err(&dir, "broken.pem", "key.pem")
            .starts_with(&format!("{d}/broken.pem: bad PEM: ")));
        assert!(server_err(&dir, "junk.pem", "key.pem").starts_with(&format!("{d}/junk.pem: ")));
        for e in ["nope.pem", "key.pem", "broken.pem", "junk.pem"] {
            assert_eq!(server_err(&dir, e, "key.pem").lines().count(), 1);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn client_configs() {
        let dir = files();
        client_config(Some(&dir.join("cert.pem")), false).expect("a CA file");
        client_config(None, true).expect("insecure");
        assert!(client_config(Some(&dir.join("empty.pem")), false).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn self_signed_configs_work() {
        let made = self_signed().expect("self-signed");
        assert_eq!(made.fingerprint, fingerprint(&made.cert));
        assert!(made.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
