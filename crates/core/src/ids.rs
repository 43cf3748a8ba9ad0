//! Identifiers of organizations and API keys.
//!
//! Ids are made from random bytes the caller supplies (this crate reads no
//! randomness itself), encoded in lower-case base32.

use crate::encoding::{base32, is_base32};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Random bytes in a key id: 80 bits, 16 base32 characters.
pub const KEY_ID_BYTES: usize = 10;
/// Characters in a key id.
pub const KEY_ID_LEN: usize = 16;
/// Random bytes in an org id suffix.
pub const ORG_ID_BYTES: usize = 10;

/// An organization id: `org_` followed by 16 base32 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrgId(String);

impl OrgId {
    /// Makes a new id from random bytes.
    pub fn from_random(bytes: [u8; ORG_ID_BYTES]) -> Self {
        OrgId(format!("org_{}", base32(&bytes)))
    }

    /// Accepts text that has the shape of an org id.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("org_")?;
        (rest.len() == 16 && is_base32(rest)).then(|| OrgId(text.to_owned()))
    }

    /// Wraps text read back from the store, which only ever holds valid ids.
    pub fn from_stored(text: String) -> Self {
        OrgId(text)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An API key id: 16 base32 characters, the public half of a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// Makes a new id from random bytes.
    pub fn from_random(bytes: [u8; KEY_ID_BYTES]) -> Self {
        KeyId(base32(&bytes))
    }

    /// Accepts text that has the shape of a key id.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == KEY_ID_LEN && is_base32(text)).then(|| KeyId(text.to_owned()))
    }

    /// Wraps text read back from the store.
    pub fn from_stored(text: String) -> Self {
        KeyId(text)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for KeyId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for OrgId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_parse() {
        let org = OrgId::from_random([7; ORG_ID_BYTES]);
        assert_eq!(OrgId::parse(org.as_str()), Some(org.clone()));
        let key = KeyId::from_random([200; KEY_ID_BYTES]);
        assert_eq!(key.as_str().len(), KEY_ID_LEN);
        assert_eq!(KeyId::parse(key.as_str()), Some(key));
    }

    #[test]
    fn malformed_ids_are_refused() {
        assert_eq!(OrgId::parse("org_short"), None);
        assert_eq!(OrgId::parse("acct_aaaaaaaaaaaaaaaa"), None);
        assert_eq!(KeyId::parse("aaaaaaaaaaaaaaa_"), None);
        assert_eq!(KeyId::parse("AAAAAAAAAAAAAAAA"), None);
    }
}
