//! In-process counters for steps 6 and 7: token buckets and cycle quotas.
//!
//! Each organization has one [`OrgCounters`] behind a mutex, holding its
//! aggregate bucket, its cycle usage and the buckets and usage of each of its
//! keys. A request locks its organization once, asks `tollgate_core::throttle`
//! for a decision, and stores the result only if admitted. One lock per org
//! makes the key bucket, the org bucket and every quota change together, so
//! the limits are exact under any concurrency on one node and a refused
//! request consumes nothing. The critical section is a few hundred
//! nanoseconds and never awaits.
//!
//! Cycle usage is written behind to the store (`quota_usage`) by a flush task
//! and read back at start, so a restart keeps the cycle's counts; at most one
//! flush interval of counts can be lost in a crash. The organization's counts
//! are always written; a key's only when the key has its own quota, so the
//! flush costs in proportion to organizations, not keys.

use crate::directory::{KeyEntry, OrgEntry};
use crate::plans::Plan;
use dashmap::DashMap;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tollgate_core::cycle::{Period, monthly_cycle};
use tollgate_core::ids::{KeyId, OrgId};
use tollgate_core::limit::{Bucket, BucketDecision, BucketSpec};
use tollgate_core::meter::{METERS, Meter, MeterCounts};
use tollgate_core::throttle::{self, QuotaLine, Scope, Verdict};
use tollgate_core::time::UnixMillis;
use tollgate_store::UsageRow;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Default, Clone, Copy)]
struct KeyCounters {
    bucket: Bucket,
    used: MeterCounts,
    /// Counts changed since the last flush.
    dirty: bool,
    /// The key has its own quota, so its counts must survive a restart.
    persist: bool,
}

/// One organization's counters.
#[derive(Debug)]
pub struct OrgCounters {
    anchor: UnixMillis,
    cycle: Option<Period>,
    bucket: Bucket,
    used: MeterCounts,
    // Keys here passed authentication, so their ids are not chosen by an
    // attacker: a fast hash is safe.
    keys: FastMap<KeyId, KeyCounters>,
    dirty: bool,
}

#[derive(Debug, Default)]
struct Restored {
    org: MeterCounts,
    keys: HashMap<KeyId, MeterCounts>,
}

/// Everything a decision needs.
#[derive(Debug)]
pub struct Admission<'a> {
    /// The organization's id.
    pub org_id: &'a OrgId,
    /// The organization.
    pub org: &'a OrgEntry,
    /// The key.
    pub key: &'a KeyEntry,
    /// The organization's plan.
    pub plan: &'a Plan,
    /// Bucket cost of the request.
    pub cost: u64,
    /// Rate class asked for by a credential, if any.
    pub class: Option<&'a str>,
    /// Wall-clock now, for cycles.
    pub now: UnixMillis,
    /// Now in nanoseconds, for buckets.
    pub now_nanos: u64,
}

/// A quota as reported in headers and refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaReport {
    /// What it counts.
    pub meter: Meter,
    /// Key or org.
    pub scope: Scope,
    /// Limit in this cycle.
    pub limit: u64,
    /// Left after this decision.
    pub remaining: u64,
    /// The cycle.
    pub cycle: Period,
}

/// A bucket as reported in headers and refusals.
#[derive(Debug, Clone)]
pub struct BucketReport {
    /// Its shape.
    pub spec: BucketSpec,
    /// The rate class name (key buckets only).
    pub class: Option<Arc<str>>,
    /// The decision, with remaining units and time to full.
    pub decision: BucketDecision,
}

/// The outcome of one admission.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Admit, rate-limited, or quota exhausted.
    pub verdict: Verdict,
    /// The key bucket.
    pub key: Option<BucketReport>,
    /// The org bucket.
    pub org: Option<BucketReport>,
    /// The quota nearest exhaustion, or the exhausted one when refused.
    pub quota: Option<QuotaReport>,
}

/// All organizations' counters.
#[derive(Debug, Default)]
pub struct Limiter {
    orgs: DashMap<OrgId, Arc<Mutex<OrgCounters>>, foldhash::fast::RandomState>,
    restored: Mutex<HashMap<(OrgId, i64), Restored>>,
    retired: Mutex<Vec<UsageRow>>,
}

impl OrgCounters {
    fn new(anchor: UnixMillis) -> Self {
        OrgCounters {
            anchor,
            cycle: None,
            bucket: Bucket::default(),
            used: [0; METERS],
            keys: FastMap::default(),
            dirty: false,
        }
    }

