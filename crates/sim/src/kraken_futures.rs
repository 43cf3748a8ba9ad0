//! Kraken Futures REST (`/krakenfutures/derivatives/api/v3/...`).
//!
//! Private calls carry `APIKey`, `Authent` and optionally `Nonce`, and
//! spend a cost budget per key (500 per 10 s; sliding window or refilling
//! bucket, configurable). A refusal is `apiLimitExceeded`, with HTTP status
//! `rate_limit_status` (200 by default: the status is not documented, so a
//! client must read the body).

use crate::clock::{Micros, rfc3339_millis};
use crate::config::{FuturesWindow, KrakenFuturesConfig, KrakenFuturesKey};
use crate::limits::{SlidingWindow, TokenBucket, ms, rate, units};
use crate::server::{Ctx, Params, Reply, Request};
use crate::sign;
use crate::stats::Outcome;
use axum::http::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Kraken Futures' state: budgets, recent nonces, open orders.
#[derive(Default)]
pub(crate) struct State {
    budgets: HashMap<String, Budget>,
    nonces: HashMap<String, BTreeSet<u64>>,
    orders: BTreeMap<String, Order>,
    next_id: u64,
}

impl State {
    /// Keeps nonces; clears budgets and orders.
    pub(crate) fn reset(&mut self) {
        self.budgets.clear();
        self.orders.clear();
    }

    fn order_id(&mut self) -> String {
        self.next_id += 1;
        format!("00000000-0000-4000-a000-{:012x}", self.next_id)
    }
}

enum Budget {
    Sliding(SlidingWindow),
    Bucket(TokenBucket),
}

impl Budget {
    fn new(cfg: &KrakenFuturesConfig, now: Micros) -> Self {
        match cfg.window {
            FuturesWindow::Sliding => Budget::Sliding(SlidingWindow::new(ms(cfg.window_ms))),
            FuturesWindow::Bucket => {
                let per_second = cfg.budget as f64 * 1_000.0 / cfg.window_ms.max(1) as f64;
                Budget::Bucket(TokenBucket::new(
                    units(cfg.budget as f64),
                    rate(per_second),
                    now,
                ))
            }
        }
    }

    fn try_spend(&mut self, cost: u64, limit: u64, now: Micros) -> bool {
        match self {
            Budget::Sliding(window) => window.try_add(cost, limit, now).is_ok(),
            Budget::Bucket(bucket) => bucket.try_take(units(cost as f64), now),
        }
    }
}

#[derive(Clone)]
struct Order {
    key: String,
    order_id: String,
    cli_ord_id: Option<String>,
    symbol: String,
    side: String,
    order_type: String,
    size: f64,
    limit_price: Option<f64>,
    received: Micros,
}

impl Order {
    fn to_json(&self) -> Value {
        json!({
            "orderId": self.order_id,
            "cliOrdId": self.cli_ord_id,
            "type": self.order_type,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": self.size,
            "filled": 0.0,
            "limitPrice": self.limit_price,
            "reduceOnly": false,
            "timestamp": rfc3339_millis(self.received),
            "lastUpdateTimestamp": rfc3339_millis(self.received),
        })
    }
}

/// `{"result":"error","error":…,"serverTime":…}`, fields in Kraken's order.
#[derive(Serialize)]
struct ErrorBody<'a> {
    result: &'static str,
    error: &'a str,
    #[serde(rename = "serverTime")]
    server_time: String,
}

fn error(ctx: &Ctx<'_>, status: StatusCode, error: &str, outcome: Outcome) -> Reply {
    let body = ErrorBody {
        result: "error",
        error,
        server_time: rfc3339_millis(ctx.now),
    };
    Reply::json(
        status,
        serde_json::to_string(&body).unwrap_or_default(),
        outcome,
    )
}

/// `apiLimitExceeded` with the configured status (200 by default; the
/// status is not documented).
fn limit_exceeded(ctx: &Ctx<'_>) -> Reply {
    let status = StatusCode::from_u16(ctx.shared.config.kraken_futures.rate_limit_status)
        .unwrap_or(StatusCode::OK);
    error(ctx, status, "apiLimitExceeded", Outcome::RateLimited)
}

fn success(ctx: &Ctx<'_>, mut body: Value) -> Reply {
    if let Some(map) = body.as_object_mut() {
        map.insert("result".to_owned(), json!("success"));
        map.insert("serverTime".to_owned(), json!(rfc3339_millis(ctx.now)));
    }
    Reply::ok(body.to_string())
}

pub(crate) fn storm(ctx: &Ctx<'_>) -> Reply {
    limit_exceeded(ctx)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Tickers,
    SendOrder,
    BatchOrder,
    CancelOrder,
    CancelAllOrders,
    OpenPositions,
    OpenOrders,
}

