//! Money on the request path: each organization's standing (balance, credit
//! limit, holds), today's and this cycle's spend, budget alerts, and the
//! ledger writer that makes charges durable with group commit.
//!
//! The ledger in the store is the truth; this module mirrors it. A request
//! holds its maximum cost under the organization's lock (so concurrent
//! requests can never together spend more than the account covers), and
//! settles through [`LedgerWriter`], which batches the entries of concurrent
//! requests into one transaction and one fsync. The response is released
//! only once its charge is durable.

use crate::config::Config;
use dashmap::DashMap;
use parking_lot::Mutex;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tollgate_core::cycle::{Period, monthly_cycle, utc_day};
use tollgate_core::ids::OrgId;
use tollgate_core::ledger::{Hold, Standing};
use tollgate_core::meter::{METERS, Meter, MeterCounts};
use tollgate_core::money::Micros;
use tollgate_core::pricing::Schedule;
use tollgate_core::time::UnixMillis;
use tollgate_store::{AccountRow, EntryKind, NewEntry, Posted, Store, StoreError, StoreResult};

/// Entries one transaction may carry.
const BATCH_MAX: usize = 512;

/// One organization's money state.
#[derive(Debug, Clone)]
pub struct AccountState {
    /// Balance, credit limit, holds.
    pub standing: Standing,
    /// Settings as stored.
    pub settings: AccountRow,
    day: Period,
    /// Charged today (UTC), positive micro-units.
    pub day_spent: i64,
    cycle: Option<Period>,
    /// Charged in this billing cycle, positive micro-units.
    pub cycle_spent: i64,
    /// Units priced in this cycle, per meter: the position on the tiers.
    priced: MeterCounts,
}

impl AccountState {
    fn new(settings: AccountRow, now: UnixMillis) -> Self {
        AccountState {
            standing: Standing {
                balance: Micros(settings.balance),
                credit_limit: Micros(settings.credit_limit),
                held: Micros::ZERO,
            },
            settings,
            day: utc_day(now),
            day_spent: 0,
            cycle: None,
            cycle_spent: 0,
            priced: [0; METERS],
        }
    }

    fn roll(&mut self, anchor: UnixMillis, now: UnixMillis) {
        if now >= self.day.end || now < self.day.start {
            self.day = utc_day(now);
            self.day_spent = 0;
        }
        let cycle = monthly_cycle(anchor, now);
        if self.cycle != Some(cycle) {
            if self.cycle.is_some() {
                self.cycle_spent = 0;
                self.priced = [0; METERS];
            }
            self.cycle = Some(cycle);
        }
    }

    /// The billing cycle last rolled to.
    pub fn cycle(&self) -> Option<Period> {
        self.cycle
    }

    /// Budget spent, in whole percent (rounded down); `None` without a budget.
    pub fn budget_percent(&self) -> Option<u64> {
        let budget = self.settings.budget?;
        if budget == 0 {
            return Some(100);
        }
        let spent = u128::try_from(self.cycle_spent.max(0)).unwrap_or(0);
        Some(u64::try_from(spent * 100 / u128::try_from(budget).unwrap_or(1)).unwrap_or(u64::MAX))
    }
}

/// Why spend management refused a request (step 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendRefusal {
    /// Today's spend reached the daily threshold.
    DailyLimit {
        /// The threshold.
        limit: i64,
        /// When the day ends.
        resets_at: UnixMillis,
    },
    /// A payment needs the customer's action: writes are refused.
    PaymentActionRequired,
    /// The cycle's budget is used up: writes are refused.
    BudgetReadOnly {
        /// The budget.
        budget: i64,
        /// When the cycle ends.
        resets_at: UnixMillis,
    },
}

/// A charge settled for one request.
#[derive(Debug, Clone)]
pub struct Settled {
    /// What was charged.
    pub charge: Micros,
    /// Budget thresholds (percent) crossed by this charge.
    pub crossed: Vec<u8>,
    /// The cycle it was charged in.
    pub cycle: Period,
    /// The balance after the charge, as this node knows it.
    pub balance: i64,
}

/// Every organization's money state.
#[derive(Debug, Default)]
pub struct Accounts {
    orgs: DashMap<OrgId, Arc<Mutex<AccountState>>>,
}

impl Accounts {
    /// Loads every account, with today's and this cycle's charges.
    pub async fn load(
        store: &dyn Store,
        anchors: impl Fn(&OrgId) -> Option<UnixMillis>,
        now: UnixMillis,
    ) -> StoreResult<Self> {
        let accounts = Accounts::default();
        let today = utc_day(now);
        let day_sums: std::collections::HashMap<OrgId, i64> = store
            .sums_since(EntryKind::Charge, today.start)
            .await?
            .into_iter()
            .collect();
        for row in store.all_accounts().await? {
            let org_id = row.org_id.clone();
            let mut state = AccountState::new(row, now);
            if let Some(anchor) = anchors(&org_id) {
                state.roll(anchor, now);
                if let Some(cycle) = state.cycle {
                    let (spent, units) = store.charged_since(&org_id, cycle.start).await?;
                    state.cycle_spent = spent;
                    state.priced = units;
                }
            }
            state.day_spent = -day_sums.get(&org_id).copied().unwrap_or(0);
            accounts.orgs.insert(org_id, Arc::new(Mutex::new(state)));
        }
        Ok(accounts)
    }

