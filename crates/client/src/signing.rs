//! Credentials and request signing in either scheme the gateway accepts.
//!
//! The message that is signed comes from [`tollgate_core::signing`], the
//! same code the gateway verifies with; this module only chooses the
//! headers. `docs/signing.md` describes both schemes for other languages.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tollgate_core::api_key;
use tollgate_core::signing::{self as core_signing, Scheme, SignedParts};

use crate::error::{Error, Result};

/// `X-API-Key`: the full API key, sent with the tollgate scheme and unsigned.
pub const API_KEY_HEADER: &str = "x-api-key";
/// `Tollgate-Timestamp`: Unix seconds, optionally with a fraction; this SDK
/// sends milliseconds, `<seconds>.<3 digits>` (`1700000000.007`).
pub const TIMESTAMP_HEADER: &str = core_signing::TIMESTAMP_HEADER;
/// `Tollgate-Signature`: base64 HMAC-SHA256 of the canonical string.
pub const SIGNATURE_HEADER: &str = core_signing::SIGNATURE_HEADER;
/// `CB-ACCESS-KEY`: the full API key in the Coinbase scheme.
pub const CB_KEY_HEADER: &str = core_signing::CB_KEY_HEADER;
/// `CB-ACCESS-SIGN`: base64 HMAC-SHA256 of the Coinbase prehash.
pub const CB_SIGN_HEADER: &str = core_signing::CB_SIGN_HEADER;
/// `CB-ACCESS-TIMESTAMP`: Unix seconds, optionally with a fraction; this SDK
/// sends milliseconds, `<seconds>.<3 digits>` (`1700000000.007`).
pub const CB_TIMESTAMP_HEADER: &str = core_signing::CB_TIMESTAMP_HEADER;
/// `CB-ACCESS-PASSPHRASE`: the passphrase given when the secret was created.
pub const CB_PASSPHRASE_HEADER: &str = core_signing::CB_PASSPHRASE_HEADER;

/// How a request authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthScheme {
    /// The API key alone, in `X-API-Key`; no signature.
    None,
    /// `X-API-Key` plus `Tollgate-Timestamp` and `Tollgate-Signature` over
    /// core's canonical string.
    #[default]
    Tollgate,
    /// Coinbase Exchange's `CB-ACCESS-KEY`, `CB-ACCESS-SIGN`,
    /// `CB-ACCESS-TIMESTAMP` and `CB-ACCESS-PASSPHRASE`.
    Coinbase,
}

impl AuthScheme {
    /// The core signing scheme, or `None` for an unsigned request.
    pub fn signing_scheme(self) -> Option<Scheme> {
        match self {
            AuthScheme::None => None,
            AuthScheme::Tollgate => Some(Scheme::Tollgate),
            AuthScheme::Coinbase => Some(Scheme::Coinbase),
        }
    }

    /// Reads `none`, `tollgate` or `coinbase` (ASCII case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => Some(AuthScheme::None),
            "tollgate" => Some(AuthScheme::Tollgate),
            "coinbase" => Some(AuthScheme::Coinbase),
            _ => None,
        }
    }
}

impl From<Scheme> for AuthScheme {
    fn from(scheme: Scheme) -> Self {
        match scheme {
            Scheme::Tollgate => AuthScheme::Tollgate,
            Scheme::Coinbase => AuthScheme::Coinbase,
        }
    }
}

/// What a client authenticates with: the API key, and optionally the signing
/// secret and the Coinbase-scheme passphrase.
///
/// `Debug` never prints the secret half of the key, the signing secret or the
/// passphrase.
#[derive(Clone)]
pub struct Credentials {
    api_key: String,
    key_id_len: usize,
    signing_secret: Option<Vec<u8>>,
    passphrase: Option<String>,
}

impl Credentials {
    /// Credentials from a full API key `tg_<key id>_<secret>`, checked with
    /// core's key parser. Add a signing secret with
    /// [`with_signing_secret`](Self::with_signing_secret) to sign requests.
    pub fn new(api_key: &str) -> Result<Self> {
        let api_key = api_key.trim();
        let parsed = api_key::parse(api_key).ok_or(Error::InvalidApiKey)?;
        Ok(Credentials {
            api_key: api_key.to_owned(),
            key_id_len: parsed.key_id.len(),
            signing_secret: None,
            passphrase: None,
        })
    }