impl Endpoint {
    fn find(method: &Method, path: &str) -> Option<Self> {
        Some(match (method.as_str(), path) {
            ("GET", "/derivatives/api/v3/tickers") => Endpoint::Tickers,
            ("POST", "/derivatives/api/v3/sendorder") => Endpoint::SendOrder,
            ("POST", "/derivatives/api/v3/batchorder") => Endpoint::BatchOrder,
            ("POST", "/derivatives/api/v3/cancelorder") => Endpoint::CancelOrder,
            ("POST", "/derivatives/api/v3/cancelallorders") => Endpoint::CancelAllOrders,
            ("GET", "/derivatives/api/v3/openpositions") => Endpoint::OpenPositions,
            ("GET", "/derivatives/api/v3/openorders") => Endpoint::OpenOrders,
            _ => return None,
        })
    }
}

pub(crate) fn handle(ctx: &Ctx<'_>, request: &Request) -> Reply {
    let Some(endpoint) = Endpoint::find(&request.method, &request.path) else {
        return error(ctx, StatusCode::NOT_FOUND, "notFound", Outcome::Rejected);
    };
    if endpoint == Endpoint::Tickers {
        return tickers(ctx);
    }
    let cfg = &ctx.shared.config.kraken_futures;
    let key = match authenticate(ctx, cfg, request) {
        Ok(key) => key,
        Err(reply) => return reply,
    };
    let params = if request.method == Method::GET {
        request.query_params()
    } else {
        Params::parse(request.body_str())
    };
    let batch = match endpoint {
        Endpoint::BatchOrder => Some(parse_batch(&params)),
        _ => None,
    };
    let cost = match endpoint {
        Endpoint::SendOrder | Endpoint::CancelOrder => 10,
        Endpoint::BatchOrder => {
            9 + batch
                .as_ref()
                .and_then(|batch| batch.as_ref().ok())
                .map_or(0, |items| items.len() as u64)
        }
        Endpoint::CancelAllOrders => 25,
        Endpoint::OpenPositions | Endpoint::OpenOrders => 2,
        Endpoint::Tickers => 0,
    };
    let mut state = ctx.shared.kraken_futures.lock();
    if !state
        .budgets
        .entry(key.api_key.clone())
        .or_insert_with(|| Budget::new(cfg, ctx.mono))
        .try_spend(cost, cfg.budget, ctx.mono)
    {
        return limit_exceeded(ctx);
    }
    match endpoint {
        Endpoint::SendOrder => send_order(ctx, &mut state, key, &params),
        Endpoint::BatchOrder => match batch {
            Some(Ok(items)) => batch_order(ctx, &mut state, key, &items),
            _ => error(
                ctx,
                StatusCode::BAD_REQUEST,
                "invalidArgument",
                Outcome::Rejected,
            ),
        },
        Endpoint::CancelOrder => cancel_order(ctx, &mut state, key, &params),
        Endpoint::CancelAllOrders => cancel_all(ctx, &mut state, key, &params),
        Endpoint::OpenPositions => success(ctx, json!({ "openPositions": [] })),
        Endpoint::OpenOrders => {
            let open: Vec<Value> = state
                .orders
                .values()
                .filter(|order| order.key == key.api_key)
                .map(Order::to_json)
                .collect();
            success(ctx, json!({ "openOrders": open }))
        }
        Endpoint::Tickers => tickers(ctx),
    }
}

fn tickers(ctx: &Ctx<'_>) -> Reply {
    let ticker = |symbol: &str, mid: f64| {
        json!({
            "symbol": symbol, "bid": mid - 0.5, "ask": mid + 0.5, "last": mid,
            "markPrice": mid, "tag": "perpetual", "pair": symbol.trim_start_matches("PF_"),
            "suspended": false,
        })
    };
    success(
        ctx,
        json!({ "tickers": [ticker("PF_XBTUSD", 65_000.0), ticker("PF_ETHUSD", 3_200.0)] }),
    )
}

