//! The in-memory view of organizations and keys that the decision path reads.
//!
//! Loaded whole from the store at start; after that every admin change writes
//! the store first and then replaces the one entry it changed, before the
//! admin call returns. So a revocation or suspension is in force for the next
//! request, and the request path never waits on the store.

use crate::secrets::KeyProvider;
use dashmap::DashMap;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use tollgate_core::access::{KeyFacts, OrgStatus};
use tollgate_core::credential::{CredentialPolicy, Thumbprint};
use tollgate_core::ids::{KeyId, OrgId};
use tollgate_core::meter::{METERS, Meter};
use tollgate_core::time::UnixMillis;
use tollgate_store::{CommitmentRow, KeyRow, OrgRow, Store};

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
    /// What the key demands beyond itself, with its opened signing secrets.
    pub credentials: LiveCredentials,
}

/// A key's credentials as the decision path uses them.
#[derive(Clone, Default)]
pub struct LiveCredentials {
    /// On which route classes each credential is demanded.
    pub policy: CredentialPolicy,
    /// Opened signing secrets, newest last.
    pub secrets: Vec<LiveSecret>,
    /// Certificate thumbprints and the end of their validity.
    pub pins: Vec<(Thumbprint, Option<UnixMillis>)>,
}

impl std::fmt::Debug for LiveCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCredentials")
            .field("policy", &self.policy)
            .field("secrets", &self.secrets.len())
            .field("pins", &self.pins.len())
            .finish()
    }
}

/// One opened signing secret.
#[derive(Clone)]
pub struct LiveSecret {
    /// The HMAC key.
    pub key: Vec<u8>,
    /// SHA-256 of the Coinbase-scheme passphrase.
    pub passphrase_hash: [u8; 32],
    /// End of validity after a rotation.
    pub expires_at: Option<UnixMillis>,
}

impl LiveCredentials {
    /// Secrets valid at `now`.
    pub fn active_secrets(&self, now: UnixMillis) -> impl Iterator<Item = &LiveSecret> {
        self.secrets
            .iter()
            .filter(move |s| s.expires_at.is_none_or(|end| now < end))
    }

    /// Whether `thumbprint` matches a pin valid at `now`.
    pub fn pinned(&self, thumbprint: &Thumbprint, now: UnixMillis) -> bool {
        let mut found = false;
        for (pin, expires_at) in &self.pins {
            let live = expires_at.is_none_or(|end| now < end);
            found |= live & bool::from(subtle::ConstantTimeEq::ct_eq(&pin[..], &thumbprint[..]));
        }
        found
    }

    fn open(
        row: &KeyRow,
        provider: Option<&dyn KeyProvider>,
    ) -> Result<Self, crate::secrets::SecretError> {
        let stored = &row.credentials;
        let mut secrets = Vec::with_capacity(stored.signing_secrets.len());
        for sealed in &stored.signing_secrets {
            let provider = provider.ok_or(crate::secrets::SecretError::NoMasterKey)?;
            let key = provider.open(
                &sealed.sealed,
                &crate::secrets::secret_context(row.id.as_str(), &sealed.id),
            )?;
            let passphrase_hash = hex::decode(&sealed.passphrase_hash)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or(crate::secrets::SecretError::CannotOpen)?;
            secrets.push(LiveSecret {
                key,
                passphrase_hash,
                expires_at: sealed.expires_at.map(UnixMillis),
            });
        }
        let pins = stored
            .certificate_pins
            .iter()
            .filter_map(|pin| {
                tollgate_core::credential::parse_thumbprint(&pin.thumbprint)
                    .map(|t| (t, pin.expires_at.map(UnixMillis)))
            })
            .collect();
        Ok(LiveCredentials {
            policy: stored.policy,
            secrets,
            pins,
        })
    }
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
    /// Opens sealed signing secrets; `None` when no master key is set.
    provider: Option<Arc<dyn KeyProvider>>,
}

impl Directory {
    /// Reads every org and key from the store.
    ///
    /// Fails if a key's signing secret cannot be opened with `provider`
    /// (no master key, or another one than sealed it): starting anyway would
    /// refuse every signed request of that key.
    pub async fn load(
        store: &dyn Store,
        provider: Option<Arc<dyn KeyProvider>>,
        now: UnixMillis,
    ) -> anyhow::Result<Self> {
        let directory = Directory {
            provider,
            ..Directory::default()
        };
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
        let mut unopened: Option<(KeyId, crate::secrets::SecretError)> = None;
        store
            .scan_keys(&mut |key| {
                if let Err(error) = directory.put_key(&key) {
                    unopened.get_or_insert((key.id.clone(), error));
                }
            })
            .await?;
        if let Some((key_id, error)) = unopened {
            anyhow::bail!("key {key_id}: {error}");
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

    /// Replaces (or adds) one key from its stored row. If its signing
    /// secrets cannot be opened, the key is still replaced (so a revocation
    /// is never lost) but without secrets, and the error is returned.
    pub fn put_key(&self, row: &KeyRow) -> Result<(), crate::secrets::SecretError> {
        let (credentials, result) = match LiveCredentials::open(row, self.provider.as_deref()) {
            Ok(credentials) => (credentials, Ok(())),
            Err(error) => {
                tracing::error!(key_id = %row.id, %error, "signing secrets of this key cannot be opened");
                let credentials = LiveCredentials {
                    policy: row.credentials.policy,
                    ..LiveCredentials::default()
                };
                (credentials, Err(error))
            }
        };
        let entry = KeyEntry {
            id: row.id.clone(),
            org_id: row.org_id.clone(),
            facts: row.facts(),
            quotas: key_quotas(&row.quotas),
            credentials,
        };
        self.keys.insert(row.id.clone(), Arc::new(entry));
        result
    }

    /// The provider sealing signing secrets, if a master key is set.
    pub fn provider(&self) -> Option<&Arc<dyn KeyProvider>> {
        self.provider.as_ref()
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
