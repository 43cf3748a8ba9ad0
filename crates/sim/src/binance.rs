//! Binance spot REST (`/binance`).
//!
//! REQUEST_WEIGHT is counted per IP in a fixed window aligned to the clock
//! and reported on every answer in `X-MBX-USED-WEIGHT-<n><unit>`. Order
//! placement and cancels weigh 1 but 0 when they succeed (the 2026-04 rule).
//! New orders also count against the per-account ORDERS windows
//! (`X-MBX-ORDER-COUNT-10S`, `-1D` on success). A request refused for
//! weight adds no weight. Clients that keep sending while a `Retry-After`
//! runs, or that earn too many 429s in a short time, are banned with 418
//! (the ladder lives in the server's backoff gate). The windows are aligned
//! to the venue's clock (skew included) and only ever roll forward.

use crate::book;
use crate::clock::{MICROS_PER_MS, Micros, retry_after_secs};
use crate::config::{BinanceConfig, BinanceKey};
use crate::limits::{AlignedWindow, ms};
use crate::server::{Ctx, Params, Reply, Request};
use crate::sign;
use crate::stats::Outcome;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// Binance's state: weight per IP, order counts per account, open orders.
#[derive(Default)]
pub(crate) struct State {
    weight: HashMap<IpAddr, AlignedWindow>,
    orders_short: HashMap<String, AlignedWindow>,
    orders_long: HashMap<String, AlignedWindow>,
    open: BTreeMap<u64, Order>,
    next_order_id: u64,
}

impl State {
    pub(crate) fn reset(&mut self) {
        *self = State {
            next_order_id: self.next_order_id,
            ..State::default()
        };
    }

    fn weight_window(&mut self, cfg: &BinanceConfig, ip: IpAddr) -> &mut AlignedWindow {
        self.weight
            .entry(ip)
            .or_insert_with(|| AlignedWindow::new(ms(cfg.weight_window_ms)))
    }
}

#[derive(Clone)]
struct Order {
    account: String,
    symbol: String,
    order_id: u64,
    client_order_id: String,
    price: String,
    quantity: String,
    time_in_force: Option<String>,
    kind: String,
    side: String,
    placed: Micros,
}

impl Order {
    fn to_json(&self, status: &str, now: Micros) -> Value {
        let mut order = json!({
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "transactTime": now / MICROS_PER_MS,
            "price": self.price,
            "origQty": self.quantity,
            "executedQty": "0.00000000",
            "cummulativeQuoteQty": "0.00000000",
            "status": status,
            "type": self.kind,
            "side": self.side,
            "workingTime": self.placed / MICROS_PER_MS,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        });
        if let (Some(map), Some(tif)) = (order.as_object_mut(), &self.time_in_force) {
            map.insert("timeInForce".to_owned(), Value::String(tif.clone()));
        }
        order
    }

    fn cancelled_json(&self, now: Micros) -> Value {
        let mut order = self.to_json("CANCELED", now);
        if let Some(map) = order.as_object_mut() {
            map.remove("workingTime");
            map.insert(
                "origClientOrderId".to_owned(),
                Value::String(self.client_order_id.clone()),
            );
        }
        order
    }
}

/// An interval as Binance names it: (intervalNum, letter, interval name).
pub(crate) fn interval(window_ms: u64) -> (u64, char, &'static str) {
    const DAY: u64 = 86_400_000;
    const HOUR: u64 = 3_600_000;
    const MINUTE: u64 = 60_000;
    if window_ms.is_multiple_of(DAY) {
        (window_ms / DAY, 'D', "DAY")
    } else if window_ms.is_multiple_of(HOUR) {
        (window_ms / HOUR, 'H', "HOUR")
    } else if window_ms.is_multiple_of(MINUTE) {
        (window_ms / MINUTE, 'M', "MINUTE")
    } else {
        (window_ms / 1_000, 'S', "SECOND")
    }
}

/// `X-MBX-USED-WEIGHT-1M` for a 60 000 ms window.
pub(crate) fn weight_header(cfg: &BinanceConfig) -> String {
    let (num, letter, _) = interval(cfg.weight_window_ms);
    format!("X-MBX-USED-WEIGHT-{num}{letter}")
}

