//! Kraken spot REST (`/kraken/0/...`).
//!
//! Errors travel in the `error` array of an HTTP 200. Private calls are
//! POSTs with `API-Key`/`API-Sign` and a `nonce` that must grow per key.
//! Two limiters: the REST call counter per key (every call +1, Ledgers +2;
//! only AddOrder and CancelOrder are exempt) and the trading counter per
//! (account, pair), whose cost for cancels and amends depends on how long
//! the order rested. Both run on the monotonic clock.

use crate::book;
use crate::clock::{MICROS_PER_SEC, Micros, kraken_rfc1123};
use crate::config::{KrakenConfig, KrakenKey};
use crate::limits::{DecayCounter, UNIT, rate, units};
use crate::server::{Ctx, Params, Reply, Request};
use crate::sign;
use crate::stats::Outcome;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

const REST_LIMITED: &str = "EAPI:Rate limit exceeded";
const TRADING_LIMITED: &str = "EOrder:Rate limit exceeded";

/// Kraken's state: counters, nonces, open orders.
#[derive(Default)]
pub(crate) struct State {
    /// REST call counter per API key.
    rest: HashMap<String, DecayCounter>,
    /// Trading counter per (account, pair).
    trading: HashMap<(String, String), DecayCounter>,
    nonces: HashMap<String, u64>,
    orders: BTreeMap<String, Order>,
    next_id: u64,
}

impl State {
    /// Keeps nonces (Kraken never forgets them); clears counters and orders.
    pub(crate) fn reset(&mut self) {
        self.rest.clear();
        self.trading.clear();
        self.orders.clear();
    }

    /// The trading counter of `account` on `pair`.
    fn trading(
        &mut self,
        cfg: &KrakenConfig,
        account: &str,
        pair: &str,
        now: Micros,
    ) -> &mut DecayCounter {
        self.trading
            .entry((account.to_owned(), pair.to_owned()))
            .or_insert_with(|| DecayCounter::new(rate(cfg.trading_decay_per_s), now))
    }

    fn txid(&mut self) -> String {
        self.next_id += 1;
        let n = self.next_id;
        // Kraken's shape: OXXXXX-XXXXX-XXXXXX.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut digits = String::new();
        let mut value = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n;
        for _ in 0..16 {
            digits.push(char::from(alphabet[(value % 32) as usize]));
            value /= 32;
        }
        format!("O{}-{}-{}", &digits[0..5], &digits[5..10], &digits[10..16])
    }
}

#[derive(Clone)]
struct Order {
    /// Orders belong to the account: any of its keys may cancel them.
    account: String,
    pair: String,
    /// Creation (or last amend), on the monotonic clock: the age that
    /// prices a cancel or an amend.
    rested_since: Micros,
}

/// The trading-counter transactions and their costs, from Kraken's table.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trade {
    Add,
    Amend,
    /// In the table for completeness; the simulator serves no EditOrder.
    #[cfg_attr(not(test), allow(dead_code))]
    Edit,
    Cancel,
    BatchAdd(u32),
    BatchCancel(u32),
}

/// The decaying part by age: <5 s, <10 s, <15 s, <45 s, <90 s, <300 s.
fn by_age(age: Micros, table: [u32; 6]) -> u32 {
    let limits = [5, 10, 15, 45, 90, 300];
    limits
        .iter()
        .zip(table)
        .find(|(limit, _)| age < **limit * MICROS_PER_SEC)
        .map(|(_, cost)| cost)
        .unwrap_or(0)
}

/// What one transaction adds to the pair's counter, in pico-units; `age` is
/// how long the affected order rested (since creation or last amend).
pub(crate) fn trading_cost(trade: Trade, age: Micros) -> i128 {
    let (fixed, decaying) = match trade {
        Trade::Add => (UNIT, 0),
        Trade::Amend => (UNIT, by_age(age, [3, 2, 1, 0, 0, 0])),
        Trade::Edit => (UNIT, by_age(age, [6, 5, 4, 2, 1, 0])),
        Trade::Cancel => (0, by_age(age, [8, 6, 5, 4, 2, 1])),
        Trade::BatchAdd(n) => (i128::from(n) * UNIT / 2, 0),
        Trade::BatchCancel(n) => (0, n * by_age(age, [8, 6, 5, 4, 2, 1])),
    };
    fixed + i128::from(decaying) * UNIT
}

