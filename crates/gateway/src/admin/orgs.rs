//! `/admin/v1/orgs`

use super::{AdminError, AdminResult, AdminState, check_name};
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tollgate_core::access::OrgStatus;
use tollgate_core::ids::{ORG_ID_BYTES, OrgId};
use tollgate_store::OrgRow;

/// An organization as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct OrgView {
    id: String,
    name: String,
    status: OrgStatus,
    plan: Option<String>,
    /// Monthly billing cycles start on this day (UTC).
    cycle_anchor: String,
    pay_as_you_go: bool,
    created_at: String,
    updated_at: String,
}

impl From<&OrgRow> for OrgView {
    fn from(row: &OrgRow) -> Self {
        OrgView {
            id: row.id.to_string(),
            name: row.name.clone(),
            status: row.status,
            plan: row.plan.clone(),
            cycle_anchor: row.cycle_anchor.unwrap_or(row.created_at).to_rfc3339(),
            pay_as_you_go: row.pay_as_you_go,
            created_at: row.created_at.to_rfc3339(),
            updated_at: row.updated_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateOrg {
    name: String,
    #[serde(default)]
    plan: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetPlan {
    /// Required: a plan name, or null to remove the plan. A missing field is
    /// an error rather than a silent removal.
    plan: serde_json::Value,
    /// Start a new subscription cycle anchor (RFC 3339); by default the
    /// anchor is kept, or set to now when the org had no plan.
    #[serde(default)]
    cycle_anchor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetPayAsYouGo {
    enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    limit: Option<u32>,
    after: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct OrgList {
    data: Vec<OrgView>,
    /// Pass as `after` to get the next page; null on the last page.
    next_after: Option<String>,
}

fn check_plan(state: &AdminState, plan: Option<String>) -> AdminResult<Option<String>> {
    match plan {
        Some(plan) if !state.config.plans.contains_key(&plan) => {
            let known: Vec<&str> = state.config.plans.keys().map(String::as_str).collect();
            Err(AdminError::new(
                StatusCode::BAD_REQUEST,
                "unknown_plan",
                "Unknown plan",
                format!("plan {plan:?} is not configured; configured plans: {known:?}"),
            ))
        }
        other => Ok(other),
    }
}

pub(crate) fn found_org(row: Option<OrgRow>, id: &OrgId) -> AdminResult<OrgRow> {
    found(row, id)
}

pub(crate) fn parse_org_id(id: &str) -> AdminResult<OrgId> {
    OrgId::parse(id)
        .ok_or_else(|| AdminError::not_found("org_not_found", format!("no organization {id:?}")))
}

fn found(row: Option<OrgRow>, id: &OrgId) -> AdminResult<OrgRow> {
    row.ok_or_else(|| AdminError::not_found("org_not_found", format!("no organization {id}")))
}

pub(crate) async fn create(
    State(state): State<AdminState>,
    body: Result<Json<CreateOrg>, JsonRejection>,
) -> AdminResult<Response> {
    let Json(body) = body?;
    let name = check_name(&body.name)?;
    let plan = check_plan(&state, body.plan)?;
    let now = state.clock.now();
    let row = OrgRow {
        id: OrgId::from_random(crate::random::bytes::<ORG_ID_BYTES>()),
        name,
        status: OrgStatus::Active,
        cycle_anchor: plan.as_ref().map(|_| now),
        plan,
        pay_as_you_go: false,
        created_at: now,
        updated_at: now,
    };
    state.store.create_org(&row).await?;
    state.directory.put_org(&row);
    tracing::info!(org_id = %row.id, "org created");
    let location = format!("/admin/v1/orgs/{}", row.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(OrgView::from(&row)),
    )
        .into_response())
}

pub(crate) async fn list(
    State(state): State<AdminState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> AdminResult<Json<OrgList>> {
    let Query(params) = params?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AdminError::invalid("limit must be between 1 and 1000"));
    }
    let after = params.after.map(OrgId::from_stored);
    let rows = state.store.list_orgs(after.as_ref(), limit).await?;
    let next_after = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(OrgList {
        data: rows.iter().map(OrgView::from).collect(),
        next_after,
    }))
}

pub(crate) async fn get(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> AdminResult<Json<OrgView>> {
    let id = parse_org_id(&id)?;
    let row = found(state.store.get_org(&id).await?, &id)?;
    Ok(Json(OrgView::from(&row)))
}

async fn set_status(
    state: AdminState,
    id: String,
    status: OrgStatus,
) -> AdminResult<Json<OrgView>> {
    let id = parse_org_id(&id)?;
    let row = found(
        state
            .store
            .set_org_status(&id, status, state.clock.now())
            .await?,
        &id,
    )?;
    state.directory.put_org(&row);
    tracing::info!(org_id = %row.id, ?status, "org status changed");
    Ok(Json(OrgView::from(&row)))
}

pub(crate) async fn suspend(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> AdminResult<Json<OrgView>> {
    set_status(state, id, OrgStatus::Suspended).await
}

pub(crate) async fn activate(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> AdminResult<Json<OrgView>> {
    set_status(state, id, OrgStatus::Active).await
}

pub(crate) async fn set_plan(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Result<Json<SetPlan>, JsonRejection>,
) -> AdminResult<Json<OrgView>> {
    let id = parse_org_id(&id)?;
    let Json(body) = body?;
    let plan = match body.plan {
        serde_json::Value::Null => None,
        serde_json::Value::String(name) => Some(name),
        _ => return Err(AdminError::invalid("plan must be a plan name or null")),
    };
    let plan = check_plan(&state, plan)?;
    let now = state.clock.now();
    let existing = found(state.store.get_org(&id).await?, &id)?;
    let anchor = match body.cycle_anchor {
        Some(text) => Some(
            tollgate_core::time::UnixMillis::parse_rfc3339(&text).ok_or_else(|| {
                AdminError::invalid(format!("cycle_anchor {text:?} is not an RFC 3339 time"))
            })?,
        ),
        // A first plan starts the subscription; a change of plan keeps its cycle.
        None if existing.plan.is_none() && plan.is_some() => Some(now),
        None => existing.cycle_anchor,
    };
    let row = found(
        state
            .store
            .set_org_plan(&id, plan.as_deref(), anchor, now)
            .await?,
        &id,
    )?;
    state.directory.put_org(&row);
    tracing::info!(org_id = %row.id, plan = ?row.plan, "org plan changed");
    Ok(Json(OrgView::from(&row)))
}

pub(crate) async fn set_pay_as_you_go(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Result<Json<SetPayAsYouGo>, JsonRejection>,
) -> AdminResult<Json<OrgView>> {
    let id = parse_org_id(&id)?;
    let Json(body) = body?;
    let row = found(
        state
            .store
            .set_org_pay_as_you_go(&id, body.enabled, state.clock.now())
            .await?,
        &id,
    )?;
    state.directory.put_org(&row);
    tracing::info!(org_id = %row.id, enabled = body.enabled, "org pay-as-you-go changed");
    Ok(Json(OrgView::from(&row)))
}