fn order_count_header(window_ms: u64) -> String {
    let (num, letter, _) = interval(window_ms);
    format!("X-MBX-ORDER-COUNT-{num}{letter}")
}

fn error(status: StatusCode, code: i64, msg: &str, outcome: Outcome) -> Reply {
    Reply::json(
        status,
        json!({ "code": code, "msg": msg }).to_string(),
        outcome,
    )
}

fn weight_refusal(cfg: &BinanceConfig) -> Reply {
    let (num, _, name) = interval(cfg.weight_window_ms);
    error(
        StatusCode::TOO_MANY_REQUESTS,
        -1003,
        &format!(
            "Too much request weight used; current limit is {} request weight per {num} {name}. Please use WebSocket Streams for live updates to avoid polling the API.",
            cfg.weight_limit
        ),
        Outcome::RateLimited,
    )
}

/// The weight this request's IP has used in the current window.
fn used_weight(ctx: &Ctx<'_>, request: &Request) -> u64 {
    let cfg = &ctx.shared.config.binance;
    ctx.shared
        .binance
        .lock()
        .weight_window(cfg, request.ip)
        .used(ctx.now)
}

/// The 418 a banned IP gets, with `Retry-After` until the ban ends (`until`
/// is on the monotonic clock; the body names it on the venue's).
pub(crate) fn banned(ctx: &Ctx<'_>, request: &Request, until: Micros) -> Reply {
    let cfg = &ctx.shared.config.binance;
    let used = used_weight(ctx, request);
    let secs = retry_after_secs(ctx.mono, until);
    let until_venue = ctx.now.saturating_add(until.saturating_sub(ctx.mono));
    error(
        StatusCode::IM_A_TEAPOT,
        -1003,
        &format!(
            "Way too much request weight used; IP banned until {}. Please use WebSocket Streams for live updates to avoid bans.",
            until_venue / MICROS_PER_MS
        ),
        Outcome::Banned,
    )
    .retry_after(ctx.mono, secs)
    .header(&weight_header(cfg), used)
}

/// A storm answer: the weight refusal, with the storm's `Retry-After`.
pub(crate) fn storm(ctx: &Ctx<'_>, request: &Request) -> Reply {
    let cfg = &ctx.shared.config.binance;
    let used = used_weight(ctx, request);
    weight_refusal(cfg)
        .retry_after(ctx.mono, ctx.faults.storm_retry_after_s)
        .header(&weight_header(cfg), used)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Ping,
    Time,
    ExchangeInfo,
    Depth,
    NewOrder,
    CancelOrder,
    CancelOpenOrders,
}

impl Endpoint {
    fn find(method: &Method, path: &str) -> Option<Self> {
        Some(match (method.as_str(), path) {
            ("GET", "/api/v3/ping") => Endpoint::Ping,
            ("GET", "/api/v3/time") => Endpoint::Time,
            ("GET", "/api/v3/exchangeInfo") => Endpoint::ExchangeInfo,
            ("GET", "/api/v3/depth") => Endpoint::Depth,
            ("POST", "/api/v3/order") => Endpoint::NewOrder,
            ("DELETE", "/api/v3/order") => Endpoint::CancelOrder,
            ("DELETE", "/api/v3/openOrders") => Endpoint::CancelOpenOrders,
            _ => return None,
        })
    }

    fn signed(self) -> bool {
        matches!(
            self,
            Endpoint::NewOrder | Endpoint::CancelOrder | Endpoint::CancelOpenOrders
        )
    }
}

/// Depth weight by `limit` (default 100, at most 5000).
fn depth_limit(params: &Params) -> Result<usize, ()> {
    match params.get("limit") {
        None => Ok(100),
        Some(text) => match text.parse::<usize>() {
            Ok(0) | Err(_) => Err(()),
            Ok(limit) => Ok(limit.min(5_000)),
        },
    }
}

fn depth_weight(limit: usize) -> u64 {
    match limit {
        0..=100 => 5,
        101..=500 => 25,
        501..=1_000 => 50,
        _ => 250,
    }
}

