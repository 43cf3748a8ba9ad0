//! Coinbase Exchange REST (`/coinbase`).
//!
//! Public endpoints spend a lazy-fill bucket per IP, private ones a bucket
//! per profile. Private requests carry `CB-ACCESS-KEY`, `CB-ACCESS-SIGN`,
//! `CB-ACCESS-TIMESTAMP` and `CB-ACCESS-PASSPHRASE`; they are authenticated
//! first (a refused signature takes no token), then limited. The Exchange
//! documents no rate-limit headers: `x-ratelimit-*` are only sent with
//! `send_rate_limit_headers`.

use crate::book;
use crate::clock::{MICROS_PER_SEC, Micros, iso8601_micros, retry_after_secs};
use crate::config::{CoinbaseConfig, CoinbaseKey};
use crate::limits::{TokenBucket, UNIT, rate, units};
use crate::server::{Ctx, Reply, Request};
use crate::sign;
use crate::stats::Outcome;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

const PUBLIC_LIMITED: &str = r#"{"message":"Public rate limit exceeded"}"#;
const PRIVATE_LIMITED: &str = r#"{"message":"Private rate limit exceeded"}"#;

/// Coinbase's state: buckets and open orders.
#[derive(Default)]
pub(crate) struct State {
    public: HashMap<IpAddr, TokenBucket>,
    private: HashMap<String, TokenBucket>,
    orders: BTreeMap<String, Order>,
    next_id: u64,
}

impl State {
    pub(crate) fn reset(&mut self) {
        *self = State {
            next_id: self.next_id,
            ..State::default()
        };
    }
}

struct Order {
    id: String,
    profile: String,
    product_id: String,
    side: String,
    kind: String,
    price: Option<String>,
    size: Option<String>,
    funds: Option<String>,
    client_oid: Option<String>,
    created: Micros,
}

impl Order {
    fn to_json(&self, status: &str) -> Value {
        let mut order = json!({
            "id": self.id,
            "product_id": self.product_id,
            "side": self.side,
            "type": self.kind,
            "stp": "dc",
            "time_in_force": "GTC",
            "post_only": false,
            "created_at": iso8601_micros(self.created),
            "fill_fees": "0.0000000000000000",
            "filled_size": "0.00000000",
            "executed_value": "0.0000000000000000",
            "status": status,
            "settled": false,
        });
        if let Some(map) = order.as_object_mut() {
            for (name, value) in [
                ("price", &self.price),
                ("size", &self.size),
                ("funds", &self.funds),
                ("client_oid", &self.client_oid),
            ] {
                if let Some(value) = value {
                    map.insert(name.to_owned(), Value::String(value.clone()));
                }
            }
        }
        order
    }
}

fn message(status: StatusCode, text: &str, outcome: Outcome) -> Reply {
    Reply::json(status, json!({ "message": text }).to_string(), outcome)
}

fn is_private(request: &Request) -> bool {
    request.path == "/orders" || request.path.starts_with("/orders/")
}

/// The refusal a storm answers with: the bucket the request would use.
pub(crate) fn storm(ctx: &Ctx<'_>, request: &Request) -> Reply {
    let body = if is_private(request) {
        PRIVATE_LIMITED
    } else {
        PUBLIC_LIMITED
    };
    let reply = Reply::json(StatusCode::TOO_MANY_REQUESTS, body, Outcome::RateLimited);
    if ctx.shared.config.coinbase.send_retry_after {
        reply.retry_after(ctx.mono, ctx.faults.storm_retry_after_s)
    } else {
        reply
    }
}

pub(crate) fn handle(ctx: &Ctx<'_>, request: &Request) -> Reply {
    let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["time"]) => public(ctx, request, |ctx, _| time(ctx)),
        ("GET", ["products", product, "book"]) => {
            let product = (*product).to_owned();
            public(ctx, request, move |_, request| book(&product, request))
        }
        ("POST", ["orders"]) => private(ctx, request, place),
        ("DELETE", ["orders"]) => private(ctx, request, cancel_all),
        ("DELETE", ["orders", id]) => {
            let id = (*id).to_owned();
            private(ctx, request, move |ctx, state, key, _| {
                cancel_one(ctx, state, key, &id)
            })
        }
        _ => message(StatusCode::NOT_FOUND, "NotFound", Outcome::Rejected),
    }
}

