//! `/admin/v1/orgs/{id}/keys` and `/admin/v1/keys/{id}`. Secrets appear in
//! exactly two answers: key creation and rotation. Listings never show them.

use super::orgs::parse_org_id;
use super::{AdminError, AdminResult, AdminState, check_name};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tollgate_core::access::KeyStatus;
use tollgate_core::api_key::{self, SECRET_BYTES, SecretHash};
use tollgate_core::ids::{KEY_ID_BYTES, KeyId};
use tollgate_core::time::UnixMillis;
use tollgate_store::KeyRow;

/// A key as the admin API shows it: never its secret or hash.
#[derive(Debug, Serialize)]
pub struct KeyView {
    id: String,
    org_id: String,
    name: String,
    products: Vec<String>,
    status: KeyStatus,
    expires_at: Option<String>,
    /// While a rotation overlap lasts, the old secret works until then.
    previous_secret_expires_at: Option<String>,
    created_at: String,
    updated_at: String,
    revoked_at: Option<String>,
    /// Per-key cycle quotas by meter.
    quotas: std::collections::BTreeMap<String, u64>,
    /// Credential policy, signing secrets (ids only) and certificate pins.
    credentials: super::credentials::CredentialsView,
}

impl KeyView {
    fn of(row: &KeyRow, now: UnixMillis) -> Self {
        KeyView {
            id: row.id.to_string(),
            org_id: row.org_id.to_string(),
            name: row.name.clone(),
            products: row.products.clone(),
            status: row.status,
            expires_at: row.expires_at.map(UnixMillis::to_rfc3339),
            previous_secret_expires_at: row
                .previous_secret_expires_at
                .filter(|until| *until > now)
                .map(UnixMillis::to_rfc3339),
            created_at: row.created_at.to_rfc3339(),
            updated_at: row.updated_at.to_rfc3339(),
            revoked_at: row.revoked_at.map(UnixMillis::to_rfc3339),
            quotas: row.quotas.clone(),
            credentials: super::credentials::CredentialsView::of(&row.credentials, now),
        }
    }

    /// The view of a stored key.
    pub(crate) fn of_row(row: &KeyRow, now: UnixMillis) -> Self {
        Self::of(row, now)
    }
}

