//! The crate's one error type.

/// Everything that can go wrong in the SDK.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API key is not of the form `tg_<16 base32 characters>_<32 base32 characters>`.
    #[error("the API key is not of the form tg_<key id>_<secret>")]
    InvalidApiKey,
    /// The signing secret is not standard base64 of at least one byte.
    #[error("the signing secret is not standard base64")]
    InvalidSigningSecret,
    /// A signing scheme was chosen but the credentials hold no signing secret.
    #[error("a signing scheme was chosen but no signing secret was given")]
    MissingSigningSecret,
    /// The Coinbase scheme was chosen but the credentials hold no passphrase
    /// (the gateway answers `bad_signature` without one).
    #[error("the Coinbase scheme needs a passphrase")]
    MissingPassphrase,
    /// The passphrase holds a character that cannot be sent in a header.
    #[error("the passphrase must be printable ASCII")]
    InvalidPassphrase,
    /// A timestamp text that the gateway would refuse: it must be Unix
    /// seconds, optionally followed by `.` and one or more digits.
    #[error("invalid timestamp {0:?}: expected Unix seconds with an optional fraction")]
    InvalidTimestamp(String),
    /// An idempotency key that the gateway would refuse: it must be 1 to 255
    /// printable ASCII characters.
    #[error("an idempotency key must be 1 to 255 printable ASCII characters")]
    InvalidIdempotencyKey,
    /// An idempotency window of zero seconds.
    #[error("the idempotency window must be at least one second")]
    ZeroWindow,
    /// The base URL, or the base URL joined with a path, is not a usable URL.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The text that failed.
        url: String,
        /// Why.
        reason: String,
    },
    /// A response header that does not follow its syntax.
    #[error("malformed {header} header: {reason}")]
    MalformedHeader {
        /// The header's name.
        header: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP exchange failed (connection, TLS, timeout, reading the body).
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