fn public(
    ctx: &Ctx<'_>,
    request: &Request,
    serve: impl FnOnce(&Ctx<'_>, &Request) -> Reply,
) -> Reply {
    let cfg = &ctx.shared.config.coinbase;
    {
        let mut state = ctx.shared.coinbase.lock();
        let bucket = state.public.entry(request.ip).or_insert_with(|| {
            TokenBucket::new(units(cfg.public_burst), rate(cfg.public_rate), ctx.mono)
        });
        if !bucket.try_take(UNIT, ctx.mono) {
            let reply = Reply::json(
                StatusCode::TOO_MANY_REQUESTS,
                PUBLIC_LIMITED,
                Outcome::RateLimited,
            );
            return if cfg.send_retry_after {
                let secs = retry_after_secs(ctx.mono, bucket.available_at(UNIT));
                reply.retry_after(ctx.mono, secs)
            } else {
                reply
            };
        }
    }
    serve(ctx, request)
}

fn time(ctx: &Ctx<'_>) -> Reply {
    let epoch = ctx.now as f64 / MICROS_PER_SEC as f64;
    Reply::ok(json!({ "iso": iso8601_micros(ctx.now), "epoch": epoch }).to_string())
}

fn book(product: &str, request: &Request) -> Reply {
    let params = request.query_params();
    let (depth, by_order) = match params.get("level").unwrap_or("1") {
        "1" => (1, false),
        "2" => (50, false),
        "3" => (50, true),
        _ => return message(StatusCode::BAD_REQUEST, "Invalid level", Outcome::Rejected),
    };
    let (bids, asks) = book::levels(product, depth);
    // Levels 1 and 2: [price, size, number of orders]; level 3: one entry
    // per order, [price, size, order id].
    let side = |levels: Vec<book::Level>| -> Vec<Value> {
        levels
            .into_iter()
            .enumerate()
            .map(|(n, level)| {
                let price = book::fmt(level.price, 2);
                let size = book::fmt(level.size, 8);
                if by_order {
                    json!([price, size, format!("00000000-0000-4000-9000-{n:012x}")])
                } else {
                    json!([price, size, 1 + n % 3])
                }
            })
            .collect()
    };
    let body = json!({
        "bids": side(bids),
        "asks": side(asks),
        "sequence": 1,
        "auction_mode": false,
        "auction": null,
    });
    Reply::ok(body.to_string())
}

/// The private path: authenticate, then spend the profile's bucket, then
/// serve. With `send_rate_limit_headers`, every answer after authentication
/// carries the `x-ratelimit-*` headers of the profile's bucket.
fn private(
    ctx: &Ctx<'_>,
    request: &Request,
    serve: impl FnOnce(&Ctx<'_>, &mut State, &CoinbaseKey, &Request) -> Reply,
) -> Reply {
    let cfg = &ctx.shared.config.coinbase;
    let key = match authenticate(ctx, cfg, request) {
        Ok(key) => key,
        Err(reply) => return reply,
    };
    let mut state = ctx.shared.coinbase.lock();
    let bucket = state
        .private
        .entry(key.profile_id.clone())
        .or_insert_with(|| {
            TokenBucket::new(units(cfg.private_burst), rate(cfg.private_rate), ctx.mono)
        });
    let admitted = bucket.try_take(UNIT, ctx.mono);
    let limit = cfg.private_burst;
    let remaining = bucket.tokens().max(0) / UNIT;
    // The bucket lives on the monotonic clock; the reset is reported on the
    // venue's.
    let full_at = ctx
        .now
        .saturating_add(bucket.full_at().saturating_sub(ctx.mono));
    let reset = (full_at + MICROS_PER_SEC - 1).div_euclid(MICROS_PER_SEC);
    let retry = retry_after_secs(ctx.mono, bucket.available_at(UNIT));
    let reply = if admitted {
        serve(ctx, &mut state, key, request)
    } else {
        let reply = Reply::json(
            StatusCode::TOO_MANY_REQUESTS,
            PRIVATE_LIMITED,
            Outcome::RateLimited,
        );
        if cfg.send_retry_after {
            reply.retry_after(ctx.mono, retry)
        } else {
            reply
        }
    };
    if !cfg.send_rate_limit_headers {
        return reply;
    }
    reply
        .header("x-ratelimit-limit", limit)
        .header("x-ratelimit-remaining", remaining)
        .header("x-ratelimit-reset", reset)
}

fn authenticate<'c>(
    ctx: &Ctx<'_>,
    cfg: &'c CoinbaseConfig,
    request: &Request,
) -> Result<&'c CoinbaseKey, Reply> {
    let unauthorized = |text: &str| message(StatusCode::UNAUTHORIZED, text, Outcome::AuthFailure);
    let Some(key_id) = request.header("cb-access-key") else {
        return Err(unauthorized("CB-ACCESS-KEY header is required"));
    };
    let Some(key) = cfg.keys.iter().find(|key| key.key == key_id) else {
        return Err(unauthorized("Invalid API Key"));
    };
    let (Some(timestamp), Some(signature)) = (
        request.header("cb-access-timestamp"),
        request.header("cb-access-sign"),
    ) else {
        return Err(unauthorized(
            "CB-ACCESS-SIGN and CB-ACCESS-TIMESTAMP headers are required",
        ));
    };
    let Some(sent) = parse_decimal_seconds(timestamp) else {
        return Err(message(
            StatusCode::BAD_REQUEST,
            "invalid timestamp",
            Outcome::AuthFailure,
        ));
    };
    let window = crate::limits::ms(cfg.timestamp_window_ms);
    if (sent - ctx.now).abs() > window {
        return Err(unauthorized("request timestamp expired"));
    }
    if request.header("cb-access-passphrase") != Some(key.passphrase.as_str()) {
        return Err(unauthorized("invalid passphrase"));
    }
    let mut request_path = request.path.clone();
    if cfg.sign_query && !request.query.is_empty() {
        request_path.push('?');
        request_path.push_str(&request.query);
    }
    let secret = sign::decode_secret(&key.secret).unwrap_or_default();
    if !sign::coinbase_ok(
        &secret,
        timestamp,
        request.method.as_str(),
        &request_path,
        &request.body,
        signature,
    ) {
        return Err(unauthorized("invalid signature"));
    }
    Ok(key)
}

