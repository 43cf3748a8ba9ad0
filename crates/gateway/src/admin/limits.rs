//! Throttling and quota administration: per-key quotas, committed-use
//! add-ons, and the current cycle's usage.

use super::keys::{KeyView, found, parse_key_id};
use super::orgs::{found_org, parse_org_id};
use super::{AdminError, AdminResult, AdminState};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tollgate_core::cycle::Period;
use tollgate_core::meter::{Meter, MeterCounts};
use tollgate_core::time::UnixMillis;
use tollgate_store::CommitmentRow;

fn check_meters(quotas: &BTreeMap<String, u64>) -> AdminResult<()> {
    for name in quotas.keys() {
        if Meter::parse(name).is_none() {
            let known: Vec<&str> = Meter::ALL.iter().map(|m| m.as_str()).collect();
            return Err(AdminError::invalid(format!(
                "unknown meter {name:?}; meters: {known:?}"
            )));
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetKeyQuotas {
    /// Meter → limit per cycle; replaces the key's overrides. `{}` clears them.
    quotas: BTreeMap<String, u64>,
}

pub(crate) async fn set_key_quotas(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Result<Json<SetKeyQuotas>, JsonRejection>,
) -> AdminResult<Json<KeyView>> {
    let id = parse_key_id(&id)?;
    let Json(body) = body?;
    check_meters(&body.quotas)?;
    let now = state.clock.now();
    let row = found(
        state.store.set_key_quotas(&id, &body.quotas, now).await?,
        &id,
    )?;
    let _ = state.directory.put_key(&row);
    tracing::info!(key_id = %row.id, quotas = ?row.quotas, "key quotas changed");
    Ok(Json(KeyView::of_row(&row, now)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateCommitment {
    /// Meter → extra units per cycle.
    quotas: BTreeMap<String, u64>,
    /// Start of the term (default now).
    #[serde(default)]
    starts_at: Option<String>,
    /// End of the term.
    ends_at: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct CommitmentView {
    id: String,
    org_id: String,
    quotas: BTreeMap<String, u64>,
    starts_at: String,
    ends_at: String,
    created_at: String,
}

impl From<&CommitmentRow> for CommitmentView {
    fn from(row: &CommitmentRow) -> Self {
        CommitmentView {
            id: row.id.clone(),
            org_id: row.org_id.to_string(),
            quotas: row.quotas.clone(),
            starts_at: row.starts_at.to_rfc3339(),
            ends_at: row.ends_at.to_rfc3339(),
            created_at: row.created_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct CommitmentList {
    data: Vec<CommitmentView>,
}

fn time_field(name: &str, text: &str) -> AdminResult<UnixMillis> {
    UnixMillis::parse_rfc3339(text)
        .ok_or_else(|| AdminError::invalid(format!("{name} {text:?} is not an RFC 3339 time")))
}

pub(crate) async fn create_commitment(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Result<Json<CreateCommitment>, JsonRejection>,
) -> AdminResult<Response> {
    let org_id = parse_org_id(&id)?;
    let Json(body) = body?;
    check_meters(&body.quotas)?;
    if body.quotas.is_empty() {
        return Err(AdminError::invalid("quotas must name at least one meter"));
    }
    let now = state.clock.now();
    let starts_at = match &body.starts_at {
        Some(text) => time_field("starts_at", text)?,
        None => now,
    };
    let ends_at = time_field("ends_at", &body.ends_at)?;
    if ends_at <= starts_at || ends_at <= now {
        return Err(AdminError::invalid(
            "ends_at must be after starts_at and in the future",
        ));
    }
    found_org(state.store.get_org(&org_id).await?, &org_id)?;
    let row = CommitmentRow {
        id: format!(
            "cmt_{}",
            tollgate_core::encoding::base32(&crate::random::bytes::<10>())
        ),
        org_id,
        quotas: body.quotas,
        starts_at,
        ends_at,
        created_at: now,
    };
    state.store.create_commitment(&row).await?;
    state.directory.add_commitment(&row);
    tracing::info!(org_id = %row.org_id, commitment = %row.id, "commitment added");
    let location = format!("/admin/v1/orgs/{}/commitments", row.org_id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(CommitmentView::from(&row)),
    )
        .into_response())
}

pub(crate) async fn list_commitments(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> AdminResult<Json<CommitmentList>> {
    let org_id = parse_org_id(&id)?;
    found_org(state.store.get_org(&org_id).await?, &org_id)?;
    let rows = state.store.list_commitments(&org_id).await?;
    Ok(Json(CommitmentList {
        data: rows.iter().map(CommitmentView::from).collect(),
    }))
}

#[derive(Debug, Serialize)]
pub(crate) struct QuotaView {
    meter: &'static str,
    used: u64,
    /// Null: no limit on this meter.
    limit: Option<u64>,
    remaining: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct KeyUsageView {
    key_id: String,
    quotas: Vec<QuotaView>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CycleView {
    start: String,
    end: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct UsageView {
    org_id: String,
    plan: Option<String>,
    pay_as_you_go: bool,
    cycle: CycleView,
    /// The cycle resets at this time.
    resets_at: String,
    quotas: Vec<QuotaView>,
    keys: Vec<KeyUsageView>,
}

fn quota_views(used: &MeterCounts, limit: impl Fn(Meter) -> Option<u64>) -> Vec<QuotaView> {
    Meter::ALL
        .into_iter()
        .map(|meter| {
            let limit = limit(meter);
            let used = used[meter.index()];
            QuotaView {
                meter: meter.as_str(),
                used,
                limit,
                remaining: limit.map(|l| l.saturating_sub(used)),
            }
        })
        .collect()
}

pub(crate) async fn usage(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> AdminResult<Json<UsageView>> {
    let org_id = parse_org_id(&id)?;
    let row = found_org(state.store.get_org(&org_id).await?, &org_id)?;
    let Some(org) = state.directory.org(&org_id) else {
        return Err(AdminError::not_found(
            "org_not_found",
            format!("no organization {org_id}"),
        ));
    };
    let now = state.clock.now();
    let plan = org.plan.as_ref().and_then(|p| state.plans.get(p));
    let (cycle, used, keys): (Period, _, _) = state.limiter.usage(&org_id, org.cycle_anchor, now);
    let quotas = quota_views(&used, |m| {
        org.quota(plan.and_then(|p| p.quotas[m.index()]), m, now)
    });
    let keys = keys
        .into_iter()
        .map(|(key_id, used)| {
            let key = state.directory.key(key_id.as_str());
            KeyUsageView {
                key_id: key_id.to_string(),
                quotas: quota_views(&used, |m| key.as_ref().and_then(|k| k.quotas[m.index()])),
            }
        })
        .collect();
    Ok(Json(UsageView {
        org_id: org_id.to_string(),
        plan: row.plan,
        pay_as_you_go: row.pay_as_you_go,
        cycle: CycleView {
            start: cycle.start.to_rfc3339(),
            end: cycle.end.to_rfc3339(),
        },
        resets_at: cycle.end.to_rfc3339(),
        quotas,
        keys,
    }))
}
