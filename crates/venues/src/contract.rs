//! A venue's contract compiled from configuration: its budgets, what each
//! call costs, which calls are signed, and how its refusals read.

use http::Method;
use serde_json::Value;
use tollgate_core::venue::{BudgetKind, UNIT};

use crate::config::{
    BucketKind, CostConfig, EndpointConfig, ErrorAction, ErrorRule, HeaderReports, Scope,
    VenueConfig,
};

/// A contract that cannot work, found at start-up.
#[derive(Debug, thiserror::Error)]
#[error("venues.{venue}: {message}")]
pub struct ContractError {
    pub venue: String,
    pub message: String,
}

/// One budget of the contract.
#[derive(Debug, Clone)]
pub struct BucketSpec {
    pub name: String,
    pub kind: BudgetKind,
    pub scope: Scope,
    pub scope_param: Option<String>,
    /// Lower-case header name carrying the venue's count.
    pub header: Option<String>,
    pub reports: HeaderReports,
    /// Units held back (micro-units); a `remaining` report is lowered by it.
    pub reserve: u64,
}

#[derive(Debug, Clone)]
enum Cost {
    Fixed(u64),
    Steps {
        param: String,
        default: f64,
        steps: Vec<(f64, u64)>,
    },
    Items {
        base: u64,
        per_item: u64,
        field: Option<String>,
        pointer: String,
    },
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    Any,
    Rest,
}

#[derive(Debug, Clone)]
struct Endpoint {
    method: Option<Method>,
    segments: Vec<Segment>,
    signed: bool,
    costs: Vec<(usize, Cost)>,
}

/// The compiled contract.
#[derive(Debug, Clone)]
pub struct Contract {
    pub buckets: Vec<BucketSpec>,
    endpoints: Vec<Endpoint>,
    default_costs: Vec<(usize, Cost)>,
    /// Each rule with the index of the bucket it names.
    errors: Vec<(ErrorRule, Option<usize>)>,
}

/// A bot's call as the contract sees it (path relative to the venue root).
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a [u8],
}

/// What a call will spend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub signed: bool,
    /// (bucket index, micro-units, scope value for per-pair budgets).
    pub costs: Vec<(usize, u64, Option<String>)>,
}

/// A refusal the contract recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub action: ErrorAction,
    pub scope: Scope,
    /// The budget the refusal is about, when the rule names one: its
    /// breaker then holds only calls that spend that budget.
    pub bucket: Option<usize>,
    pub backoff_ms: u64,
    /// Forget the session token (the rule says so, or its action is
    /// `reauthenticate`).
    pub reauthenticate: bool,
}

fn units(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        (value * UNIT as f64).round() as u64
    } else {
        0
    }
}

