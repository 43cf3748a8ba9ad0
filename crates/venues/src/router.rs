//! The router: for each bot call, cost it, wait in the venue's queue for
//! capacity (or answer 429 locally), sign it, send it, and learn from the
//! answer (the venue's own counts, its refusals).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;
use tollgate_core::venue::{Budget, Report, Ticket, UNIT, Wait};

use crate::config::{ClockUnit, ErrorAction, HeaderReports, Scope, VenueConfig, VenueKind};
use crate::contract::{Call, Contract, ContractError, Plan, Refusal};
use crate::meter::{Meter, Sink};
use crate::sign::{CredentialsError, Outgoing, Signer};

/// A clock reading whose round trip took longer is not used: its error
/// (half the round trip) would exceed the default boundary guard.
const MAX_CLOCK_RTT_MS: i64 = 500;

/// The longest `Retry-After` honoured (Binance's longest ban).
const MAX_BACKOFF_MS: u64 = 3 * 24 * 3600 * 1000;

/// Wall-clock milliseconds on this host.
pub fn local_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Why the router could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Contract(#[from] ContractError),
    #[error("venues.{venue}.credentials: {source}")]
    Credentials {
        venue: String,
        source: CredentialsError,
    },
    #[error(
        "venues.{0}: the name must be lower-case letters, digits, '-' or '_', not starting with '_'"
    )]
    Name(String),
    #[error("venues.{venue}.base_url: {message}")]
    BaseUrl { venue: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// A call the router answered itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalRefusal {
    /// Capacity will not come within the queue bound (or the queue is full).
    Capacity { retry_after_ms: u64 },
    /// The venue told us to back off (or banned us) for longer than the bound.
    Backoff { retry_after_ms: u64, banned: bool },
    /// The call costs more than the budget can ever hold.
    TooExpensive { bucket: String },
}