fn authenticate<'c>(
    ctx: &Ctx<'_>,
    cfg: &'c KrakenFuturesConfig,
    request: &Request,
) -> Result<&'c KrakenFuturesKey, Reply> {
    let auth_error = || {
        error(
            ctx,
            StatusCode::UNAUTHORIZED,
            "authenticationError",
            Outcome::AuthFailure,
        )
    };
    let Some(key) = request
        .header("apikey")
        .and_then(|id| cfg.keys.iter().find(|key| key.api_key == id))
    else {
        return Err(auth_error());
    };
    let Some(authent) = request.header("authent") else {
        return Err(auth_error());
    };
    let nonce = request.header("nonce").unwrap_or("");
    let post_data: &[u8] = if request.method == Method::GET {
        request.query.as_bytes()
    } else {
        &request.body
    };
    let endpoint_path = request
        .path
        .strip_prefix("/derivatives")
        .unwrap_or(&request.path);
    let secret = sign::decode_secret(&key.secret).unwrap_or_default();
    if !sign::kraken_futures_ok(&secret, post_data, nonce, endpoint_path, authent) {
        return Err(auth_error());
    }
    if !nonce.is_empty() {
        let Ok(value) = nonce.parse::<u64>() else {
            return Err(auth_error());
        };
        let mut state = ctx.shared.kraken_futures.lock();
        let seen = state.nonces.entry(key.api_key.clone()).or_default();
        if seen.contains(&value) {
            return Err(error(
                ctx,
                StatusCode::BAD_REQUEST,
                "nonceDuplicate",
                Outcome::AuthFailure,
            ));
        }
        // Out of order is tolerated among the remembered nonces, never below
        // the lowest of them: before the memory is full, that is the first
        // nonce ever accepted, so a nonce that went backwards is refused
        // from the start.
        let memory = cfg.nonce_memory.max(1);
        if seen.first().is_some_and(|lowest| value < *lowest) {
            return Err(error(
                ctx,
                StatusCode::BAD_REQUEST,
                "nonceBelowThreshold",
                Outcome::AuthFailure,
            ));
        }
        seen.insert(value);
        while seen.len() > memory {
            seen.pop_first();
        }
    }
    Ok(key)
}

/// The instructions of `json={"batchOrder":[…]}`.
fn parse_batch(params: &Params) -> Result<Vec<Value>, ()> {
    let text = params.get("json").ok_or(())?;
    let value: Value = serde_json::from_str(text).map_err(|_| ())?;
    let items = value
        .get("batchOrder")
        .and_then(Value::as_array)
        .ok_or(())?;
    Ok(items.clone())
}

/// Field reader over form params or a batch instruction.
fn field(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name).filter(|value| !value.is_empty())
}

fn new_order(
    ctx: &Ctx<'_>,
    state: &mut State,
    key: &KrakenFuturesKey,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Order, &'static str> {
    let order_type = field(get, "orderType").ok_or("invalidOrderType")?;
    if !matches!(order_type.as_str(), "lmt" | "mkt" | "post" | "ioc") {
        return Err("invalidOrderType");
    }
    let symbol = field(get, "symbol").ok_or("invalidArgument")?;
    let side = field(get, "side").ok_or("invalidSide")?;
    if side != "buy" && side != "sell" {
        return Err("invalidSide");
    }
    let size = field(get, "size")
        .and_then(|size| size.parse::<f64>().ok())
        .filter(|size| *size > 0.0)
        .ok_or("invalidSize")?;
    let limit_price = match order_type.as_str() {
        "mkt" => None,
        _ => Some(
            field(get, "limitPrice")
                .and_then(|price| price.parse::<f64>().ok())
                .ok_or("invalidPrice")?,
        ),
    };
    Ok(Order {
        key: key.api_key.clone(),
        order_id: state.order_id(),
        cli_ord_id: field(get, "cliOrdId"),
        symbol,
        side,
        order_type,
        size,
        limit_price,
        received: ctx.now,
    })
}

fn send_order(ctx: &Ctx<'_>, state: &mut State, key: &KrakenFuturesKey, params: &Params) -> Reply {
    let get = |name: &str| params.get(name).map(str::to_owned);
    let order = match new_order(ctx, state, key, &get) {
        Ok(order) => order,
        Err(status) => {
            return success(
                ctx,
                json!({ "sendStatus": { "status": status, "receivedTime": rfc3339_millis(ctx.now) } }),
            )
            .outcome(Outcome::Rejected);
        }
    };
    let body = json!({
        "sendStatus": {
            "order_id": order.order_id,
            "cliOrdId": order.cli_ord_id,
            "status": "placed",
            "receivedTime": rfc3339_millis(ctx.now),
            "orderEvents": [{ "type": "PLACE", "order": order.to_json(), "reducedQuantity": null }],
        }
    });
    state.orders.insert(order.order_id.clone(), order);
    if ctx.chance(ctx.faults.unknown_outcome) {
        return Reply::unknown(&ctx.faults);
    }
    success(ctx, body).placed(1)
}

fn find_order(
    state: &State,
    key: &KrakenFuturesKey,
    get: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let order_id = field(get, "order_id");
    let cli_ord_id = field(get, "cliOrdId");
    state
        .orders
        .values()
        .find(|order| {
            order.key == key.api_key
                && (order_id.as_deref() == Some(order.order_id.as_str())
                    || (order_id.is_none()
                        && cli_ord_id.is_some()
                        && cli_ord_id == order.cli_ord_id))
        })
        .map(|order| order.order_id.clone())
}