fn errors(list: &[&str]) -> String {
    json!({ "error": list }).to_string()
}

fn refused(error: &str, outcome: Outcome) -> Reply {
    Reply::ok(errors(&[error])).outcome(outcome)
}

fn result(value: Value) -> Reply {
    Reply::ok(json!({ "error": [], "result": value }).to_string())
}

fn is_trading(path: &str) -> bool {
    matches!(
        path,
        "/0/private/AddOrder"
            | "/0/private/CancelOrder"
            | "/0/private/AmendOrder"
            | "/0/private/AddOrderBatch"
            | "/0/private/CancelAll"
    )
}

/// A storm answer: the refusal of the counter the call would use.
pub(crate) fn storm(request: &Request) -> Reply {
    let error = if is_trading(&request.path) {
        TRADING_LIMITED
    } else {
        REST_LIMITED
    };
    refused(error, Outcome::RateLimited)
}

pub(crate) fn handle(ctx: &Ctx<'_>, request: &Request) -> Reply {
    match (request.method.as_str(), request.path.as_str()) {
        ("GET" | "POST", "/0/public/Time") => result(json!({
            "unixtime": ctx.now.div_euclid(MICROS_PER_SEC),
            "rfc1123": kraken_rfc1123(ctx.now),
        })),
        ("GET" | "POST", "/0/public/Depth") => depth(request),
        ("POST", path) if path.starts_with("/0/private/") => private(ctx, request),
        _ => refused("EGeneral:Unknown method", Outcome::Rejected),
    }
}

fn depth(request: &Request) -> Reply {
    let mut params = request.query_params();
    params.extend(Params::parse(request.body_str()));
    let Some(pair) = params.get("pair") else {
        return refused("EGeneral:Invalid arguments", Outcome::Rejected);
    };
    let count = params
        .get("count")
        .and_then(|count| count.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 500);
    let (bids, asks) = book::levels(pair, count);
    let side = |levels: Vec<book::Level>| -> Vec<Value> {
        levels
            .into_iter()
            .map(|level| {
                json!([
                    book::fmt(level.price, 1),
                    book::fmt(level.size, 3),
                    1_616_663_113
                ])
            })
            .collect()
    };
    let mut books = serde_json::Map::new();
    books.insert(
        pair.to_owned(),
        json!({ "asks": side(asks), "bids": side(bids) }),
    );
    result(Value::Object(books))
}

/// The body of a private call: form fields, or the JSON of AddOrderBatch.
enum Body {
    Form(Params),
    Json(Value),
}

impl Body {
    fn get(&self, name: &str) -> Option<String> {
        match self {
            Body::Form(params) => params.get(name).map(str::to_owned),
            Body::Json(value) => match value.get(name) {
                Some(Value::String(text)) if !text.is_empty() => Some(text.clone()),
                Some(Value::Number(number)) => Some(number.to_string()),
                _ => None,
            },
        }
    }
}

