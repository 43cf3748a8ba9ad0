//! The admin listener.
//!
//! - `GET /healthz`: the process is up.
//! - `GET /readyz`: the store answers.
//! - `GET /metrics`: Prometheus text exposition.
//! - `GET /admin/v1/openapi.json`: the OpenAPI document of the admin API.
//! - `/admin/v1/*`: the admin API, behind `Authorization: Bearer <admin token>`;
//!   see `docs/admin-api.md`.
//!
//! Every change writes the store first, then the in-memory directory, then
//! answers, so it is in force for the next ingress request.

mod credentials;
mod keys;
mod limits;
mod money;
mod orgs;

use crate::directory::Directory;
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::plans::Plans;
use crate::problem::Problem;
use crate::{Clock, Config, request_id};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tollgate_store::{Store, StoreError};

/// Shared by every admin handler.
#[derive(Clone)]
pub struct AdminState {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) directory: Arc<Directory>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) plans: Arc<Plans>,
    pub(crate) accounts: Arc<crate::accounts::Accounts>,
    token: Arc<str>,
}

impl AdminState {
    /// Bundles the admin API's dependencies.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        directory: Arc<Directory>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        token: String,
        limiter: Arc<Limiter>,
        plans: Arc<Plans>,
        accounts: Arc<crate::accounts::Accounts>,
    ) -> Self {
        AdminState {
            config,
            store,
            directory,
            clock,
            metrics,
            limiter,
            plans,
            accounts,
            token: token.into(),
        }
    }
}

tokio::task_local! {
    static REQUEST_ID: String;
}

/// An admin API error, answered as problem+json.
#[derive(Debug)]
pub struct AdminError {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: String,
}

impl AdminError {
    fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        AdminError {
            status,
            code,
            title,
            detail: detail.into(),
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid request",
            detail,
        )
    }

    /// 404 with a resource-specific code.
    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, "Not found", detail)
    }

    /// 409 with a specific code.
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, "Conflict", detail)
    }
}

impl From<StoreError> for AdminError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "store error in the admin API");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "Store unavailable",
            "the store failed; see the gateway's log",
        )
    }
}

impl From<axum::extract::rejection::JsonRejection> for AdminError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        Self::invalid(rejection.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for AdminError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        Self::invalid(rejection.body_text())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
        let problem = Problem::new(
            self.code,
            self.status.as_u16(),
            self.title,
            self.detail,
            &id,
        );
        let (status, headers, body) = problem.into_parts();
        (status, headers, body).into_response()
    }
}

/// Result alias for handlers.
pub type AdminResult<T> = Result<T, AdminError>;

/// The admin router.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/orgs", post(orgs::create).get(orgs::list))
        .route("/orgs/{id}", get(orgs::get))
        .route("/orgs/{id}/suspend", post(orgs::suspend))
        .route("/orgs/{id}/activate", post(orgs::activate))
        .route("/orgs/{id}/plan", put(orgs::set_plan))
        .route("/orgs/{id}/pay-as-you-go", put(orgs::set_pay_as_you_go))
        .route(
            "/orgs/{id}/commitments",
            post(limits::create_commitment).get(limits::list_commitments),
        )
        .route("/orgs/{id}/usage", get(limits::usage))
        .route("/keys/{id}/quotas", put(limits::set_key_quotas))
        .route("/orgs/{id}/balance", get(money::balance))
        .route("/orgs/{id}/account", put(money::set_account))
        .route("/orgs/{id}/autocharge", put(money::set_autocharge))
        .route("/orgs/{id}/top-ups", post(money::top_up))
        .route("/orgs/{id}/adjustments", post(money::adjust))
        .route("/orgs/{id}/refunds", post(money::refund))
        .route("/orgs/{id}/ledger", get(money::ledger))
        .route("/orgs/{id}/charged", get(money::charged))
        .route("/orgs/{id}/notifications", get(money::notifications))
        .route("/orgs/{id}/keys", post(keys::create).get(keys::list))
        .route("/keys/{id}", get(keys::get))
        .route("/keys/{id}/revoke", post(keys::revoke))
        .route("/keys/{id}/rotate", post(keys::rotate))
        .route("/keys/{id}/credentials", put(credentials::set_policy))
        .route(
            "/keys/{id}/signing-secrets",
            post(credentials::new_signing_secret),
        )
        .route("/keys/{id}/certificate-pins", post(credentials::add_pin))
        .route(
            "/keys/{id}/certificate-pins/{thumbprint}",
            axum::routing::delete(credentials::remove_pin),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/v1/openapi.json", get(openapi))
        .nest("/admin/v1", api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(with_request_id))
        .with_state(state)
}

/// Serves the admin router until `stop` flips.
pub async fn serve(listener: TcpListener, state: AdminState, mut stop: watch::Receiver<bool>) {
    let app = router(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        })
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "admin listener failed");
    }
}

async fn with_request_id(request: Request, next: Next) -> Response {
    let id = request_id::take_or_make(request.headers());
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(crate::REQUEST_ID.clone(), value);
    }
    response
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let ok =
        presented.is_some_and(|token| bool::from(token.as_bytes().ct_eq(state.token.as_bytes())));
    if !ok {
        let mut response = AdminError::new(
            StatusCode::UNAUTHORIZED,
            "admin_unauthorized",
            "Admin token missing or wrong",
            "send the admin token as Authorization: Bearer <token>",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tollgate-admin\""),
        );
        return response;
    }
    next.run(request).await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> Response {
    match state.store.ping().await {
        Ok(()) => "ready\n".into_response(),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
        }
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// The OpenAPI document of the admin API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Longest rotation overlap accepted (keys, signing secrets, pins): 30 days.
const MAX_OVERLAP_SECONDS: u64 = 30 * 24 * 3600;

/// An optional JSON body: empty (or whitespace) means the defaults, and the
/// body is read as JSON whatever its `Content-Type`.
pub(crate) fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> AdminResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| AdminError::invalid(format!("invalid JSON body: {e}")))
}

/// A rotation overlap in seconds: the requested one, else the configured
/// default, at most [`MAX_OVERLAP_SECONDS`].
pub(crate) fn overlap_seconds(state: &AdminState, requested: Option<u64>) -> AdminResult<i64> {
    let seconds = requested.unwrap_or(state.config.keys.rotation_overlap_seconds);
    if seconds > MAX_OVERLAP_SECONDS {
        return Err(AdminError::invalid(format!(
            "overlap_seconds must be at most {MAX_OVERLAP_SECONDS}"
        )));
    }
    Ok(i64::try_from(seconds).unwrap_or(i64::MAX))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found() -> AdminError {
    AdminError::not_found(
        "not_found",
        "no admin endpoint at this path; see /admin/v1/openapi.json",
    )
}

async fn method_not_allowed() -> AdminError {
    AdminError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        "this endpoint does not accept this method; see /admin/v1/openapi.json",
    )
}

/// Checks a display name: 1 to 200 characters, no control characters.
pub(crate) fn check_name(name: &str) -> AdminResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(AdminError::invalid(
            "name must be 1 to 200 characters without control characters",
        ));
    }
    Ok(name.to_owned())
}