    /// The org's counters and those of its keys that changed since the last
    /// flush, clearing the keys' dirty flags.
    fn rows(&mut self, org_id: &OrgId) -> Vec<UsageRow> {
        let Some(cycle) = self.cycle else {
            return Vec::new();
        };
        let row = |key_id: Option<&KeyId>, used: &MeterCounts, meter: Meter| UsageRow {
            org_id: org_id.clone(),
            key_id: key_id.cloned(),
            cycle_start: cycle.start,
            meter: meter.as_str().to_owned(),
            used: used[meter.index()],
        };
        let mut rows = Vec::new();
        for meter in Meter::ALL {
            if self.used[meter.index()] > 0 {
                rows.push(row(None, &self.used, meter));
            }
        }
        for (key, counters) in &mut self.keys {
            if !counters.dirty || !counters.persist {
                continue;
            }
            counters.dirty = false;
            for meter in Meter::ALL {
                if counters.used[meter.index()] > 0 {
                    rows.push(row(Some(key), &counters.used, meter));
                }
            }
        }
        rows
    }
}

impl Limiter {
    /// Counters persisted by an earlier run, for cycles still current.
    pub fn restore(&self, rows: Vec<UsageRow>) {
        let mut restored = self.restored.lock();
        for row in rows {
            let Some(meter) = Meter::parse(&row.meter) else {
                continue;
            };
            let entry = restored.entry((row.org_id, row.cycle_start.0)).or_default();
            match row.key_id {
                None => entry.org[meter.index()] = row.used,
                Some(key) => entry.keys.entry(key).or_default()[meter.index()] = row.used,
            }
        }
    }

    /// Runs `f` on the org's counters, locked. The map's shard guard is held
    /// for the (short, non-async) critical section, which saves an `Arc`
    /// round trip on the hot path.
    fn with_counters<T>(
        &self,
        org_id: &OrgId,
        anchor: UnixMillis,
        f: impl FnOnce(&mut OrgCounters) -> T,
    ) -> T {
        if let Some(existing) = self.orgs.get(org_id) {
            return f(&mut existing.value().lock());
        }
        let counters = self.counters(org_id, anchor);
        f(&mut counters.lock())
    }

    fn counters(&self, org_id: &OrgId, anchor: UnixMillis) -> Arc<Mutex<OrgCounters>> {
        if let Some(existing) = self.orgs.get(org_id) {
            return Arc::clone(existing.value());
        }
        let entry = self
            .orgs
            .entry(org_id.clone())
            .or_insert_with(|| Arc::new(Mutex::new(OrgCounters::new(anchor))));
        Arc::clone(entry.value())
    }

    /// Moves `state` into the cycle containing `now`, retiring the old
    /// cycle's counts for the flusher and restoring persisted ones.
    fn roll(
        &self,
        org_id: &OrgId,
        state: &mut OrgCounters,
        anchor: UnixMillis,
        now: UnixMillis,
    ) -> Period {
        if let Some(cycle) = state.cycle
            && state.anchor == anchor
            && cycle.start <= now
            && now < cycle.end
        {
            return cycle;
        }
        let cycle = monthly_cycle(anchor, now);
        if state.cycle.is_some_and(|old| old.start == cycle.start) {
            state.anchor = anchor;
            state.cycle = Some(cycle);
            return cycle;
        }
        if state.dirty {
            self.retired.lock().extend(state.rows(org_id));
        }
        state.anchor = anchor;
        state.cycle = Some(cycle);
        state.used = [0; METERS];
        for counters in state.keys.values_mut() {
            counters.used = [0; METERS];
        }
        state.dirty = false;
        if let Some(restored) = self
            .restored
            .lock()
            .remove(&(org_id.clone(), cycle.start.0))
        {
            state.used = restored.org;
            for (key, used) in restored.keys {
                state.keys.entry(key).or_default().used = used;
            }
        }
        cycle
    }

    /// Decides one request and, if admitted, consumes its tokens and counts it.
    pub fn admit(&self, a: &Admission<'_>) -> Outcome {
        self.with_counters(a.org_id, a.org.cycle_anchor, |state| {
            self.admit_locked(a, state)
        })
    }