fn private(ctx: &Ctx<'_>, request: &Request) -> Reply {
    let cfg = &ctx.shared.config.kraken;
    let auth = |error: &str| refused(error, Outcome::AuthFailure);
    let Some(key) = request
        .header("api-key")
        .and_then(|id| cfg.keys.iter().find(|key| key.api_key == id))
    else {
        return auth("EAPI:Invalid key");
    };
    let body = if request.path == "/0/private/AddOrderBatch" {
        match serde_json::from_slice::<Value>(&request.body) {
            Ok(value) => Body::Json(value),
            Err(_) => return refused("EGeneral:Invalid arguments", Outcome::Rejected),
        }
    } else {
        Body::Form(Params::parse(request.body_str()))
    };
    let Some(nonce_text) = body.get("nonce") else {
        return auth("EAPI:Invalid nonce");
    };
    let Ok(nonce) = nonce_text.parse::<u64>() else {
        return auth("EAPI:Invalid nonce");
    };
    let secret = sign::decode_secret(&key.secret).unwrap_or_default();
    let signature = request.header("api-sign").unwrap_or("");
    if !sign::kraken_ok(
        &secret,
        &request.path,
        &nonce_text,
        &request.body,
        signature,
    ) {
        return auth("EAPI:Invalid signature");
    }
    let mut state = ctx.shared.kraken.lock();
    let last = state.nonces.entry(key.api_key.clone()).or_insert(0);
    if nonce <= *last {
        return auth("EAPI:Invalid nonce");
    }
    *last = nonce;
    let state = &mut *state;
    match request.path.as_str() {
        "/0/private/Balance" => rest_call(ctx, cfg, state, key, 1, |_| {
            result(
                json!({ "ZUSD": "100000.0000", "XXBT": "10.0000000000", "XETH": "100.0000000000" }),
            )
        }),
        "/0/private/Ledgers" => rest_call(ctx, cfg, state, key, 2, |_| {
            result(json!({ "ledger": {}, "count": 0 }))
        }),
        // The two calls the REST counter does not see.
        "/0/private/AddOrder" => add_order(ctx, cfg, state, key, &body),
        "/0/private/CancelOrder" => cancel_order(ctx, cfg, state, key, &body),
        // Every other trading call spends both counters.
        "/0/private/AmendOrder" => rest_call(ctx, cfg, state, key, 1, |state| {
            amend_order(ctx, cfg, state, key, &body)
        }),
        "/0/private/AddOrderBatch" => rest_call(ctx, cfg, state, key, 1, |state| {
            add_batch(ctx, cfg, state, key, &body)
        }),
        "/0/private/CancelAll" => rest_call(ctx, cfg, state, key, 1, |state| {
            cancel_all(ctx, cfg, state, key)
        }),
        _ => refused("EGeneral:Unknown method", Outcome::Rejected),
    }
}

/// Spends `cost` on the key's REST counter around `serve`. When it does not
/// fit, the call is refused with `EAPI:Rate limit exceeded` and `serve` is
/// not run. Otherwise the cost is added whatever `serve` answers, except a
/// rate-limit refusal of its own (the trading counter's): a refused call
/// adds nothing to either counter.
fn rest_call(
    ctx: &Ctx<'_>,
    cfg: &KrakenConfig,
    state: &mut State,
    key: &KrakenKey,
    cost: i128,
    serve: impl FnOnce(&mut State) -> Reply,
) -> Reply {
    let cost = cost * UNIT;
    let fits = state
        .rest
        .entry(key.api_key.clone())
        .or_insert_with(|| DecayCounter::new(rate(cfg.rest_decay_per_s), ctx.mono))
        .fits(cost, units(cfg.rest_max), ctx.mono);
    if !fits {
        return refused(REST_LIMITED, Outcome::RateLimited);
    }
    let reply = serve(state);
    if reply.outcome != Outcome::RateLimited
        && let Some(counter) = state.rest.get_mut(&key.api_key)
    {
        counter.add(cost, ctx.mono);
    }
    reply
}

/// Validates one order's fields; returns its description.
fn describe(order: &dyn Fn(&str) -> Option<String>, pair: &str) -> Result<String, &'static str> {
    let side = order("type").ok_or("EGeneral:Invalid arguments:type")?;
    if side != "buy" && side != "sell" {
        return Err("EGeneral:Invalid arguments:type");
    }
    let kind = order("ordertype").ok_or("EGeneral:Invalid arguments:ordertype")?;
    let volume = order("volume").ok_or("EGeneral:Invalid arguments:volume")?;
    if volume.parse::<f64>().map_or(true, |v| v <= 0.0) {
        return Err("EGeneral:Invalid arguments:volume");
    }
    match kind.as_str() {
        "limit" => {
            let price = order("price").ok_or("EGeneral:Invalid arguments:price")?;
            Ok(format!("{side} {volume} {pair} @ limit {price}"))
        }
        "market" => Ok(format!("{side} {volume} {pair} @ market")),
        _ => Err("EGeneral:Invalid arguments:ordertype"),
    }
}

