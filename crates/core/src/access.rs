//! Steps 2 and 3 of the pipeline as a pure decision: is this key, with this
//! secret, allowed to call this product right now, and is its organization
//! active?
//!
//! The order of checks is part of the contract. The secret is checked before
//! anything about the key's state is revealed, so an attacker holding only a
//! key id learns nothing: an unknown id, a wrong secret and a malformed key all
//! get `invalid_api_key`, and the comparison costs the same in each case.

use crate::api_key::SecretHash;
use crate::reject::Rejection;
use crate::time::UnixMillis;
use serde::{Deserialize, Serialize};

/// Whether a key may still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Permanently disabled.
    Revoked,
}

/// Whether an organization may use its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrgStatus {
    /// Its keys work.
    Active,
    /// Every key of the org is refused until it is activated again.
    Suspended,
}

/// The products a key may call: all of them, or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductScope {
    /// `["*"]` in the admin API.
    Any,
    /// Only these.
    Only(Vec<String>),
}

impl ProductScope {
    /// Builds a scope from the admin API's list, where `"*"` means any.
    pub fn from_list(list: &[String]) -> Self {
        if list.iter().any(|p| p == "*") {
            ProductScope::Any
        } else {
            ProductScope::Only(list.to_vec())
        }
    }

    /// The scope as the admin API's list.
    pub fn to_list(&self) -> Vec<String> {
        match self {
            ProductScope::Any => vec!["*".to_owned()],
            ProductScope::Only(list) => list.clone(),
        }
    }

    /// Does the scope include `product`?
    pub fn allows(&self, product: &str) -> bool {
        match self {
            ProductScope::Any => true,
            ProductScope::Only(list) => list.iter().any(|p| p == product),
        }
    }
}

/// What the decision needs to know about a key.
#[derive(Debug, Clone)]
pub struct KeyFacts {
    /// Active or revoked.
    pub status: KeyStatus,
    /// After this instant the key is refused.
    pub expires_at: Option<UnixMillis>,
    /// Products the key may call.
    pub products: ProductScope,
    /// Hash of the current secret.
    pub secret: SecretHash,
    /// Hash of the secret replaced by the last rotation, and until when it
    /// still works.
    pub previous_secret: Option<(SecretHash, UnixMillis)>,
}

/// A hash no key has, compared against when the key id is unknown so that the
/// unknown-key path does the same work as the wrong-secret path.
pub const DECOY_HASH: SecretHash = SecretHash([0x5a; 32]);

/// Does `presented` match the key's current secret, or its previous one while
/// the rotation overlap lasts? Both comparisons always run.
pub fn secret_matches(key: &KeyFacts, presented: &SecretHash, now: UnixMillis) -> bool {
    let current = key.secret.matches(presented);
    let (previous_hash, previous_until) = key
        .previous_secret
        .unwrap_or((DECOY_HASH, UnixMillis(i64::MIN)));
    let previous = previous_hash.matches(presented) && now < previous_until;
    current | previous
}

/// Step 2 after the secret matched: status, expiry and product scope.
pub fn check_key(key: &KeyFacts, product: &str, now: UnixMillis) -> Result<(), Rejection> {
    if key.status == KeyStatus::Revoked {
        return Err(Rejection::ApiKeyRevoked);
    }
    if key.expires_at.is_some_and(|at| now >= at) {
        return Err(Rejection::ApiKeyExpired);
    }
    if !key.products.allows(product) {
        return Err(Rejection::ProductNotAllowed);
    }
    Ok(())
}

/// Step 3: the organization is active, and its plan (when the plan limits
/// products) opens this product.
pub fn check_org(
    status: OrgStatus,
    plan_products: Option<&ProductScope>,
    product: &str,
) -> Result<(), Rejection> {
    if status == OrgStatus::Suspended {
        return Err(Rejection::OrgSuspended);
    }
    if plan_products.is_some_and(|scope| !scope.allows(product)) {
        return Err(Rejection::ProductNotInPlan);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyFacts {
        KeyFacts {
            status: KeyStatus::Active,
            expires_at: Some(UnixMillis(10_000)),
            products: ProductScope::Only(vec!["market-data".into()]),
            secret: SecretHash::of("k", "new"),
            previous_secret: Some((SecretHash::of("k", "old"), UnixMillis(5_000))),
        }
    }

    #[test]
    fn current_and_overlapping_previous_secret() {
        let k = key();
        assert!(secret_matches(
            &k,
            &SecretHash::of("k", "new"),
            UnixMillis(1)
        ));
        assert!(secret_matches(
            &k,
            &SecretHash::of("k", "old"),
            UnixMillis(4_999)
        ));
        assert!(!secret_matches(
            &k,
            &SecretHash::of("k", "old"),
            UnixMillis(5_000)
        ));
        assert!(!secret_matches(
            &k,
            &SecretHash::of("k", "guess"),
            UnixMillis(1)
        ));
        assert!(!secret_matches(&k, &DECOY_HASH, UnixMillis(1)));
    }

    #[test]
    fn key_state_checks_in_order() {
        let mut k = key();
        assert_eq!(check_key(&k, "market-data", UnixMillis(9_999)), Ok(()));
        assert_eq!(
            check_key(&k, "market-data", UnixMillis(10_000)),
            Err(Rejection::ApiKeyExpired)
        );
        assert_eq!(
            check_key(&k, "trading", UnixMillis(1)),
            Err(Rejection::ProductNotAllowed)
        );
        k.status = KeyStatus::Revoked;
        assert_eq!(
            check_key(&k, "market-data", UnixMillis(1)),
            Err(Rejection::ApiKeyRevoked)
        );
        k.products = ProductScope::from_list(&["*".into()]);
        k.status = KeyStatus::Active;
        assert_eq!(check_key(&k, "anything", UnixMillis(1)), Ok(()));
    }

    #[test]
    fn org_checks() {
        let plan = ProductScope::Only(vec!["market-data".into()]);
        assert_eq!(check_org(OrgStatus::Active, None, "x"), Ok(()));
        assert_eq!(
            check_org(OrgStatus::Active, Some(&plan), "market-data"),
            Ok(())
        );
        assert_eq!(
            check_org(OrgStatus::Active, Some(&plan), "trading"),
            Err(Rejection::ProductNotInPlan)
        );
        assert_eq!(
            check_org(OrgStatus::Suspended, Some(&plan), "market-data"),
            Err(Rejection::OrgSuspended)
        );
    }
}
