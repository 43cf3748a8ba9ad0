//! Deribit JSON-RPC over HTTP GET (`/deribit/api/v2/...`).
//!
//! Private methods need `Authorization: Bearer <access_token>` from
//! `public/auth`. Non-matching-engine requests spend credits (per
//! sub-account, or per IP without a token); matching-engine requests spend
//! the tier's allowance per sub-account. A refusal is 10028
//! `too_many_requests` (HTTP status `rate_limit_status`, 400 by default
//! like every other JSON-RPC error), and it terminates the session: the
//! access token stops working.

use crate::book;
use crate::clock::{MICROS_PER_MS, Micros};
use crate::config::{DeribitClient, DeribitConfig};
use crate::faults::Rng;
use crate::limits::{TokenBucket, UNIT, rate, units};
use crate::server::{Ctx, Params, Reply, Request};
use crate::sign;
use crate::stats::Outcome;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// Deribit's state: sessions, credit pools, open orders.
pub(crate) struct State {
    sessions: HashMap<String, Session>,
    refresh: HashMap<String, String>,
    non_matching: HashMap<String, TokenBucket>,
    matching: HashMap<String, TokenBucket>,
    orders: BTreeMap<String, Order>,
    next_order: u64,
    tokens: Rng,
}

impl Default for State {
    fn default() -> Self {
        State {
            sessions: HashMap::new(),
            refresh: HashMap::new(),
            non_matching: HashMap::new(),
            matching: HashMap::new(),
            orders: BTreeMap::new(),
            next_order: 0,
            // Tokens only need to differ between runs, not to be secret.
            tokens: Rng::new(crate::clock::system_now().unsigned_abs()),
        }
    }
}

impl State {
    /// Keeps sessions (a reset is not a logout); clears pools and orders.
    pub(crate) fn reset(&mut self) {
        self.non_matching.clear();
        self.matching.clear();
        self.orders.clear();
    }

    fn token(&mut self) -> String {
        format!(
            "{:016x}{:016x}",
            self.tokens.next_u64(),
            self.tokens.next_u64()
        )
    }

    fn end_session(&mut self, access_token: &str) {
        if let Some(session) = self.sessions.remove(access_token) {
            self.refresh.remove(&session.refresh_token);
        }
    }
}

struct Session {
    subaccount: String,
    /// On the monotonic clock.
    expires: Micros,
    refresh_token: String,
}

#[derive(Clone)]
struct Order {
    order_id: String,
    subaccount: String,
    instrument: String,
    direction: String,
    amount: f64,
    price: Option<f64>,
    kind: String,
    label: String,
    created: Micros,
}

impl Order {
    fn to_json(&self, state: &str, now: Micros) -> Value {
        json!({
            "order_id": self.order_id,
            "order_state": state,
            "instrument_name": self.instrument,
            "direction": self.direction,
            "amount": self.amount,
            "filled_amount": 0.0,
            "price": self.price.map(Value::from).unwrap_or_else(|| Value::String("market_price".to_owned())),
            "average_price": 0.0,
            "order_type": self.kind,
            "time_in_force": "good_til_cancelled",
            "label": self.label,
            "post_only": false,
            "reduce_only": false,
            "api": true,
            "creation_timestamp": self.created / MICROS_PER_MS,
            "last_update_timestamp": now / MICROS_PER_MS,
        })
    }
}

/// The JSON-RPC envelope, fields in Deribit's order.
#[derive(Serialize)]
struct Envelope {
    jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<RpcError>,
    #[serde(rename = "usIn")]
    us_in: Micros,
    #[serde(rename = "usOut")]
    us_out: Micros,
    #[serde(rename = "usDiff")]
    us_diff: Micros,
    testnet: bool,
}

