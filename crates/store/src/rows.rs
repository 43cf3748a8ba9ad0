//! Rows as the store hands them out.

use std::collections::BTreeMap;
use tollgate_core::access::{KeyFacts, KeyStatus, OrgStatus, ProductScope};
use tollgate_core::api_key::SecretHash;
use tollgate_core::credential::CredentialPolicy;
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
    /// Start of the subscription: monthly cycles run from this day.
    pub cycle_anchor: Option<UnixMillis>,
    /// Pay-as-you-go: exhausted quotas continue as overage.
    pub pay_as_you_go: bool,
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
    /// Per-key quota limits per cycle, by meter name; lower than the org's.
    pub quotas: BTreeMap<String, u64>,
    /// What the key demands beyond itself, its sealed signing secrets and
    /// its certificate pins.
    pub credentials: KeyCredentials,
}

/// A key's credentials, stored as one JSON document.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyCredentials {
    /// On which route classes a signature, a JWT or a certificate is demanded.
    #[serde(default)]
    pub policy: CredentialPolicy,
    /// Signing secrets, newest last; more than one only during a rotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_secrets: Vec<SealedSecret>,
    /// Certificate pins, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_pins: Vec<CertificatePin>,
}

/// A signing secret, sealed (encrypted and authenticated) under the master
/// key; only the gateway's key provider can open it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SealedSecret {
    /// `ss_…`, shown in listings.
    pub id: String,
    /// Base64 of the provider's sealed form.
    pub sealed: String,
    /// Hex SHA-256 of the Coinbase-scheme passphrase.
    pub passphrase_hash: String,
    /// Creation, Unix milliseconds.
    pub created_at: i64,
    /// End of validity after a rotation, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// A client certificate a key is pinned to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertificatePin {
    /// Hex SHA-256 of the certificate's DER.
    pub thumbprint: String,
    /// Creation, Unix milliseconds.
    pub created_at: i64,
    /// End of validity after a rotation, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl KeyRow {
    /// A new active key with this secret: no expiry, no rotation, no quotas
    /// or credentials of its own (set them with struct update syntax).
    pub fn new_active(
        id: KeyId,
        secret: &str,
        org_id: OrgId,
        name: String,
        products: Vec<String>,
        now: UnixMillis,
    ) -> Self {
        KeyRow {
            secret_hash: SecretHash::of(id.as_str(), secret),
            id,
            org_id,
            name,
            products,
            status: KeyStatus::Active,
            expires_at: None,
            previous_secret_hash: None,
            previous_secret_expires_at: None,
            created_at: now,
            updated_at: now,
            revoked_at: None,
            quotas: BTreeMap::new(),
            credentials: KeyCredentials::default(),
        }
    }

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

/// A committed-use add-on: extra quota for an organization during a term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitmentRow {
    /// `cmt_…`
    pub id: String,
    /// The organization.
    pub org_id: OrgId,
    /// Extra units per cycle, by meter name.
    pub quotas: BTreeMap<String, u64>,
    /// Start of the term.
    pub starts_at: UnixMillis,
    /// End of the term (exclusive).
    pub ends_at: UnixMillis,
    /// Creation time.
    pub created_at: UnixMillis,
}

/// A response kept for replay under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers to replay, in order.
    pub headers: Vec<(String, String)>,
    /// The body, byte for byte (empty when omitted).
    pub body: Vec<u8>,
    /// The body was larger than the configured limit and was not kept.
    pub body_omitted: bool,
}

/// What [`crate::Store::idempotency_begin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// No live record: this request holds the key now.
    Started,
    /// Another request with this key and fingerprint is running.
    InFlight {
        /// When its lock lapses.
        locked_until: UnixMillis,
    },
    /// A request with this key and fingerprint completed: replay this.
    Completed(StoredResponse),
    /// The key was used for a different request.
    Mismatch,
}

/// An organization's account settings and balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// The organization.
    pub org_id: OrgId,
    /// Sum of the ledger's entries, kept in the same transaction as each entry.
    pub balance: i64,
    /// Post-paid credit, micro-units.
    pub credit_limit: i64,
    /// Spend allowed per UTC day, micro-units.
    pub daily_spend_limit: Option<i64>,
    /// Spend allowed per billing cycle, micro-units.
    pub budget: Option<i64>,
    /// Percentages of the budget that record a notification when crossed.
    pub budget_thresholds: Vec<u8>,
    /// Automatic top-ups.
    pub autocharge: AutochargeSettings,
    /// A payment needs the customer's action (e.g. 3-D Secure); writes are
    /// restricted until it is resolved.
    pub payment_action_required: bool,
}

