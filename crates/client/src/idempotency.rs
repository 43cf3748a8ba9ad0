//! Deterministic `Idempotency-Key` values.
//!
//! A trading bot that crashes and restarts must send the same key for the
//! same intended order, so the key is derived from what identifies the
//! order rather than drawn at random: the user, the venue, the instrument
//! and a time window.
//!
//! # Construction
//!
//! ```text
//! window_index = floor(unix_seconds / window_seconds)
//! message      = "tollgate-idempotency-v1\n"
//!                + len(user)       + ":" + user       + "\n"
//!                + len(venue)      + ":" + venue      + "\n"
//!                + len(instrument) + ":" + instrument + "\n"
//!                + window_index
//! key          = "idem-v1-" + lowercase_hex(SHA-256(message))
//! ```
//!
//! Lengths are the UTF-8 byte lengths and, like `window_index`, are written
//! in decimal ASCII without leading zeros. The length prefixes make the
//! encoding unambiguous (`("ab", "c")` and `("a", "bc")` give different
//! messages whatever the fields contain). The key is 72 characters of
//! printable ASCII, within the gateway's 1–255.
//!
//! Example: user `abcdefghijklmnop`, venue `demo`, instrument `BTC-USD`,
//! time 1700000000, window 60 s: the window index is 28333333, the message
//! is `tollgate-idempotency-v1\n16:abcdefghijklmnop\n4:demo\n7:BTC-USD\n28333333`
//! and the key is
//! `idem-v1-88eb468dfe8693c3bbe4324b62622134e827d13bb96d1fe99e02d6d01b2a3642`.
//!
//! The key names *one* operation per (user, venue, instrument, window): the
//! gateway answers a second, different request with the same key with 422
//! `idempotency_key_mismatch`, and replays the stored answer to an identical
//! one. Put whatever else distinguishes two intended operations (a strategy
//! or client order id) into `instrument` or `user`.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Prefix of every key this module derives; names the construction's version.
pub const KEY_PREFIX: &str = "idem-v1-";
/// Longest key the gateway accepts.
pub const MAX_KEY_LEN: usize = 255;

/// `floor(unix_seconds / window_seconds)`; [`Error::ZeroWindow`] for a zero window.
pub fn window_index(unix_seconds: u64, window_seconds: u64) -> Result<u64> {
    unix_seconds
        .checked_div(window_seconds)
        .ok_or(Error::ZeroWindow)
}

/// The idempotency key for `user`, `venue` and `instrument` in the window of
/// `window_seconds` that contains `unix_seconds` (see the module
/// documentation for the exact construction).
pub fn idempotency_key(
    user: &str,
    venue: &str,
    instrument: &str,
    unix_seconds: u64,
    window_seconds: u64,
) -> Result<String> {
    let index = window_index(unix_seconds, window_seconds)?;
    let mut hasher = Sha256::new();
    hasher.update(b"tollgate-idempotency-v1\n");
    for field in [user, venue, instrument] {
        hasher.update(field.len().to_string().as_bytes());
        hasher.update(b":");
        hasher.update(field.as_bytes());
        hasher.update(b"\n");
    }
    hasher.update(index.to_string().as_bytes());
    Ok(format!("{KEY_PREFIX}{}", hex::encode(hasher.finalize())))
}

/// Whether the gateway accepts `key` as an `Idempotency-Key`: 1 to 255
/// printable ASCII characters (space to `~`).
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| (b' '..=b'~').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_example() {
        // Computed independently with Python's hashlib.
        assert_eq!(
            idempotency_key("abcdefghijklmnop", "demo", "BTC-USD", 1_700_000_000, 60).unwrap(),
            "idem-v1-88eb468dfe8693c3bbe4324b62622134e827d13bb96d1fe99e02d6d01b2a3642"
        );
        assert_eq!(
            idempotency_key("usér", "demo", "ETH-USD", 1_700_000_000, 3600).unwrap(),
            "idem-v1-eca6f97ffb617b7b785ee67acffff0a85b8af9a7ba96cebbebb9f3d7cea78df9"
        );
    }

    #[test]
    fn same_window_same_key_next_window_new_key() {
        // 1700000000 / 60 = 28333333.33: the window runs 1699999980..=1700000039.
        let k = |t| idempotency_key("u", "demo", "BTC-USD", t, 60).unwrap();
        assert_eq!(k(1_699_999_980), k(1_700_000_039));
        assert_ne!(k(1_700_000_039), k(1_700_000_040));
        assert_ne!(k(1_699_999_979), k(1_699_999_980));
    }

    #[test]
    fn fields_are_unambiguous() {
        let a = idempotency_key("ab", "c", "x", 0, 60).unwrap();
        let b = idempotency_key("a", "bc", "x", 0, 60).unwrap();
        assert_ne!(a, b);
        let c = idempotency_key("a\n1:b", "c", "x", 0, 60).unwrap();
        let d = idempotency_key("a", "b\n1:c", "x", 0, 60).unwrap();
        assert_ne!(c, d);
        assert_ne!(
            idempotency_key("u", "v", "BTC-USD", 0, 60).unwrap(),
            idempotency_key("u", "v", "ETH-USD", 0, 60).unwrap()
        );
    }

    #[test]
    fn keys_are_valid_for_the_gateway() {
        let key = idempotency_key("", "", "", u64::MAX, 1).unwrap();
        assert_eq!(key.len(), KEY_PREFIX.len() + 64);
        assert!(is_valid_key(&key));
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
        assert!(!is_valid_key(""));
        assert!(!is_valid_key(&"a".repeat(256)));
        assert!(is_valid_key(&"a".repeat(255)));
        assert!(!is_valid_key("é"));
        assert!(!is_valid_key("a\tb"));
    }

    #[test]
    fn zero_window_is_an_error() {
        assert!(matches!(
            idempotency_key("u", "v", "i", 5, 0),
            Err(Error::ZeroWindow)
        ));
        assert_eq!(window_index(1_700_000_000, 60).unwrap(), 28_333_333);
    }
}