fn cancel_order(
    ctx: &Ctx<'_>,
    state: &mut State,
    key: &KrakenFuturesKey,
    params: &Params,
) -> Reply {
    let get = |name: &str| params.get(name).map(str::to_owned);
    let found = find_order(state, key, &get);
    let received = rfc3339_millis(ctx.now);
    match found.and_then(|id| state.orders.remove(&id)) {
        Some(order) => success(
            ctx,
            json!({ "cancelStatus": {
                "status": "cancelled", "order_id": order.order_id, "cliOrdId": order.cli_ord_id,
                "receivedTime": received,
                "orderEvents": [{ "type": "CANCEL", "uid": order.order_id, "order": order.to_json() }],
            } }),
        )
        .cancelled(1),
        None => success(
            ctx,
            json!({ "cancelStatus": { "status": "notFound", "receivedTime": received } }),
        )
        .outcome(Outcome::Rejected),
    }
}

/// With `partial_cancel`, some orders stay open and are missing from
/// `cancelledOrders`.
fn cancel_all(ctx: &Ctx<'_>, state: &mut State, key: &KrakenFuturesKey, params: &Params) -> Reply {
    let symbol = params.get("symbol");
    let ids: Vec<String> = state
        .orders
        .values()
        .filter(|order| order.key == key.api_key)
        .filter(|order| symbol.is_none_or(|symbol| order.symbol == symbol))
        .map(|order| order.order_id.clone())
        .collect();
    let mut cancelled = Vec::new();
    for id in ids {
        if ctx.chance(ctx.faults.partial_cancel) {
            continue;
        }
        if let Some(order) = state.orders.remove(&id) {
            cancelled.push(json!({ "order_id": order.order_id, "cliOrdId": order.cli_ord_id }));
        }
    }
    let count = cancelled.len() as u64;
    let status = if count == 0 {
        "noOrdersToCancel"
    } else {
        "cancelled"
    };
    success(
        ctx,
        json!({ "cancelStatus": {
            "receivedTime": rfc3339_millis(ctx.now),
            "cancelOnly": symbol.unwrap_or("all"),
            "status": status,
            "cancelledOrders": cancelled,
            "orderEvents": [],
        } }),
    )
    .cancelled(count)
}

/// Batch of `send` and `cancel` instructions, one status each. With
/// `batch_mixed` some `send` entries fail with `insufficientAvailableFunds`.
fn batch_order(ctx: &Ctx<'_>, state: &mut State, key: &KrakenFuturesKey, items: &[Value]) -> Reply {
    let received = rfc3339_millis(ctx.now);
    let mut statuses = Vec::new();
    let (mut placed, mut cancelled) = (0u64, 0u64);
    for item in items {
        let get = |name: &str| -> Option<String> {
            match item.get(name) {
                Some(Value::String(text)) => Some(text.clone()),
                Some(Value::Number(number)) => Some(number.to_string()),
                _ => None,
            }
        };
        let tag = get("order_tag");
        match get("order").as_deref() {
            Some("send") => {
                if ctx.chance(ctx.faults.batch_mixed) {
                    statuses.push(json!({ "order_tag": tag, "status": "insufficientAvailableFunds", "dateTimeReceived": received, "orderEvents": [] }));
                    continue;
                }
                match new_order(ctx, state, key, &get) {
                    Ok(order) => {
                        statuses.push(json!({
                            "order_tag": tag, "order_id": order.order_id, "status": "placed",
                            "dateTimeReceived": received,
                            "orderEvents": [{ "type": "PLACE", "order": order.to_json(), "reducedQuantity": null }],
                        }));
                        state.orders.insert(order.order_id.clone(), order);
                        placed += 1;
                    }
                    Err(status) => statuses.push(json!({ "order_tag": tag, "status": status, "dateTimeReceived": received, "orderEvents": [] })),
                }
            }
            Some("cancel") => {
                let found = find_order(state, key, &get);
                match found.and_then(|id| state.orders.remove(&id)) {
                    Some(order) => {
                        cancelled += 1;
                        statuses.push(json!({ "order_id": order.order_id, "status": "cancelled", "dateTimeReceived": received, "orderEvents": [] }));
                    }
                    None => statuses.push(json!({ "order_id": get("order_id"), "status": "notFound", "dateTimeReceived": received, "orderEvents": [] })),
                }
            }
            _ => statuses
                .push(json!({ "order_tag": tag, "status": "invalidArgument", "orderEvents": [] })),
        }
    }
    success(ctx, json!({ "batchStatus": statuses }))
        .placed(placed)
        .cancelled(cancelled)
}