#[derive(Serialize)]
struct RpcError {
    message: String,
    code: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

fn envelope(ctx: &Ctx<'_>, result: Option<Value>, error: Option<RpcError>) -> String {
    let out = ctx.clock().max(ctx.now);
    let envelope = Envelope {
        jsonrpc: "2.0",
        result,
        error,
        us_in: ctx.now,
        us_out: out,
        us_diff: out - ctx.now,
        testnet: ctx.shared.config.deribit.testnet,
    };
    serde_json::to_string(&envelope).unwrap_or_default()
}

fn ok(ctx: &Ctx<'_>, result: Value) -> Reply {
    Reply::ok(envelope(ctx, Some(result), None))
}

/// A JSON-RPC error. Deribit answers errors over HTTP with 400 (assumed);
/// 10028 with the configured `rate_limit_status` (400 by default).
fn rpc_error(
    ctx: &Ctx<'_>,
    status: StatusCode,
    code: i64,
    message: &str,
    data: Option<Value>,
    outcome: Outcome,
) -> Reply {
    let error = RpcError {
        message: message.to_owned(),
        code,
        data,
    };
    Reply::json(status, envelope(ctx, None, Some(error)), outcome)
}

fn too_many_requests(ctx: &Ctx<'_>) -> Reply {
    let status = StatusCode::from_u16(ctx.shared.config.deribit.rate_limit_status)
        .unwrap_or(StatusCode::BAD_REQUEST);
    rpc_error(
        ctx,
        status,
        10028,
        "too_many_requests",
        None,
        Outcome::RateLimited,
    )
}

fn unauthorized(ctx: &Ctx<'_>) -> Reply {
    rpc_error(
        ctx,
        StatusCode::BAD_REQUEST,
        13009,
        "unauthorized",
        None,
        Outcome::AuthFailure,
    )
}

fn invalid_params(ctx: &Ctx<'_>, param: &str, reason: &str) -> Reply {
    rpc_error(
        ctx,
        StatusCode::BAD_REQUEST,
        -32602,
        "Invalid params",
        Some(json!({ "param": param, "reason": reason })),
        Outcome::Rejected,
    )
}

fn bearer(request: &Request) -> Option<&str> {
    let value = request.header("authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// A storm answer: 10028, and the session ends like a real one.
pub(crate) fn storm(ctx: &Ctx<'_>, request: &Request) -> Reply {
    if ctx.shared.config.deribit.terminate_session_on_limit
        && let Some(token) = bearer(request)
    {
        ctx.shared.deribit.lock().end_session(token);
    }
    too_many_requests(ctx)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    GetTime,
    Auth,
    GetOrderBook,
    Buy,
    Sell,
    Cancel,
    CancelAll,
    GetAccountSummary,
}

impl Method {
    fn find(path: &str) -> Option<Self> {
        Some(match path {
            "/api/v2/public/get_time" => Method::GetTime,
            "/api/v2/public/auth" => Method::Auth,
            "/api/v2/public/get_order_book" => Method::GetOrderBook,
            "/api/v2/private/buy" => Method::Buy,
            "/api/v2/private/sell" => Method::Sell,
            "/api/v2/private/cancel" => Method::Cancel,
            "/api/v2/private/cancel_all" => Method::CancelAll,
            "/api/v2/private/get_account_summary" => Method::GetAccountSummary,
            _ => return None,
        })
    }

    fn private(self) -> bool {
        matches!(
            self,
            Method::Buy
                | Method::Sell
                | Method::Cancel
                | Method::CancelAll
                | Method::GetAccountSummary
        )
    }

    /// Goes to the matching engine (the tier allowance), not the credit pool.
    fn matching_engine(self) -> bool {
        matches!(
            self,
            Method::Buy | Method::Sell | Method::Cancel | Method::CancelAll
        )
    }
}

pub(crate) fn handle(ctx: &Ctx<'_>, request: &Request) -> Reply {
    let cfg = &ctx.shared.config.deribit;
    let Some(method) = Method::find(&request.path) else {
        return rpc_error(
            ctx,
            StatusCode::BAD_REQUEST,
            -32601,
            "Method not found",
            None,
            Outcome::Rejected,
        );
    };
    let params = request.query_params();
    let mut state = ctx.shared.deribit.lock();
    // Who pays: the token's sub-account, or the IP when there is no
    // valid token on a public call.
    let token = bearer(request).map(str::to_owned);
    let session = token.as_deref().and_then(|token| {
        state
            .sessions
            .get(token)
            .filter(|session| session.expires > ctx.mono)
            .map(|session| session.subaccount.clone())
    });
    if method.private() && session.is_none() {
        return unauthorized(ctx);
    }
    let admitted = if method.matching_engine() {
        let tier = cfg
            .matching_engine_tiers
            .get(&cfg.matching_engine_tier)
            .cloned()
            .unwrap_or(crate::config::MatchingEngineTier {
                rate: 5.0,
                burst: 20.0,
            });
        let subaccount = session.clone().unwrap_or_default();
        state
            .matching
            .entry(subaccount)
            .or_insert_with(|| TokenBucket::new(units(tier.burst), rate(tier.rate), ctx.mono))
            .try_take(UNIT, ctx.mono)
    } else {
        let scope = match &session {
            Some(subaccount) => format!("sub:{subaccount}"),
            None => format!("ip:{}", request.ip),
        };
        state
            .non_matching
            .entry(scope)
            .or_insert_with(|| {
                TokenBucket::new(
                    units(cfg.non_matching_max as f64),
                    rate(cfg.non_matching_refill_per_s as f64),
                    ctx.mono,
                )
            })
            .try_take(units(cfg.non_matching_cost as f64), ctx.mono)
    };
    if !admitted {
        if cfg.terminate_session_on_limit
            && session.is_some()
            && let Some(token) = &token
        {
            state.end_session(token);
        }
        return too_many_requests(ctx);
    }
    let subaccount = session.unwrap_or_default();
    match method {
        Method::GetTime => ok(ctx, json!(ctx.now / MICROS_PER_MS)),
        Method::Auth => auth(ctx, cfg, &mut state, &params),
        Method::GetOrderBook => order_book(ctx, &params),
        Method::Buy => place(ctx, &mut state, &subaccount, &params, "buy"),
        Method::Sell => place(ctx, &mut state, &subaccount, &params, "sell"),
        Method::Cancel => cancel(ctx, &mut state, &subaccount, &params),
        Method::CancelAll => cancel_all(ctx, &mut state, &subaccount),
        Method::GetAccountSummary => account_summary(ctx, cfg, &params),
    }
}

fn auth(ctx: &Ctx<'_>, cfg: &DeribitConfig, state: &mut State, params: &Params) -> Reply {
    let invalid_credentials = |reason: &str| {
        rpc_error(
            ctx,
            StatusCode::BAD_REQUEST,
            13004,
            "invalid_credentials",
            Some(json!({ "reason": reason })),
            Outcome::AuthFailure,
        )
    };
    let client = |id: Option<&str>| -> Option<&DeribitClient> {
        let id = id?;
        cfg.clients.iter().find(|client| client.client_id == id)
    };
    let subaccount = match params.get("grant_type") {
        Some("client_credentials") => {
            let Some(found) = client(params.get("client_id")) else {
                return invalid_credentials("unknown client_id");
            };
            if params.get("client_secret") != Some(found.client_secret.as_str()) {
                return invalid_credentials("wrong client_secret");
            }
            found.subaccount.clone()
        }
        Some("client_signature") => {
            let Some(found) = client(params.get("client_id")) else {
                return invalid_credentials("unknown client_id");
            };
            let (Some(timestamp), Some(signature), Some(nonce)) = (
                params.get("timestamp"),
                params.get("signature"),
                params.get("nonce"),
            ) else {
                return invalid_params(
                    ctx,
                    "signature",
                    "timestamp, signature and nonce are required",
                );
            };
            let Ok(sent) = timestamp.parse::<i64>() else {
                return invalid_params(ctx, "timestamp", "not a number of milliseconds");
            };
            let window = crate::limits::ms(cfg.client_signature_window_ms);
            if (sent.saturating_mul(MICROS_PER_MS) - ctx.now).abs() > window {
                return invalid_credentials("timestamp outside of the allowed window");
            }
            let data = params.get("data").unwrap_or("");
            if !sign::deribit_ok(
                found.client_secret.as_bytes(),
                timestamp,
                nonce,
                data,
                signature,
            ) {
                return invalid_credentials("invalid signature");
            }
            found.subaccount.clone()
        }
        Some("refresh_token") => {
            let Some(old) = params
                .get("refresh_token")
                .and_then(|refresh| state.refresh.get(refresh).cloned())
            else {
                return unauthorized(ctx);
            };
            let Some(subaccount) = state
                .sessions
                .get(&old)
                .map(|session| session.subaccount.clone())
            else {
                return unauthorized(ctx);
            };
            state.end_session(&old);
            subaccount
        }
        _ => {
            return invalid_params(
                ctx,
                "grant_type",
                "client_credentials, client_signature or refresh_token",
            );
        }
    };
    let access_token = state.token();
    let refresh_token = state.token();
    let ttl = cfg.token_ttl_s;
    state
        .refresh
        .insert(refresh_token.clone(), access_token.clone());
    state.sessions.insert(
        access_token.clone(),
        Session {
            subaccount,
            expires: ctx.mono.saturating_add(crate::limits::secs(ttl)),
            refresh_token: refresh_token.clone(),
        },
    );
    ok(
        ctx,
        json!({
            "access_token": access_token,
            "expires_in": ttl,
            "refresh_token": refresh_token,
            "scope": "connection mainaccount",
            "token_type": "bearer",
            "enabled_features": [],
        }),
    )
}

fn order_book(ctx: &Ctx<'_>, params: &Params) -> Reply {
    let Some(instrument) = params.get("instrument_name") else {
        return invalid_params(ctx, "instrument_name", "required");
    };
    let depth = params
        .get("depth")
        .and_then(|depth| depth.parse::<usize>().ok())
        .unwrap_or(5)
        .clamp(1, 10_000);
    let (bids, asks) = book::levels(instrument, depth);
    let side = |levels: &[book::Level]| -> Vec<Value> {
        levels
            .iter()
            .map(|level| json!([(level.price * 2.0).round() / 2.0, level.size * 10.0]))
            .collect()
    };
    let best_bid = bids.first().map(|level| (level.price * 2.0).round() / 2.0);
    let best_ask = asks.first().map(|level| (level.price * 2.0).round() / 2.0);
    ok(
        ctx,
        json!({
            "instrument_name": instrument,
            "timestamp": ctx.now / MICROS_PER_MS,
            "state": "open",
            "change_id": 1,
            "bids": side(&bids),
            "asks": side(&asks),
            "best_bid_price": best_bid,
            "best_ask_price": best_ask,
        }),
    )
}

fn place(
    ctx: &Ctx<'_>,
    state: &mut State,
    subaccount: &str,
    params: &Params,
    direction: &str,
) -> Reply {
    let Some(instrument) = params.get("instrument_name") else {
        return invalid_params(ctx, "instrument_name", "required");
    };
    let Some(amount) = params
        .get("amount")
        .and_then(|a| a.parse::<f64>().ok())
        .filter(|a| a.is_finite() && *a > 0.0)
    else {
        return invalid_params(ctx, "amount", "a positive number is required");
    };
    let kind = params.get("type").unwrap_or("limit");
    let price = match kind {
        "limit" => match params.get("price").and_then(|p| p.parse::<f64>().ok()) {
            Some(price) if price > 0.0 => Some(price),
            _ => return invalid_params(ctx, "price", "required for limit orders"),
        },
        "market" => None,
        _ => return invalid_params(ctx, "type", "limit or market"),
    };
    state.next_order += 1;
    let currency = instrument.split('-').next().unwrap_or("BTC");
    let order = Order {
        order_id: format!("{currency}-{}", 100_000 + state.next_order),
        subaccount: subaccount.to_owned(),
        instrument: instrument.to_owned(),
        direction: direction.to_owned(),
        amount,
        price,
        kind: kind.to_owned(),
        label: params.get("label").unwrap_or("").to_owned(),
        created: ctx.now,
    };
    let body = json!({ "order": order.to_json("open", ctx.now), "trades": [] });
    state.orders.insert(order.order_id.clone(), order);
    if ctx.chance(ctx.faults.unknown_outcome) {
        return Reply::unknown(&ctx.faults);
    }
    ok(ctx, body).placed(1)
}

fn cancel(ctx: &Ctx<'_>, state: &mut State, subaccount: &str, params: &Params) -> Reply {
    let Some(order_id) = params.get("order_id") else {
        return invalid_params(ctx, "order_id", "required");
    };
    let mine = state
        .orders
        .get(order_id)
        .is_some_and(|order| order.subaccount == subaccount);
    let order = if mine {
        state.orders.remove(order_id)
    } else {
        None
    };
    let Some(order) = order else {
        return rpc_error(
            ctx,
            StatusCode::BAD_REQUEST,
            11044,
            "not_open_order",
            None,
            Outcome::Rejected,
        );
    };
    ok(ctx, order.to_json("cancelled", ctx.now)).cancelled(1)
}

/// Answers the number of orders cancelled; with `partial_cancel` some stay
/// open and the count is lower.
fn cancel_all(ctx: &Ctx<'_>, state: &mut State, subaccount: &str) -> Reply {
    let ids: Vec<String> = state
        .orders
        .values()
        .filter(|order| order.subaccount == subaccount)
        .map(|order| order.order_id.clone())
        .collect();
    let mut count = 0u64;
    for id in ids {
        if ctx.chance(ctx.faults.partial_cancel) {
            continue;
        }
        state.orders.remove(&id);
        count += 1;
    }
    ok(ctx, json!(count)).cancelled(count)
}

/// The summary, with `limits` reporting the configured pools. Deribit's unit
/// for `non_matching_engine` is not documented: here it is requests (rate
/// per second and burst), i.e. credits divided by the cost.
fn account_summary(ctx: &Ctx<'_>, cfg: &DeribitConfig, params: &Params) -> Reply {
    let Some(currency) = params.get("currency") else {
        return invalid_params(ctx, "currency", "required");
    };
    let tier = cfg.matching_engine_tiers.get(&cfg.matching_engine_tier);
    let cost = cfg.non_matching_cost.max(1) as f64;
    ok(
        ctx,
        json!({
            "currency": currency,
            "balance": 10.0,
            "equity": 10.0,
            "available_funds": 10.0,
            "margin_balance": 10.0,
            "initial_margin": 0.0,
            "maintenance_margin": 0.0,
            "limits": {
                "limits_per_currency": false,
                "non_matching_engine": {
                    "rate": cfg.non_matching_refill_per_s as f64 / cost,
                    "burst": cfg.non_matching_max as f64 / cost,
                },
                "matching_engine": {
                    "trading": { "total": {
                        "rate": tier.map(|t| t.rate),
                        "burst": tier.map(|t| t.burst),
                    } },
                },
            },
        }),
    )
}