pub(crate) fn handle(ctx: &Ctx<'_>, request: &Request) -> Reply {
    let cfg = &ctx.shared.config.binance;
    let header = weight_header(cfg);
    let Some(endpoint) = Endpoint::find(&request.method, &request.path) else {
        let used = ctx
            .shared
            .binance
            .lock()
            .weight_window(cfg, request.ip)
            .used(ctx.now);
        return error(
            StatusCode::NOT_FOUND,
            -1000,
            "Unknown endpoint.",
            Outcome::Rejected,
        )
        .header(&header, used);
    };
    let mut params = request.query_params();
    if endpoint.signed() {
        params.extend(Params::parse(request.body_str()));
    }
    let depth = depth_limit(&params);
    let weight = match endpoint {
        Endpoint::Ping | Endpoint::Time => 1,
        Endpoint::ExchangeInfo => 20,
        Endpoint::Depth => depth.map(depth_weight).unwrap_or(5),
        Endpoint::NewOrder | Endpoint::CancelOrder | Endpoint::CancelOpenOrders => 1,
    };
    let mut state = ctx.shared.binance.lock();
    let window = state.weight_window(cfg, request.ip);
    if !window.fits(weight, cfg.weight_limit, ctx.now) {
        let used = window.used(ctx.now);
        let secs = retry_after_secs(ctx.now, window.end(ctx.now));
        return weight_refusal(cfg)
            .retry_after(ctx.mono, secs)
            .header(&header, used);
    }
    let (reply, charged) = if endpoint.signed() {
        match authenticate(ctx, cfg, request, &params) {
            Err(reply) => (reply, weight),
            Ok(key) => {
                let reply = match endpoint {
                    Endpoint::NewOrder => new_order(ctx, cfg, &mut state, key, &params),
                    Endpoint::CancelOrder => cancel_order(ctx, &mut state, key, &params),
                    _ => cancel_open_orders(ctx, &mut state, key, &params),
                };
                // Order and cancel requests weigh nothing when they succeed.
                let charged = if reply.status.is_success() || reply.outcome == Outcome::Unknown {
                    0
                } else {
                    weight
                };
                (reply, charged)
            }
        }
    } else {
        let reply = match endpoint {
            Endpoint::Ping => Reply::ok("{}"),
            Endpoint::Time => {
                Reply::ok(json!({ "serverTime": ctx.now / MICROS_PER_MS }).to_string())
            }
            Endpoint::ExchangeInfo => exchange_info(ctx, cfg),
            _ => match depth {
                Ok(limit) => depth_book(&params, limit),
                Err(()) => error(
                    StatusCode::BAD_REQUEST,
                    -1130,
                    "Data sent for parameter 'limit' is not valid.",
                    Outcome::Rejected,
                ),
            },
        };
        (reply, weight)
    };
    let used = state.weight_window(cfg, request.ip).add(charged, ctx.now);
    reply.header(&header, used)
}

fn exchange_info(ctx: &Ctx<'_>, cfg: &BinanceConfig) -> Reply {
    let limit = |kind: &str, window_ms: u64, limit: u64| {
        let (num, _, name) = interval(window_ms);
        json!({ "rateLimitType": kind, "interval": name, "intervalNum": num, "limit": limit })
    };
    let symbol = |symbol: &str, base: &str, quote: &str| {
        json!({
            "symbol": symbol, "status": "TRADING", "baseAsset": base, "quoteAsset": quote,
            "orderTypes": ["LIMIT", "MARKET"], "isSpotTradingAllowed": true,
        })
    };
    let body = json!({
        "timezone": "UTC",
        "serverTime": ctx.now / MICROS_PER_MS,
        "rateLimits": [
            limit("REQUEST_WEIGHT", cfg.weight_window_ms, cfg.weight_limit),
            limit("ORDERS", cfg.orders_short_window_ms, cfg.orders_short_limit),
            limit("ORDERS", cfg.orders_long_window_ms, cfg.orders_long_limit),
            limit("RAW_REQUESTS", cfg.raw_requests_window_ms, cfg.raw_requests_limit),
        ],
        "exchangeFilters": [],
        "symbols": [
            symbol("BTCUSDT", "BTC", "USDT"),
            symbol("ETHUSDT", "ETH", "USDT"),
            symbol("LTCBTC", "LTC", "BTC"),
        ],
    });
    Reply::ok(body.to_string())
}