    fn state(&self, org: &OrgId, now: UnixMillis) -> Arc<Mutex<AccountState>> {
        if let Some(state) = self.orgs.get(org) {
            return Arc::clone(state.value());
        }
        let default = AccountRow::new(org.clone());
        Arc::clone(
            self.orgs
                .entry(org.clone())
                .or_insert_with(|| Arc::new(Mutex::new(AccountState::new(default, now))))
                .value(),
        )
    }

    /// A copy of an organization's state, rolled to `now`.
    pub fn snapshot(&self, org: &OrgId, anchor: UnixMillis, now: UnixMillis) -> AccountState {
        let state = self.state(org, now);
        let mut state = state.lock();
        state.roll(anchor, now);
        state.clone()
    }

    /// Step 5: the daily threshold (every request) and the budget (writes).
    pub fn check_spend(
        &self,
        org: &OrgId,
        anchor: UnixMillis,
        write: bool,
        now: UnixMillis,
    ) -> Result<(), SpendRefusal> {
        let Some(state) = self.orgs.get(org).map(|s| Arc::clone(s.value())) else {
            return Ok(());
        };
        let mut state = state.lock();
        state.roll(anchor, now);
        if let Some(limit) = state.settings.daily_spend_limit
            && state.day_spent >= limit
        {
            return Err(SpendRefusal::DailyLimit {
                limit,
                resets_at: state.day.end,
            });
        }
        if write && state.settings.payment_action_required {
            return Err(SpendRefusal::PaymentActionRequired);
        }
        if write
            && let (Some(budget), Some(cycle)) = (state.settings.budget, state.cycle)
            && state.cycle_spent >= budget
        {
            return Err(SpendRefusal::BudgetReadOnly {
                budget,
                resets_at: cycle.end,
            });
        }
        Ok(())
    }

    /// Step 9: holds `amount` if the account covers it.
    pub fn hold(
        &self,
        org: &OrgId,
        amount: Micros,
        expires_at: UnixMillis,
        now: UnixMillis,
    ) -> Option<Hold> {
        let state = self.state(org, now);
        let mut state = state.lock();
        state
            .standing
            .hold(amount)
            .then(|| Hold::new(amount, expires_at))
    }

    /// Releases a hold whose request failed; nothing is charged.
    pub fn void(&self, org: &OrgId, mut hold: Hold, now: UnixMillis) {
        if let Ok(resolution) = hold.void() {
            let state = self.state(org, now);
            state.lock().standing.resolve(resolution);
        }
    }

    /// Prices `units` at the cycle's current position on the tiers and moves
    /// the position on. Returns the charge and the units per meter.
    pub fn price(
        &self,
        org: &OrgId,
        anchor: UnixMillis,
        prices: &[Option<Schedule>; METERS],
        units: &MeterCounts,
        now: UnixMillis,
    ) -> Micros {
        let state = self.state(org, now);
        let mut state = state.lock();
        state.roll(anchor, now);
        let mut total = 0i64;
        for meter in Meter::ALL {
            let i = meter.index();
            if let Some(schedule) = &prices[i] {
                total = total.saturating_add(schedule.charge(state.priced[i], units[i]).0);
            }
            state.priced[i] = state.priced[i].saturating_add(units[i]);
        }
        Micros(total)
    }

    /// Moves the tier position back after a charge that could not be
    /// written, so later requests are priced where they should be.
    pub fn unprice(&self, org: &OrgId, units: &MeterCounts, now: UnixMillis) {
        let state = self.state(org, now);
        let mut state = state.lock();
        for (position, units) in state.priced.iter_mut().zip(units) {
            *position = position.saturating_sub(*units);
        }
    }

    /// Step 11, after the charge is durable: resolves the hold, adds the
    /// spend, and reports the budget thresholds crossed.
    pub fn settle(
        &self,
        org: &OrgId,
        anchor: UnixMillis,
        mut hold: Hold,
        charge: Micros,
        now: UnixMillis,
    ) -> Settled {
        let state = self.state(org, now);
        let mut state = state.lock();
        state.roll(anchor, now);
        let before = state.budget_percent();
        if let Ok(resolution) = hold.post(charge) {
            state.standing.resolve(resolution);
        }
        state.day_spent = state.day_spent.saturating_add(charge.0);
        state.cycle_spent = state.cycle_spent.saturating_add(charge.0);
        let after = state.budget_percent();
        let mut crossed = Vec::new();
        if let (Some(before), Some(after)) = (before, after)
            && after > before
        {
            let thresholds = state
                .settings
                .budget_thresholds
                .iter()
                .copied()
                .chain([100]);
            crossed.extend(thresholds.filter(|t| before < u64::from(*t) && after >= u64::from(*t)));
            crossed.dedup();
        }
        Settled {
            charge,
            crossed,
            cycle: state.cycle.unwrap_or_else(|| monthly_cycle(anchor, now)),
            balance: state.standing.balance.0,
        }
    }

