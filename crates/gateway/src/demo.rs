//! `tollgate serve --demo`: a gateway in front of a built-in demo trading API,
//! on a fresh SQLite file, with one organization and one key seeded.
//!
//! The demo upstream answers `GET /v1/ticker`, `GET /v1/depth`,
//! `POST /v1/orders` and `DELETE /v1/orders/{id}` with small JSON bodies, so a
//! newcomer can see the gateway work with nothing else installed.

use crate::Config;
use crate::config::ConfigError;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;
use tollgate_core::access::OrgStatus;
use tollgate_core::api_key::{self, SECRET_BYTES};
use tollgate_core::ids::{KEY_ID_BYTES, KeyId, ORG_ID_BYTES, OrgId};
use tollgate_core::time::UnixMillis;
use tollgate_store::{KeyRow, OrgRow, SqliteStore, Store, StoreResult};

/// The demo's configuration file, embedded.
pub const DEMO_CONFIG: &str = include_str!("demo.toml");

/// Loads the demo configuration with `TOLLGATE_*` overrides applied.
pub fn config(
    upstream: SocketAddr,
    sqlite_path: &FsPath,
    admin_token: String,
) -> Result<Config, ConfigError> {
    let mut config = Config::from_toml_str(DEMO_CONFIG)?;
    config.upstream.url = format!("http://{upstream}");
    config.store.sqlite_path = sqlite_path.to_owned();
    if config.admin.token.is_none() {
        config.admin.token = Some(admin_token);
    }
    if config.credentials.master_key.is_none() {
        // A fresh store each run, so a fresh master key is enough.
        use base64::Engine;
        config.credentials.master_key =
            Some(base64::engine::general_purpose::STANDARD.encode(crate::random::bytes::<32>()));
    }
    config.validate()?;
    Ok(config)
}

/// What the demo seeded.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// The demo organization.
    pub org_id: OrgId,
    /// The demo key, in full.
    pub key: String,
    /// A second key whose writes must be signed (docs/signing.md).
    pub signed_key: String,
    /// Its signing secret (base64).
    pub signing_secret: String,
    /// Its Coinbase-scheme passphrase.
    pub passphrase: String,
}

/// Creates the demo organization (plan `demo`), a key for all products, and
/// a second key that must sign its writes, its secret sealed under
/// `master_key` (the demo configuration's).
pub async fn seed(sqlite_path: &FsPath, master_key: &str, now: UnixMillis) -> StoreResult<Seeded> {
    let store = SqliteStore::open(sqlite_path).await?;
    let org = OrgRow {
        id: OrgId::from_random(crate::random::bytes::<ORG_ID_BYTES>()),
        name: "Demo Trading Desk".into(),
        status: OrgStatus::Active,
        plan: Some("demo".into()),
        cycle_anchor: Some(now),
        pay_as_you_go: true,
        created_at: now,
        updated_at: now,
    };
    store.create_org(&org).await?;
    let id = KeyId::from_random(crate::random::bytes::<KEY_ID_BYTES>());
    let secret = api_key::secret_from_random(crate::random::bytes::<SECRET_BYTES>());
    let key = KeyRow::new_active(
        id,
        &secret,
        org.id.clone(),
        "demo key".into(),
        vec!["*".into()],
        now,
    );
    store.create_key(&key).await?;
    let (signed, signed_secret, signing_secret, passphrase) = signed_key(&org.id, master_key, now)?;
    store.create_key(&signed).await?;
    // A starting balance of 25.00 and a credit limit of 10.00.
    let mut account = store.get_account(&org.id).await?;
    account.credit_limit = 10_000_000;
    store.set_account_settings(&account, now).await?;
    store
        .post_entries(&[tollgate_store::NewEntry {
            org_id: org.id.clone(),
            kind: tollgate_store::EntryKind::TopUp,
            amount: 25_000_000,
            reference: "top_up:demo-opening-balance".into(),
            detail: r#"{"reason":"demo opening balance"}"#.into(),
            created_at: now,
        }])
        .await?;
    Ok(Seeded {
        org_id: org.id,
        key: api_key::format(&key.id, &secret),
        signed_key: api_key::format(&signed.id, &signed_secret),
        signing_secret,
        passphrase,
    })
}

