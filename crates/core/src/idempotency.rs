//! `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header): the key's
//! syntax and the fingerprint that tells a retry from a different request.
//!
//! The draft defines the field as a Structured Field String, so
//! `Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"`. Many clients
//! (Stripe's among them) send the bare value instead; both are accepted and
//! mean the same key. A key is 1 to 255 printable ASCII characters.

use sfv::{BareItem, Item, Parser};
use sha2::{Digest, Sha256};

/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// Why a header value is not a usable key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Empty, or only quotes.
    #[error("the Idempotency-Key is empty")]
    Empty,
    /// Longer than 255 characters.
    #[error("the Idempotency-Key is longer than 255 characters")]
    TooLong,
    /// A byte outside printable ASCII, or a malformed quoted string.
    #[error(
        "the Idempotency-Key must be printable ASCII, bare or as a quoted structured-field string"
    )]
    Malformed,
}

/// The key from a header value: a quoted sf-string is unquoted, a bare value
/// is taken as is.
pub fn parse_key(value: &[u8]) -> Result<String, KeyError> {
    let key = if value.first() == Some(&b'"') {
        let item: Item = Parser::new(value)
            .parse()
            .map_err(|_| KeyError::Malformed)?;
        match item.bare_item {
            BareItem::String(s) if item.params.is_empty() => s.as_str().to_owned(),
            _ => return Err(KeyError::Malformed),
        }
    } else {
        if !value.iter().all(|b| (b' '..=b'~').contains(b)) {
            return Err(KeyError::Malformed);
        }
        String::from_utf8(value.to_vec()).map_err(|_| KeyError::Malformed)?
    };
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong);
    }
    Ok(key)
}

/// SHA-256 over the method, path, query and the SHA-256 of the body, each
/// length-prefixed so that no two different requests share a fingerprint.
pub fn fingerprint(method: &str, path: &str, query: &str, body: &[u8]) -> [u8; 32] {
    let body_hash = Sha256::digest(body);
    let mut hasher = Sha256::new();
    hasher.update(b"tollgate-idempotency-v1");
    for part in [
        method.as_bytes(),
        path.as_bytes(),
        query.as_bytes(),
        body_hash.as_slice(),
    ] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_and_quoted_forms_are_the_same_key() {
        let id = "8e03978e-40d5-43e8-bc93-6894a57f9324";
        assert_eq!(parse_key(id.as_bytes()), Ok(id.to_owned()));
        assert_eq!(parse_key(format!("\"{id}\"").as_bytes()), Ok(id.to_owned()));
        assert_eq!(
            parse_key(br#""a \"quoted\" key""#),
            Ok(r#"a "quoted" key"#.to_owned())
        );
        assert_eq!(
            parse_key(b"order 42/retry"),
            Ok("order 42/retry".to_owned())
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(parse_key(b""), Err(KeyError::Empty));
        assert_eq!(parse_key(b"\"\""), Err(KeyError::Empty));
        assert_eq!(
            parse_key("k".repeat(256).as_bytes()),
            Err(KeyError::TooLong)
        );
        assert_eq!(
            parse_key("k".repeat(255).as_bytes()).map(|k| k.len()),
            Ok(255)
        );
        assert_eq!(parse_key(b"caf\xc3\xa9"), Err(KeyError::Malformed));
        assert_eq!(parse_key(b"tab\there"), Err(KeyError::Malformed));
        assert_eq!(parse_key(b"\"unterminated"), Err(KeyError::Malformed));
        assert_eq!(parse_key(b"\"k\";p=1"), Err(KeyError::Malformed));
    }

    #[test]
    fn fingerprint_changes_with_every_part() {
        let base = fingerprint("POST", "/v1/orders", "a=1", b"{}");
        assert_eq!(base, fingerprint("POST", "/v1/orders", "a=1", b"{}"));
        for other in [
            fingerprint("PUT", "/v1/orders", "a=1", b"{}"),
            fingerprint("POST", "/v1/order", "a=1", b"{}"),
            fingerprint("POST", "/v1/orders", "a=2", b"{}"),
            fingerprint("POST", "/v1/orders", "a=1", b"{ }"),
            fingerprint("POST", "/v1/ordersa=1", "", b"{}"),
        ] {
            assert_ne!(base, other);
        }
    }
}