fn add_order(
    ctx: &Ctx<'_>,
    cfg: &KrakenConfig,
    state: &mut State,
    key: &KrakenKey,
    body: &Body,
) -> Reply {
    let Some(pair) = body.get("pair") else {
        return refused("EGeneral:Invalid arguments:pair", Outcome::Rejected);
    };
    let threshold = units(cfg.trading_threshold);
    let counter = state.trading(cfg, &key.account, &pair, ctx.mono);
    // The fixed cost is added on receipt, even if validation then fails.
    if !counter.try_add(trading_cost(Trade::Add, 0), threshold, ctx.mono) {
        return refused(TRADING_LIMITED, Outcome::RateLimited);
    }
    let description = match describe(&|name| body.get(name), &pair) {
        Ok(description) => description,
        Err(error) => return refused(error, Outcome::Rejected),
    };
    let txid = state.txid();
    state.orders.insert(
        txid.clone(),
        Order {
            account: key.account.clone(),
            pair,
            rested_since: ctx.mono,
        },
    );
    if ctx.chance(ctx.faults.unknown_outcome) {
        return Reply::unknown(&ctx.faults);
    }
    result(json!({ "descr": { "order": description }, "txid": [txid] })).placed(1)
}

/// Finds the account's order named by `txid` and adds the trade's cost (by
/// the order's age) to its pair's trading counter; returns the `txid`, or
/// the refusal.
fn charge_existing(
    ctx: &Ctx<'_>,
    cfg: &KrakenConfig,
    state: &mut State,
    key: &KrakenKey,
    body: &Body,
    trade: Trade,
) -> Result<String, Reply> {
    let Some(txid) = body.get("txid") else {
        return Err(refused(
            "EGeneral:Invalid arguments:txid",
            Outcome::Rejected,
        ));
    };
    let Some(order) = state
        .orders
        .get(&txid)
        .filter(|order| order.account == key.account)
        .cloned()
    else {
        return Err(refused("EOrder:Unknown order", Outcome::Rejected));
    };
    let cost = trading_cost(trade, ctx.mono - order.rested_since);
    let threshold = units(cfg.trading_threshold);
    if !state
        .trading(cfg, &key.account, &order.pair, ctx.mono)
        .try_add(cost, threshold, ctx.mono)
    {
        return Err(refused(TRADING_LIMITED, Outcome::RateLimited));
    }
    Ok(txid)
}

fn cancel_order(
    ctx: &Ctx<'_>,
    cfg: &KrakenConfig,
    state: &mut State,
    key: &KrakenKey,
    body: &Body,
) -> Reply {
    let txid = match charge_existing(ctx, cfg, state, key, body, Trade::Cancel) {
        Ok(txid) => txid,
        Err(reply) => return reply,
    };
    state.orders.remove(&txid);
    result(json!({ "count": 1 })).cancelled(1)
}

/// AmendOrder: `txid` plus `order_qty` and/or `limit_price`; costs +1 and
/// the decaying part by age, and restarts the order's age.
fn amend_order(
    ctx: &Ctx<'_>,
    cfg: &KrakenConfig,
    state: &mut State,
    key: &KrakenKey,
    body: &Body,
) -> Reply {
    let txid = match charge_existing(ctx, cfg, state, key, body, Trade::Amend) {
        Ok(txid) => txid,
        Err(reply) => return reply,
    };
    if body.get("order_qty").is_none() && body.get("limit_price").is_none() {
        return refused("EGeneral:Invalid arguments", Outcome::Rejected);
    }
    if let Some(order) = state.orders.get_mut(&txid) {
        order.rested_since = ctx.mono;
    }
    result(json!({ "amend_id": format!("T{}", txid.get(1..).unwrap_or("")) }))
}

