//! The in-memory view of organizations and keys that the decision path reads.
//!
//! Loaded whole from the store at start; after that every admin change writes
//! the store first and then replaces the one entry it changed, before the
//! admin call returns. So a revocation or suspension is in force for the next
//! request, and the request path never waits on the store.

use dashmap::DashMap;
use std::sync::Arc;
use tollgate_core::access::{KeyFacts, OrgStatus};
use tollgate_core::ids::{KeyId, OrgId};
use tollgate_store::{KeyRow, OrgRow, Store, StoreResult};

/// A key as the decision path sees it.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// The key id.
    pub id: KeyId,
    /// Its organization.
    pub org_id: OrgId,
    /// Status, expiry, scope and secret hashes.
    pub facts: KeyFacts,
}

/// An organization as the decision path sees it.
#[derive(Debug, Clone)]
pub struct OrgEntry {
    /// Active or suspended.
    pub status: OrgStatus,
    /// Assigned plan name.
    pub plan: Option<String>,
}

/// Keys and organizations by id.
#[derive(Debug, Default)]
pub struct Directory {
    keys: DashMap<KeyId, Arc<KeyEntry>>,
    orgs: DashMap<OrgId, Arc<OrgEntry>>,
}

impl Directory {
    /// Reads every org and key from the store.
    pub async fn load(store: &dyn Store) -> StoreResult<Self> {
        let directory = Directory::default();
        for org in store.all_orgs().await? {
            directory.put_org(&org);
        }
        for key in store.all_keys().await? {
            directory.put_key(&key);
        }
        Ok(directory)
    }

    /// The key with this id.
    pub fn key(&self, id: &str) -> Option<Arc<KeyEntry>> {
        self.keys.get(id).map(|e| Arc::clone(e.value()))
    }

    /// The organization with this id.
    pub fn org(&self, id: &OrgId) -> Option<Arc<OrgEntry>> {
        self.orgs.get(id).map(|e| Arc::clone(e.value()))
    }

    /// Replaces (or adds) one key from its stored row.
    pub fn put_key(&self, row: &KeyRow) {
        let entry = KeyEntry {
            id: row.id.clone(),
            org_id: row.org_id.clone(),
            facts: row.facts(),
        };
        self.keys.insert(row.id.clone(), Arc::new(entry));
    }

    /// Replaces (or adds) one organization from its stored row.
    pub fn put_org(&self, row: &OrgRow) {
        let entry = OrgEntry {
            status: row.status,
            plan: row.plan.clone(),
        };
        self.orgs.insert(row.id.clone(), Arc::new(entry));
    }

    /// Number of keys loaded.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}
