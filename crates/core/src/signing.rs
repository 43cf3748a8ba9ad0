//! HMAC-SHA256 request signatures: the two schemes tollgate accepts, their
//! canonical strings, and the timestamp window.
//!
//! This is the one copy of the signing rules: the gateway verifies with it
//! and the client SDK signs with it. `docs/signing.md` describes the same
//! rules for clients in other languages, with test vectors computed by an
//! independent implementation; `tests/signing_vectors.rs` reads them out of
//! that file and reproduces them.
//!
//! **tollgate scheme.** The canonical string is six lines joined by `\n`
//! (no trailing newline):
//!
//! ```text
//! <timestamp, as sent in Tollgate-Timestamp>
//! <METHOD, upper case>
//! <path, exactly as in the request line, without the query>
//! <query, canonical: see canonical_query>
//! <hex SHA-256 of the body, lower case; of the empty string when there is none>
//! <key id, the 16 characters after "tg_">
//! ```
//!
//! The signature is `base64(HMAC-SHA256(base64decode(signing_secret), canonical))`,
//! sent in `Tollgate-Signature`.
//!
//! **Coinbase scheme** (Coinbase Exchange's `CB-ACCESS-*` headers): the
//! prehash is `timestamp + METHOD + path?query + body`, plain concatenation,
//! signed the same way. A bot written for Coinbase Exchange works unchanged.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::time::UnixMillis;

/// `Tollgate-Timestamp`: Unix seconds, optionally with a fraction
/// (`1700000000.123`): two identical requests need two timestamps, since a
/// signature is accepted once.
pub const TIMESTAMP_HEADER: &str = "tollgate-timestamp";
/// `Tollgate-Signature`: base64 of the HMAC-SHA256 of the canonical string.
pub const SIGNATURE_HEADER: &str = "tollgate-signature";
/// Coinbase: the API key.
pub const CB_KEY_HEADER: &str = "cb-access-key";
/// Coinbase: base64 signature.
pub const CB_SIGN_HEADER: &str = "cb-access-sign";
/// Coinbase: seconds since the epoch, decimals allowed.
pub const CB_TIMESTAMP_HEADER: &str = "cb-access-timestamp";
/// Coinbase: the passphrase given at secret creation.
pub const CB_PASSPHRASE_HEADER: &str = "cb-access-passphrase";

/// Random bytes in a signing secret.
pub const SECRET_BYTES: usize = 32;
/// Length of an HMAC-SHA256 signature.
pub const SIGNATURE_BYTES: usize = 32;

/// Which scheme verified a request (recorded with the decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `Tollgate-Timestamp` / `Tollgate-Signature`.
    Tollgate,
    /// `CB-ACCESS-*`.
    Coinbase,
}

impl Scheme {
    /// The name used in logs and exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Tollgate => "tollgate-hmac-sha256",
            Scheme::Coinbase => "coinbase-hmac-sha256",
        }
    }
}

/// A signing secret as shown to its owner: standard base64 with padding.
pub fn encode_secret(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The HMAC key of a secret in its shown form, or `None` if it is not base64.
pub fn decode_secret(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text.trim()).ok().filter(|b| !b.is_empty())
}

/// Whether `c` is left unescaped in canonical form (RFC 3986 unreserved).
fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `text` (a `%` not followed by two hex digits stays as is;
/// `+` stays `+`), then re-encodes every byte outside the unreserved set as
/// `%XX` with upper-case hex.
fn canonical_component(text: &str, out: &mut String) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let mut byte = bytes[i];
        if byte == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            byte = h << 4 | l;
            i += 2;
        }
        if unreserved(byte) {
            out.push(char::from(byte));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        i += 1;
    }
}

