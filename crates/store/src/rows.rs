//! Rows as the store hands them out.

use tollgate_core::access::{KeyFacts, KeyStatus, OrgStatus, ProductScope};
use tollgate_core::api_key::SecretHash;
use tollgate_core::ids::{KeyId, OrgId};
use tollgate_core::time::UnixMillis;

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRow {
    /// `org_…`
    pub id: OrgId,
    /// Display name.
    pub name: String,
    /// Active or suspended.
    pub status: OrgStatus,
    /// Name of the plan from configuration, if one is assigned.
    pub plan: Option<String>,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Last change.
    pub updated_at: UnixMillis,
}

/// An API key. Holds hashes only, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    /// The public key id.
    pub id: KeyId,
    /// Owning organization.
    pub org_id: OrgId,
    /// Display name.
    pub name: String,
    /// Allowed products; `["*"]` for any.
    pub products: Vec<String>,
    /// Active or revoked.
    pub status: KeyStatus,
    /// Optional expiry.
    pub expires_at: Option<UnixMillis>,
    /// Hash of the current secret.
    pub secret_hash: SecretHash,
    /// Hash of the previous secret during a rotation overlap.
    pub previous_secret_hash: Option<SecretHash>,
    /// End of the rotation overlap.
    pub previous_secret_expires_at: Option<UnixMillis>,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Last change.
    pub updated_at: UnixMillis,
    /// When it was revoked.
    pub revoked_at: Option<UnixMillis>,
}

impl KeyRow {
    /// What the access decision needs from this key.
    pub fn facts(&self) -> KeyFacts {
        KeyFacts {
            status: self.status,
            expires_at: self.expires_at,
            products: ProductScope::from_list(&self.products),
            secret: self.secret_hash,
            previous_secret: self
                .previous_secret_hash
                .zip(self.previous_secret_expires_at),
        }
    }
}
