//! The in-memory view of organizations and keys that the decision path reads.
//!
//! Loaded whole from the store at start; after that every admin change writes
//! the store first and then replaces the one entry it changed, before the
//! admin call returns. So a revocation or suspension is in force for the next
//! request, and the request path never waits on the store.

use dashmap::DashMap;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use tollgate_core::access::{KeyFacts, OrgStatus};
use tollgate_core::ids::{KeyId, OrgId};
use tollgate_core::meter::{METERS, Meter};
use tollgate_core::time::UnixMillis;
use tollgate_store::{CommitmentRow, KeyRow, OrgRow, Store, StoreResult};

/// A key as the decision path sees it.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// The key id.
    pub id: KeyId,
    /// Its organization.
    pub org_id: OrgId,
    /// Status, expiry, scope and secret hashes.
    pub facts: KeyFacts,
    /// Per-key cycle quotas, lower than the org's; `None` is no key limit.
    pub quotas: [Option<u64>; METERS],
}

/// An organization as the decision path sees it.
#[derive(Debug, Clone)]
pub struct OrgEntry {
    /// Active or suspended.
    pub status: OrgStatus,
    /// Assigned plan name.
    pub plan: Option<String>,
    /// Monthly cycles run from this instant's UTC day.
    pub cycle_anchor: UnixMillis,
    /// Exhausted quotas continue as overage.
    pub pay_as_you_go: bool,
    /// Committed-use add-ons whose term has not ended.
    pub commitments: Vec<Commitment>,
}

/// Extra quota for a term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commitment {
    /// Start of the term.
    pub starts_at: UnixMillis,
    /// End of the term (exclusive).
    pub ends_at: UnixMillis,
    /// Extra units per cycle, per meter.
    pub quotas: [u64; METERS],
}

impl Commitment {
    fn from_row(row: &CommitmentRow) -> Self {
        let mut quotas = [0; METERS];
        for (name, extra) in &row.quotas {
            if let Some(meter) = Meter::parse(name) {
                quotas[meter.index()] = *extra;
            }
        }
        Commitment {
            starts_at: row.starts_at,
            ends_at: row.ends_at,
            quotas,
        }
    }
}

impl OrgEntry {
    /// The org's cycle limit for `meter` at `now`: the plan's quota raised by
    /// every add-on in its term; `None` when the plan sets no quota.
    pub fn quota(&self, plan_quota: Option<u64>, meter: Meter, now: UnixMillis) -> Option<u64> {
        let extra: u64 = self
            .commitments
            .iter()
            .filter(|c| c.starts_at <= now && now < c.ends_at)
            .map(|c| c.quotas[meter.index()])
            .sum();
        plan_quota.map(|q| q.saturating_add(extra))
    }
}

/// Per-key quotas from the stored meter-name map.
pub fn key_quotas(map: &std::collections::BTreeMap<String, u64>) -> [Option<u64>; METERS] {
    let mut quotas = [None; METERS];
    for (name, limit) in map {
        if let Some(meter) = Meter::parse(name) {
            quotas[meter.index()] = Some(*limit);
        }
    }
    quotas
}

/// Keys and organizations by id.
#[derive(Debug, Default)]
pub struct Directory {
    keys: DashMap<KeyId, Arc<KeyEntry>>,
    orgs: DashMap<OrgId, Arc<OrgEntry>>,
    /// Add-ons by org, kept apart so that an org update keeps them.
    commitments: RwLock<HashMap<OrgId, Vec<Commitment>>>,
}

impl Directory {
    /// Reads every org and key from the store.
    pub async fn load(store: &dyn Store, now: UnixMillis) -> StoreResult<Self> {
        let directory = Directory::default();
        for commitment in store.current_commitments(now).await? {
            directory
                .commitments
                .write()
                .entry(commitment.org_id.clone())
                .or_default()
                .push(Commitment::from_row(&commitment));
        }
        for org in store.all_orgs().await? {
            directory.put_org(&org);
        }
        store.scan_keys(&mut |key| directory.put_key(&key)).await?;
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
            quotas: key_quotas(&row.quotas),
        };
        self.keys.insert(row.id.clone(), Arc::new(entry));
    }

    /// Replaces (or adds) one organization from its stored row.
    pub fn put_org(&self, row: &OrgRow) {
        let entry = OrgEntry {
            status: row.status,
            plan: row.plan.clone(),
            cycle_anchor: row.cycle_anchor.unwrap_or(row.created_at),
            pay_as_you_go: row.pay_as_you_go,
            commitments: self
                .commitments
                .read()
                .get(&row.id)
                .cloned()
                .unwrap_or_default(),
        };
        self.orgs.insert(row.id.clone(), Arc::new(entry));
    }

    /// Adds a committed-use add-on to an organization already loaded.
    pub fn add_commitment(&self, row: &CommitmentRow) {
        let commitment = Commitment::from_row(row);
        self.commitments
            .write()
            .entry(row.org_id.clone())
            .or_default()
            .push(commitment.clone());
        if let Some(mut entry) = self.orgs.get_mut(&row.org_id) {
            let mut updated = OrgEntry::clone(entry.value());
            updated.commitments.push(commitment);
            *entry.value_mut() = Arc::new(updated);
        }
    }

    /// Number of keys loaded.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}