/// A key with its full secret: shown once.
#[derive(Debug, Serialize)]
pub(crate) struct KeyWithSecret {
    #[serde(flatten)]
    view: KeyView,
    /// The full key, `tg_<id>_<secret>`. Store it now: it is not shown again.
    key: String,
    /// A signing secret made with the key, shown this once.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    signing: Option<super::credentials::NewSecret>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKey {
    name: String,
    #[serde(default)]
    products: Option<Vec<String>>,
    #[serde(default)]
    expires_at: Option<String>,
    /// On which route classes a signature, a JWT, a certificate is demanded.
    #[serde(default)]
    credentials: Option<super::credentials::PolicyRequest>,
    /// Make a signing secret now (implied when `credentials.signature` demands one).
    #[serde(default)]
    signing_secret: Option<bool>,
    /// The Coinbase-scheme passphrase; generated when absent.
    #[serde(default)]
    passphrase: Option<String>,
    /// Certificate thumbprints to pin (hex SHA-256 of the DER, or x5t#S256).
    #[serde(default)]
    certificate_pins: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateKey {
    #[serde(default)]
    overlap_seconds: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct KeyList {
    data: Vec<KeyView>,
}

fn check_products(state: &AdminState, products: Option<Vec<String>>) -> AdminResult<Vec<String>> {
    let products = products.unwrap_or_else(|| vec!["*".to_owned()]);
    if products.is_empty() {
        return Err(AdminError::invalid(
            "products must name at least one product, or [\"*\"] for all",
        ));
    }
    for product in &products {
        if product != "*" && !state.config.products.contains_key(product) {
            let known: Vec<&str> = state.config.products.keys().map(String::as_str).collect();
            return Err(AdminError::new(
                StatusCode::BAD_REQUEST,
                "unknown_product",
                "Unknown product",
                format!("product {product:?} is not configured; configured products: {known:?}"),
            ));
        }
    }
    Ok(products)
}

pub(crate) fn parse_key_id(id: &str) -> AdminResult<KeyId> {
    KeyId::parse(id).ok_or_else(|| AdminError::not_found("key_not_found", format!("no key {id:?}")))
}

pub(crate) fn found(row: Option<KeyRow>, id: &KeyId) -> AdminResult<KeyRow> {
    row.ok_or_else(|| AdminError::not_found("key_not_found", format!("no key {id}")))
}

fn new_secret() -> String {
    api_key::secret_from_random(crate::random::bytes::<SECRET_BYTES>())
}

pub(crate) async fn create(
    State(state): State<AdminState>,
    Path(org): Path<String>,
    body: Result<Json<CreateKey>, JsonRejection>,
) -> AdminResult<Response> {
    let org_id = parse_org_id(&org)?;
    let Json(body) = body?;
    let name = check_name(&body.name)?;
    let products = check_products(&state, body.products)?;
    let now = state.clock.now();
    let expires_at = match body.expires_at {
        None => None,
        Some(text) => {
            let at = UnixMillis::parse_rfc3339(&text).ok_or_else(|| {
                AdminError::invalid(format!("expires_at {text:?} is not an RFC 3339 time"))
            })?;
            if at <= now {
                return Err(AdminError::invalid("expires_at must be in the future"));
            }
            Some(at)
        }
    };
    if state.store.get_org(&org_id).await?.is_none() {
        return Err(AdminError::not_found(
            "org_not_found",
            format!("no organization {org_id}"),
        ));
    }
    let id = KeyId::from_random(crate::random::bytes::<KEY_ID_BYTES>());
    let secret = new_secret();
    let policy = body
        .credentials
        .unwrap_or_default()
        .apply(Default::default());
    let mut credentials = tollgate_store::KeyCredentials {
        policy,
        signing_secrets: Vec::new(),
        certificate_pins: super::credentials::parse_pins(&body.certificate_pins, now)?,
    };
    let wants_secret = body
        .signing_secret
        .unwrap_or(policy.signature != tollgate_core::credential::ClassSet::None);
    let signing = if wants_secret {
        let (sealed, shown) =
            super::credentials::make_secret(&state, id.as_str(), body.passphrase, now)?;
        credentials.signing_secrets.push(sealed);
        Some(shown)
    } else {
        if body.passphrase.is_some() {
            return Err(AdminError::invalid(
                "passphrase goes with a signing secret: set signing_secret: true",
            ));
        }
        None
    };
    super::credentials::check_policy(&state, &credentials)?;
    let row = KeyRow {
        expires_at,
        credentials,
        ..KeyRow::new_active(id, &secret, org_id, name, products, now)
    };
    state.store.create_key(&row).await?;
    let _ = state.directory.put_key(&row);
    tracing::info!(key_id = %row.id, org_id = %row.org_id, "key created");
    let body = KeyWithSecret {
        key: api_key::format(&row.id, &secret),
        view: KeyView::of(&row, now),
        signing,
    };
    let location = format!("/admin/v1/keys/{}", row.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

pub(crate) async fn list(
    State(state): State<AdminState>,
    Path(org): Path<String>,
) -> AdminResult<Json<KeyList>> {
    let org_id = parse_org_id(&org)?;
    if state.store.get_org(&org_id).await?.is_none() {
        return Err(AdminError::not_found(
            "org_not_found",
            format!("no organization {org_id}"),
        ));
    }
    let now = state.clock.now();
    let rows = state.store.list_keys(&org_id).await?;
    Ok(Json(KeyList {
        data: rows.iter().map(|row| KeyView::of(row, now)).collect(),
    }))
}

pub(crate) async fn get(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> AdminResult<Json<KeyView>> {
    let id = parse_key_id(&id)?;
    let row = found(state.store.get_key(&id).await?, &id)?;
    Ok(Json(KeyView::of(&row, state.clock.now())))
}

pub(crate) async fn revoke(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> AdminResult<Json<KeyView>> {
    let id = parse_key_id(&id)?;
    let now = state.clock.now();
    let row = found(state.store.revoke_key(&id, now).await?, &id)?;
    let _ = state.directory.put_key(&row);
    tracing::info!(key_id = %row.id, "key revoked");
    Ok(Json(KeyView::of(&row, now)))
}

pub(crate) async fn rotate(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> AdminResult<Json<KeyWithSecret>> {
    let id = parse_key_id(&id)?;
    let request: RotateKey = super::optional_json(&body)?;
    let overlap = super::overlap_seconds(&state, request.overlap_seconds)?;
    let existing = found(state.store.get_key(&id).await?, &id)?;
    if existing.status == KeyStatus::Revoked {
        return Err(AdminError::conflict(
            "key_revoked",
            "a revoked key cannot be rotated; create a new key",
        ));
    }
    let now = state.clock.now();
    let secret = new_secret();
    let until = now.plus_seconds(overlap);
    let row = state
        .store
        .rotate_key(&id, SecretHash::of(id.as_str(), &secret), until, now)
        .await?
        .ok_or_else(|| AdminError::conflict("key_revoked", "the key was revoked while rotating"))?;
    let _ = state.directory.put_key(&row);
    tracing::info!(key_id = %row.id, overlap_seconds = overlap, "key rotated");
    Ok(Json(KeyWithSecret {
        key: api_key::format(&row.id, &secret),
        view: KeyView::of(&row, now),
        signing: None,
    }))
}
