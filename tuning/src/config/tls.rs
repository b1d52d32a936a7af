//! The `[tls]` section: the certificate chain and private key the TLS
//! listeners (`[listen] client_tls`, `websocket_tls`) present, as PEM
//! files, and the oldest protocol version they accept. Its checks are
//! [`TlsConfig::validate`]; the files themselves are read by the gateway at
//! start-up and again on SIGHUP.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::ConfigError;

/// The oldest TLS version a listener accepts (`[tls] min_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3 (the default: what browsers and mobile stacks of the
    /// last decade speak).
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    V1_3,
}

/// The `[tls]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM file with the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Oldest version accepted: "1.2" or "1.3".
    pub min_version: TlsVersion,
}

impl TlsConfig {
    /// Checks the section against the listeners that need it: `tls_listener`
    /// names the first TLS listener configured (its dotted key), if any.
    pub fn validate(&self, tls_listener: Option<&'static str>) -> Result<(), ConfigError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => Err(ConfigError::invalid(
                "tls.key",
                "missing: [tls] cert is set, the private key for it is needed too",
            )),
            (None, Some(_)) => Err(ConfigError::invalid(
                "tls.cert",
                "missing: [tls] key is set, the certificate chain for it is needed too",
            )),
            (None, None) => match tls_listener {
                Some(listener) => Err(ConfigError::invalid(
                    listener,
                    "a TLS listener needs [tls] cert and key (PEM files)",
                )),
                None => Ok(()),
            },
            (Some(_), Some(_)) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> TlsConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn off_by_default_and_both_files_or_neither() {
        let d = TlsConfig::default();
        assert_eq!(d.min_version, TlsVersion::V1_2);
        d.validate(None).unwrap();
        let both = parse("cert = \"c.pem\"\nkey = \"k.pem\"\nmin_version = \"1.3\"\n");
        assert_eq!(both.min_version, TlsVersion::V1_3);
        both.validate(Some("listen.client_tls")).unwrap();
        let key_of = |t: &str, l| match parse(t).validate(l) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(key_of("cert = \"c.pem\"\n", None), "tls.key");
        assert_eq!(key_of("key = \"k.pem\"\n", None), "tls.cert");
        assert_eq!(
            key_of("", Some("listen.websocket_tls")),
            "listen.websocket_tls"
        );
        assert!(toml::from_str::<TlsConfig>("min_version = \"1.1\"\n").is_err());
        assert!(toml::from_str::<TlsConfig>("certs = \"c\"\n").is_err());
    }
}
