//! [`ConfigError`]: why a configuration cannot be used (it cannot be read,
//! it does not parse, or a value is out of range).

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML is malformed or names an unknown key (the message names it).
    #[error("config {origin}: {message}")]
    Parse {
        /// File name or "inline".
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("config: {key}: {why}")]
    Invalid {
        /// Dotted key path of the offending value.
        key: String,
        /// What is wrong and what would be right.
        why: String,
    },
}

impl ConfigError {
    /// [`ConfigError::Invalid`] for the value at dotted `key`.
    pub fn invalid(key: &str, why: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            why: why.into(),
        }
    }
}
