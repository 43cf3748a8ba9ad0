//! Money administration: balance and standing, credit limit, daily spend
//! threshold, budget and alert thresholds, top-ups and adjustments, the
//! ledger and notifications. Amounts are integer micro-units (`*_micros`).

use super::orgs::{found_org, parse_org_id};
use super::{AdminError, AdminResult, AdminState};
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tollgate_core::money::Micros;
use tollgate_store::{EntryKind, EntryRow, NewEntry, Posted};

#[derive(Debug, Serialize)]
pub(crate) struct BalanceView {
    org_id: String,
    pay_as_you_go: bool,
    balance_micros: i64,
    credit_limit_micros: i64,
    held_micros: i64,
    /// balance + credit limit − held.
    available_micros: i64,
    /// Available money is positive.
    good_standing: bool,
    balance: String,
    daily_spend_micros: i64,
    daily_spend_limit_micros: Option<i64>,
    budget_micros: Option<i64>,
    budget_spent_micros: i64,
    budget_percent: Option<u64>,
    budget_thresholds: Vec<u8>,
    /// The budget is used up: write routes are refused.
    read_only: bool,
    cycle_start: Option<String>,
    cycle_end: Option<String>,
    autocharge: Value,
    /// An automatic top-up needs the customer's action: writes are refused.
    payment_action_required: bool,
}

