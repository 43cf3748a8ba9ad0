//! Which credentials a key demands, beyond the key itself, and on which
//! route classes: an HMAC request signature, a JWT, a client certificate.
//! Also the certificate thumbprint of RFC 8705 (`x5t#S256`).

use crate::route::RouteClass;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The route classes a credential is demanded on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassSet {
    /// Never demanded.
    #[default]
    None,
    /// On read routes only.
    Read,
    /// On write routes only.
    Write,
    /// On every route.
    All,
}

impl ClassSet {
    /// Whether the set holds `class`.
    pub fn contains(self, class: RouteClass) -> bool {
        matches!(
            (self, class),
            (ClassSet::All, _)
                | (ClassSet::Read, RouteClass::Read)
                | (ClassSet::Write, RouteClass::Write)
        )
    }

    /// Parses the configuration / admin form.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "none" => Some(ClassSet::None),
            "read" => Some(ClassSet::Read),
            "write" => Some(ClassSet::Write),
            "all" => Some(ClassSet::All),
            _ => None,
        }
    }

    /// The configuration / admin form.
    pub fn as_str(self) -> &'static str {
        match self {
            ClassSet::None => "none",
            ClassSet::Read => "read",
            ClassSet::Write => "write",
            ClassSet::All => "all",
        }
    }
}

/// A key's credential policy: on which route classes each credential is
/// demanded. The default demands nothing beyond the API key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialPolicy {
    /// An HMAC-SHA256 request signature (either scheme).
    #[serde(default)]
    pub signature: ClassSet,
    /// A JWT from a configured issuer, bound to the key's organization.
    #[serde(default)]
    pub jwt: ClassSet,
    /// A client certificate (mTLS) matching one of the key's pins.
    #[serde(default)]
    pub certificate: ClassSet,
}

impl CredentialPolicy {
    /// Whether the policy demands anything on `class`.
    pub fn demands_any(&self, class: RouteClass) -> bool {
        self.signature.contains(class)
            || self.jwt.contains(class)
            || self.certificate.contains(class)
    }
}

/// SHA-256 of a certificate's DER encoding: the thumbprint pins compare.
pub type Thumbprint = [u8; 32];

/// The thumbprint of a DER certificate.
pub fn thumbprint(der: &[u8]) -> Thumbprint {
    Sha256::digest(der).into()
}

/// The `x5t#S256` form (RFC 8705 §3.1): base64url without padding.
pub fn x5t_s256(thumbprint: &Thumbprint) -> String {
    URL_SAFE_NO_PAD.encode(thumbprint)
}

/// Reads a thumbprint written as 64 hex digits (colons allowed, as
/// `openssl x509 -fingerprint -sha256` prints) or as `x5t#S256` base64url.
pub fn parse_thumbprint(text: &str) -> Option<Thumbprint> {
    let text = text.trim();
    let hex_digits: String = text.chars().filter(|c| *c != ':').collect();
    if hex_digits.len() == 64
        && let Ok(bytes) = hex::decode(&hex_digits)
    {
        return bytes.try_into().ok();
    }
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_sets() {
        assert!(ClassSet::All.contains(RouteClass::Read));
        assert!(ClassSet::Write.contains(RouteClass::Write));
        assert!(!ClassSet::Write.contains(RouteClass::Read));
        assert!(!ClassSet::None.contains(RouteClass::Write));
        for set in [
            ClassSet::None,
            ClassSet::Read,
            ClassSet::Write,
            ClassSet::All,
        ] {
            assert_eq!(ClassSet::parse(set.as_str()), Some(set));
        }
    }

    #[test]
    fn thumbprints_round_trip_in_both_forms() {
        let t = thumbprint(b"not really a certificate");
        assert_eq!(parse_thumbprint(&x5t_s256(&t)), Some(t));
        assert_eq!(parse_thumbprint(&hex::encode(t)), Some(t));
        let colons: Vec<String> = t.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(parse_thumbprint(&colons.join(":")), Some(t));
        assert_eq!(parse_thumbprint("abc"), None);
    }
}