fn depth_book(params: &Params, limit: usize) -> Reply {
    let Some(symbol) = params.get("symbol") else {
        return missing("symbol");
    };
    let (bids, asks) = book::levels(symbol, limit);
    let side = |levels: Vec<book::Level>| -> Vec<Value> {
        levels
            .into_iter()
            .map(|level| json!([book::fmt(level.price, 8), book::fmt(level.size, 8)]))
            .collect()
    };
    Reply::ok(
        json!({ "lastUpdateId": 1_027_024, "bids": side(bids), "asks": side(asks) }).to_string(),
    )
}

fn missing(name: &str) -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        -1102,
        &format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
        Outcome::Rejected,
    )
}

/// Removes `signature=…` from a raw parameter string, keeping the rest
/// byte for byte.
fn without_signature(raw: &str) -> String {
    raw.split('&')
        .filter(|part| !part.is_empty() && !part.starts_with("signature="))
        .collect::<Vec<_>>()
        .join("&")
}

/// A decimal number of milliseconds (up to three decimals) in microseconds.
fn parse_millis(text: &str) -> Option<Micros> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > 3
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut micros = whole.parse::<i64>().ok()?.checked_mul(MICROS_PER_MS)?;
    for (n, digit) in fraction.bytes().enumerate() {
        micros += i64::from(digit - b'0') * 10_i64.pow(2 - n as u32);
    }
    Some(micros)
}

/// `timestamp` in milliseconds (13 digits) or microseconds (16 digits).
fn parse_timestamp(text: &str) -> Option<Micros> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i64 = text.parse().ok()?;
    if text.len() >= 16 {
        Some(value)
    } else {
        value.checked_mul(MICROS_PER_MS)
    }
}

fn authenticate<'c>(
    ctx: &Ctx<'_>,
    cfg: &'c BinanceConfig,
    request: &Request,
    params: &Params,
) -> Result<&'c BinanceKey, Reply> {
    let auth = |status: StatusCode, code: i64, msg: &str| {
        Err(error(status, code, msg, Outcome::AuthFailure))
    };
    let Some(api_key) = request.header("x-mbx-apikey") else {
        return auth(StatusCode::UNAUTHORIZED, -2014, "API-key format invalid.");
    };
    let Some(key) = cfg.keys.iter().find(|key| key.api_key == api_key) else {
        return auth(
            StatusCode::UNAUTHORIZED,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        );
    };
    let Some(signature) = params.get("signature") else {
        return Err(missing("signature").outcome(Outcome::AuthFailure));
    };
    let Some(timestamp) = params.get("timestamp") else {
        return Err(missing("timestamp").outcome(Outcome::AuthFailure));
    };
    let payload = without_signature(&request.query) + &without_signature(request.body_str());
    if !sign::binance_ok(key.secret.as_bytes(), payload.as_bytes(), signature) {
        return auth(
            StatusCode::BAD_REQUEST,
            -1022,
            "Signature for this request is not valid.",
        );
    }
    let recv_window = match params.get("recvWindow") {
        None => ms(cfg.recv_window_default_ms),
        Some(text) => match parse_millis(text) {
            Some(window) if window <= ms(cfg.recv_window_max_ms) => window,
            _ => {
                return auth(
                    StatusCode::BAD_REQUEST,
                    -1131,
                    &format!("recvWindow must be less than {}", cfg.recv_window_max_ms),
                );
            }
        },
    };
    let Some(sent) = parse_timestamp(timestamp) else {
        return Err(missing("timestamp").outcome(Outcome::AuthFailure));
    };
    if sent >= ctx.now + ms(cfg.future_tolerance_ms) {
        return auth(
            StatusCode::BAD_REQUEST,
            -1021,
            &format!(
                "Timestamp for this request was {}ms ahead of the server's time.",
                cfg.future_tolerance_ms
            ),
        );
    }
    if ctx.now - sent > recv_window {
        return auth(
            StatusCode::BAD_REQUEST,
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        );
    }
    Ok(key)
}