/// What the router answers a bot.
#[derive(Debug)]
pub enum Outcome {
    /// The venue's answer, passed on.
    Venue {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        waited: Duration,
    },
    Refused(LocalRefusal),
    /// The venue could not be reached (no connection): nothing was delivered.
    Unreachable(String),
    /// The venue did not answer in time: the outcome is unknown.
    Timeout,
    /// The connection broke after the call may have been written: the
    /// outcome is unknown.
    ConnectionLost(String),
    /// The call's URL cannot be sent as it is.
    BadRequest(String),
    /// Deribit authentication failed.
    AuthFailed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Breaker {
    Closed,
    /// `strikes`: refusals in a row without a success in between; each one
    /// after the first doubles the wait (a venue that keeps refusing is not
    /// probed every `Retry-After`, which Binance punishes with a ban).
    Open {
        until_ms: i64,
        banned: bool,
        strikes: u32,
    },
    HalfOpen {
        probing: bool,
        strikes: u32,
    },
}

impl Breaker {
    fn strikes(self) -> u32 {
        match self {
            Breaker::Closed => 0,
            Breaker::Open { strikes, .. } | Breaker::HalfOpen { strikes, .. } => strikes,
        }
    }
}

/// Budgets and breakers, keyed by owner (host for IP scope, else venue
/// name), name, and scope value.
type BudgetKey = (String, String, Option<String>);
/// (owner, what it holds: a scope name or `bucket:<name>`, scope value).
type BreakerKey = (String, String, Option<String>);

#[derive(Default)]
struct Shared {
    budgets: HashMap<BudgetKey, Budget>,
    breakers: HashMap<BreakerKey, Breaker>,
}

struct Venue {
    name: String,
    kind: VenueKind,
    /// Who shares this entry's IP-scoped budgets: the venue API and host
    /// (`Binance@api.binance.com:443`), computed once.
    ip_owner: String,
    base: String,
    contract: Contract,
    signer: Option<Signer>,
    config: VenueConfig,
    /// Venue clock minus local clock, in ms.
    offset_ms: AtomicI64,
    turnstile: tokio::sync::Mutex<()>,
    waiting: AtomicUsize,
    token: tokio::sync::Mutex<Option<(String, i64)>>,
    /// The path of `base_url`, which the venue's own paths follow.
    base_path: String,
    /// Kraken refuses a nonce lower than one it has seen (Futures tolerates
    /// little reordering): signed calls go one at a time, in nonce order.
    in_order: Option<tokio::sync::Mutex<()>>,
}

impl Venue {
    fn now(&self) -> i64 {
        local_now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Who shares a budget of `scope`: every entry of the same venue API on
    /// the same host for `ip`, else this entry alone.
    fn owner(&self, scope: Scope) -> String {
        match scope {
            Scope::Ip => self.ip_owner.clone(),
            _ => self.name.clone(),
        }
    }
}

/// The egress router over every configured venue.
pub struct Router {
    venues: BTreeMap<String, Arc<Venue>>,
    shared: Mutex<Shared>,
    client: reqwest::Client,
    meter: Meter,
}

/// One taken budget, to be answered and resynced.
struct Taken {
    key: BudgetKey,
    ticket: Ticket,
    header: Option<String>,
    reports: HeaderReports,
    reserve: u64,
}

struct Admission {
    taken: Vec<Taken>,
    probes: Vec<BreakerKey>,
    /// What the call spent: (bucket index, scope value).
    spent: Vec<(usize, Option<String>)>,
}

enum Step {
    Go(Admission),
    WaitUntil(i64),
    Refuse(LocalRefusal),
}

impl Router {
    /// Compiles every venue's contract and credentials.
    pub fn new(venues: &BTreeMap<String, VenueConfig>) -> Result<Router, RouterError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60))
            // A redirect would carry venue credentials and a signed order
            // to wherever it points: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| RouterError::Client(e.to_string()))?;
        let mut compiled = BTreeMap::new();
        for (name, config) in venues {
            let valid = !name.is_empty()
                && !name.starts_with('_')
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !valid {
                return Err(RouterError::Name(name.clone()));
            }
            let url = url::Url::parse(&config.base_url).map_err(|e| RouterError::BaseUrl {
                venue: name.clone(),
                message: e.to_string(),
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(RouterError::BaseUrl {
                    venue: name.clone(),
                    message: "must be an http:// or https:// URL with a host".into(),
                });
            }
            let host = format!(
                "{}:{}",
                url.host_str().unwrap_or_default(),
                url.port_or_known_default().unwrap_or(0)
            );
            let contract = Contract::compile(name, config)?;
            let signer = config
                .credentials
                .as_ref()
                .map(|c| Signer::new(config.kind, c))
                .transpose()
                .map_err(|source| RouterError::Credentials {
                    venue: name.clone(),
                    source,
                })?;
            compiled.insert(
                name.clone(),
                Arc::new(Venue {
                    name: name.clone(),
                    kind: config.kind,
                    ip_owner: format!("{:?}@{host}", config.kind),
                    base: config.base_url.trim_end_matches('/').to_owned(),
                    contract,
                    signer,
                    config: config.clone(),
                    offset_ms: AtomicI64::new(0),
                    turnstile: tokio::sync::Mutex::new(()),
                    waiting: AtomicUsize::new(0),
                    token: tokio::sync::Mutex::new(None),
                    base_path: url.path().trim_end_matches('/').to_owned(),
                    in_order: matches!(config.kind, VenueKind::Kraken | VenueKind::KrakenFutures)
                        .then(|| tokio::sync::Mutex::new(())),
                }),
            );
        }
        Ok(Router {
            venues: compiled,
            shared: Mutex::new(Shared::default()),
            client,
            meter: Meter::default(),
        })
    }

    /// Sends the router's metrics to `sink` (the host's recorder).
    pub fn with_metrics(mut self, sink: Sink) -> Self {
        self.meter = Meter::new(Some(sink));
        self
    }

    /// Names of the configured venues.
    pub fn venue_names(&self) -> impl Iterator<Item = &str> {
        self.venues.keys().map(String::as_str)
    }

    /// Whether a venue of this name is configured.
    pub fn has_venue(&self, name: &str) -> bool {
        self.venues.contains_key(name)
    }

    /// The measured clock offset of a venue (venue minus local), in ms.
    pub fn clock_offset_ms(&self, venue: &str) -> Option<i64> {
        self.venues
            .get(venue)
            .map(|v| v.offset_ms.load(Ordering::Relaxed))
    }