impl AccountRow {
    /// The account an organization has before any setting or entry: no
    /// money, no credit, no limits, alerts at 70/85/95 %.
    pub fn new(org_id: OrgId) -> Self {
        AccountRow {
            org_id,
            balance: 0,
            credit_limit: 0,
            daily_spend_limit: None,
            budget: None,
            budget_thresholds: vec![70, 85, 95],
            autocharge: AutochargeSettings::default(),
            payment_action_required: false,
        }
    }
}

/// Automatic top-up settings and state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AutochargeSettings {
    /// On or off.
    pub enabled: bool,
    /// Top up when a charge leaves the balance below this, micro-units.
    pub threshold: i64,
    /// How much to add each time, micro-units.
    pub amount: i64,
    /// At most this much per calendar month (UTC), micro-units.
    pub monthly_cap: Option<i64>,
    /// The provider's customer id (Stripe `cus_…`).
    pub customer: Option<String>,
    /// The saved payment method (Stripe `pm_…`).
    pub payment_method: Option<String>,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// Why it turned itself off, if it did.
    pub disabled_reason: Option<String>,
}

/// One automatic top-up attempt: what is sent to the payment provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutochargeAttempt {
    /// The idempotency key, also the ledger reference of its credit.
    pub key: String,
    /// Micro-units.
    pub amount: i64,
    /// The provider's customer id (`None` only for attempts recorded before
    /// customers were recorded with them).
    pub customer: Option<String>,
    /// The saved payment method (the same caveat).
    pub payment_method: Option<String>,
    /// The currency, as the provider spells it (the same caveat).
    pub currency: Option<String>,
}

/// What an attempt's outcome changes on the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutochargeOutcome<'a> {
    /// The payment succeeded: the failure count starts again from zero.
    Succeeded,
    /// The payment waits for the customer's action: writes are restricted.
    ActionRequired,
    /// The payment failed or its outcome is unknown: one more failure; at
    /// `disable_after` failures in a row autocharge turns itself off and
    /// records why.
    Failed {
        /// Why, as the provider said it.
        reason: &'a str,
        /// Consecutive failures that turn autocharge off.
        disable_after: u32,
    },
}

/// The kind of a ledger entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A request's settled cost (negative amount).
    Charge,
    /// Money added by the operator.
    TopUp,
    /// Money added by an automatic top-up.
    Autocharge,
    /// A correction, either sign, with a reason.
    Adjustment,
    /// Money given back.
    Refund,
}

impl EntryKind {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Charge => "charge",
            EntryKind::TopUp => "top_up",
            EntryKind::Autocharge => "autocharge",
            EntryKind::Adjustment => "adjustment",
            EntryKind::Refund => "refund",
        }
    }

    /// From the stored text.
    pub fn parse(text: &str) -> Option<Self> {
        [
            EntryKind::Charge,
            EntryKind::TopUp,
            EntryKind::Autocharge,
            EntryKind::Adjustment,
            EntryKind::Refund,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// A ledger entry to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// The organization.
    pub org_id: OrgId,
    /// What it is.
    pub kind: EntryKind,
    /// Signed effect on the balance, micro-units.
    pub amount: i64,
    /// Unique per organization: a second entry with it is not written.
    pub reference: String,
    /// JSON details (meters, reason).
    pub detail: String,
    /// When.
    pub created_at: UnixMillis,
}

/// A posted ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRow {
    /// Position in the ledger.
    pub id: i64,
    /// The entry.
    pub entry: NewEntry,
    /// The balance right after it.
    pub balance_after: i64,
}

/// What posting one entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    /// Written; the balance is now this.
    Written {
        /// Balance after the entry.
        balance_after: i64,
    },
    /// An entry with this reference already exists; nothing changed.
    Duplicate,
}

/// One persisted cycle counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// The organization.
    pub org_id: OrgId,
    /// The key, or `None` for the organization as a whole.
    pub key_id: Option<KeyId>,
    /// Start of the billing cycle counted.
    pub cycle_start: UnixMillis,
    /// Meter name.
    pub meter: String,
    /// Units used in the cycle so far.
    pub used: u64,
}
