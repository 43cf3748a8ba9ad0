//! Automatic top-ups. When a settlement leaves an organization's balance
//! below its threshold, the request path hands the organization to the
//! [`Autocharger`], which (at most one attempt in flight per organization,
//! never past the monthly cap) records the attempt and its idempotency key,
//! charges the saved payment method through the [`PaymentProvider`], and
//! writes the ledger credit last, with the same key as its reference, only
//! when the payment succeeded. A retry can therefore never charge twice nor
//! credit twice. Failures are counted; after `max_consecutive_failures` the
//! autocharge turns itself off and says so in a notification. A payment that
//! needs the customer's action restricts write routes until it is resolved.

use crate::Clock;
use crate::accounts::Accounts;
use crate::payments::{ChargeOutcome, ChargeRequest, PaymentProvider};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use tollgate_core::cycle::monthly_cycle;
use tollgate_core::ids::OrgId;
use tollgate_core::time::UnixMillis;
use tollgate_store::{
    AccountRow, AutochargeAttempt, AutochargeOutcome, EntryKind, NewEntry, Posted, Store,
    StoreResult,
};

/// How long a pending attempt is retried under its key: Stripe keeps
/// idempotency keys for at least 24 hours; an hour is left as margin.
const RETRY_WINDOW_MS: i64 = 23 * 3_600_000;

/// Runs automatic top-ups.
pub struct Autocharger {
    provider: Option<Arc<dyn PaymentProvider>>,
    store: Arc<dyn Store>,
    accounts: Arc<Accounts>,
    clock: Arc<dyn Clock>,
    currency: String,
    max_failures: u32,
    in_flight: Mutex<HashSet<OrgId>>,
}

impl std::fmt::Debug for Autocharger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Autocharger")
            .field("currency", &self.currency)
            .finish()
    }
}

impl Autocharger {
    /// An autocharger; without a provider, top-ups are never attempted.
    pub fn new(
        provider: Option<Arc<dyn PaymentProvider>>,
        store: Arc<dyn Store>,
        accounts: Arc<Accounts>,
        clock: Arc<dyn Clock>,
        currency: String,
        max_failures: u32,
    ) -> Self {
        Autocharger {
            provider,
            store,
            accounts,
            clock,
            currency,
            max_failures,
            in_flight: Mutex::new(HashSet::new()),
        }
    }

    /// Called after each settlement: starts a top-up if the balance fell
    /// below the threshold and none is in flight. Returns at once.
    pub fn after_charge(self: &Arc<Self>, org: &OrgId, settings: &AccountRow, balance_after: i64) {
        let auto = &settings.autocharge;
        if self.provider.is_none()
            || !auto.enabled
            || settings.payment_action_required
            || balance_after >= auto.threshold
        {
            return;
        }
        if !self.in_flight.lock().insert(org.clone()) {
            return;
        }
        let this = Arc::clone(self);
        let org = org.clone();
        tokio::spawn(async move {
            if let Err(error) = this.run(&org).await {
                tracing::error!(%error, org_id = %org, "autocharge failed to run");
            }
            this.in_flight.lock().remove(&org);
        });
    }

    async fn notify(
        &self,
        org: &OrgId,
        kind: &str,
        reference: &str,
        detail: serde_json::Value,
    ) -> StoreResult<()> {
        self.store
            .add_notification(org, kind, reference, &detail.to_string(), self.clock.now())
            .await
            .map(|_| ())
    }