fn new_order(
    ctx: &Ctx<'_>,
    cfg: &BinanceConfig,
    state: &mut State,
    key: &BinanceKey,
    params: &Params,
) -> Reply {
    let invalid = |name: &str| {
        error(
            StatusCode::BAD_REQUEST,
            -1130,
            &format!("Data sent for parameter '{name}' is not valid."),
            Outcome::Rejected,
        )
    };
    let Some(symbol) = params.get("symbol") else {
        return missing("symbol");
    };
    let Some(side) = params.get("side") else {
        return missing("side");
    };
    if side != "BUY" && side != "SELL" {
        return invalid("side");
    }
    let Some(kind) = params.get("type") else {
        return missing("type");
    };
    let quantity = params.get("quantity").or(params.get("quoteOrderQty"));
    let Some(quantity) = quantity else {
        return missing("quantity");
    };
    let (price, time_in_force) = match kind {
        "LIMIT" | "LIMIT_MAKER" => {
            let Some(price) = params.get("price") else {
                return missing("price");
            };
            let tif = params.get("timeInForce");
            if kind == "LIMIT" && tif.is_none() {
                return missing("timeInForce");
            }
            (price.to_owned(), tif.map(str::to_owned))
        }
        "MARKET" => ("0.00000000".to_owned(), None),
        _ => return invalid("type"),
    };
    // ORDERS: the unfilled order count per account.
    let account = key.account.clone();
    let short = state
        .orders_short
        .entry(account.clone())
        .or_insert_with(|| AlignedWindow::new(ms(cfg.orders_short_window_ms)));
    let short_full = !short.fits(1, cfg.orders_short_limit, ctx.now);
    let short_end = short.end(ctx.now);
    let long = state
        .orders_long
        .entry(account.clone())
        .or_insert_with(|| AlignedWindow::new(ms(cfg.orders_long_window_ms)));
    let long_full = !long.fits(1, cfg.orders_long_limit, ctx.now);
    let long_end = long.end(ctx.now);
    if short_full || long_full {
        let (limit, window_ms, end) = if long_full {
            (cfg.orders_long_limit, cfg.orders_long_window_ms, long_end)
        } else {
            (
                cfg.orders_short_limit,
                cfg.orders_short_window_ms,
                short_end,
            )
        };
        let (num, _, name) = interval(window_ms);
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            -1015,
            &format!("Too many new orders; current limit is {limit} orders per {num} {name}."),
            Outcome::RateLimited,
        )
        .retry_after(ctx.mono, retry_after_secs(ctx.now, end));
    }
    let short_count = state
        .orders_short
        .get_mut(&account)
        .map(|window| window.add(1, ctx.now))
        .unwrap_or(1);
    let long_count = state
        .orders_long
        .get_mut(&account)
        .map(|window| window.add(1, ctx.now))
        .unwrap_or(1);
    state.next_order_id += 1;
    let order_id = state.next_order_id;
    let order = Order {
        account,
        symbol: symbol.to_owned(),
        order_id,
        client_order_id: params
            .get("newClientOrderId")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("sim{order_id:019}")),
        price,
        quantity: quantity.to_owned(),
        time_in_force,
        kind: kind.to_owned(),
        side: side.to_owned(),
        placed: ctx.now,
    };
    let body = order.to_json("NEW", ctx.now).to_string();
    state.open.insert(order_id, order);
    if ctx.chance(ctx.faults.unknown_outcome) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            -1007,
            "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
            Outcome::Unknown,
        )
        .placed(1);
    }
    Reply::ok(body)
        .placed(1)
        .header(&order_count_header(cfg.orders_short_window_ms), short_count)
        .header(&order_count_header(cfg.orders_long_window_ms), long_count)
}

fn unknown_order() -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        -2011,
        "Unknown order sent.",
        Outcome::Rejected,
    )
}