impl Contract {
    /// Checks and compiles one venue's configuration.
    pub fn compile(venue: &str, config: &VenueConfig) -> Result<Contract, ContractError> {
        let fail = |message: String| ContractError {
            venue: venue.to_owned(),
            message,
        };
        let mut buckets = Vec::new();
        for b in &config.buckets {
            if buckets.iter().any(|x: &BucketSpec| x.name == b.name) {
                return Err(fail(format!("bucket {:?} is declared twice", b.name)));
            }
            let need = |v: Option<f64>, field: &str| {
                v.filter(|x| x.is_finite() && *x > 0.0).ok_or_else(|| {
                    fail(format!(
                        "bucket {:?} ({:?}) needs a positive {field}",
                        b.name, b.kind
                    ))
                })
            };
            let reserve = units(b.reserve);
            let kind = match b.kind {
                BucketKind::TokenBucket => BudgetKind::TokenBucket {
                    capacity: units(need(b.capacity, "capacity")?).saturating_sub(reserve),
                    refill_per_second: units(need(b.refill_per_second, "refill_per_second")?),
                },
                BucketKind::Decaying => BudgetKind::TokenBucket {
                    capacity: units(need(b.max, "max")?).saturating_sub(reserve),
                    refill_per_second: units(need(b.decay_per_second, "decay_per_second")?),
                },
                BucketKind::FixedWindow | BucketKind::SlidingWindow => {
                    let limit = units(need(b.limit, "limit")?).saturating_sub(reserve);
                    let window_ms = b.window_ms.filter(|w| *w > 0).ok_or_else(|| {
                        fail(format!("bucket {:?} needs a positive window_ms", b.name))
                    })?;
                    if b.guard_ms < 0 || b.guard_ms * 2 >= window_ms {
                        return Err(fail(format!(
                            "bucket {:?}: guard_ms must be at least 0 and under half of window_ms",
                            b.name
                        )));
                    }
                    if b.kind == BucketKind::FixedWindow {
                        BudgetKind::FixedWindow {
                            limit,
                            window_ms,
                            guard_ms: b.guard_ms,
                        }
                    } else {
                        BudgetKind::SlidingWindow {
                            limit,
                            window_ms,
                            guard_ms: b.guard_ms,
                        }
                    }
                }
            };
            if b.scope == Scope::Pair && b.scope_param.is_none() {
                return Err(fail(format!(
                    "bucket {:?} has scope \"pair\" and needs scope_param",
                    b.name
                )));
            }
            let reports = b.header_reports.unwrap_or(match b.kind {
                BucketKind::FixedWindow | BucketKind::SlidingWindow => HeaderReports::Used,
                BucketKind::TokenBucket | BucketKind::Decaying => HeaderReports::Remaining,
            });
            buckets.push(BucketSpec {
                name: b.name.clone(),
                kind,
                scope: b.scope,
                scope_param: b.scope_param.clone(),
                header: b.header.as_ref().map(|h| h.to_ascii_lowercase()),
                reports,
                reserve,
            });
        }
        let compile_costs = |costs: &std::collections::BTreeMap<String, CostConfig>| {
            costs
                .iter()
                .map(|(name, cost)| {
                    let index = buckets
                        .iter()
                        .position(|b| &b.name == name)
                        .ok_or_else(|| fail(format!("a cost names unknown bucket {name:?}")))?;
                    Ok((index, compile_cost(cost)))
                })
                .collect::<Result<Vec<_>, ContractError>>()
        };
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| compile_endpoint(e, &compile_costs(&e.cost)?).map_err(fail))
            .collect::<Result<Vec<_>, _>>()?;
        let default_costs = compile_costs(&config.default_cost)?;
        let mut errors = Vec::new();
        for rule in &config.errors {
            let bucket =
                match &rule.bucket {
                    None => None,
                    Some(name) => Some(buckets.iter().position(|b| &b.name == name).ok_or_else(
                        || fail(format!("an error rule names unknown bucket {name:?}")),
                    )?),
                };
            errors.push((rule.clone(), bucket));
            if rule.status.is_none() && rule.pointer.is_none() && rule.body_contains.is_none() {
                return Err(fail(
                    "an error rule needs status, pointer or body_contains".into(),
                ));
            }
            if rule.pointer.is_some() != rule.equals.is_some() {
                return Err(fail(
                    "an error rule's pointer needs equals (and back)".into(),
                ));
            }
        }
        Ok(Contract {
            buckets,
            endpoints,
            default_costs,
            errors,
        })
    }

    /// What `call` costs and whether it is signed.
    pub fn plan(&self, call: &Call<'_>) -> Plan {
        let endpoint = self.endpoints.iter().find(|e| e.matches(call));
        let (signed, named): (bool, &[(usize, Cost)]) = match endpoint {
            Some(e) => (e.signed, &e.costs),
            None => (false, &[]),
        };
        // The endpoint's own costs, then the default for every bucket it
        // does not name.
        let defaults = self
            .default_costs
            .iter()
            .filter(|(index, _)| !named.iter().any(|(i, _)| i == index));
        let costs = named
            .iter()
            .chain(defaults)
            .map(|(index, cost)| {
                let scope_value = self.buckets[*index]
                    .scope_param
                    .as_deref()
                    .map(|p| param(call, p).unwrap_or_default());
                (*index, cost.evaluate(call), scope_value)
            })
            .filter(|(_, cost, _)| *cost > 0)
            .collect();
        Plan { signed, costs }
    }

    /// The first error rule matching a venue answer.
    pub fn classify(&self, status: u16, body: &[u8]) -> Option<Refusal> {
        let json = std::cell::OnceCell::new();
        let text = String::from_utf8_lossy(body);
        self.errors
            .iter()
            .find(|(rule, _)| {
                rule.status.is_none_or(|s| s == status)
                    && rule.body_contains.as_ref().is_none_or(|t| text.contains(t))
                    && match (&rule.pointer, &rule.equals) {
                        (Some(pointer), Some(expected)) => json
                            .get_or_init(|| serde_json::from_slice::<Value>(body).ok())
                            .as_ref()
                            .and_then(|v| v.pointer(pointer))
                            .is_some_and(|v| v == expected),
                        _ => true,
                    }
            })
            .map(|(rule, bucket)| Refusal {
                action: rule.action,
                scope: bucket.map_or(rule.scope, |i| self.buckets[i].scope),
                bucket: *bucket,
                backoff_ms: rule.backoff_ms,
                reauthenticate: rule.reauthenticate || rule.action == ErrorAction::Reauthenticate,
            })
    }
}