    /// Adds the signing secret in the form it was shown: standard base64.
    pub fn with_signing_secret(mut self, secret_base64: &str) -> Result<Self> {
        let secret =
            core_signing::decode_secret(secret_base64).ok_or(Error::InvalidSigningSecret)?;
        self.signing_secret = Some(secret);
        Ok(self)
    }

    /// Adds the passphrase sent in `CB-ACCESS-PASSPHRASE` (Coinbase scheme
    /// only). It must be printable ASCII.
    pub fn with_passphrase(mut self, passphrase: &str) -> Result<Self> {
        if !passphrase.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return Err(Error::InvalidPassphrase);
        }
        self.passphrase = Some(passphrase.to_owned());
        Ok(self)
    }

    /// The full API key.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The key id: the 16 characters between `tg_` and the second `_`.
    pub fn key_id(&self) -> &str {
        let start = api_key::KEY_PREFIX.len();
        &self.api_key[start..start + self.key_id_len]
    }

    /// Whether a passphrase was given.
    pub fn has_passphrase(&self) -> bool {
        self.passphrase.is_some()
    }

    /// Whether a signing secret was given.
    pub fn has_signing_secret(&self) -> bool {
        self.signing_secret.is_some()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("key_id", &self.key_id())
            .field(
                "signing_secret",
                &self.signing_secret.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The timestamp text this SDK sends for `unix_millis` milliseconds since the
/// Unix epoch: `<seconds>.<3 digits>`, e.g. `1700000000.007` for
/// 1 700 000 000 007 ms. The gateway signs and verifies this text exactly as
/// sent, in both schemes.
pub fn format_timestamp(unix_millis: u64) -> String {
    format!("{}.{:03}", unix_millis / 1000, unix_millis % 1000)
}

/// The headers that authenticate one request, as `(lower-case name, value)`
/// pairs to add to it. Pure: the time is an argument.
///
/// - `method`: the HTTP method (upper-cased for signing).
/// - `path`: the path exactly as it will appear in the request line, without
///   `?query`.
/// - `query`: the raw query exactly as sent, without `?`; empty for none.
/// - `body`: the body bytes exactly as sent; empty for none.
/// - `now_unix_millis`: the timestamp to send, in milliseconds since the Unix
///   epoch; it is sent (and signed) as [`format_timestamp`] writes it,
///   `<seconds>.<3 digits>`.
///
/// [`AuthScheme::None`] gives `X-API-Key` alone; [`AuthScheme::Tollgate`]
/// adds `Tollgate-Timestamp` and `Tollgate-Signature`;
/// [`AuthScheme::Coinbase`] gives the four `CB-ACCESS-*` headers. A signing
/// scheme without a signing secret is [`Error::MissingSigningSecret`]; the
/// Coinbase scheme without a passphrase is [`Error::MissingPassphrase`].
///
/// The gateway accepts a signature once: two identical requests need two
/// different timestamps, at least one millisecond apart. [`Client`](crate::Client)
/// sees to that (see [`next_timestamp`](crate::next_timestamp)); a caller of
/// this function has to do the same.
pub fn signed_headers(
    scheme: AuthScheme,
    credentials: &Credentials,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    now_unix_millis: u64,
) -> Result<Vec<(&'static str, String)>> {
    signed_headers_with_timestamp(
        scheme,
        credentials,
        method,
        path,
        query,
        body,
        &format_timestamp(now_unix_millis),
    )
}

/// [`signed_headers`] with the timestamp given as the exact text to send and
/// sign: Unix seconds, optionally followed by `.` and one or more digits
/// (`1700000000`, `1700000060.25`, `1700000000.007`), as the gateway accepts
/// it. Any other text is [`Error::InvalidTimestamp`]. Pure; the lowest-level
/// signing function, for reproducing published vectors or another client's
/// timestamps.
pub fn signed_headers_with_timestamp(
    scheme: AuthScheme,
    credentials: &Credentials,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    timestamp_text: &str,
) -> Result<Vec<(&'static str, String)>> {
    let Some(core_scheme) = scheme.signing_scheme() else {
        return Ok(vec![(API_KEY_HEADER, credentials.api_key.clone())]);
    };
    if core_scheme == Scheme::Coinbase {
        passphrase(credentials)?;
    }
    let secret = credentials
        .signing_secret
        .as_deref()
        .ok_or(Error::MissingSigningSecret)?;
    if core_signing::parse_timestamp(timestamp_text).is_none() {
        return Err(Error::InvalidTimestamp(timestamp_text.to_owned()));
    }
    let timestamp = timestamp_text.to_owned();
    let parts = SignedParts {
        timestamp: &timestamp,
        method,
        path,
        query,
        body,
    };
    let signature = core_signing::sign(
        secret,
        &core_signing::message(core_scheme, &parts, credentials.key_id()),
    );
    let headers = match core_scheme {
        Scheme::Tollgate => vec![
            (API_KEY_HEADER, credentials.api_key.clone()),
            (TIMESTAMP_HEADER, timestamp),
            (SIGNATURE_HEADER, signature),
        ],
        Scheme::Coinbase => vec![
            (CB_KEY_HEADER, credentials.api_key.clone()),
            (CB_SIGN_HEADER, signature),
            (CB_TIMESTAMP_HEADER, timestamp),
            (CB_PASSPHRASE_HEADER, passphrase(credentials)?.to_owned()),
        ],
    };
    Ok(headers)
}

fn passphrase(credentials: &Credentials) -> Result<&str> {
    credentials
        .passphrase
        .as_deref()
        .ok_or(Error::MissingPassphrase)
}

/// [`signed_headers`] at the current time of the system clock, in
/// milliseconds.
///
/// Two identical requests signed in the same millisecond would carry the
/// same signature and the second would be refused as `replayed_request`;
/// [`Client`](crate::Client) keeps its timestamps strictly increasing, a
/// caller of this function must space its identical requests itself.
pub fn signed_headers_now(
    scheme: AuthScheme,
    credentials: &Credentials,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Result<Vec<(&'static str, String)>> {
    signed_headers(
        scheme,
        credentials,
        method,
        path,
        query,
        body,
        unix_millis(SystemTime::now()),
    )
}

/// Whole milliseconds since the Unix epoch; 0 for a clock set before 1970.
pub(crate) fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vectors of docs/signing.md (computed there by an independent Python
    // implementation; crates/core/tests/signing_vectors.rs checks core
    // against the same document). Integer-second and two-decimal vectors go
    // through `signed_headers_with_timestamp`; the millisecond vector
    // `tollgate-post-json-millis` through `signed_headers`.
    const SECRET: &str = "c2lnbmluZy1zZWNyZXQtZm9yLWRvY3MtdmVjdG9ycyE=";
    const KEY_1: &str = "tg_abcdefghijklmnop_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const KEY_2: &str = "tg_qrstuvwxyz234567_cccccccccccccccccccccccccccccccc";
    const ORDER: &[u8] = br#"{"symbol":"BTC-USD","side":"buy","qty":"0.01","price":"64000"}"#;

    fn creds(key: &str) -> Credentials {
        Credentials::new(key)
            .unwrap()
            .with_signing_secret(SECRET)
            .unwrap()
    }

    fn get<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn tollgate_get_with_query_matches_vector() {
        let headers = signed_headers_with_timestamp(
            AuthScheme::Tollgate,
            &creds(KEY_1),
            "GET",
            "/v1/orders",
            "symbol=BTC%2dUSD&status=open&limit=50&cursor=a%2fb%3D&tag=x+y&tag=a&flag&",
            b"",
            "1700000000",
        )
        .unwrap();
        assert_eq!(
            headers,
            vec![
                ("x-api-key", KEY_1.to_owned()),
                ("tollgate-timestamp", "1700000000".to_owned()),
                (
                    "tollgate-signature",
                    "Xjgudivf6uUVVVyl8HpT7i95tDYOzUj2BIh/otY7eVM=".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn tollgate_post_json_matches_vector() {
        let headers = signed_headers_with_timestamp(
            AuthScheme::Tollgate,
            &creds(KEY_1),
            "POST",
            "/v1/orders",
            "",
            ORDER,
            "1700000030",
        )
        .unwrap();
        assert_eq!(
            get(&headers, SIGNATURE_HEADER),
            Some("xYNLBMwkJHE3KQGdkMTHxP5Mbzk2nbwEAQpaLTcOsFw=")
        );
    }

    #[test]
    fn tollgate_post_json_millis_matches_vector() {
        // The SDK's own form: `signed_headers` with milliseconds.
        let headers = signed_headers(
            AuthScheme::Tollgate,
            &creds(KEY_1),
            "POST",
            "/v1/orders",
            "",
            ORDER,
            1_700_000_030_007,
        )
        .unwrap();
        assert_eq!(get(&headers, TIMESTAMP_HEADER), Some("1700000030.007"));
        assert_eq!(
            get(&headers, SIGNATURE_HEADER),
            Some("3uOpAT/lmpIj+y1dgTGhfOarDK4k41hQ683Fh8Dfe7c=")
        );
    }

    #[test]
    fn tollgate_lower_case_method_matches_vector() {
        let headers = signed_headers_with_timestamp(
            AuthScheme::Tollgate,
            &creds(KEY_2),
            "delete",
            "/v1/orders/ord_42",
            "x=%7e&u=caf%c3%a9&bad=100%&z=%zz&=empty-name",
            b"",
            "1700000045",
        )
        .unwrap();
        assert_eq!(
            get(&headers, SIGNATURE_HEADER),
            Some("lSO2RgQF/LGzts80KH9JaJdAZf8sx90myEjVBGkM1c8=")
        );
    }

    #[test]
    fn coinbase_post_json_matches_vector() {
        let credentials = creds(KEY_2).with_passphrase("correct horse").unwrap();
        let headers = signed_headers_with_timestamp(
            AuthScheme::Coinbase,
            &credentials,
            "POST",
            "/orders",
            "",
            br#"{"size":"0.01","price":"64000","side":"buy","product_id":"BTC-USD"}"#,
            "1700000120",
        )
        .unwrap();
        assert_eq!(
            headers,
            vec![
                ("cb-access-key", KEY_2.to_owned()),
                (
                    "cb-access-sign",
                    "WA1DYfCrz3666nz2/9CtfixEjcVEs/VVcoS9/QlYZIk=".to_owned()
                ),
                ("cb-access-timestamp", "1700000120".to_owned()),
                ("cb-access-passphrase", "correct horse".to_owned()),
            ]
        );
    }

    #[test]
    fn coinbase_get_with_fractional_timestamp_matches_vector() {
        let credentials = creds(KEY_2).with_passphrase("p").unwrap();
        let headers = signed_headers_with_timestamp(
            AuthScheme::Coinbase,
            &credentials,
            "GET",
            "/orders",
            "status=open&product_id=BTC-USD",
            b"",
            "1700000060.25",
        )
        .unwrap();
        assert_eq!(get(&headers, CB_TIMESTAMP_HEADER), Some("1700000060.25"));
        assert_eq!(
            get(&headers, CB_SIGN_HEADER),
            Some("dDznjsFaX8RHvBm44KnZ05vvvS1xarwMhJ6a65ikCK0=")
        );
    }

    #[test]
    fn coinbase_get_signs_the_millisecond_text_path_and_raw_query() {
        let credentials = creds(KEY_2);
        assert!(matches!(
            signed_headers(AuthScheme::Coinbase, &credentials, "GET", "/", "", b"", 0),
            Err(Error::MissingPassphrase)
        ));
        let credentials = credentials.with_passphrase("p").unwrap();
        let headers = signed_headers(
            AuthScheme::Coinbase,
            &credentials,
            "GET",
            "/orders",
            "status=open&product_id=BTC-USD",
            b"",
            1_700_000_060_250,
        )
        .unwrap();
        assert_eq!(get(&headers, CB_TIMESTAMP_HEADER), Some("1700000060.250"));
        let secret = core_signing::decode_secret(SECRET).unwrap();
        let expected = core_signing::sign(
            &secret,
            b"1700000060.250GET/orders?status=open&product_id=BTC-USD",
        );
        assert_eq!(get(&headers, CB_SIGN_HEADER), Some(expected.as_str()));
        // ".250" and ".25" are the same instant but different signed text.
        assert_ne!(
            get(&headers, CB_SIGN_HEADER),
            Some("dDznjsFaX8RHvBm44KnZ05vvvS1xarwMhJ6a65ikCK0=")
        );
        assert_eq!(get(&headers, CB_PASSPHRASE_HEADER), Some("p"));
        assert_eq!(get(&headers, API_KEY_HEADER), None);
    }

    #[test]
    fn timestamps_are_seconds_dot_three_digits() {
        assert_eq!(format_timestamp(1_700_000_000_007), "1700000000.007");
        assert_eq!(format_timestamp(1_700_000_000_000), "1700000000.000");
        assert_eq!(format_timestamp(1_700_000_000_999), "1700000000.999");
        assert_eq!(format_timestamp(1_700_000_001_050), "1700000001.050");
        assert_eq!(format_timestamp(5), "0.005");
        for ms in [0, 7, 999, 1_000, 1_700_000_000_123] {
            let text = format_timestamp(ms);
            let parsed = core_signing::parse_timestamp(&text).unwrap();
            assert_eq!(u64::try_from(parsed.0).unwrap(), ms, "{text}");
        }
        assert_eq!(
            unix_millis(UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_999)),
            1_700_000_000_123
        );
    }

    #[test]
    fn malformed_timestamp_text_is_refused() {
        let c = creds(KEY_1);
        for bad in [
            "",
            "1700000000.",
            ".5",
            "-1",
            "1e9",
            "17 00",
            "1700000000.1x",
        ] {
            assert!(
                matches!(
                    signed_headers_with_timestamp(
                        AuthScheme::Tollgate,
                        &c,
                        "GET",
                        "/",
                        "",
                        b"",
                        bad
                    ),
                    Err(Error::InvalidTimestamp(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unsigned_sends_the_key_alone() {
        let credentials = Credentials::new(KEY_1).unwrap();
        let headers =
            signed_headers(AuthScheme::None, &credentials, "GET", "/", "", b"", 0).unwrap();
        assert_eq!(headers, vec![("x-api-key", KEY_1.to_owned())]);
        assert!(matches!(
            signed_headers(AuthScheme::Tollgate, &credentials, "GET", "/", "", b"", 0),
            Err(Error::MissingSigningSecret)
        ));
    }

    #[test]
    fn every_millisecond_gives_a_new_signature() {
        let c = creds(KEY_1);
        let sign_at = |ms: u64| {
            signed_headers(
                AuthScheme::Tollgate,
                &c,
                "POST",
                "/v1/orders",
                "",
                ORDER,
                ms,
            )
            .unwrap()
        };
        let a = sign_at(1_700_000_000_000);
        let b = sign_at(1_700_000_000_001);
        assert_eq!(get(&a, TIMESTAMP_HEADER), Some("1700000000.000"));
        assert_eq!(get(&b, TIMESTAMP_HEADER), Some("1700000000.001"));
        assert_ne!(get(&a, SIGNATURE_HEADER), get(&b, SIGNATURE_HEADER));
    }

    #[test]
    fn credentials_are_checked_and_redacted() {
        assert!(matches!(
            Credentials::new("tg_short_x"),
            Err(Error::InvalidApiKey)
        ));
        assert!(matches!(
            Credentials::new(KEY_1)
                .unwrap()
                .with_signing_secret("not base64!"),
            Err(Error::InvalidSigningSecret)
        ));
        assert!(matches!(
            Credentials::new(KEY_1)
                .unwrap()
                .with_passphrase("tab\there"),
            Err(Error::InvalidPassphrase)
        ));
        let c = creds(KEY_1).with_passphrase("pass").unwrap();
        assert_eq!(c.key_id(), "abcdefghijklmnop");
        let shown = format!("{c:?}");
        assert!(!shown.contains("bbbbbbbb"), "{shown}");
        assert!(!shown.contains("pass\""), "{shown}");
        assert!(shown.contains("abcdefghijklmnop"), "{shown}");
    }

    #[test]
    fn scheme_names() {
        assert_eq!(AuthScheme::parse("Coinbase"), Some(AuthScheme::Coinbase));
        assert_eq!(AuthScheme::parse("tollgate"), Some(AuthScheme::Tollgate));
        assert_eq!(AuthScheme::parse("none"), Some(AuthScheme::None));
        assert_eq!(AuthScheme::parse("hmac"), None);
        assert_eq!(AuthScheme::from(Scheme::Coinbase), AuthScheme::Coinbase);
    }
}