    /// Measures every venue's clock once (those with a `clock` section).
    pub async fn sync_clocks(&self) {
        for venue in self.venues.values() {
            if let Err(e) = self.sync_clock(venue).await {
                tracing::warn!(venue = %venue.name, error = %e, "venue clock not measured");
            }
        }
    }

    /// Measures every venue's clock again on each venue's interval, forever.
    pub async fn keep_clocks(self: Arc<Self>) {
        let mut next: BTreeMap<String, Instant> = BTreeMap::new();
        loop {
            let now = Instant::now();
            for venue in self.venues.values() {
                let Some(clock) = &venue.config.clock else {
                    continue;
                };
                let due = next
                    .entry(venue.name.clone())
                    .or_insert_with(|| now + Duration::from_secs(clock.interval_seconds.max(1)));
                if *due <= now {
                    if let Err(e) = self.sync_clock(venue).await {
                        tracing::warn!(venue = %venue.name, error = %e, "venue clock not measured");
                    }
                    *due = Instant::now() + Duration::from_secs(clock.interval_seconds.max(1));
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn sync_clock(&self, venue: &Venue) -> anyhow::Result<()> {
        let Some(clock) = &venue.config.clock else {
            return Ok(());
        };
        let started = local_now_ms();
        let outcome = self
            .call(
                venue,
                Method::GET,
                &clock.path,
                "",
                Bytes::new(),
                &HeaderMap::new(),
            )
            .await;
        let finished = local_now_ms();
        let Outcome::Venue {
            status,
            body,
            waited,
            ..
        } = outcome
        else {
            anyhow::bail!("time endpoint not answered: {outcome:?}");
        };
        anyhow::ensure!(status.is_success(), "time endpoint answered {status}");
        // The round trip starts when the call left the queue.
        let started = started + i64::try_from(waited.as_millis()).unwrap_or(0);
        anyhow::ensure!(
            finished - started <= MAX_CLOCK_RTT_MS,
            "round trip of {} ms is too long to measure the clock; keeping the last offset",
            finished - started
        );
        let json: serde_json::Value = serde_json::from_slice(&body)?;
        let value = json
            .pointer(&clock.pointer)
            .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
            .ok_or_else(|| anyhow::anyhow!("no number at {} in the answer", clock.pointer))?;
        let venue_ms = match clock.unit {
            ClockUnit::Ms => value,
            ClockUnit::S => value * 1000.0,
        } as i64;
        // The venue read its clock somewhere between send and receipt: take
        // the middle, so the error is at most half the round trip.
        let offset = venue_ms - (started + finished) / 2;
        venue.offset_ms.store(offset, Ordering::Relaxed);
        self.meter
            .gauge(
                "tollgate_venue_clock_offset_ms",
                &[("venue", venue.name.clone())],
            )
            .set(offset as f64);
        tracing::debug!(venue = %venue.name, offset_ms = offset, rtt_ms = finished - started, "venue clock measured");
        Ok(())
    }

    /// Routes one bot call: `venue` is the first path segment, `path` the rest.
    pub async fn route(
        &self,
        venue: &str,
        method: Method,
        path: &str,
        query: &str,
        body: Bytes,
        headers: &HeaderMap,
    ) -> Option<Outcome> {
        let venue = self.venues.get(venue)?.clone();
        Some(self.call(&venue, method, path, query, body, headers).await)
    }

    async fn call(
        &self,
        venue: &Venue,
        method: Method,
        path: &str,
        query: &str,
        body: Bytes,
        headers: &HeaderMap,
    ) -> Outcome {
        let plan = venue.contract.plan(&Call {
            method: &method,
            path,
            query,
            body: &body,
        });
        // Sign exactly the path and query that will be sent: the URL parser
        // percent-encodes some characters the bot may have sent raw. A call
        // that cannot be sent is refused before it spends any budget.
        let (mut url, path, query) = match venue.normalize(path, query) {
            Ok(normalized) => normalized,
            Err(reason) => return Outcome::BadRequest(reason),
        };
        let token = if plan.signed && venue.kind == VenueKind::Deribit {
            match self.deribit_token(venue).await {
                Ok(token) => token,
                Err(outcome) => return outcome,
            }
        } else {
            None
        };
        let queued = Instant::now();
        let admission = match self.admit(venue, &plan).await {
            Ok(a) => a,
            Err(refusal) => {
                self.meter
                    .counter(
                        "tollgate_venue_local_429_total",
                        &[("venue", venue.name.clone())],
                    )
                    .increment(1);
                return Outcome::Refused(refusal);
            }
        };
        let inflight = Inflight {
            router: self,
            venue,
            admission: Some(admission),
        };
        let waited = queued.elapsed();
        self.meter
            .histogram(
                "tollgate_venue_queue_wait_seconds",
                &[("venue", venue.name.clone())],
            )
            .record(waited.as_secs_f64());
        let mut out = Outgoing {
            method: method.clone(),
            path,
            query,
            body: body.to_vec(),
            headers: Vec::new(),
        };
        let _in_order = match &venue.in_order {
            Some(lock) if plan.signed => Some(lock.lock().await),
            _ => None,
        };
        if plan.signed
            && let Some(signer) = &venue.signer
        {
            signer.sign(&mut out, venue.now(), token.as_deref());
        }
        // Signing adds only URL-safe parameters: the query is set as signed.
        url.set_query((!out.query.is_empty()).then_some(out.query.as_str()));
        let mut request = self
            .client
            .request(out.method.clone(), url)
            .timeout(Duration::from_millis(venue.config.timeout_ms));
        for (name, value) in headers {
            if forwardable(name.as_str()) {
                request = request.header(name, value);
            }
        }
        for (name, value) in &out.headers {
            request = request.header(*name, value);
        }
        let sent = request.body(out.body).send().await;
        let result = match sent {
            Ok(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                match response.bytes().await {
                    Ok(body) => Ok((status, headers, body)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        match result {
            Ok((status, response_headers, response_body)) => {
                let refusal = venue.contract.classify(status.as_u16(), &response_body);
                inflight.answered(&response_headers, refusal);
                if let Some(refusal) = refusal {
                    if refusal.action != ErrorAction::Reauthenticate {
                        self.meter
                            .counter(
                                "tollgate_venue_refusals_total",
                                &[
                                    ("venue", venue.name.clone()),
                                    ("status", status.as_u16().to_string()),
                                ],
                            )
                            .increment(1);
                    }
                    if refusal.reauthenticate {
                        // Forget the refused token only: a newer one may
                        // already be in the slot.
                        let mut slot = venue.token.lock().await;
                        if slot.as_ref().map(|(t, _)| t) == token.as_ref() {
                            *slot = None;
                        }
                    }
                }
                Outcome::Venue {
                    status,
                    headers: response_headers,
                    body: response_body,
                    waited,
                }
            }
            Err(e) => {
                // Dropping `inflight` abandons the call: it may have been
                // counted, its probe is released, the breaker stays as it is.
                drop(inflight);
                if e.is_connect() {
                    Outcome::Unreachable(e.without_url().to_string())
                } else if e.is_timeout() {
                    Outcome::Timeout
                } else {
                    Outcome::ConnectionLost(e.without_url().to_string())
                }
            }
        }
    }

    /// Waits in the venue's queue until every budget the plan names has
    /// room and no breaker stands in the way, then takes the cost.
    async fn admit(&self, venue: &Venue, plan: &Plan) -> Result<Admission, LocalRefusal> {
        let max_wait = Duration::from_millis(venue.config.max_wait_ms);
        let deadline = Instant::now() + max_wait;
        if venue.waiting.load(Ordering::Relaxed) >= venue.config.max_queue {
            return Err(LocalRefusal::Capacity {
                retry_after_ms: venue.config.max_wait_ms.max(1000),
            });
        }
        let _depth = Depth::enter(venue, &self.meter);
        let Ok(_turn) = tokio::time::timeout_at(deadline, venue.turnstile.lock()).await else {
            return Err(LocalRefusal::Capacity {
                retry_after_ms: venue.config.max_wait_ms.max(1000),
            });
        };
        loop {
            let now_local = local_now_ms();
            let step = self.try_admit(venue, plan, now_local);
            let until_local = match step {
                Step::Go(admission) => {
                    for taken in &admission.taken {
                        self.meter
                            .counter(
                                "tollgate_venue_cost_spent_total",
                                &[
                                    ("venue", venue.name.clone()),
                                    ("bucket", taken.key.1.clone()),
                                ],
                            )
                            .increment(taken.ticket.cost() / UNIT);
                    }
                    return Ok(admission);
                }
                Step::Refuse(refusal) => return Err(refusal),
                Step::WaitUntil(until_local) => until_local,
            };
            let wake =
                Instant::now() + Duration::from_millis((until_local - now_local).max(1) as u64);
            if wake > deadline {
                let retry_after_ms = (until_local - now_local).max(1) as u64;
                let shared = self.shared.lock();
                let scopes = call_scopes(venue, plan, &shared);
                let open: Vec<&Breaker> = scopes
                    .iter()
                    .filter_map(|key| shared.breakers.get(key))
                    .filter(|b| matches!(b, Breaker::Open { .. }))
                    .collect();
                let breaker_open = !open.is_empty();
                let banned = open
                    .iter()
                    .any(|b| matches!(b, Breaker::Open { banned: true, .. }));
                return Err(if breaker_open {
                    LocalRefusal::Backoff {
                        retry_after_ms,
                        banned,
                    }
                } else {
                    LocalRefusal::Capacity { retry_after_ms }
                });
            }
            tokio::time::sleep_until(wake).await;
        }
    }

    fn try_admit(&self, venue: &Venue, plan: &Plan, now_local: i64) -> Step {
        let now = now_local + venue.offset_ms.load(Ordering::Relaxed);
        let mut shared = self.shared.lock();
        let scopes = call_scopes(venue, plan, &shared);
        let mut probes = Vec::new();
        for key in &scopes {
            let breaker = shared
                .breakers
                .entry(key.clone())
                .or_insert(Breaker::Closed);
            match *breaker {
                Breaker::Closed => {}
                Breaker::Open { until_ms, .. } if until_ms > now_local => {
                    return Step::WaitUntil(until_ms);
                }
                Breaker::Open { .. } | Breaker::HalfOpen { probing: false, .. } => {
                    probes.push(key.clone());
                }
                // One probe at a time: look again shortly.
                Breaker::HalfOpen { probing: true, .. } => {
                    return Step::WaitUntil(now_local + 10);
                }
            }
        }
        let mut staged = Vec::with_capacity(plan.costs.len());
        let mut wait_until = i64::MIN;
        for (index, cost, value) in &plan.costs {
            let spec = &venue.contract.buckets[*index];
            let key = (venue.owner(spec.scope), spec.name.clone(), value.clone());
            let mut budget = shared
                .budgets
                .get(&key)
                .cloned()
                .unwrap_or_else(|| Budget::new(spec.kind, now));
            match budget.try_take(*cost, now) {
                Ok(ticket) => staged.push((key, budget, ticket, spec)),
                Err(Wait::Until(at)) => wait_until = wait_until.max(at),
                Err(Wait::Never) => {
                    return Step::Refuse(LocalRefusal::TooExpensive {
                        bucket: spec.name.clone(),
                    });
                }
            }
        }
        if wait_until != i64::MIN {
            // Venue clock back to local clock.
            return Step::WaitUntil(wait_until - (now - now_local));
        }
        let mut taken = Vec::with_capacity(staged.len());
        for (key, budget, ticket, spec) in staged {
            shared.budgets.insert(key.clone(), budget);
            taken.push(Taken {
                key,
                ticket,
                header: spec.header.clone(),
                reports: spec.reports,
                reserve: spec.reserve,
            });
        }
        for key in &probes {
            if let Some(b) = shared.breakers.get_mut(key) {
                *b = Breaker::HalfOpen {
                    probing: true,
                    strikes: b.strikes(),
                };
            }
            set_breaker_gauge(&self.meter, &venue.name, &key.1, 2.0);
        }
        Step::Go(Admission {
            taken,
            probes,
            spent: plan
                .costs
                .iter()
                .map(|(index, _, value)| (*index, value.clone()))
                .collect(),
        })
    }

    /// Applies what an answer says: the venue's counts, its refusal, the
    /// probe's result.
    fn learn(
        &self,
        venue: &Venue,
        admission: &Admission,
        headers: &HeaderMap,
        refusal: Option<Refusal>,
    ) {
        let now_local = local_now_ms();
        let now = now_local + venue.offset_ms.load(Ordering::Relaxed);
        let mut shared = self.shared.lock();
        for taken in &admission.taken {
            let Some(budget) = shared.budgets.get_mut(&taken.key) else {
                continue;
            };
            if refusal.is_none()
                && let Some(value) = taken
                    .header
                    .as_deref()
                    .and_then(|h| headers.get(h))
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .filter(|v| v.is_finite() && *v >= 0.0)
            {
                let micro = (value * UNIT as f64).round() as u64;
                let report = match taken.reports {
                    HeaderReports::Used => Report::Used(micro),
                    // The reserve stays held back from what the venue reports.
                    HeaderReports::Remaining => {
                        Report::Remaining(micro.saturating_sub(taken.reserve))
                    }
                };
                budget.resync(&taken.ticket, report, now);
            }
            budget.answered(&taken.ticket, now);
        }
        if let Some(refusal) = refusal.filter(|r| r.action != ErrorAction::Reauthenticate) {
            let wait_ms = retry_after_ms(headers, now_local)
                .unwrap_or(refusal.backoff_ms)
                .min(MAX_BACKOFF_MS);
            let banned = refusal.action == ErrorAction::Ban;
            let keys = refused_keys(venue, admission, &refusal);
            // A probe for another scope learned nothing about its own: let
            // the next call probe it again.
            for key in &admission.probes {
                if !keys.contains(key)
                    && let Some(b) = shared.breakers.get_mut(key)
                    && matches!(b, Breaker::HalfOpen { .. })
                {
                    *b = Breaker::HalfOpen {
                        probing: false,
                        strikes: b.strikes(),
                    };
                }
            }
            for key in keys {
                let entry = shared
                    .breakers
                    .entry(key.clone())
                    .or_insert(Breaker::Closed);
                // A refusal of a call that left before the breaker opened
                // (it was already in flight) is not a new strike.
                let (strikes, current) = match *entry {
                    Breaker::Open {
                        until_ms, strikes, ..
                    } => (strikes, Some(until_ms)),
                    other => (other.strikes() + 1, None),
                };
                let factor = 1u64 << strikes.saturating_sub(1).min(16);
                let wait = wait_ms.saturating_mul(factor).min(MAX_BACKOFF_MS);
                let until_ms = now_local.saturating_add(wait as i64);
                *entry = Breaker::Open {
                    until_ms: current.map_or(until_ms, |c| c.max(until_ms)),
                    banned,
                    strikes,
                };
                set_breaker_gauge(&self.meter, &venue.name, &key.1, 1.0);
                tracing::warn!(venue = %venue.name, scope = %key.1, wait_ms, banned, "venue refused: breaker open");
            }
            let action = if banned { "ban" } else { "backoff" };
            self.meter
                .counter(
                    "tollgate_venue_rate_limited_total",
                    &[("venue", venue.name.clone()), ("action", action.to_owned())],
                )
                .increment(1);
        } else {
            for key in &admission.probes {
                if let Some(b) = shared.breakers.get_mut(key)
                    && matches!(b, Breaker::HalfOpen { .. })
                {
                    *b = Breaker::Closed;
                    set_breaker_gauge(&self.meter, &venue.name, &key.1, 0.0);
                }
            }
        }
    }

    /// A call that got no answer: its tickets may or may not have been
    /// counted by the venue, and its probes learned nothing.
    fn abandon(&self, venue: &Venue, admission: &Admission) {
        let now = local_now_ms() + venue.offset_ms.load(Ordering::Relaxed);
        let mut shared = self.shared.lock();
        for taken in &admission.taken {
            if let Some(budget) = shared.budgets.get_mut(&taken.key) {
                budget.abandoned(&taken.ticket, now);
            }
        }
        for key in &admission.probes {
            if let Some(b) = shared.breakers.get_mut(key)
                && matches!(b, Breaker::HalfOpen { probing: true, .. })
            {
                *b = Breaker::HalfOpen {
                    probing: false,
                    strikes: b.strikes(),
                };
            }
        }
    }

    /// Deribit: a cached access token from `public/auth` (client
    /// credentials), fetched through the same budgets as any call.
    async fn deribit_token(&self, venue: &Venue) -> Result<Option<String>, Outcome> {
        let Some(signer) = &venue.signer else {
            return Ok(None);
        };
        let mut slot = venue.token.lock().await;
        if let Some((token, expires)) = slot.as_ref()
            && *expires > local_now_ms()
        {
            return Ok(Some(token.clone()));
        }
        let (id, secret) = signer.client_credentials();
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", id)
            .append_pair("client_secret", &secret)
            .finish();
        let started = local_now_ms();
        let outcome = Box::pin(self.call(
            venue,
            Method::GET,
            "/api/v2/public/auth",
            &query,
            Bytes::new(),
            &HeaderMap::new(),
        ))
        .await;
        let Outcome::Venue { status, body, .. } = outcome else {
            return Err(outcome);
        };
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let token = json
            .pointer("/result/access_token")
            .and_then(|v| v.as_str());
        let expires_in = json
            .pointer("/result/expires_in")
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        match token {
            Some(token) if status.is_success() => {
                // Renew a little early so a call never carries a token that
                // expires on the way.
                let expires = started + (expires_in * 1000 * 9 / 10);
                *slot = Some((token.to_owned(), expires));
                Ok(Some(token.to_owned()))
            }
            _ => Err(Outcome::AuthFailed(format!(
                "public/auth answered {status} without an access token"
            ))),
        }
    }

    /// A snapshot for `GET /_tollgate/venues`.
    pub fn snapshot(&self) -> serde_json::Value {
        let now_local = local_now_ms();
        let mut shared = self.shared.lock();
        let mut out = serde_json::Map::new();
        for venue in self.venues.values() {
            let now = now_local + venue.offset_ms.load(Ordering::Relaxed);
            let mut budgets = Vec::new();
            for spec in &venue.contract.buckets {
                let owner = venue.owner(spec.scope);
                for ((o, name, value), budget) in shared.budgets.iter_mut() {
                    if *o == owner && *name == spec.name {
                        budgets.push(serde_json::json!({
                            "bucket": name,
                            "scope": spec.scope.as_str(),
                            "scope_value": value,
                            "available": budget.available(now) as f64 / UNIT as f64,
                        }));
                    }
                }
            }
            let breakers: Vec<_> = shared
                .breakers
                .iter()
                .filter(|((owner, _, _), _)| {
                    *owner == venue.name || *owner == venue.owner(Scope::Ip)
                })
                .map(|((_, holds, value), b)| {
                    serde_json::json!({"holds": holds, "scope_value": value, "breaker": b})
                })
                .collect();
            out.insert(
                venue.name.clone(),
                serde_json::json!({
                    "kind": venue.kind,
                    "clock_offset_ms": venue.offset_ms.load(Ordering::Relaxed),
                    "queue_depth": venue.waiting.load(Ordering::Relaxed),
                    "budgets": budgets,
                    "breakers": breakers,
                }),
            );
        }
        serde_json::Value::Object(out)
    }
}

/// The breakers a call answers to: those of the scopes of the budgets it
/// spends, and the key's and the IP's, since every call is sent with the key
/// from the IP.
fn call_scopes(venue: &Venue, plan: &Plan, shared: &Shared) -> Vec<BreakerKey> {
    let mut scopes: Vec<BreakerKey> = Vec::new();
    let mut add = |key: BreakerKey, always: bool| {
        if !scopes.contains(&key) && (always || shared.breakers.contains_key(&key)) {
            scopes.push(key);
        }
    };
    for (index, _, value) in &plan.costs {
        let spec = &venue.contract.buckets[*index];
        let owner = venue.owner(spec.scope);
        add(
            (owner.clone(), spec.scope.as_str().to_owned(), value.clone()),
            true,
        );
        add(
            (owner, format!("bucket:{}", spec.name), value.clone()),
            false,
        );
    }
    for scope in [Scope::Key, Scope::Ip] {
        add((venue.owner(scope), scope.as_str().to_owned(), None), false);
    }
    scopes
}

/// The breakers a refusal opens: the named budget's, or the scope's, with
/// the scope value this call used (the pair it traded) where it has one.
fn refused_keys(venue: &Venue, admission: &Admission, refusal: &Refusal) -> Vec<BreakerKey> {
    let owner = venue.owner(refusal.scope);
    if let Some(bucket) = refusal.bucket {
        let value = admission
            .spent
            .iter()
            .find(|(i, _)| *i == bucket)
            .and_then(|(_, v)| v.clone());
        let name = &venue.contract.buckets[bucket].name;
        return vec![(owner, format!("bucket:{name}"), value)];
    }
    let label = refusal.scope.as_str().to_owned();
    let mut keys: Vec<BreakerKey> = admission
        .spent
        .iter()
        .filter(|(i, _)| venue.contract.buckets[*i].scope == refusal.scope)
        .map(|(_, value)| (owner.clone(), label.clone(), value.clone()))
        .collect();
    keys.dedup();
    if keys.is_empty() {
        keys.push((owner, label, None));
    }
    keys
}

/// An admitted call until its answer is learned. Dropped without an answer
/// (the send failed, or the bot went away and its handler was dropped), it
/// is abandoned, so no probe stays in flight forever.
struct Inflight<'a> {
    router: &'a Router,
    venue: &'a Venue,
    admission: Option<Admission>,
}

impl Inflight<'_> {
    fn answered(mut self, headers: &HeaderMap, refusal: Option<Refusal>) {
        if let Some(admission) = self.admission.take() {
            self.router.learn(self.venue, &admission, headers, refusal);
        }
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        if let Some(admission) = self.admission.take() {
            self.router.abandon(self.venue, &admission);
        }
    }
}

impl Venue {
    /// The path (after the venue root) and query exactly as they will be
    /// sent, percent-encoded the way the HTTP client will encode them.
    /// Also returns the URL itself, which the call is sent to.
    fn normalize(&self, path: &str, query: &str) -> Result<(url::Url, String, String), String> {
        let mut url = url::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| format!("the path cannot be sent: {e}"))?;
        url.set_query((!query.is_empty()).then_some(query));
        let path = url
            .path()
            .strip_prefix(self.base_path.as_str())
            .unwrap_or(url.path())
            .to_owned();
        let query = url.query().unwrap_or("").to_owned();
        Ok((url, path, query))
    }
}

/// Counts a waiting call for as long as it waits.
struct Depth<'a>(&'a Venue, metrics::Gauge);

impl<'a> Depth<'a> {
    fn enter(venue: &'a Venue, meter: &Meter) -> Self {
        let gauge = meter.gauge(
            "tollgate_venue_queue_depth",
            &[("venue", venue.name.clone())],
        );
        let depth = venue.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        gauge.set(depth as f64);
        Depth(venue, gauge)
    }
}

impl Drop for Depth<'_> {
    fn drop(&mut self) {
        let depth = self.0.waiting.fetch_sub(1, Ordering::Relaxed) - 1;
        self.1.set(depth as f64);
    }
}

fn set_breaker_gauge(meter: &Meter, venue: &str, scope: &str, state: f64) {
    meter
        .gauge(
            "tollgate_venue_breaker_state",
            &[("venue", venue.to_owned()), ("scope", scope.to_owned())],
        )
        .set(state);
}

/// Headers a bot's call keeps on its way out: not hop-by-hop, not the host,
/// and no venue credentials (the router adds its own).
fn forwardable(name: &str) -> bool {
    !matches!(
        name,
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
            // The client does not decompress: answers must come back plain
            // so refusals inside them can be read.
            | "accept-encoding"
            | "authorization"
            | "cb-access-key"
            | "cb-access-sign"
            | "cb-access-timestamp"
            | "cb-access-passphrase"
            | "x-mbx-apikey"
            | "api-key"
            | "api-sign"
            | "apikey"
            | "authent"
            | "nonce"
    )
}

/// `Retry-After` as delay-seconds or an HTTP date, in ms from `now_local`.
pub fn retry_after_ms(headers: &HeaderMap, now_local: i64) -> Option<u64> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at_ms = at.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64;
    Some((at_ms - now_local).max(0) as u64)
}