/// The canonical form of a raw query string: parameters split on `&`, empty
/// ones dropped, each name and value percent-decoded and re-encoded (RFC 3986
/// unreserved characters bare, everything else `%XX` upper case; `+` is a
/// literal plus and becomes `%2B`), a parameter without `=` given an empty
/// value, sorted by name then value, joined as `name=value` with `&`.
pub fn canonical_query(raw: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let mut n = String::with_capacity(name.len());
            canonical_component(name, &mut n);
            let mut v = String::with_capacity(value.len());
            canonical_component(value, &mut v);
            (n, v)
        })
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(raw.len() + 8);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// One request, as the signature covers it.
#[derive(Debug, Clone, Copy)]
pub struct SignedParts<'a> {
    /// The timestamp header's text, exactly as sent.
    pub timestamp: &'a str,
    /// The method; upper-cased in the canonical form.
    pub method: &'a str,
    /// The path as in the request line, without `?query`.
    pub path: &'a str,
    /// The raw query, without `?`; empty when there is none.
    pub query: &'a str,
    /// The body bytes.
    pub body: &'a [u8],
}

/// The tollgate scheme's canonical string for `parts` signed by `key_id`.
pub fn canonical_string(parts: &SignedParts<'_>, key_id: &str) -> String {
    let body_hash = hex::encode(Sha256::digest(parts.body));
    let query = canonical_query(parts.query);
    let mut out = String::with_capacity(
        parts.timestamp.len() + parts.path.len() + query.len() + key_id.len() + 80,
    );
    out.push_str(parts.timestamp);
    out.push('\n');
    out.push_str(&parts.method.to_ascii_uppercase());
    out.push('\n');
    out.push_str(parts.path);
    out.push('\n');
    out.push_str(&query);
    out.push('\n');
    out.push_str(&body_hash);
    out.push('\n');
    out.push_str(key_id);
    out
}

/// The Coinbase scheme's prehash: `timestamp + METHOD + path[?query] + body`.
pub fn coinbase_prehash(parts: &SignedParts<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        parts.timestamp.len() + parts.path.len() + parts.query.len() + parts.body.len() + 8,
    );
    out.extend_from_slice(parts.timestamp.as_bytes());
    out.extend_from_slice(parts.method.to_ascii_uppercase().as_bytes());
    out.extend_from_slice(parts.path.as_bytes());
    if !parts.query.is_empty() {
        out.push(b'?');
        out.extend_from_slice(parts.query.as_bytes());
    }
    out.extend_from_slice(parts.body);
    out
}

/// The message a scheme signs.
pub fn message(scheme: Scheme, parts: &SignedParts<'_>, key_id: &str) -> Vec<u8> {
    match scheme {
        Scheme::Tollgate => canonical_string(parts, key_id).into_bytes(),
        Scheme::Coinbase => coinbase_prehash(parts),
    }
}

/// HMAC-SHA256 of `message` under `secret` (the decoded secret bytes).
pub fn mac(secret: &[u8], message: &[u8]) -> [u8; SIGNATURE_BYTES] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The signature header's value: base64 of the MAC.
pub fn sign(secret: &[u8], message: &[u8]) -> String {
    STANDARD.encode(mac(secret, message))
}

/// Decodes a presented signature; `None` unless it is base64 of 32 bytes.
pub fn decode_signature(text: &str) -> Option<[u8; SIGNATURE_BYTES]> {
    let bytes = STANDARD.decode(text.trim()).ok()?;
    bytes.try_into().ok()
}

/// Whether `signature` is the MAC of `message` under `secret`, compared in
/// constant time.
pub fn verify(secret: &[u8], message: &[u8], signature: &[u8; SIGNATURE_BYTES]) -> bool {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(message);
    mac.verify_slice(signature).is_ok()
}

/// Reads a timestamp in seconds since the epoch: digits, optionally with a
/// fraction (Coinbase allows decimals). Fractions below a millisecond are
/// dropped. `None` for anything else (signs, exponents, blanks, overflow).
pub fn parse_timestamp(text: &str) -> Option<UnixMillis> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || whole.len() > 12
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || (text.contains('.') && fraction.is_empty())
    {
        return None;
    }
    let seconds: i64 = whole.parse().ok()?;
    let mut millis = 0i64;
    for (i, digit) in fraction.bytes().take(3).enumerate() {
        millis += i64::from(digit - b'0') * [100, 10, 1][i];
    }
    Some(UnixMillis(seconds.checked_mul(1000)? + millis))
}