    fn admit_locked(&self, a: &Admission<'_>, state: &mut OrgCounters) -> Outcome {
        let cycle = self.roll(a.org_id, state, a.org.cycle_anchor, a.now);
        let key_state = state.keys.get(&a.key.id).copied().unwrap_or_default();

        // At most two quotas (org and key) per meter, on the stack.
        let mut buffer = [QuotaLine {
            metric: Meter::Request,
            scope: Scope::Org,
            used: 0,
            limit: 0,
            charge: 0,
        }; 2 * METERS];
        let mut count = 0;
        for meter in Meter::ALL {
            let charge = u64::from(meter == Meter::Request);
            let i = meter.index();
            if let Some(limit) = a.org.quota(a.plan.quotas[i], meter, a.now) {
                buffer[count] = QuotaLine {
                    metric: meter,
                    scope: Scope::Org,
                    used: state.used[i],
                    limit,
                    charge,
                };
                count += 1;
            }
            if let Some(limit) = a.key.quotas[i] {
                buffer[count] = QuotaLine {
                    metric: meter,
                    scope: Scope::Key,
                    used: key_state.used[i],
                    limit,
                    charge,
                };
                count += 1;
            }
        }
        let lines = &buffer[..count];
        let class = a.plan.rate_class(a.class);
        let decision = throttle::decide(&throttle::Request {
            cost: a.cost,
            now_nanos: a.now_nanos,
            key_bucket: class.map(|c| (&c.spec, key_state.bucket)),
            org_bucket: a.plan.org_bucket.as_ref().map(|spec| (spec, state.bucket)),
            quotas: lines,
            overage_allowed: a.org.pay_as_you_go,
        });

        let admitted = matches!(decision.verdict, Verdict::Admit { .. });
        if let Verdict::Admit {
            key_next, org_next, ..
        } = decision.verdict
        {
            if let Some(next) = org_next {
                state.bucket = next;
            }
            state.used[Meter::Request.index()] += 1;
            let mut updated = key_state;
            if let Some(next) = key_next {
                updated.bucket = next;
            }
            updated.used[Meter::Request.index()] += 1;
            updated.dirty = true;
            updated.persist = a.key.quotas.iter().any(Option::is_some);
            match state.keys.get_mut(&a.key.id) {
                Some(slot) => *slot = updated,
                None => {
                    state.keys.insert(a.key.id.clone(), updated);
                }
            }
            state.dirty = true;
        }

        let reported = match decision.verdict {
            Verdict::QuotaExhausted { quota } => Some(quota),
            _ => decision.nearest_quota,
        };
        let quota = reported.and_then(|i| lines.get(i)).map(|line| QuotaReport {
            meter: line.metric,
            scope: line.scope,
            limit: line.limit,
            remaining: line
                .remaining()
                .saturating_sub(if admitted { line.charge } else { 0 }),
            cycle,
        });
        Outcome {
            verdict: decision.verdict,
            key: class.zip(decision.key_bucket).map(|(c, d)| BucketReport {
                spec: c.spec,
                class: Some(Arc::clone(&c.name)),
                decision: d,
            }),
            org: a
                .plan
                .org_bucket
                .zip(decision.org_bucket)
                .map(|(spec, d)| BucketReport {
                    spec,
                    class: None,
                    decision: d,
                }),
            quota,
        }
    }

    /// Adds what a response used to the org's and the key's cycle counts.
    pub fn record(
        &self,
        org_id: &OrgId,
        key_id: &KeyId,
        anchor: UnixMillis,
        counts: &MeterCounts,
        now: UnixMillis,
    ) {
        if counts.iter().all(|c| *c == 0) {
            return;
        }
        let counters = self.counters(org_id, anchor);
        let mut state = counters.lock();
        self.roll(org_id, &mut state, anchor, now);
        for (total, add) in state.used.iter_mut().zip(counts) {
            *total = total.saturating_add(*add);
        }
        let key = state.keys.entry(key_id.clone()).or_default();
        for (total, add) in key.used.iter_mut().zip(counts) {
            *total = total.saturating_add(*add);
        }
        key.dirty = true;
        state.dirty = true;
    }

    /// Gives back the request count of an admitted request that the upstream
    /// failed (5xx or never reached): it is not charged, so it does not count.
    /// Tokens are not given back: the rate limit protects the upstream too.
    pub fn refund_request(&self, org_id: &OrgId, key_id: &KeyId) {
        let Some(counters) = self.orgs.get(org_id).map(|c| Arc::clone(c.value())) else {
            return;
        };
        let mut state = counters.lock();
        let i = Meter::Request.index();
        state.used[i] = state.used[i].saturating_sub(1);
        if let Some(key) = state.keys.get_mut(key_id) {
            key.used[i] = key.used[i].saturating_sub(1);
            key.dirty = true;
        }
        state.dirty = true;
    }

    /// The current cycle and its usage, for the org and each key.
    pub fn usage(
        &self,
        org_id: &OrgId,
        anchor: UnixMillis,
        now: UnixMillis,
    ) -> (Period, MeterCounts, Vec<(KeyId, MeterCounts)>) {
        let counters = self.counters(org_id, anchor);
        let mut state = counters.lock();
        let cycle = self.roll(org_id, &mut state, anchor, now);
        let mut keys: Vec<(KeyId, MeterCounts)> = state
            .keys
            .iter()
            .map(|(k, c)| (k.clone(), c.used))
            .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        (cycle, state.used, keys)
    }

    /// Counts changed since the last call, as rows to save. Callers that
    /// fail to save hand them back with [`Limiter::unsaved`].
    pub fn take_dirty(&self) -> Vec<UsageRow> {
        let mut rows = std::mem::take(&mut *self.retired.lock());
        for entry in &self.orgs {
            let mut state = entry.value().lock();
            if state.dirty {
                rows.extend(state.rows(entry.key()));
                state.dirty = false;
            }
        }
        rows
    }

    /// Rows a flush could not save; they are retried on the next flush.
    pub fn unsaved(&self, rows: Vec<UsageRow>) {
        self.retired.lock().extend(rows);
    }
}