/// AddOrderBatch: JSON body with `pair` and 2 to 15 `orders`; fixed cost
/// n/2. With `batch_mixed` some entries fail, each reported with its own
/// `error`.
fn add_batch(
    ctx: &Ctx<'_>,
    cfg: &KrakenConfig,
    state: &mut State,
    key: &KrakenKey,
    body: &Body,
) -> Reply {
    let Body::Json(json_body) = body else {
        return refused("EGeneral:Invalid arguments", Outcome::Rejected);
    };
    let Some(pair) = body.get("pair") else {
        return refused("EGeneral:Invalid arguments:pair", Outcome::Rejected);
    };
    let Some(orders) = json_body.get("orders").and_then(Value::as_array) else {
        return refused("EGeneral:Invalid arguments:orders", Outcome::Rejected);
    };
    if !(2..=15).contains(&orders.len()) {
        return refused("EGeneral:Invalid arguments:orders", Outcome::Rejected);
    }
    let n = u32::try_from(orders.len()).unwrap_or(15);
    let threshold = units(cfg.trading_threshold);
    if !state.trading(cfg, &key.account, &pair, ctx.mono).try_add(
        trading_cost(Trade::BatchAdd(n), 0),
        threshold,
        ctx.mono,
    ) {
        return refused(TRADING_LIMITED, Outcome::RateLimited);
    }
    let mut results = Vec::new();
    let mut placed = 0u64;
    for order in orders {
        let field = |name: &str| -> Option<String> {
            match order.get(name) {
                Some(Value::String(text)) if !text.is_empty() => Some(text.clone()),
                Some(Value::Number(number)) => Some(number.to_string()),
                _ => None,
            }
        };
        let description = match describe(&field, &pair) {
            Ok(description) => description,
            Err(error) => {
                results.push(json!({ "error": error }));
                continue;
            }
        };
        if ctx.chance(ctx.faults.batch_mixed) {
            results.push(json!({ "error": "EOrder:Insufficient funds" }));
            continue;
        }
        let txid = state.txid();
        state.orders.insert(
            txid.clone(),
            Order {
                account: key.account.clone(),
                pair: pair.clone(),
                rested_since: ctx.mono,
            },
        );
        placed += 1;
        results.push(json!({ "txid": txid, "descr": { "order": description } }));
    }
    result(json!({ "orders": results })).placed(placed)
}