fn compile_cost(cost: &CostConfig) -> Cost {
    match cost {
        CostConfig::Fixed(n) => Cost::Fixed(units(*n)),
        CostConfig::Steps {
            param,
            default,
            steps,
        } => Cost::Steps {
            param: param.clone(),
            default: *default,
            steps: steps.iter().map(|(bound, c)| (*bound, units(*c))).collect(),
        },
        CostConfig::Items {
            base,
            per_item,
            field,
            pointer,
        } => Cost::Items {
            base: units(*base),
            per_item: units(*per_item),
            field: field.clone(),
            pointer: pointer.clone(),
        },
    }
}

fn compile_endpoint(e: &EndpointConfig, costs: &[(usize, Cost)]) -> Result<Endpoint, String> {
    let method = e
        .method
        .as_deref()
        .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
        .transpose()
        .map_err(|_| format!("endpoint {:?}: bad method", e.path))?;
    if !e.path.starts_with('/') {
        return Err(format!("endpoint path {:?} must start with /", e.path));
    }
    let parts: Vec<&str> = e.path[1..].split('/').collect();
    let mut segments = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        segments.push(if *part == "*" {
            if i + 1 != parts.len() {
                return Err(format!("endpoint {:?}: * must be last", e.path));
            }
            Segment::Rest
        } else if part.starts_with('{') && part.ends_with('}') {
            Segment::Any
        } else {
            Segment::Literal((*part).to_owned())
        });
    }
    Ok(Endpoint {
        method,
        segments,
        signed: e.signed,
        costs: costs.to_vec(),
    })
}