    async fn run(&self, org: &OrgId) -> StoreResult<()> {
        let Some(provider) = &self.provider else {
            return Ok(());
        };
        let now = self.clock.now();
        let account = self.store.get_account(org).await?;
        let auto = &account.autocharge;
        // Re-check against the stored truth.
        if !auto.enabled
            || account.payment_action_required
            || account.balance >= auto.threshold
            || auto.amount <= 0
        {
            return Ok(());
        }
        let (Some(customer), Some(payment_method)) =
            (auto.customer.clone(), auto.payment_method.clone())
        else {
            return Ok(());
        };
        // An attempt left pending (a crash, or an answer that never came) is
        // retried first, under its own key and with what it first sent: the
        // provider remembers the key, so it charges at most once, and it
        // refuses a key reused with other parameters. Its money may already
        // be taken, so the cap does not stop it (it counts toward the cap).
        // Stripe forgets a key after 24 hours, when a retry would be a new
        // payment: past RETRY_WINDOW_MS the attempt is closed for the
        // operator to reconcile, and a new one starts.
        let mut pending = self.store.autocharge_pending(org).await?;
        if let Some((stale, recorded_at)) = &pending
            && now.0 - recorded_at.0 > RETRY_WINDOW_MS
        {
            self.unresolved(org, stale, now).await?;
            pending = None;
        }
        let description = format!("tollgate automatic top-up for {org}");
        let request = match pending {
            Some((pending, _)) => ChargeRequest {
                customer: pending.customer.unwrap_or(customer),
                payment_method: pending.payment_method.unwrap_or(payment_method),
                amount_micros: pending.amount,
                currency: pending.currency.unwrap_or_else(|| self.currency.clone()),
                idempotency_key: pending.key,
                description,
            },
            None => {
                let month = monthly_cycle(UnixMillis(0), now);
                let (attempts, this_month) = self.store.autocharge_stats(org, month.start).await?;
                if auto
                    .monthly_cap
                    .is_some_and(|cap| this_month + auto.amount > cap)
                {
                    let reference = format!("autocharge_cap:{}", month.start.0);
                    self.notify(org, "autocharge_cap_reached", &reference, serde_json::json!({"monthly_cap_micros": auto.monthly_cap, "this_month_micros": this_month})).await?;
                    return Ok(());
                }
                // The key is the attempt's sequence number, recorded with
                // what it charges before the provider hears of it.
                let request = ChargeRequest {
                    customer,
                    payment_method,
                    amount_micros: auto.amount,
                    currency: self.currency.clone(),
                    idempotency_key: format!("autocharge:{org}:{}", attempts + 1),
                    description,
                };
                let attempt = AutochargeAttempt {
                    key: request.idempotency_key.clone(),
                    amount: request.amount_micros,
                    customer: Some(request.customer.clone()),
                    payment_method: Some(request.payment_method.clone()),
                    currency: Some(request.currency.clone()),
                };
                self.store.autocharge_begin(org, &attempt, now).await?;
                request
            }
        };
        let (key, amount) = (request.idempotency_key.clone(), request.amount_micros);
        let outcome = provider.charge(&request).await;
        let now = self.clock.now();
        match outcome {
            Ok(ChargeOutcome::Succeeded(payment_id)) => {
                let posted = self
                    .store
                    .post_entries(&[NewEntry {
                        org_id: org.clone(),
                        kind: EntryKind::Autocharge,
                        amount,
                        reference: key.clone(),
                        detail: serde_json::json!({ "payment_id": payment_id }).to_string(),
                        created_at: now,
                    }])
                    .await?;
                self.store
                    .autocharge_finish(&key, "succeeded", Some(&payment_id), None, now)
                    .await?;
                if let Some(Posted::Written { .. }) = posted.first() {
                    self.accounts.posted(org, amount, now);
                }
                self.record(org, AutochargeOutcome::Succeeded, now).await?;
                tracing::info!(org_id = %org, amount = amount, "autocharge succeeded");
            }
            Ok(ChargeOutcome::RequiresAction(payment_id)) => {
                self.store
                    .autocharge_finish(
                        &key,
                        "requires_action",
                        payment_id.as_deref(),
                        Some("authentication_required"),
                        now,
                    )
                    .await?;
                self.record(org, AutochargeOutcome::ActionRequired, now)
                    .await?;
                self.notify(
                    org,
                    "payment_action_required",
                    &key,
                    serde_json::json!({"payment_id": payment_id, "amount_micros": amount}),
                )
                .await?;
                tracing::warn!(org_id = %org, "autocharge needs the customer's action; writes restricted");
            }
            Ok(ChargeOutcome::Declined(reason)) => {
                self.store
                    .autocharge_finish(&key, "failed", None, Some(&reason), now)
                    .await?;
                self.failed(org, &key, &reason, now).await?;
            }
            Err(error) => {
                // The outcome is unknown: the payment may have gone through.
                // Keep the attempt pending so the next try reuses its key.
                self.failed(org, &key, &error.to_string(), now).await?;
            }
        }
        Ok(())
    }

    /// Counts a failure on the stored account and says so; at the limit,
    /// autocharge is off and a second notification says why.
    async fn failed(
        &self,
        org: &OrgId,
        key: &str,
        reason: &str,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let outcome = AutochargeOutcome::Failed {
            reason,
            disable_after: self.max_failures,
        };
        let account = self.record(org, outcome, now).await?;
        let failures = account.autocharge.failures;
        // Each try is its own event: the count starts again when autocharge
        // is turned on again, and a pending key is tried more than once.
        let event = uuid::Uuid::now_v7();
        let reference = format!("{key}:failure:{event}");
        self.notify(
            org,
            "autocharge_failed",
            &reference,
            serde_json::json!({"reason": reason, "consecutive_failures": failures}),
        )
        .await?;
        // This run started with autocharge on, so off now means this
        // failure (or, at the same moment, the operator) turned it off.
        if failures >= self.max_failures && !account.autocharge.enabled {
            self.notify(
                org,
                "autocharge_disabled",
                &format!("{key}:disabled:{event}"),
                serde_json::json!({"reason": account.autocharge.disabled_reason}),
            )
            .await?;
            tracing::warn!(org_id = %org, "autocharge disabled after repeated failures");
        }
        Ok(())
    }

    /// Closes a pending attempt too old to retry safely: it is marked
    /// failed and the operator is told to look the payment up in Stripe.
    async fn unresolved(
        &self,
        org: &OrgId,
        attempt: &AutochargeAttempt,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let reason = "outcome unknown and too old to retry under its key: reconcile in Stripe";
        self.store
            .autocharge_finish(&attempt.key, "failed", None, Some(reason), now)
            .await?;
        self.notify(
            org,
            "autocharge_unresolved",
            &format!("{}:unresolved", attempt.key),
            serde_json::json!({"idempotency_key": attempt.key, "amount_micros": attempt.amount, "reason": reason}),
        )
        .await?;
        tracing::warn!(org_id = %org, "a pending autocharge attempt is too old to retry; reconcile it in Stripe");
        Ok(())
    }

    /// Writes an outcome to the stored account (only the fields it changes,
    /// so settings changed meanwhile stay) and mirrors the account.
    async fn record(
        &self,
        org: &OrgId,
        outcome: AutochargeOutcome<'_>,
        now: UnixMillis,
    ) -> StoreResult<AccountRow> {
        let account = self.store.autocharge_outcome(org, outcome, now).await?;
        self.accounts.set_settings(account.clone(), now);
        Ok(account)
    }
}