/// Whether `timestamp` lies within `window_seconds` of `now`, either side
/// (the boundary itself is inside).
pub fn within_window(timestamp: UnixMillis, now: UnixMillis, window_seconds: u32) -> bool {
    (timestamp.0 - now.0).abs() <= i64::from(window_seconds) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors published in docs/signing.md.
    pub(crate) const VECTOR_SECRET: &str = "c2lnbmluZy1zZWNyZXQtZm9yLWRvY3MtdmVjdG9ycyE=";

    #[test]
    fn canonical_query_sorts_and_normalises() {
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_query("b=2&a=1"), "a=1&b=2");
        assert_eq!(canonical_query("a=2&a=1"), "a=1&a=2");
        assert_eq!(canonical_query("flag&x=%7e"), "flag=&x=~");
        assert_eq!(canonical_query("q=a b"), "q=a%20b");
        assert_eq!(canonical_query("q=a+b"), "q=a%2Bb");
        assert_eq!(canonical_query("q=%2f%2F/"), "q=%2F%2F%2F");
        assert_eq!(canonical_query("&&a=1&"), "a=1");
        assert_eq!(canonical_query("bad=%zz"), "bad=%25zz");
        assert_eq!(canonical_query("end=%4"), "end=%254");
        assert_eq!(canonical_query("u=%C3%A9"), "u=%C3%A9");
    }

    #[test]
    fn canonical_string_has_six_lines() {
        let parts = SignedParts {
            timestamp: "1700000000",
            method: "post",
            path: "/v1/orders",
            query: "b=2&a=1",
            body: b"",
        };
        let text = canonical_string(&parts, "ABCDEFGHIJKLMNOP");
        assert_eq!(
            text,
            "1700000000\nPOST\n/v1/orders\na=1&b=2\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nABCDEFGHIJKLMNOP"
        );
    }

    #[test]
    fn coinbase_prehash_is_plain_concatenation() {
        let parts = SignedParts {
            timestamp: "1700000000.5",
            method: "get",
            path: "/orders",
            query: "status=open",
            body: b"",
        };
        assert_eq!(
            coinbase_prehash(&parts),
            b"1700000000.5GET/orders?status=open".to_vec()
        );
        let post = SignedParts {
            query: "",
            method: "POST",
            body: br#"{"size":"1"}"#,
            ..parts
        };
        assert_eq!(
            coinbase_prehash(&post),
            br#"1700000000.5POST/orders{"size":"1"}"#.to_vec()
        );
    }

    #[test]
    fn rfc_4231_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        let expected =
            hex::decode("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
                .unwrap();
        assert_eq!(
            mac(b"Jefe", b"what do ya want for nothing?").to_vec(),
            expected
        );
    }

    #[test]
    fn verify_accepts_only_the_exact_signature() {
        let secret = decode_secret(VECTOR_SECRET).unwrap();
        let sig = mac(&secret, b"message");
        assert!(verify(&secret, b"message", &sig));
        assert!(!verify(&secret, b"messagf", &sig));
        let mut other = sig;
        other[31] ^= 1;
        assert!(!verify(&secret, b"message", &other));
        assert_eq!(decode_signature(&sign(&secret, b"message")), Some(sig));
        assert_eq!(decode_signature("AAAA"), None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_timestamp("1700000000"),
            Some(UnixMillis(1_700_000_000_000))
        );
        assert_eq!(
            parse_timestamp("1700000000.25"),
            Some(UnixMillis(1_700_000_000_250))
        );
        assert_eq!(
            parse_timestamp("1700000000.123456"),
            Some(UnixMillis(1_700_000_000_123))
        );
        for bad in [
            "",
            "-1",
            "+5",
            "1e9",
            "17.",
            ".5",
            " 1",
            "1 ",
            "9999999999999",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
        let now = UnixMillis(1_700_000_000_000);
        assert!(within_window(UnixMillis(now.0 + 30_000), now, 30));
        assert!(within_window(UnixMillis(now.0 - 30_000), now, 30));
        assert!(!within_window(UnixMillis(now.0 + 30_001), now, 30));
        assert!(!within_window(UnixMillis(now.0 - 30_001), now, 30));
    }
}