impl Endpoint {
    fn matches(&self, call: &Call<'_>) -> bool {
        if self.method.as_ref().is_some_and(|m| m != call.method) {
            return false;
        }
        let mut parts = call.path.strip_prefix('/').unwrap_or(call.path).split('/');
        for segment in &self.segments {
            match segment {
                Segment::Rest => return true,
                Segment::Any => {
                    if parts.next().is_none_or(str::is_empty) {
                        return false;
                    }
                }
                Segment::Literal(text) => {
                    if parts.next() != Some(text.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

impl Cost {
    fn evaluate(&self, call: &Call<'_>) -> u64 {
        match self {
            Cost::Fixed(n) => *n,
            Cost::Steps {
                param: name,
                default,
                steps,
            } => {
                let value = param(call, name)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(*default);
                steps
                    .iter()
                    .find(|(bound, _)| value <= *bound)
                    .or(steps.last())
                    .map_or(0, |(_, c)| *c)
            }
            Cost::Items {
                base,
                per_item,
                field,
                pointer,
            } => {
                let json: Option<Value> = match field {
                    Some(name) => param(call, name).and_then(|v| serde_json::from_str(&v).ok()),
                    None => serde_json::from_slice(call.body).ok(),
                };
                let n = json
                    .as_ref()
                    .and_then(|v| v.pointer(pointer))
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len) as u64;
                base + per_item * n
            }
        }
    }
}

/// A request parameter: from the query string, then a form body, then a
/// JSON body's top level.
pub fn param(call: &Call<'_>, name: &str) -> Option<String> {
    let from_pairs = |text: &[u8]| {
        form_pairs(text)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    };
    from_pairs(call.query.as_bytes())
        .or_else(|| from_pairs(call.body))
        .or_else(|| {
            serde_json::from_slice::<Value>(call.body)
                .ok()?
                .get(name)
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
        })
}

/// `a=1&b=2` decoded; not-form text yields nothing useful and is harmless.
fn form_pairs(text: &[u8]) -> Vec<(String, String)> {
    if text.first() == Some(&b'{') || text.first() == Some(&b'[') {
        return Vec::new();
    }
    url::form_urlencoded::parse(text).into_owned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(toml_text: &str) -> Contract {
        let config: VenueConfig = toml::from_str(toml_text).unwrap();
        Contract::compile("test", &config).unwrap()
    }

    const BINANCE: &str = r#"
kind = "binance"
base_url = "http://x"
[[buckets]]
name = "weight"
kind = "fixed_window"
limit = 6000
window_ms = 60000
scope = "ip"
header = "X-MBX-USED-WEIGHT-1M"
[[endpoints]]
method = "GET"
path = "/api/v3/depth"
cost.weight = { param = "limit", default = 100, steps = [[100, 5], [500, 25], [1000, 50], [5000, 250]] }
[[endpoints]]
method = "DELETE"
path = "/api/v3/order/{id}/*"
signed = true
cost.weight = 3
[default_cost]
weight = 1
[[errors]]
status = 418
action = "ban"
scope = "ip"
[[errors]]
status = 429
pointer = "/code"
equals = -1015
action = "backoff"
[[errors]]
status = 429
action = "backoff"
scope = "ip"
"#;

    fn call<'a>(method: &'a Method, path: &'a str, query: &'a str, body: &'a [u8]) -> Call<'a> {
        Call {
            method,
            path,
            query,
            body,
        }
    }

    #[test]
    fn depth_weight_follows_limit_steps() {
        let c = contract(BINANCE);
        let get = Method::GET;
        let cost = |q: &str| c.plan(&call(&get, "/api/v3/depth", q, b"")).costs[0].1 / UNIT;
        assert_eq!(cost("symbol=BTCUSDT"), 5);
        assert_eq!(cost("symbol=BTCUSDT&limit=100"), 5);
        assert_eq!(cost("limit=101"), 25);
        assert_eq!(cost("limit=1000"), 50);
        assert_eq!(cost("limit=5000"), 250);
        // Unmatched calls cost the default and are not signed.
        let plan = c.plan(&call(&get, "/api/v3/ticker", "", b""));
        assert_eq!(plan.costs, vec![(0, UNIT, None)]);
        assert!(!plan.signed);
    }

    #[test]
    fn path_patterns_match_segments() {
        let c = contract(BINANCE);
        let del = Method::DELETE;
        assert!(c.plan(&call(&del, "/api/v3/order/12/x/y", "", b"")).signed);
        assert!(!c.plan(&call(&del, "/api/v3/order", "", b"")).signed);
        assert!(
            !c.plan(&call(&Method::GET, "/api/v3/order/12/x", "", b""))
                .signed
        );
    }

    #[test]
    fn item_costs_count_a_json_array() {
        let c = contract(
            r#"
kind = "kraken_futures"
base_url = "http://x"
[[buckets]]
name = "derivatives"
kind = "sliding_window"
limit = 500
window_ms = 10000
[[buckets]]
name = "trading"
kind = "decaying"
max = 60
decay_per_second = 1
scope = "pair"
scope_param = "pair"
[[endpoints]]
path = "/derivatives/api/v3/batchorder"
cost.derivatives = { base = 9, per_item = 1, field = "json", pointer = "/batchOrder" }
[[endpoints]]
path = "/0/private/AddOrderBatch"
cost.trading = { per_item = 0.5, pointer = "/orders" }
"#,
        );
        let post = Method::POST;
        let batch = r#"{"batchOrder":[{"order":"send"},{"order":"send"},{"order":"cancel"}]}"#;
        let body = format!(
            "json={}",
            url::form_urlencoded::byte_serialize(batch.as_bytes()).collect::<String>()
        );
        let plan = c.plan(&call(
            &post,
            "/derivatives/api/v3/batchorder",
            "",
            body.as_bytes(),
        ));
        assert_eq!(plan.costs, vec![(0, 12 * UNIT, None)]);
        let body = br#"{"pair":"XBTUSD","orders":[{},{},{}]}"#;
        let plan = c.plan(&call(&post, "/0/private/AddOrderBatch", "", body));
        assert_eq!(plan.costs, vec![(1, 1_500_000, Some("XBTUSD".into()))]);
    }

    #[test]
    fn refusals_are_classified_in_order() {
        let c = contract(BINANCE);
        assert_eq!(c.classify(418, b"{}").unwrap().action, ErrorAction::Ban);
        let orders = c
            .classify(429, br#"{"code":-1015,"msg":"Too many new orders"}"#)
            .unwrap();
        assert_eq!(orders.scope, Scope::Account);
        let weight = c.classify(429, br#"{"code":-1003}"#).unwrap();
        assert_eq!(weight.scope, Scope::Ip);
        assert!(c.classify(200, b"{}").is_none());
    }

    #[test]
    fn bad_contracts_are_refused_with_the_reason() {
        let bad = |text: &str| {
            let config: VenueConfig = toml::from_str(text).unwrap();
            Contract::compile("x", &config).unwrap_err().to_string()
        };
        let msg = bad(
            "kind = \"binance\"\nbase_url = \"http://x\"\n[[buckets]]\nname = \"w\"\nkind = \"fixed_window\"\nlimit = 10\n",
        );
        assert!(msg.contains("window_ms"), "{msg}");
        let msg = bad("kind = \"binance\"\nbase_url = \"http://x\"\n[default_cost]\nnope = 1\n");
        assert!(msg.contains("unknown bucket"), "{msg}");
    }
}