/// Seconds since the epoch with optional decimals, to microseconds.
fn parse_decimal_seconds(text: &str) -> Option<Micros> {
    let text = text.trim();
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds: i64 = whole.parse().ok()?;
    let mut micros: i64 = 0;
    for (n, digit) in fraction.bytes().take(6).enumerate() {
        micros += i64::from(digit - b'0') * 10_i64.pow(5 - n as u32);
    }
    seconds.checked_mul(MICROS_PER_SEC)?.checked_add(micros)
}

fn place(ctx: &Ctx<'_>, state: &mut State, key: &CoinbaseKey, request: &Request) -> Reply {
    let bad = |text: &str| message(StatusCode::BAD_REQUEST, text, Outcome::Rejected);
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return bad("Invalid JSON body");
    };
    let text = |name: &str| -> Option<String> {
        match body.get(name) {
            Some(Value::String(value)) if !value.is_empty() => Some(value.clone()),
            Some(Value::Number(value)) => Some(value.to_string()),
            _ => None,
        }
    };
    let Some(product_id) = text("product_id") else {
        return bad("product_id is required");
    };
    let side = text("side").unwrap_or_default();
    if side != "buy" && side != "sell" {
        return bad("side must be buy or sell");
    }
    let kind = text("type").unwrap_or_else(|| "limit".to_owned());
    let (price, size, funds) = (text("price"), text("size"), text("funds"));
    match kind.as_str() {
        "limit" if price.is_none() || size.is_none() => {
            return bad("price and size are required for limit orders");
        }
        "market" if size.is_none() && funds.is_none() => {
            return bad("size or funds is required for market orders");
        }
        "limit" | "market" | "stop" => {}
        _ => return bad("Invalid order type"),
    }
    state.next_id += 1;
    let order = Order {
        id: format!("00000000-0000-4000-8000-{:012x}", state.next_id),
        profile: key.profile_id.clone(),
        product_id,
        side,
        kind,
        price,
        size,
        funds,
        client_oid: text("client_oid"),
        created: ctx.now,
    };
    let answer = order.to_json("pending").to_string();
    state.orders.insert(order.id.clone(), order);
    if ctx.chance(ctx.faults.unknown_outcome) {
        return Reply::unknown(&ctx.faults);
    }
    Reply::ok(answer).placed(1)
}

fn cancel_one(_ctx: &Ctx<'_>, state: &mut State, key: &CoinbaseKey, id: &str) -> Reply {
    let found = state
        .orders
        .get(id)
        .is_some_and(|order| order.profile == key.profile_id);
    if !found {
        return message(StatusCode::NOT_FOUND, "order not found", Outcome::Rejected);
    }
    state.orders.remove(id);
    Reply::ok(Value::String(id.to_owned()).to_string()).cancelled(1)
}

/// Cancels the profile's open orders (of one product if `product_id` is
/// given) and answers the list of cancelled ids. With the `partial_cancel`
/// fault some stay open and are simply not in the list.
fn cancel_all(ctx: &Ctx<'_>, state: &mut State, key: &CoinbaseKey, request: &Request) -> Reply {
    let params = request.query_params();
    let product = params.get("product_id");
    let candidates: Vec<String> = state
        .orders
        .values()
        .filter(|order| order.profile == key.profile_id)
        .filter(|order| product.is_none_or(|product| order.product_id == product))
        .map(|order| order.id.clone())
        .collect();
    let mut cancelled = Vec::new();
    for id in candidates {
        if ctx.chance(ctx.faults.partial_cancel) {
            continue;
        }
        state.orders.remove(&id);
        cancelled.push(Value::String(id));
    }
    let count = cancelled.len() as u64;
    Reply::ok(Value::Array(cancelled).to_string()).cancelled(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_timestamps() {
        assert_eq!(
            parse_decimal_seconds("1712345678"),
            Some(1_712_345_678_000_000)
        );
        assert_eq!(
            parse_decimal_seconds("1712345678.123"),
            Some(1_712_345_678_123_000)
        );
        assert_eq!(
            parse_decimal_seconds("1712345678.1234567"),
            Some(1_712_345_678_123_456)
        );
        assert_eq!(parse_decimal_seconds("17e9"), None);
        assert_eq!(parse_decimal_seconds(""), None);
        assert_eq!(parse_decimal_seconds("-5"), None);
    }
}
