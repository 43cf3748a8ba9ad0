//! Sealing signing secrets at rest.
//!
//! A key's HMAC signing secret must be readable by the gateway (it verifies
//! signatures with it) but never stored in clear. [`KeyProvider`] seals and
//! opens it; [`LocalKeyProvider`] does so with AES-256-GCM under a master key
//! from configuration (`credentials.master_key`, or `TOLLGATE_MASTER_KEY`).
//! A KMS-backed provider can take its place behind the same trait.
//!
//! The associated data binds a sealed secret to its key id and secret id, so
//! a sealed value copied onto another key does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// No master key is configured.
    #[error(
        "signing secrets need a master key: set credentials.master_key (or TOLLGATE_MASTER_KEY) to the base64 of 32 random bytes, e.g. `openssl rand -base64 32`"
    )]
    NoMasterKey,
    /// The configured master key is not base64 of 32 bytes.
    #[error("credentials.master_key must be the base64 of exactly 32 bytes")]
    BadMasterKey,
    /// The sealed value is damaged, or was sealed under another master key.
    #[error("a sealed signing secret could not be opened (wrong master key, or damaged)")]
    CannotOpen,
}

/// Seals and opens small secrets. `context` is bound into the seal.
pub trait KeyProvider: Send + Sync + std::fmt::Debug {
    /// Encrypts and authenticates `plaintext`; the result is printable.
    fn seal(&self, plaintext: &[u8], context: &str) -> Result<String, SecretError>;
    /// Opens what [`KeyProvider::seal`] made with the same `context`.
    fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, SecretError>;
}

/// AES-256-GCM under a local master key; a fresh random nonce per seal.
pub struct LocalKeyProvider {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for LocalKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalKeyProvider { .. }")
    }
}

const NONCE_BYTES: usize = 12;

impl LocalKeyProvider {
    /// From the base64 master key.
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| SecretError::BadMasterKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadMasterKey)?;
        Ok(Self::from_bytes(key))
    }

    /// From raw key bytes.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        LocalKeyProvider {
            cipher: Aes256Gcm::new(&key.into()),
        }
    }
}

impl KeyProvider for LocalKeyProvider {
    fn seal(&self, plaintext: &[u8], context: &str) -> Result<String, SecretError> {
        let nonce = crate::random::bytes::<NONCE_BYTES>();
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::CannotOpen)?;
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, SecretError> {
        let bytes = STANDARD
            .decode(sealed)
            .map_err(|_| SecretError::CannotOpen)?;
        if bytes.len() <= NONCE_BYTES {
            return Err(SecretError::CannotOpen);
        }
        let (nonce, body) = bytes.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::CannotOpen)
    }
}

/// A new signing secret for `key_id`, sealed by `provider`: the stored form,
/// and the secret's shown form (base64), shown once.
pub fn new_signing_secret(
    provider: &dyn KeyProvider,
    key_id: &str,
    secret_id: String,
    passphrase: &str,
    now: tollgate_core::time::UnixMillis,
) -> Result<(tollgate_store::SealedSecret, String), SecretError> {
    use sha2::Digest;
    let bytes = crate::random::bytes::<{ tollgate_core::signing::SECRET_BYTES }>();
    let sealed = provider.seal(&bytes, &secret_context(key_id, &secret_id))?;
    Ok((
        tollgate_store::SealedSecret {
            id: secret_id,
            sealed,
            passphrase_hash: hex::encode(sha2::Sha256::digest(passphrase.as_bytes())),
            created_at: now.0,
            expires_at: None,
        },
        tollgate_core::signing::encode_secret(&bytes),
    ))
}

/// The context a key's signing secret is sealed under.
pub fn secret_context(key_id: &str, secret_id: &str) -> String {
    format!("tollgate signing secret v1\n{key_id}\n{secret_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let provider = LocalKeyProvider::from_bytes([7; 32]);
        let sealed = provider.seal(b"secret bytes", "ctx-a").unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(provider.open(&sealed, "ctx-a").unwrap(), b"secret bytes");
        assert!(provider.open(&sealed, "ctx-b").is_err());
        let other = LocalKeyProvider::from_bytes([8; 32]);
        assert!(other.open(&sealed, "ctx-a").is_err());
        // Two seals of the same secret differ (fresh nonce).
        assert_ne!(sealed, provider.seal(b"secret bytes", "ctx-a").unwrap());
    }

    #[test]
    fn master_key_must_be_32_bytes() {
        assert!(LocalKeyProvider::from_base64(&STANDARD.encode([1u8; 32])).is_ok());
        assert!(LocalKeyProvider::from_base64(&STANDARD.encode([1u8; 16])).is_err());
        assert!(LocalKeyProvider::from_base64("not base64!").is_err());
    }
}