/// The demo's signing key: signatures demanded on write routes.
fn signed_key(
    org_id: &OrgId,
    master_key: &str,
    now: UnixMillis,
) -> StoreResult<(KeyRow, String, String, String)> {
    let provider = crate::secrets::LocalKeyProvider::from_base64(master_key)
        .map_err(|e| tollgate_store::StoreError::Corrupt(format!("demo master key: {e}")))?;
    let id = KeyId::from_random(crate::random::bytes::<KEY_ID_BYTES>());
    let secret = api_key::secret_from_random(crate::random::bytes::<SECRET_BYTES>());
    let passphrase = hex::encode(crate::random::bytes::<12>());
    let (sealed, signing_secret) = crate::secrets::new_signing_secret(
        &provider,
        id.as_str(),
        "ss_demo".to_owned(),
        &passphrase,
        now,
    )
    .map_err(|e| tollgate_store::StoreError::Corrupt(e.to_string()))?;
    let credentials = tollgate_store::KeyCredentials {
        policy: tollgate_core::credential::CredentialPolicy {
            signature: tollgate_core::credential::ClassSet::Write,
            ..Default::default()
        },
        signing_secrets: vec![sealed],
        certificate_pins: Vec::new(),
    };
    let row = KeyRow {
        credentials,
        ..KeyRow::new_active(
            id,
            &secret,
            org_id.clone(),
            "demo signing key".into(),
            vec!["*".into()],
            now,
        )
    };
    Ok((row, secret, signing_secret, passphrase))
}

/// A fresh random admin token for the demo.
pub fn admin_token() -> String {
    format!(
        "tgadm_{}",
        tollgate_core::encoding::base32(&crate::random::bytes::<20>())
    )
}

/// Serves the demo trading API on `listener` until the task is dropped.
pub async fn serve_upstream(listener: TcpListener) {
    let app = upstream_router();
    if let Err(error) = axum::serve(listener, app).await {
        tracing::error!(%error, "demo upstream failed");
    }
}

static ORDER_SEQUENCE: AtomicU64 = AtomicU64::new(1);

/// The demo trading API's routes.
pub fn upstream_router() -> Router {
    Router::new()
        .route("/v1/ticker", get(ticker))
        .route("/v1/depth", get(depth))
        .route("/v1/orders", post(place_order))
        .route("/v1/orders/{id}", delete(cancel_order))
}

fn symbol(params: &HashMap<String, String>) -> String {
    params
        .get("symbol")
        .cloned()
        .unwrap_or_else(|| "BTC-USD".into())
}

async fn ticker(Query(params): Query<HashMap<String, String>>) -> Json<Value> {
    Json(json!({
        "symbol": symbol(&params),
        "bid": "64010.50",
        "ask": "64012.00",
        "last": "64011.25",
        "volume_24h": "1834.2291",
    }))
}

async fn depth(Query(params): Query<HashMap<String, String>>) -> Json<Value> {
    let levels: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(5)
        .clamp(1, 50);
    let bids: Vec<Value> = (0..levels)
        .map(|i| json!([format!("{}.00", 64010 - i), "0.5"]))
        .collect();
    let asks: Vec<Value> = (0..levels)
        .map(|i| json!([format!("{}.00", 64012 + i), "0.5"]))
        .collect();
    Json(json!({ "symbol": symbol(&params), "bids": bids, "asks": asks }))
}

#[derive(Debug, Deserialize)]
struct OrderRequest {
    symbol: String,
    side: String,
    qty: String,
    #[serde(default)]
    price: Option<String>,
}

async fn place_order(
    body: Result<Json<OrderRequest>, axum::extract::rejection::JsonRejection>,
) -> (StatusCode, [(&'static str, &'static str); 1], Json<Value>) {
    let Ok(Json(order)) = body else {
        return (
            StatusCode::BAD_REQUEST,
            [("tollgate-usage", "order_sent=0")],
            Json(json!({"error": "expected JSON {symbol, side, qty, price?}"})),
        );
    };
    let n = ORDER_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    (
        StatusCode::CREATED,
        // What this execution used, for tollgate to meter and price; it
        // strips the header before the client sees the answer.
        [("tollgate-usage", "order_sent=1, compute_ms=3")],
        Json(json!({
            "order_id": format!("ord_{n:08}"),
            "status": "accepted",
            "symbol": order.symbol,
            "side": order.side,
            "qty": order.qty,
            "price": order.price,
        })),
    )
}

async fn cancel_order(Path(id): Path<String>) -> Json<Value> {
    Json(json!({ "order_id": id, "status": "cancelled" }))
}