    /// The account's settings when an automatic top-up is due: enabled, not
    /// waiting for the customer, and the balance below the threshold.
    pub fn autocharge_due(&self, org: &OrgId, balance_after: i64) -> Option<AccountRow> {
        let state = self.orgs.get(org).map(|s| Arc::clone(s.value()))?;
        let state = state.lock();
        let auto = &state.settings.autocharge;
        (auto.enabled && !state.settings.payment_action_required && balance_after < auto.threshold)
            .then(|| state.settings.clone())
    }

    /// An entry written outside a request (top-up, adjustment, automatic
    /// top-up): adds its amount to the mirrored balance.
    ///
    /// The mirror moves by each written entry's amount, never to a balance
    /// read back from the store: entries are mirrored in whatever order
    /// their writers get to it, and a balance read earlier than another
    /// entry's mirroring would undo that entry.
    pub fn posted(&self, org: &OrgId, amount: i64, now: UnixMillis) {
        let state = self.state(org, now);
        let mut state = state.lock();
        state.standing.balance = Micros(state.standing.balance.0.saturating_add(amount));
    }

    /// New settings (admin API, automatic top-up outcomes). The balance in
    /// `row` is ignored: only written entries move it (see [`Self::posted`]).
    pub fn set_settings(&self, row: AccountRow, now: UnixMillis) {
        let state = self.state(&row.org_id, now);
        let mut state = state.lock();
        state.standing.credit_limit = Micros(row.credit_limit);
        state.settings = row;
    }
}

struct Job {
    entry: NewEntry,
    done: oneshot::Sender<StoreResult<Posted>>,
}

/// Posts ledger entries with group commit: entries that arrive while a
/// transaction is being written wait and go together in the next one, so
/// concurrent requests share an fsync.
#[derive(Clone, Debug)]
pub struct LedgerWriter {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("reference", &self.entry.reference)
            .finish()
    }
}

impl LedgerWriter {
    /// Starts the writer task on `store`.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (jobs, mut receiver) = mpsc::channel::<Job>(4 * BATCH_MAX);
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH_MAX {
                    match receiver.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let entries: Vec<NewEntry> = batch.iter().map(|j| j.entry.clone()).collect();
                match store.post_entries(&entries).await {
                    Ok(results) => {
                        for (job, result) in batch.into_iter().zip(results) {
                            let _ = job.done.send(Ok(result));
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, entries = entries.len(), "ledger batch failed");
                        let text = error.to_string();
                        for job in batch {
                            let _ = job.done.send(Err(StoreError::Corrupt(format!(
                                "ledger write failed: {text}"
                            ))));
                        }
                    }
                }
            }
        });
        LedgerWriter { jobs }
    }

    /// Queues one entry without waiting for it to be written (relaxed
    /// durability). Waits only while the bounded queue is full, so a writer
    /// that falls behind slows requests down instead of growing memory.
    /// A failed write is logged by the writer.
    pub async fn submit(&self, entry: NewEntry) -> StoreResult<()> {
        let (done, result) = oneshot::channel();
        self.jobs
            .send(Job { entry, done })
            .await
            .map_err(|_| StoreError::Corrupt("ledger writer stopped".into()))?;
        drop(result);
        Ok(())
    }

    /// Posts one entry; resolves once it is durable.
    pub async fn post(&self, entry: NewEntry) -> StoreResult<Posted> {
        let (done, result) = oneshot::channel();
        self.jobs
            .send(Job { entry, done })
            .await
            .map_err(|_| StoreError::Corrupt("ledger writer stopped".into()))?;
        result
            .await
            .map_err(|_| StoreError::Corrupt("ledger writer stopped".into()))?
    }
}

/// The hold size per route: the most each meter may use, priced at the
/// highest tier (request is always 1, bytes_out defaults to 1 MiB).
pub fn route_max_units(config: &Config) -> Vec<MeterCounts> {
    config
        .routes
        .iter()
        .map(|route| {
            let mut units = [0u64; METERS];
            units[Meter::Request.index()] = 1;
            units[Meter::BytesOut.index()] = 1024 * 1024;
            for (name, max) in &route.max_units {
                if let Some(meter) = Meter::parse(name)
                    && meter != Meter::Request
                {
                    units[meter.index()] = *max;
                }
            }
            units
        })
        .collect()
}

/// The most a request with these maximum units can cost.
pub fn max_cost(prices: &[Option<Schedule>; METERS], max_units: &MeterCounts) -> Micros {
    let total = Meter::ALL
        .into_iter()
        .filter_map(|m| {
            prices[m.index()]
                .as_ref()
                .map(|s| s.max_charge(max_units[m.index()]).0)
        })
        .fold(0i64, i64::saturating_add);
    Micros(total)
}