/// CancelAll: the account's open orders, as a batch cancel: always accepted
/// by the trading counter, each order charged by its age on its pair's
/// counter (the REST counter's +1 is charged around it). With
/// `partial_cancel` some orders stay open and the count is lower.
fn cancel_all(ctx: &Ctx<'_>, cfg: &KrakenConfig, state: &mut State, key: &KrakenKey) -> Reply {
    let mine: Vec<(String, Order)> = state
        .orders
        .iter()
        .filter(|(_, order)| order.account == key.account)
        .map(|(txid, order)| (txid.clone(), order.clone()))
        .collect();
    let mut count = 0u64;
    for (txid, order) in mine {
        if ctx.chance(ctx.faults.partial_cancel) {
            continue;
        }
        let cost = trading_cost(Trade::BatchCancel(1), ctx.mono - order.rested_since);
        state
            .trading(cfg, &key.account, &order.pair, ctx.mono)
            .add(cost, ctx.mono);
        state.orders.remove(&txid);
        count += 1;
    }
    result(json!({ "count": count })).cancelled(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Venue;
    use crate::config::{KRAKEN_TEST_SECRET, SimConfig};
    use crate::faults::Faults;
    use crate::server::Shared;

    const S: Micros = MICROS_PER_SEC;

    /// Kraken's per-pair trading counter belongs to the client (account),
    /// not to the API key: two keys of one account fill one counter, a key
    /// of another account has its own. Orders belong to the account too.
    #[test]
    fn keys_of_one_account_share_the_trading_counter() {
        let key = |api_key: &str, account: &str| KrakenKey {
            api_key: api_key.to_owned(),
            secret: KRAKEN_TEST_SECRET.to_owned(),
            account: account.to_owned(),
        };
        let mut config = SimConfig::default();
        config.kraken.trading_threshold = 3.0;
        config.kraken.keys = vec![key("a1", "desk"), key("a2", "desk"), key("b1", "other")];
        let shared = Shared::new(config);
        let cfg = &shared.config.kraken;
        let (a1, a2, b1) = (&cfg.keys[0], &cfg.keys[1], &cfg.keys[2]);
        let at = |mono: Micros| Ctx {
            shared: &shared,
            venue: Venue::Kraken,
            now: mono,
            mono,
            faults: Faults::default().effective(Venue::Kraken),
        };
        let order = Body::Form(Params::parse(
            "pair=XBTUSD&type=buy&ordertype=limit&price=37500&volume=1",
        ));
        let limited = errors(&[TRADING_LIMITED]);
        let mut state = shared.kraken.lock();
        let first = add_order(&at(0), cfg, &mut state, a1, &order);
        assert_eq!(first.outcome, Outcome::Accepted, "{}", first.body);
        assert_eq!(
            add_order(&at(0), cfg, &mut state, a1, &order).outcome,
            Outcome::Accepted
        );
        // The third point on the pair comes from the account's other key.
        assert_eq!(
            add_order(&at(0), cfg, &mut state, a2, &order).outcome,
            Outcome::Accepted
        );
        for key in [a1, a2] {
            let refused = add_order(&at(0), cfg, &mut state, key, &order);
            assert_eq!(refused.outcome, Outcome::RateLimited, "{}", key.api_key);
            assert_eq!(refused.body, limited);
        }
        // Another account, another counter.
        assert_eq!(
            add_order(&at(0), cfg, &mut state, b1, &order).outcome,
            Outcome::Accepted
        );
        // Once the counter has decayed, a2 cancels the order a1 placed;
        // b1 cannot see it.
        let body: Value = serde_json::from_str(&first.body).unwrap();
        let txid = body["result"]["txid"][0].as_str().unwrap().to_owned();
        let cancel = Body::Form(Params::parse(&format!("txid={txid}")));
        let other = cancel_order(&at(100 * S), cfg, &mut state, b1, &cancel);
        assert_eq!(other.body, errors(&["EOrder:Unknown order"]));
        let mine = cancel_order(&at(100 * S), cfg, &mut state, a2, &cancel);
        assert_eq!(mine.outcome, Outcome::Accepted, "{}", mine.body);
    }

    /// Every private call but AddOrder and CancelOrder adds 1 to the key's
    /// REST counter, on top of its trading cost.
    #[test]
    fn trading_calls_other_than_add_and_cancel_spend_the_rest_counter() {
        let mut config = SimConfig::default();
        config.kraken.rest_max = 2.0;
        config.kraken.rest_decay_per_s = 0.001;
        let shared = Shared::new(config);
        let cfg = &shared.config.kraken;
        let key = &cfg.keys[0];
        let ctx = Ctx {
            shared: &shared,
            venue: Venue::Kraken,
            now: 0,
            mono: 0,
            faults: Faults::default().effective(Venue::Kraken),
        };
        let order = Body::Form(Params::parse(
            "pair=XBTUSD&type=buy&ordertype=limit&price=37500&volume=1",
        ));
        let mut state = shared.kraken.lock();
        let placed = add_order(&ctx, cfg, &mut state, key, &order);
        let body: Value = serde_json::from_str(&placed.body).unwrap();
        let txid = body["result"]["txid"][0].as_str().unwrap().to_owned();
        let amend = Body::Form(Params::parse(&format!("txid={txid}&limit_price=37000")));
        let amended = rest_call(&ctx, cfg, &mut state, key, 1, |state| {
            amend_order(&ctx, cfg, state, key, &amend)
        });
        assert_eq!(amended.outcome, Outcome::Accepted, "{}", amended.body);
        let all = rest_call(&ctx, cfg, &mut state, key, 1, |state| {
            cancel_all(&ctx, cfg, state, key)
        });
        assert_eq!(all.outcome, Outcome::Accepted, "{}", all.body);
        // 2 of 2: the next counted call is refused, and adds nothing.
        let again = rest_call(&ctx, cfg, &mut state, key, 1, |state| {
            cancel_all(&ctx, cfg, state, key)
        });
        assert_eq!(again.body, errors(&[REST_LIMITED]));
        // AddOrder and CancelOrder do not see the REST counter.
        let placed = add_order(&ctx, cfg, &mut state, key, &order);
        assert_eq!(placed.outcome, Outcome::Accepted, "{}", placed.body);
        let body: Value = serde_json::from_str(&placed.body).unwrap();
        let txid = body["result"]["txid"][0].as_str().unwrap().to_owned();
        let cancel = Body::Form(Params::parse(&format!("txid={txid}")));
        let cancelled = cancel_order(&ctx, cfg, &mut state, key, &cancel);
        assert_eq!(cancelled.outcome, Outcome::Accepted, "{}", cancelled.body);
    }

    /// Kraken's worked example: add (+1), amend after 7 s (+1 fixed, +2
    /// decaying), cancel 36 s later (+4): 8 on that pair before decay.
    #[test]
    fn worked_example_add_amend_cancel() {
        let add = trading_cost(Trade::Add, 0);
        let amend = trading_cost(Trade::Amend, 7 * S);
        let cancel = trading_cost(Trade::Cancel, 36 * S);
        assert_eq!(add, units(1.0));
        assert_eq!(amend, units(3.0));
        assert_eq!(cancel, units(4.0));
        // On a counter that has not decayed yet (no time passes).
        let mut counter = DecayCounter::new(rate(1.0), 0);
        for cost in [add, amend, cancel] {
            assert!(counter.try_add(cost, units(60.0), 0));
        }
        assert_eq!(counter.value(0), units(8.0));
        // And with Starter decay, 8 points are gone after 8 s.
        assert_eq!(counter.value(8 * S), 0);
    }

    #[test]
    fn cost_table_edges() {
        let cancel = |secs: f64| trading_cost(Trade::Cancel, (secs * 1e6) as Micros) / UNIT;
        assert_eq!(cancel(0.0), 8);
        assert_eq!(cancel(4.999), 8);
        assert_eq!(cancel(5.0), 6);
        assert_eq!(cancel(10.0), 5);
        assert_eq!(cancel(15.0), 4);
        assert_eq!(cancel(45.0), 2);
        assert_eq!(cancel(90.0), 1);
        assert_eq!(cancel(299.0), 1);
        assert_eq!(cancel(300.0), 0);
        assert_eq!(trading_cost(Trade::Edit, 3 * S), units(7.0));
        assert_eq!(trading_cost(Trade::BatchAdd(3), 0), units(1.5));
        assert_eq!(trading_cost(Trade::BatchCancel(4), 6 * S), units(24.0));
    }

    #[test]
    fn starter_trading_threshold() {
        let mut counter = DecayCounter::new(rate(1.0), 0);
        let threshold = units(60.0);
        for n in 0..60 {
            assert!(
                counter.try_add(trading_cost(Trade::Add, 0), threshold, 0),
                "add {n}"
            );
        }
        assert!(!counter.try_add(trading_cost(Trade::Add, 0), threshold, 0));
        // A cancel of a fresh order (+8) needs 8 s of decay first.
        assert!(!counter.try_add(trading_cost(Trade::Cancel, 0), threshold, 7 * S));
        assert!(counter.try_add(trading_cost(Trade::Cancel, 0), threshold, 8 * S));
    }
}
