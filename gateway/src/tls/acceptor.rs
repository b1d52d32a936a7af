//! The server side's certificate and key: read from the `[tls]` PEM files
//! into a rustls `ServerConfig`, and swapped for a new one on SIGHUP.
//! Connections take the config current at their accept, so a reload
//! changes what new connections see and leaves the others alone.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tuning::config::{TlsConfig, TlsVersion};

/// Why the TLS certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// `[tls] cert` or `key` is not set.
    #[error("[tls] {0} is not set")]
    Missing(&'static str),
    /// A PEM file could not be read or holds no item of the kind needed.
    #[error("{path}: {why}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
    /// rustls refused the pair (for example, the key does not match the
    /// certificate).
    #[error("the certificate and key in {cert} and {key} cannot be used: {source}")]
    Rejected {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
}

fn pem_error(path: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// Reads `[tls]` into a server config: the chain from `cert`, the key from
/// `key`, TLS 1.3 and (unless `min_version = "1.3"`) 1.2, the ring provider.
pub fn load_server_config(cfg: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_path = cfg.cert.as_deref().ok_or(TlsError::Missing("cert"))?;
    let key_path = cfg.key.as_deref().ok_or(TlsError::Missing("key"))?;
    let chain = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| pem_error(cert_path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert_path, e))?;
    if chain.is_empty() {
        return Err(pem_error(cert_path, "no CERTIFICATE in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| match e {
        pem::Error::NoItemsFound => pem_error(
            key_path,
            "no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY in the file",
        ),
        e => pem_error(key_path, e),
    })?;
    let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let rejected = |source| TlsError::Rejected {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(rejected)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(rejected)?;
    Ok(Arc::new(config))
}

/// The config TLS connections are accepted with, reloadable.
#[derive(Debug)]
pub struct TlsAcceptor {
    files: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
    reloads: AtomicU64,
}

impl TlsAcceptor {
    /// Loads `[tls]`; the error says which file and why.
    pub fn load(files: &TlsConfig) -> Result<Self, TlsError> {
        Ok(TlsAcceptor {
            current: RwLock::new(load_server_config(files)?),
            files: files.clone(),
            reloads: AtomicU64::new(0),
        })
    }

    /// The config a connection accepted now gets.
    pub fn config(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the files again (SIGHUP). On success new connections get the
    /// new certificate; on failure the old one stays and the error says
    /// why. Returns how many reloads have succeeded.
    pub fn reload(&self) -> Result<u64, TlsError> {
        let fresh = load_server_config(&self.files)?;
        match self.current.write() {
            Ok(mut c) => *c = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(self.reloads.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A CA and a leaf for `localhost` / 127.0.0.1 it signed, as PEM.
    pub(crate) struct TestPki {
        pub ca_der: CertificateDer<'static>,
        pub cert_pem: String,
        pub key_pem: String,
    }

    pub(crate) fn pki(cn: &str) -> TestPki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "test ca");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        leaf.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
        TestPki {
            ca_der: ca_cert.der().clone(),
            cert_pem: leaf_cert.pem(),
            key_pem: leaf_key.serialize_pem(),
        }
    }

    pub(crate) fn write_files(dir: &Path, pki: &TestPki) -> TlsConfig {
        std::fs::write(dir.join("cert.pem"), &pki.cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &pki.key_pem).unwrap();
        TlsConfig {
            cert: Some(dir.join("cert.pem")),
            key: Some(dir.join("key.pem")),
            min_version: TlsVersion::V1_2,
        }
    }

    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gw-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn loads_a_pair_and_says_what_is_wrong_with_a_bad_one() {
        let dir = temp_dir("load");
        let a = pki("first");
        let files = write_files(&dir, &a);
        TlsAcceptor::load(&files).unwrap();

        let missing = TlsConfig {
            cert: Some(dir.join("nope.pem")),
            ..files.clone()
        };
        let e = TlsAcceptor::load(&missing).unwrap_err().to_string();
        assert!(e.contains("nope.pem"), "{e}");

        std::fs::write(dir.join("empty.pem"), "not pem\n").unwrap();
        let empty = TlsConfig {
            cert: Some(dir.join("empty.pem")),
            ..files.clone()
        };
        let e = TlsAcceptor::load(&empty).unwrap_err().to_string();
        assert!(e.contains("no CERTIFICATE"), "{e}");

        // Another pair's key does not match this certificate.
        let b = pki("second");
        std::fs::write(dir.join("other-key.pem"), &b.key_pem).unwrap();
        let mismatched = TlsConfig {
            key: Some(dir.join("other-key.pem")),
            ..files.clone()
        };
        assert!(matches!(
            TlsAcceptor::load(&mismatched),
            Err(TlsError::Rejected { .. })
        ));

        // A key file with no key in it (here, the certificate again).
        let no_key = TlsConfig {
            key: files.cert.clone(),
            ..files.clone()
        };
        let e = TlsAcceptor::load(&no_key).unwrap_err().to_string();
        assert!(
            e.contains("cert.pem") && e.contains("no PRIVATE KEY"),
            "{e}"
        );

        // Neither file set.
        let e = TlsAcceptor::load(&TlsConfig::default()).unwrap_err();
        assert!(matches!(e, TlsError::Missing("cert")), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The SEC1 `ECPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (RFC 5208:
    /// a SEQUENCE of the version, the algorithm and an OCTET STRING
    /// holding the key).
    fn sec1_of_pkcs8(der: &[u8]) -> Vec<u8> {
        /// (tag, content, rest) of the DER element at the start of `d`.
        fn tlv(d: &[u8]) -> (u8, &[u8], &[u8]) {
            let (tag, first) = (d[0], d[1]);
            let (len, head) = if first < 0x80 {
                (usize::from(first), 2)
            } else {
                let n = usize::from(first & 0x7f);
                let len = d[2..2 + n]
                    .iter()
                    .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
                (len, 2 + n)
            };
            (tag, &d[head..head + len], &d[head + len..])
        }
        let (tag, info, _) = tlv(der);
        assert_eq!(tag, 0x30);
        let (_, _, rest) = tlv(info); // version
        let (_, _, rest) = tlv(rest); // algorithm
        let (tag, key, _) = tlv(rest);
        assert_eq!(tag, 0x04);
        key.to_vec()
    }

    #[test]
    fn loads_a_sec1_ec_key() {
        let dir = temp_dir("sec1");
        let a = pki("sec1");
        let files = write_files(&dir, &a);
        let pkcs8 = PrivateKeyDer::from_pem_slice(a.key_pem.as_bytes()).unwrap();
        assert!(matches!(pkcs8, PrivateKeyDer::Pkcs8(_)));
        let sec1 = sec1_of_pkcs8(pkcs8.secret_der());
        let pem = format!(
            "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &sec1)
        );
        assert!(matches!(
            PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap(),
            PrivateKeyDer::Sec1(_)
        ));
        std::fs::write(dir.join("key.pem"), pem).unwrap();
        TlsAcceptor::load(&files).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_reload_swaps_the_config_and_a_bad_one_keeps_the_old() {
        let dir = temp_dir("reload");
        let files = write_files(&dir, &pki("first"));
        let acceptor = TlsAcceptor::load(&files).unwrap();
        let before = acceptor.config();
        write_files(&dir, &pki("second"));
        assert_eq!(acceptor.reload().unwrap(), 1);
        let after = acceptor.config();
        assert!(!Arc::ptr_eq(&before, &after));
        std::fs::write(dir.join("key.pem"), "garbage").unwrap();
        assert!(acceptor.reload().is_err());
        assert!(Arc::ptr_eq(&after, &acceptor.config()), "kept");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
