//! The API key format `tg_<key id>_<secret>` and secret hashing.
//!
//! Only a hash of the secret is ever stored. The check is a lookup by key id
//! followed by a constant-time comparison of hashes, so the time a check takes
//! does not depend on how many leading bytes of a guess were right.

use crate::encoding::{base32, is_base32};
use crate::ids::{KEY_ID_LEN, KeyId};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every key starts with this prefix, so secret scanners can recognise it.
pub const KEY_PREFIX: &str = "tg_";
/// Random bytes in a secret: 160 bits, 32 base32 characters.
pub const SECRET_BYTES: usize = 20;
/// Characters in a secret.
pub const SECRET_LEN: usize = 32;

/// A key as a client presented it, split into its two halves. Borrowed from
/// the request so that parsing allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    /// The public half, used to look the key up.
    pub key_id: &'a str,
    /// The secret half, hashed and compared.
    pub secret: &'a str,
}

/// Splits `tg_<key id>_<secret>`; `None` for anything of another shape.
pub fn parse(raw: &str) -> Option<PresentedKey<'_>> {
    let rest = raw.strip_prefix(KEY_PREFIX)?;
    let (key_id, secret) = rest.split_at_checked(KEY_ID_LEN)?;
    let secret = secret.strip_prefix('_')?;
    let well_formed = is_base32(key_id) && secret.len() == SECRET_LEN && is_base32(secret);
    well_formed.then_some(PresentedKey { key_id, secret })
}

/// A fresh secret from caller-supplied random bytes.
pub fn secret_from_random(bytes: [u8; SECRET_BYTES]) -> String {
    base32(&bytes)
}

/// The full key shown once to its owner.
pub fn format(key_id: &KeyId, secret: &str) -> String {
    format!("{KEY_PREFIX}{key_id}_{secret}")
}

/// SHA-256 of a secret, bound to its key id so that a hash cannot be moved
/// between keys. Secrets carry 160 random bits, so a fast hash is the right
/// tool here: there is nothing for a slow password hash to protect.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Even a hash is not worth printing in full.
        write!(f, "SecretHash({}…)", hex::encode(&self.0[..4]))
    }
}

impl SecretHash {
    /// Hashes `secret` for `key_id`.
    pub fn of(key_id: &str, secret: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"tollgate-api-key-v1\0");
        hasher.update(key_id.as_bytes());
        hasher.update(b"\0");
        hasher.update(secret.as_bytes());
        SecretHash(hasher.finalize().into())
    }

    /// Constant-time equality.
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// Reads a stored hash; `None` when it has the wrong length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(SecretHash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_then_parse() {
        let id = KeyId::from_random([1; crate::ids::KEY_ID_BYTES]);
        let secret = secret_from_random([9; SECRET_BYTES]);
        let full = format(&id, &secret);
        let parsed = parse(&full).expect("well formed");
        assert_eq!(parsed.key_id, id.as_str());
        assert_eq!(parsed.secret, secret);
    }

    #[test]
    fn shapes_that_are_not_keys() {
        let good = "tg_aaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        assert!(parse(good).is_some());
        for bad in [
            "",
            "tg_",
            "aaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "tg_aaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "tg_aaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "tg_aaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "tg_aaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "tg_aaaaaaaaaaaaaaaa_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
            "tg_ééééééééaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hash_binds_key_id_and_secret() {
        let a = SecretHash::of("aaaaaaaaaaaaaaaa", "s");
        assert!(a.matches(&SecretHash::of("aaaaaaaaaaaaaaaa", "s")));
        assert!(!a.matches(&SecretHash::of("aaaaaaaaaaaaaaab", "s")));
        assert!(!a.matches(&SecretHash::of("aaaaaaaaaaaaaaaa", "t")));
        assert!(!format!("{a:?}").contains(&hex::encode(a.0)));
    }
}