fn cancel_order(ctx: &Ctx<'_>, state: &mut State, key: &BinanceKey, params: &Params) -> Reply {
    let Some(symbol) = params.get("symbol") else {
        return missing("symbol");
    };
    let order_id = params.get("orderId");
    let client_id = params.get("origClientOrderId");
    if order_id.is_none() && client_id.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            -1102,
            "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            Outcome::Rejected,
        );
    }
    let found = state
        .open
        .values()
        .find(|order| {
            order.account == key.account
                && order.symbol == symbol
                && order_id.is_none_or(|id| id == order.order_id.to_string())
                && client_id.is_none_or(|id| id == order.client_order_id)
        })
        .map(|order| order.order_id);
    let Some(found) = found else {
        return unknown_order();
    };
    let Some(order) = state.open.remove(&found) else {
        return unknown_order();
    };
    Reply::ok(order.cancelled_json(ctx.now).to_string()).cancelled(1)
}

/// Cancels the account's open orders on one symbol. With the
/// `partial_cancel` fault some stay open and are left out of the list.
fn cancel_open_orders(
    ctx: &Ctx<'_>,
    state: &mut State,
    key: &BinanceKey,
    params: &Params,
) -> Reply {
    let Some(symbol) = params.get("symbol") else {
        return missing("symbol");
    };
    let ids: Vec<u64> = state
        .open
        .values()
        .filter(|order| order.account == key.account && order.symbol == symbol)
        .map(|order| order.order_id)
        .collect();
    if ids.is_empty() {
        return unknown_order();
    }
    let mut cancelled = Vec::new();
    for id in ids {
        if ctx.chance(ctx.faults.partial_cancel) {
            continue;
        }
        if let Some(order) = state.open.remove(&id) {
            cancelled.push(order.cancelled_json(ctx.now));
        }
    }
    let count = cancelled.len() as u64;
    Reply::ok(Value::Array(cancelled).to_string()).cancelled(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_messages_follow_the_configured_interval() {
        let mut cfg = BinanceConfig::default();
        assert_eq!(weight_header(&cfg), "X-MBX-USED-WEIGHT-1M");
        assert_eq!(order_count_header(10_000), "X-MBX-ORDER-COUNT-10S");
        assert_eq!(order_count_header(86_400_000), "X-MBX-ORDER-COUNT-1D");
        assert_eq!(
            weight_refusal(&cfg).body,
            r#"{"code":-1003,"msg":"Too much request weight used; current limit is 6000 request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."}"#
        );
        cfg.weight_window_ms = 1_000;
        assert_eq!(weight_header(&cfg), "X-MBX-USED-WEIGHT-1S");
        assert_eq!(interval(3_600_000), (1, 'H', "HOUR"));
        assert_eq!(interval(300_000), (5, 'M', "MINUTE"));
    }

    #[test]
    fn depth_weights_by_limit() {
        let weight = |query: &str| depth_limit(&Params::parse(query)).map(depth_weight);
        assert_eq!(weight(""), Ok(5));
        assert_eq!(weight("limit=100"), Ok(5));
        assert_eq!(weight("limit=101"), Ok(25));
        assert_eq!(weight("limit=500"), Ok(25));
        assert_eq!(weight("limit=1000"), Ok(50));
        assert_eq!(weight("limit=5000"), Ok(250));
        assert_eq!(weight("limit=9000"), Ok(250));
        assert_eq!(weight("limit=0"), Err(()));
        assert_eq!(weight("limit=abc"), Err(()));
    }

    #[test]
    fn signed_payload_and_times() {
        assert_eq!(
            without_signature("symbol=A&signature=ff&timestamp=1"),
            "symbol=A&timestamp=1"
        );
        assert_eq!(without_signature("signature=ff"), "");
        assert_eq!(
            parse_timestamp("1499827319559"),
            Some(1_499_827_319_559_000)
        );
        assert_eq!(
            parse_timestamp("1499827319559123"),
            Some(1_499_827_319_559_123)
        );
        assert_eq!(parse_timestamp("-1"), None);
        assert_eq!(parse_millis("5000"), Some(5_000_000));
        assert_eq!(parse_millis("5000.5"), Some(5_000_500));
        assert_eq!(parse_millis("0.001"), Some(1));
        assert_eq!(parse_millis("1.0001"), None);
    }
}