pub(crate) async fn balance(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> AdminResult<Json<BalanceView>> {
    let org_id = parse_org_id(&id)?;
    let row = found_org(state.store.get_org(&org_id).await?, &org_id)?;
    let anchor = row.cycle_anchor.unwrap_or(row.created_at);
    let account = state.accounts.snapshot(&org_id, anchor, state.clock.now());
    let available = i64::try_from(account.standing.available()).unwrap_or(i64::MIN);
    let cycle = account.cycle();
    Ok(Json(BalanceView {
        org_id: org_id.to_string(),
        pay_as_you_go: row.pay_as_you_go,
        balance_micros: account.standing.balance.0,
        credit_limit_micros: account.standing.credit_limit.0,
        held_micros: account.standing.held.0,
        available_micros: available,
        good_standing: available > 0,
        balance: account.standing.balance.to_string(),
        daily_spend_micros: account.day_spent,
        daily_spend_limit_micros: account.settings.daily_spend_limit,
        budget_micros: account.settings.budget,
        budget_spent_micros: account.cycle_spent,
        budget_percent: account.budget_percent(),
        budget_thresholds: account.settings.budget_thresholds.clone(),
        read_only: account
            .settings
            .budget
            .is_some_and(|b| account.cycle_spent >= b),
        cycle_start: cycle.map(|c| c.start.to_rfc3339()),
        cycle_end: cycle.map(|c| c.end.to_rfc3339()),
        autocharge: autocharge_view(&account.settings.autocharge),
        payment_action_required: account.settings.payment_action_required,
    }))
}

fn autocharge_view(a: &tollgate_store::AutochargeSettings) -> Value {
    serde_json::json!({
        "enabled": a.enabled,
        "threshold_micros": a.threshold,
        "amount_micros": a.amount,
        "monthly_cap_micros": a.monthly_cap,
        "customer": a.customer,
        "payment_method": a.payment_method,
        "consecutive_failures": a.failures,
        "disabled_reason": a.disabled_reason,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AutochargeBody {
    enabled: bool,
    #[serde(default)]
    threshold_micros: Option<i64>,
    #[serde(default)]
    amount_micros: Option<i64>,
    /// Absent keeps, null clears.
    #[serde(default, deserialize_with = "present")]
    monthly_cap_micros: Option<Value>,
    #[serde(default)]
    customer: Option<String>,
    #[serde(default)]
    payment_method: Option<String>,
    /// Set false once the customer completed the payment's action.
    #[serde(default)]
    payment_action_required: Option<bool>,
}

pub(crate) async fn set_autocharge(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Result<Json<AutochargeBody>, JsonRejection>,
) -> AdminResult<Json<BalanceView>> {
    let org_id = parse_org_id(&id)?;
    let Json(body) = body?;
    found_org(state.store.get_org(&org_id).await?, &org_id)?;
    let mut account = state.store.get_account(&org_id).await?;
    let auto = &mut account.autocharge;
    if let Some(threshold) = body.threshold_micros {
        auto.threshold = threshold;
    }
    if let Some(amount) = body.amount_micros {
        if amount <= 0 || amount % crate::payments::MICROS_PER_MINOR_UNIT != 0 {
            return Err(AdminError::invalid(
                "amount_micros must be a positive whole number of cents (a multiple of 10000)",
            ));
        }
        auto.amount = amount;
    }
    auto.monthly_cap = nullable_amount(
        "monthly_cap_micros",
        body.monthly_cap_micros,
        auto.monthly_cap,
    )?;
    if let Some(customer) = body.customer {
        auto.customer = Some(customer);
    }
    if let Some(method) = body.payment_method {
        auto.payment_method = Some(method);
        // A new payment method resolves a payment that needed action.
        account.payment_action_required = false;
    }
    if let Some(required) = body.payment_action_required {
        account.payment_action_required = required;
    }
    let auto = &mut account.autocharge;
    if body.enabled {
        if auto.amount <= 0 || auto.customer.is_none() || auto.payment_method.is_none() {
            return Err(AdminError::invalid(
                "enabling autocharge needs amount_micros, customer and payment_method",
            ));
        }
        // Turning it on again starts the failure count afresh.
        auto.failures = 0;
        auto.disabled_reason = None;
    }
    auto.enabled = body.enabled;
    let now = state.clock.now();
    let saved = state.store.set_account_settings(&account, now).await?;
    state.accounts.set_settings(saved, now);
    tracing::info!(%org_id, enabled = body.enabled, "autocharge settings changed");
    balance(State(state), Path(id)).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountSettings {
    #[serde(default)]
    credit_limit_micros: Option<i64>,
    /// Absent keeps, null clears.
    #[serde(default, deserialize_with = "present")]
    daily_spend_limit_micros: Option<Value>,
    /// Absent keeps, null clears.
    #[serde(default, deserialize_with = "present")]
    budget_micros: Option<Value>,
    #[serde(default)]
    budget_thresholds: Option<Vec<u8>>,
}

/// Deserializes a field that was sent, `null` included, as `Some`: serde
/// would read a JSON `null` into an `Option` as `None`, the same as absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn nullable_amount(
    name: &str,
    value: Option<Value>,
    current: Option<i64>,
) -> AdminResult<Option<i64>> {
    match value {
        None => Ok(current),
        Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => Ok(Some(n)),
            _ => Err(AdminError::invalid(format!(
                "{name} must be a non-negative integer of micro-units or null"
            ))),
        },
    }
}

pub(crate) async fn set_account(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Result<Json<AccountSettings>, JsonRejection>,
) -> AdminResult<Json<BalanceView>> {
    let org_id = parse_org_id(&id)?;
    let Json(body) = body?;
    found_org(state.store.get_org(&org_id).await?, &org_id)?;
    let mut account = state.store.get_account(&org_id).await?;
    if let Some(limit) = body.credit_limit_micros {
        if limit < 0 {
            return Err(AdminError::invalid(
                "credit_limit_micros must not be negative",
            ));
        }
        account.credit_limit = limit;
    }
    account.daily_spend_limit = nullable_amount(
        "daily_spend_limit_micros",
        body.daily_spend_limit_micros,
        account.daily_spend_limit,
    )?;
    account.budget = nullable_amount("budget_micros", body.budget_micros, account.budget)?;
    if let Some(mut thresholds) = body.budget_thresholds {
        thresholds.sort_unstable();
        thresholds.dedup();
        if thresholds.iter().any(|t| *t == 0 || *t > 100) {
            return Err(AdminError::invalid(
                "budget_thresholds are percentages between 1 and 100",
            ));
        }
        account.budget_thresholds = thresholds;
    }
    let now = state.clock.now();
    let saved = state.store.set_account_settings(&account, now).await?;
    state.accounts.set_settings(saved, now);
    tracing::info!(%org_id, "account settings changed");
    balance(State(state), Path(id)).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewMoney {
    amount_micros: i64,
    /// Required for adjustments.
    #[serde(default)]
    reason: Option<String>,
    /// Makes the call idempotent: a second call with it writes nothing.
    #[serde(default)]
    reference: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct EntryView {
    id: i64,
    kind: &'static str,
    amount_micros: i64,
    amount: String,
    reference: String,
    detail: Value,
    balance_after_micros: i64,
    created_at: String,
}

impl From<&EntryRow> for EntryView {
    fn from(row: &EntryRow) -> Self {
        EntryView {
            id: row.id,
            kind: row.entry.kind.as_str(),
            amount_micros: row.entry.amount,
            amount: Micros(row.entry.amount).to_string(),
            reference: row.entry.reference.clone(),
            detail: serde_json::from_str(&row.entry.detail).unwrap_or(Value::Null),
            balance_after_micros: row.balance_after,
            created_at: row.entry.created_at.to_rfc3339(),
        }
    }
}

async fn post_money(
    state: AdminState,
    id: String,
    body: NewMoney,
    kind: EntryKind,
) -> AdminResult<Response> {
    let org_id = parse_org_id(&id)?;
    found_org(state.store.get_org(&org_id).await?, &org_id)?;
    match kind {
        EntryKind::TopUp if body.amount_micros <= 0 => {
            return Err(AdminError::invalid(
                "amount_micros of a top-up must be positive",
            ));
        }
        EntryKind::Adjustment if body.amount_micros == 0 => {
            return Err(AdminError::invalid(
                "amount_micros of an adjustment must not be zero",
            ));
        }
        EntryKind::Adjustment if body.reason.as_deref().is_none_or(|r| r.trim().is_empty()) => {
            return Err(AdminError::invalid("an adjustment needs a reason"));
        }
        _ => {}
    }
    let now = state.clock.now();
    let reference = match body.reference {
        Some(r) if !r.trim().is_empty() && r.len() <= 200 => {
            format!("{}:{}", kind.as_str(), r.trim())
        }
        Some(_) => return Err(AdminError::invalid("reference must be 1 to 200 characters")),
        None => format!("{}:{}", kind.as_str(), uuid::Uuid::now_v7()),
    };
    let detail = serde_json::json!({ "reason": body.reason }).to_string();
    let entry = NewEntry {
        org_id: org_id.clone(),
        kind,
        amount: body.amount_micros,
        reference,
        detail,
        created_at: now,
    };
    write_entry(&state, entry).await
}

/// Writes one entry written by the operator (idempotent by its reference)
/// and mirrors it: 201 with the entry, or 200 with the existing one.
async fn write_entry(state: &AdminState, entry: NewEntry) -> AdminResult<Response> {
    let (org_id, kind, amount, reference, now) = (
        entry.org_id.clone(),
        entry.kind,
        entry.amount,
        entry.reference.clone(),
        entry.created_at,
    );
    let posted = state.store.post_entries(&[entry]).await?;
    let written = matches!(posted.first(), Some(Posted::Written { .. }));
    if written {
        state.accounts.posted(&org_id, amount, now);
        tracing::info!(%org_id, kind = kind.as_str(), amount, "ledger entry posted");
    }
    let view = state
        .store
        .find_entry(&org_id, &reference)
        .await?
        .as_ref()
        .map(EntryView::from);
    let status = if written {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(serde_json::json!({ "duplicate": !written, "entry": view })),
    )
        .into_response())
}

pub(crate) async fn top_up(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Result<Json<NewMoney>, JsonRejection>,
) -> AdminResult<Response> {
    let Json(body) = body?;
    post_money(state, id, body, EntryKind::TopUp).await
}

pub(crate) async fn adjust(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Result<Json<NewMoney>, JsonRejection>,
) -> AdminResult<Response> {
    let Json(body) = body?;
    post_money(state, id, body, EntryKind::Adjustment).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRefund {
    /// The `reference` of the charge entry to refund.
    charge_reference: String,
    /// Defaults to the whole charge.
    #[serde(default)]
    amount_micros: Option<i64>,
    reason: String,
}

/// Gives back (part of) one charge: a `refund` entry whose reference is
/// `refund:<charge reference>`, so a charge is refunded at most once.
pub(crate) async fn refund(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Result<Json<NewRefund>, JsonRejection>,
) -> AdminResult<Response> {
    let Json(body) = body?;
    if body.reason.trim().is_empty() {
        return Err(AdminError::invalid("a refund needs a reason"));
    }
    let org_id = parse_org_id(&id)?;
    found_org(state.store.get_org(&org_id).await?, &org_id)?;
    let charge = state
        .store
        .find_entry(&org_id, &body.charge_reference)
        .await?
        .filter(|row| row.entry.kind == EntryKind::Charge)
        .ok_or_else(|| {
            AdminError::not_found(
                "charge_not_found",
                format!(
                    "the organization has no charge with reference {:?}",
                    body.charge_reference
                ),
            )
        })?;
    let charged = -charge.entry.amount;
    let amount = body.amount_micros.unwrap_or(charged);
    if amount <= 0 || amount > charged {
        return Err(AdminError::invalid(format!(
            "amount_micros of a refund must be between 1 and the charge's {charged}"
        )));
    }
    let detail = serde_json::json!({
        "reason": body.reason,
        "charge_reference": body.charge_reference,
        "charge_id": charge.id,
    });
    let entry = NewEntry {
        org_id,
        kind: EntryKind::Refund,
        amount,
        reference: format!("refund:{}", body.charge_reference),
        detail: detail.to_string(),
        created_at: state.clock.now(),
    };
    write_entry(&state, entry).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Page {
    limit: Option<u32>,
    after: Option<i64>,
}

pub(crate) async fn ledger(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    page: Result<Query<Page>, QueryRejection>,
) -> AdminResult<Json<Value>> {
    let org_id = parse_org_id(&id)?;
    let Query(page) = page?;
    found_org(state.store.get_org(&org_id).await?, &org_id)?;
    let limit = page.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AdminError::invalid("limit must be between 1 and 1000"));
    }
    let rows = state
        .store
        .list_entries(&org_id, page.after.unwrap_or(0), limit)
        .await?;
    let next_after = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let data: Vec<EntryView> = rows.iter().map(EntryView::from).collect();
    Ok(Json(
        serde_json::json!({ "data": data, "next_after": next_after }),
    ))
}

pub(crate) async fn notifications(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> AdminResult<Json<Value>> {
    let org_id = parse_org_id(&id)?;
    found_org(state.store.get_org(&org_id).await?, &org_id)?;
    let rows = state.store.list_notifications(&org_id).await?;
    let data: Vec<Value> = rows
        .into_iter()
        .map(|(kind, reference, detail, at)| {
            serde_json::json!({
                "kind": kind,
                "reference": reference,
                "detail": serde_json::from_str::<Value>(&detail).unwrap_or(Value::Null),
                "created_at": at.to_rfc3339(),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "data": data })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Period {
    from: String,
    to: String,
}

/// Charged usage per meter, and the amount charged, for `[from, to)`, from
/// the ledger's charge entries (pay-as-you-go usage). The cycle's usage of
/// every organization, charged or not, is at `/orgs/{id}/usage`.
pub(crate) async fn charged(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    period: Result<Query<Period>, QueryRejection>,
) -> AdminResult<Json<Value>> {
    let org_id = parse_org_id(&id)?;
    let Query(period) = period?;
    let parse = |name: &str, text: &str| {
        tollgate_core::time::UnixMillis::parse_rfc3339(text)
            .ok_or_else(|| AdminError::invalid(format!("{name} {text:?} is not an RFC 3339 time")))
    };
    let (from, to) = (parse("from", &period.from)?, parse("to", &period.to)?);
    if to <= from {
        return Err(AdminError::invalid("to must be after from"));
    }
    found_org(state.store.get_org(&org_id).await?, &org_id)?;
    let (spent, units) = state.store.charged_between(&org_id, from, to).await?;
    let units: serde_json::Map<String, Value> = tollgate_core::meter::Meter::ALL
        .into_iter()
        .map(|m| (m.as_str().to_owned(), Value::from(units[m.index()])))
        .collect();
    Ok(Json(serde_json::json!({
        "org_id": org_id.to_string(),
        "from": from.to_rfc3339(),
        "to": to.to_rfc3339(),
        "charged_micros": spent,
        "charged": Micros(spent).to_string(),
        "units": units,
    })))
}
