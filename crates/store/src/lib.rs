//! Storage for tollgate.
//!
//! This crate owns the [`Store`] trait, the one door through which the gateway
//! reads and writes durable state (organizations and keys now; ledger, usage
//! and idempotency records as those capabilities land), and its backends. The
//! embedded default is SQLite in one file ([`SqliteStore`]): WAL journal,
//! `synchronous=FULL`, foreign keys on, migrations applied at open.
//!
//! It is the only crate that imports `sqlx`. It holds no policy: the gateway
//! decides, the store remembers. It never reads the clock; callers pass `now`.

mod rows;
mod sqlite;

pub use rows::{
    AccountRow, AutochargeAttempt, AutochargeOutcome, AutochargeSettings, CertificatePin,
    CommitmentRow, EntryKind, EntryRow, IdempotencyBegin, KeyCredentials, KeyRow, NewEntry, OrgRow,
    Posted, SealedSecret, StoredResponse, UsageRow,
};
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use std::collections::BTreeMap;
use tollgate_core::access::{KeyStatus, OrgStatus};
use tollgate_core::api_key::SecretHash;
use tollgate_core::ids::{KeyId, OrgId};
use tollgate_core::time::UnixMillis;

/// A storage failure. The gateway answers these with a 5xx and logs them; the
/// text never reaches a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed an operation.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration could not be applied.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row holds something this version cannot read.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// An insert hit an existing primary key.
    #[error("duplicate id {0}")]
    Duplicate(String),
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Durable state behind the gateway. Every backend passes the same
/// conformance tests (`tests/conformance.rs`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip, for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    /// Inserts a new organization.
    async fn create_org(&self, org: &OrgRow) -> StoreResult<()>;
    /// One organization.
    async fn get_org(&self, id: &OrgId) -> StoreResult<Option<OrgRow>>;
    /// Organizations ordered by id, after `after`, at most `limit`.
    async fn list_orgs(&self, after: Option<&OrgId>, limit: u32) -> StoreResult<Vec<OrgRow>>;
    /// Sets the status; returns the updated row, or `None` if no such org.
    async fn set_org_status(
        &self,
        id: &OrgId,
        status: OrgStatus,
        now: UnixMillis,
    ) -> StoreResult<Option<OrgRow>>;
    /// Sets (or clears) the plan and the cycle anchor; returns the updated row.
    async fn set_org_plan(
        &self,
        id: &OrgId,
        plan: Option<&str>,
        cycle_anchor: Option<UnixMillis>,
        now: UnixMillis,
    ) -> StoreResult<Option<OrgRow>>;
    /// Turns pay-as-you-go on or off; returns the updated row.
    async fn set_org_pay_as_you_go(
        &self,
        id: &OrgId,
        enabled: bool,
        now: UnixMillis,
    ) -> StoreResult<Option<OrgRow>>;

    /// Inserts a new key. The org must exist.
    async fn create_key(&self, key: &KeyRow) -> StoreResult<()>;
    /// One key.
    async fn get_key(&self, id: &KeyId) -> StoreResult<Option<KeyRow>>;
    /// The keys of one organization, ordered by id.
    async fn list_keys(&self, org: &OrgId) -> StoreResult<Vec<KeyRow>>;
    /// Marks a key revoked; returns the updated row. Revoking twice keeps the
    /// first revocation time.
    async fn revoke_key(&self, id: &KeyId, now: UnixMillis) -> StoreResult<Option<KeyRow>>;
    /// Replaces an active key's secret; the old secret stays valid until
    /// `previous_valid_until`. Returns `None` if the key does not exist or is
    /// revoked.
    async fn rotate_key(
        &self,
        id: &KeyId,
        new_secret: SecretHash,
        previous_valid_until: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<Option<KeyRow>>;

    /// Replaces a key's quota overrides; returns the updated row.
    async fn set_key_quotas(
        &self,
        id: &KeyId,
        quotas: &BTreeMap<String, u64>,
        now: UnixMillis,
    ) -> StoreResult<Option<KeyRow>>;

    /// Replaces a key's credential policy, sealed signing secrets and
    /// certificate pins in one statement; returns the updated row.
    async fn set_key_credentials(
        &self,
        id: &KeyId,
        credentials: &KeyCredentials,
        now: UnixMillis,
    ) -> StoreResult<Option<KeyRow>>;

    /// Inserts a committed-use add-on. The org must exist.
    async fn create_commitment(&self, commitment: &CommitmentRow) -> StoreResult<()>;
    /// An organization's add-ons, oldest first.
    async fn list_commitments(&self, org: &OrgId) -> StoreResult<Vec<CommitmentRow>>;
    /// Every add-on whose term has not ended at `now`.
    async fn current_commitments(&self, now: UnixMillis) -> StoreResult<Vec<CommitmentRow>>;

    /// Writes cycle counters (absolute values, insert or replace) in one transaction.
    async fn save_usage(&self, rows: &[UsageRow]) -> StoreResult<()>;
    /// Counters of cycles that started at or after `since`.
    async fn load_usage(&self, since: UnixMillis) -> StoreResult<Vec<UsageRow>>;

    /// Takes the key for a request with this fingerprint, unless a live
    /// record exists; an expired record or a lapsed in-flight lock is taken
    /// over. Atomic: of concurrent callers exactly one gets `Started`.
    async fn idempotency_begin(
        &self,
        org: &OrgId,
        key: &str,
        fingerprint: &[u8; 32],
        now: UnixMillis,
        locked_until: UnixMillis,
        expires_at: UnixMillis,
    ) -> StoreResult<IdempotencyBegin>;
    /// Stores the response of the request holding the key.
    async fn idempotency_complete(
        &self,
        org: &OrgId,
        key: &str,
        fingerprint: &[u8; 32],
        response: &StoredResponse,
        expires_at: UnixMillis,
    ) -> StoreResult<()>;
    /// Drops the in-flight record of the request holding the key, so that a
    /// retry can run (the upstream failed; nothing was stored or charged).
    async fn idempotency_release(
        &self,
        org: &OrgId,
        key: &str,
        fingerprint: &[u8; 32],
    ) -> StoreResult<()>;
    /// Deletes expired records and lapsed in-flight locks; returns how many.
    async fn idempotency_purge(&self, now: UnixMillis) -> StoreResult<u64>;

    /// An organization's account (defaults when it has none yet).
    async fn get_account(&self, org: &OrgId) -> StoreResult<AccountRow>;
    /// Every account that exists.
    async fn all_accounts(&self) -> StoreResult<Vec<AccountRow>>;
    /// Writes an account's settings (not its balance, which only ledger
    /// entries change); returns the account.
    async fn set_account_settings(
        &self,
        account: &AccountRow,
        now: UnixMillis,
    ) -> StoreResult<AccountRow>;
    /// Posts entries in one transaction (one fsync for the whole batch): each
    /// is written with the balance change it makes, or skipped as a duplicate
    /// of an entry with the same reference.
    async fn post_entries(&self, entries: &[NewEntry]) -> StoreResult<Vec<Posted>>;
    /// The entry of an organization with this reference.
    async fn find_entry(&self, org: &OrgId, reference: &str) -> StoreResult<Option<EntryRow>>;
    /// Ledger entries of an organization after `after_id`, oldest first.
    async fn list_entries(
        &self,
        org: &OrgId,
        after_id: i64,
        limit: u32,
    ) -> StoreResult<Vec<EntryRow>>;
    /// Sum of the amounts of `kind` entries at or after `since`, per organization.
    async fn sums_since(
        &self,
        kind: EntryKind,
        since: UnixMillis,
    ) -> StoreResult<Vec<(OrgId, i64)>>;
    /// Charges of an organization at or after `since`: their total (positive
    /// micro-units) and the units priced per meter, from the entries' details.
    async fn charged_since(&self, org: &OrgId, since: UnixMillis) -> StoreResult<(i64, [u64; 5])> {
        self.charged_between(org, since, UnixMillis(i64::MAX)).await
    }
    /// The same for charges in `[from, to)`.
    async fn charged_between(
        &self,
        org: &OrgId,
        from: UnixMillis,
        to: UnixMillis,
    ) -> StoreResult<(i64, [u64; 5])>;
    /// Records an autocharge attempt (its key, amount, customer and payment
    /// method) before the provider is called; `false` if one with this key
    /// exists already.
    async fn autocharge_begin(
        &self,
        org: &OrgId,
        attempt: &AutochargeAttempt,
        now: UnixMillis,
    ) -> StoreResult<bool>;
    /// Records an attempt's outcome.
    async fn autocharge_finish(
        &self,
        key: &str,
        state: &str,
        payment_id: Option<&str>,
        error: Option<&str>,
        now: UnixMillis,
    ) -> StoreResult<()>;
    /// The oldest attempt left pending (a crash or an unknown outcome), to
    /// retry under the same key with the same parameters, and when it was
    /// recorded.
    async fn autocharge_pending(
        &self,
        org: &OrgId,
    ) -> StoreResult<Option<(AutochargeAttempt, UnixMillis)>>;
    /// Records what an attempt's outcome changes on the account, in one
    /// statement on the stored row so that settings changed meanwhile (by
    /// the admin API) are kept; returns the account.
    async fn autocharge_outcome(
        &self,
        org: &OrgId,
        outcome: AutochargeOutcome<'_>,
        now: UnixMillis,
    ) -> StoreResult<AccountRow>;
    /// Number of attempts ever made for an organization, and the amount of
    /// succeeded or pending ones at or after `since`.
    async fn autocharge_stats(&self, org: &OrgId, since: UnixMillis) -> StoreResult<(u64, i64)>;
    /// Records a notification once per reference; `true` if it is new.
    async fn add_notification(
        &self,
        org: &OrgId,
        kind: &str,
        reference: &str,
        detail: &str,
        now: UnixMillis,
    ) -> StoreResult<bool>;
    /// An organization's notifications, newest first: (kind, reference, detail, time).
    async fn list_notifications(
        &self,
        org: &OrgId,
    ) -> StoreResult<Vec<(String, String, String, UnixMillis)>>;

    /// Every organization, for building the in-memory snapshot.
    async fn all_orgs(&self) -> StoreResult<Vec<OrgRow>>;
    /// Every key, for building the in-memory snapshot.
    async fn all_keys(&self) -> StoreResult<Vec<KeyRow>>;
    /// Every key, handed to `visit` one at a time as it is read, so that
    /// loading a million keys never holds them all twice.
    async fn scan_keys(&self, visit: &mut (dyn FnMut(KeyRow) + Send)) -> StoreResult<()>;
}

/// Statuses as stored.
pub(crate) fn org_status_text(status: OrgStatus) -> &'static str {
    match status {
        OrgStatus::Active => "active",
        OrgStatus::Suspended => "suspended",
    }
}

pub(crate) fn key_status_text(status: KeyStatus) -> &'static str {
    match status {
        KeyStatus::Active => "active",
        KeyStatus::Revoked => "revoked",
    }
}
