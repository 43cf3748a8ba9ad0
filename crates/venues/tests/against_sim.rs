//! The router against the venue simulator, over real HTTP on loopback.
//!
//! The simulator (`tollgate-sim`) is written separately from the venues'
//! documentation and shares no limit or signing code with the router, so
//! every signed call it accepts and every limit it does not see broken is
//! evidence from an independent implementation.
//!
//! The proof: for each venue a bot sends three times faster than the venue
//! allows, for eight seconds, with limits scaled down (and windows to one
//! second) so the run is short. The simulator must record no rate-limit
//! refusal at all, and the router must deliver at least 95 % of what the
//! venue allowed in that time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::problem;
use serde::Deserialize;
use tollgate_sim::{SimConfig, SimHandle, Venue};
use tollgate_venues::config::CredentialsConfig;
use tollgate_venues::router::local_now_ms;
use tollgate_venues::{Router, VenueConfig};

#[derive(Deserialize)]
struct ExampleFile {
    venues: BTreeMap<String, VenueConfig>,
}

/// The shipped contract of `name`, pointed at the simulator with its test
/// credentials.
fn shipped(name: &str, sim: &SimHandle, venue: Venue) -> VenueConfig {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../venues.example.toml");
    let file: ExampleFile = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut config = file.venues[name].clone();
    config.base_url = sim.base_url(venue);
    let test = venue.test_credentials();
    let credentials = CredentialsConfig {
        key: Some(test.key.into()),
        secret: Some(test.secret.into()),
        passphrase: test.passphrase.map(Into::into),
        ..Default::default()
    };
    config.credentials = Some(credentials);
    config
}

/// Sets fields of the bucket `name` in `config`.
fn bucket(
    config: &mut VenueConfig,
    name: &str,
    set: impl FnOnce(&mut tollgate_venues::config::BucketConfig),
) {
    let b = config
        .buckets
        .iter_mut()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("no bucket {name}"));
    set(b);
}

async fn start_sim(config: SimConfig) -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    tollgate_sim::start(listener, config).await.unwrap()
}

async fn start_router(venues: BTreeMap<String, VenueConfig>) -> (SocketAddr, Arc<Router>) {
    let router = Arc::new(Router::new(&venues).unwrap());
    router.sync_clocks().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tollgate_venues::server::serve(
        listener,
        Arc::clone(&router),
        1 << 20,
        std::future::pending(),
    ));
    (addr, router)
}

/// A router with one venue.
async fn start_one(name: &str, venue: VenueConfig) -> (SocketAddr, Arc<Router>) {
    start_router(BTreeMap::from([(name.to_owned(), venue)])).await
}

/// One order call as a bot would send it (unsigned: the router signs).
#[derive(Clone)]
struct Order {
    method: reqwest::Method,
    path: String,
    content_type: Option<&'static str>,
    body: String,
}

impl Order {
    /// The same call to another venue entry (`/other-…` instead of `/…`).
    fn to(&self, from: &str, to: &str) -> Order {
        Order {
            path: self.path.replacen(from, to, 1),
            ..self.clone()
        }
    }

    fn send(&self, client: &reqwest::Client, router: SocketAddr) -> reqwest::RequestBuilder {
        let mut request =
            client.request(self.method.clone(), format!("http://{router}{}", self.path));
        if let Some(ct) = self.content_type {
            request = request.header("content-type", ct);
        }
        request.body(self.body.clone())
    }
}

fn order(venue: Venue) -> Order {
    match venue {
        Venue::Coinbase => Order {
            method: reqwest::Method::POST,
            path: "/coinbase/orders".into(),
            content_type: Some("application/json"),
            body: r#"{"product_id":"BTC-USD","side":"buy","type":"limit","size":"0.01","price":"1000.00"}"#.into(),
        },
        Venue::Binance => Order {
            method: reqwest::Method::POST,
            path: "/binance/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=1000".into(),
            content_type: None,
            body: String::new(),
        },
        Venue::Deribit => Order {
            method: reqwest::Method::GET,
            path: "/deribit/api/v2/private/buy?instrument_name=BTC-PERPETUAL&amount=10&type=limit&price=1000".into(),
            content_type: None,
            body: String::new(),
        },
        Venue::Kraken => Order {
            method: reqwest::Method::POST,
            path: "/kraken/0/private/AddOrder".into(),
            content_type: Some("application/x-www-form-urlencoded"),
            body: "ordertype=limit&type=buy&volume=0.01&pair=XBTUSD&price=1000".into(),
        },
        Venue::KrakenFutures => Order {
            method: reqwest::Method::POST,
            path: "/kraken-futures/derivatives/api/v3/sendorder".into(),
            content_type: Some("application/x-www-form-urlencoded"),
            body: "orderType=lmt&symbol=PI_XBTUSD&side=buy&size=1&limitPrice=1000".into(),
        },
    }
}

/// Whether a venue answer is a success in that venue's terms (Kraken
/// answers errors with 200 and an `error` array).
fn accepted(venue: Venue, status: u16, body: &str) -> bool {
    if status != 200 {
        return false;
    }
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    match venue {
        Venue::Kraken => json["error"].as_array().is_some_and(Vec::is_empty),
        Venue::KrakenFutures => json["result"] == "success",
        Venue::Deribit => json.get("result").is_some(),
        _ => true,
    }
}

struct Run {
    delivered: u64,
    sent: u64,
    local_429: u64,
    other: BTreeMap<String, u64>,
}

/// Sends `rate` orders per second for `duration`, each without waiting for
/// the previous one, and counts what was accepted before the run ended.
async fn flood(router: SocketAddr, venue: Venue, rate: f64, duration: Duration) -> Run {
    let client = reqwest::Client::new();
    let order = order(venue);
    let started = Instant::now();
    let end = started + duration;
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    while Instant::now() < end {
        tick.tick().await;
        let request = order.send(&client, router);
        tasks.push(tokio::spawn(async move {
            let asked = Instant::now();
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let code = response
                .headers()
                .get("content-type")
                .is_some_and(|v| v == "application/problem+json");
            // When the call left the router: asked + its time in the queue.
            let waited = response
                .headers()
                .get("tollgate-venue-wait-ms")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0);
            let body = response.text().await.unwrap();
            (asked + Duration::from_millis(waited), status, code, body)
        }));
    }
    let mut run = Run {
        delivered: 0,
        sent: tasks.len() as u64,
        local_429: 0,
        other: BTreeMap::new(),
    };
    for task in tasks {
        let (left, status, local, body) = task.await.unwrap();
        if local && status == 429 {
            run.local_429 += 1;
        } else if accepted(venue, status, &body) {
            // Counted when it left the router within the run (calls still
            // queued at the end leave after it and are not counted).
            if left <= end {
                run.delivered += 1;
            }
        } else {
            *run.other
                .entry(format!("{status} {}", &body[..body.len().min(120)]))
                .or_default() += 1;
        }
    }
    run
}

fn assert_proof(venue: Venue, sim: &SimHandle, run: &Run, allowed: f64) {
    let stats = sim.stats();
    let s = stats.venue(venue);
    assert!(
        run.other.is_empty(),
        "{venue:?}: unexpected answers {:?}",
        run.other
    );
    assert_eq!(s.rate_limited, 0, "{venue:?}: the venue refused for rate");
    assert_eq!(s.banned, 0, "{venue:?}: banned");
    assert_eq!(s.auth_failures, 0, "{venue:?}: signatures refused");
    let share = run.delivered as f64 / allowed;
    eprintln!(
        "{venue:?}: sent {} (3x), delivered {} of {allowed:.0} allowed ({:.1} %), {} answered 429 locally",
        run.sent,
        run.delivered,
        share * 100.0,
        run.local_429
    );
    assert!(
        share >= 0.95,
        "{venue:?}: delivered {:.1} % of the allowed",
        share * 100.0
    );
    assert!(
        run.local_429 > 0,
        "{venue:?}: the bot was not faster than the venue"
    );
}

const RUN: Duration = Duration::from_secs(8);

#[tokio::test]
async fn coinbase_token_bucket_is_never_tripped() {
    let mut config = SimConfig::default();
    config.coinbase.private_rate = 10.0;
    config.coinbase.private_burst = 10.0;
    let sim = start_sim(config).await;
    let mut venue = shipped("coinbase", &sim, Venue::Coinbase);
    bucket(&mut venue, "private", |b| {
        b.capacity = Some(10.0);
        b.refill_per_second = Some(10.0);
    });
    venue.max_wait_ms = 500;
    let (router, _) = start_one("coinbase", venue).await;
    let run = flood(router, Venue::Coinbase, 30.0, RUN).await;
    assert_proof(Venue::Coinbase, &sim, &run, 10.0 + 10.0 * RUN.as_secs_f64());
}

#[tokio::test]
async fn binance_clock_aligned_order_windows_are_never_tripped() {
    let mut config = SimConfig::default();
    config.binance.orders_short_limit = 20;
    config.binance.orders_short_window_ms = 1000;
    let sim = start_sim(config).await;
    let mut venue = shipped("binance", &sim, Venue::Binance);
    bucket(&mut venue, "orders_10s", |b| {
        b.limit = Some(20.0);
        b.window_ms = Some(1000);
        b.guard_ms = 20;
    });
    venue.max_wait_ms = 1000;
    let (router, _) = start_one("binance", venue).await;
    // Start 200 ms into a window: the bot has calls enough for that first
    // window (a run that began 10 ms before a boundary would not, and the
    // venue's allowance would not be what limited it), and the run ends
    // 200 ms into its ninth window, after that window's 20 have left.
    let into = local_now_ms() as u128 % 1000;
    tokio::time::sleep(Duration::from_millis((1000 - into) as u64 + 200)).await;
    let run = flood(router, Venue::Binance, 60.0, RUN).await;
    // Nine windows, each worth 20.
    assert_proof(Venue::Binance, &sim, &run, 20.0 * (RUN.as_secs_f64() + 1.0));
}

#[tokio::test]
async fn deribit_matching_engine_credits_are_never_tripped() {
    let mut config = SimConfig::default();
    let tier = config.deribit.matching_engine_tier.clone();
    let t = config.deribit.matching_engine_tiers.get_mut(&tier).unwrap();
    t.rate = 10.0;
    t.burst = 10.0;
    let sim = start_sim(config).await;
    let mut venue = shipped("deribit", &sim, Venue::Deribit);
    bucket(&mut venue, "matching", |b| {
        b.capacity = Some(10.0);
        b.refill_per_second = Some(10.0);
    });
    venue.max_wait_ms = 500;
    let (router, _) = start_one("deribit", venue).await;
    let run = flood(router, Venue::Deribit, 30.0, RUN).await;
    assert_proof(Venue::Deribit, &sim, &run, 10.0 + 10.0 * RUN.as_secs_f64());
}

#[tokio::test]
async fn kraken_per_pair_trading_counter_is_never_tripped() {
    let mut config = SimConfig::default();
    config.kraken.trading_threshold = 20.0;
    config.kraken.trading_decay_per_s = 10.0;
    let sim = start_sim(config).await;
    let mut venue = shipped("kraken", &sim, Venue::Kraken);
    bucket(&mut venue, "trading", |b| {
        b.max = Some(20.0);
        b.decay_per_second = Some(10.0);
    });
    venue.max_wait_ms = 500;
    let (router, _) = start_one("kraken", venue).await;
    let run = flood(router, Venue::Kraken, 30.0, RUN).await;
    assert_proof(Venue::Kraken, &sim, &run, 20.0 + 10.0 * RUN.as_secs_f64());
}

#[tokio::test]
async fn kraken_futures_cost_budget_is_never_tripped() {
    let mut config = SimConfig::default();
    config.kraken_futures.budget = 100;
    config.kraken_futures.window_ms = 1000;
    let sim = start_sim(config).await;
    let mut venue = shipped("kraken-futures", &sim, Venue::KrakenFutures);
    bucket(&mut venue, "derivatives", |b| {
        b.limit = Some(100.0);
        b.window_ms = Some(1000);
        b.guard_ms = 20;
    });
    venue.max_wait_ms = 500;
    let (router, _) = start_one("kraken-futures", venue).await;
    // sendorder costs 10: 10 orders per second are allowed.
    let run = flood(router, Venue::KrakenFutures, 30.0, RUN).await;
    assert_proof(Venue::KrakenFutures, &sim, &run, 10.0 * RUN.as_secs_f64());
}

/// The same venue with no budgets and no error rules: "another program"
/// spending the same account or IP behind the router's back.
fn unlimited(mut config: VenueConfig) -> VenueConfig {
    config.buckets.clear();
    config.default_cost.clear();
    for endpoint in &mut config.endpoints {
        endpoint.cost.clear();
    }
    config.errors.clear();
    config.clock = None;
    config
}

fn faults(venue: Venue, set: impl FnOnce(&mut tollgate_sim::VenueFaults)) -> tollgate_sim::Faults {
    let mut f = tollgate_sim::Faults::default();
    set(f.venue_mut(venue));
    f
}

#[tokio::test]
async fn a_429_storm_is_waited_out_per_retry_after_and_never_draws_a_418() {
    // The simulator bans an IP after 5 refusals within a minute (storms
    // included), or after requests sent during a running Retry-After.
    let mut config = SimConfig::default();
    config.binance.ban_after_refusals = 5;
    let sim = start_sim(config).await;
    let mut venue = shipped("binance", &sim, Venue::Binance);
    venue.max_wait_ms = 4000;
    let (router, _) = start_one("binance", venue).await;
    // A 6 s storm: probing every Retry-After (1 s) would earn 6 refusals and
    // a ban; the router doubles its wait on each refusal in a row.
    sim.set_faults(faults(Venue::Binance, |f| {
        f.storm_ms = Some(6000);
        f.storm_retry_after_s = Some(1);
    }));
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    while started.elapsed() < Duration::from_secs(10) {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .get(format!(
                    "http://{router}/binance/api/v3/depth?symbol=BTCUSDT&limit=5"
                ))
                .send()
                .await
                .unwrap();
            (Instant::now(), r.status().as_u16())
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut after_storm_ok = 0;
    let mut storm_answers = 0;
    for task in tasks {
        let (at, status) = task.await.unwrap();
        match status {
            200 if at > started + Duration::from_millis(6000) => after_storm_ok += 1,
            429 => storm_answers += 1,
            other => assert!(other == 200, "unexpected {other}"),
        }
    }
    let stats = sim.stats();
    assert_eq!(stats.binance.banned, 0, "never a 418");
    assert_eq!(
        stats.binance.violations_during_backoff, 0,
        "nothing was sent while a Retry-After was running"
    );
    // The first call met the storm, then probes after 1, 2 and 4 s.
    assert!(
        (2..=4).contains(&stats.binance.storm_refusals),
        "storm refusals {}",
        stats.binance.storm_refusals
    );
    assert!(storm_answers >= 1);
    assert!(after_storm_ok > 10, "calls flowed again after the storm");
    assert_eq!(stats.binance.rate_limited, 0);
}

#[tokio::test]
async fn signed_timestamps_follow_the_venues_clock() {
    let sim = start_sim(SimConfig::default()).await;
    sim.set_faults(tollgate_sim::Faults {
        binance: tollgate_sim::VenueFaults {
            skew_ms: Some(20_000),
            ..Default::default()
        },
        coinbase: tollgate_sim::VenueFaults {
            skew_ms: Some(-45_000),
            ..Default::default()
        },
        ..Default::default()
    });
    let binance = shipped("binance", &sim, Venue::Binance);
    let coinbase = shipped("coinbase", &sim, Venue::Coinbase);
    // A router that never reads the venues' clocks signs on the local one:
    // the venues refuse it (this proves the skew is real).
    let (blind, _) = start_router(BTreeMap::from([
        (
            "binance".into(),
            VenueConfig {
                clock: None,
                ..binance.clone()
            },
        ),
        (
            "coinbase".into(),
            VenueConfig {
                clock: None,
                ..coinbase.clone()
            },
        ),
    ]))
    .await;
    let client = reqwest::Client::new();
    let r = order(Venue::Binance)
        .send(&client, blind)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], -1021, "{body}");
    let r = order(Venue::Coinbase)
        .send(&client, blind)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(sim.stats().binance.auth_failures, 1);
    assert_eq!(sim.stats().coinbase.auth_failures, 1);

    // The router measures each clock and signs on it.
    let (router, state) = start_router(BTreeMap::from([
        ("binance".into(), binance),
        ("coinbase".into(), coinbase),
    ]))
    .await;
    let offset = state.clock_offset_ms("binance").unwrap();
    assert!((offset - 20_000).abs() < 250, "binance offset {offset}");
    let offset = state.clock_offset_ms("coinbase").unwrap();
    assert!((offset + 45_000).abs() < 250, "coinbase offset {offset}");
    for venue in [Venue::Binance, Venue::Coinbase] {
        let r = order(venue).send(&client, router).send().await.unwrap();
        let status = r.status();
        assert_eq!(status, 200, "{venue:?}: {}", r.text().await.unwrap());
    }
    assert_eq!(sim.stats().binance.auth_failures, 1);
    assert_eq!(sim.stats().coinbase.auth_failures, 1);
}

/// Waits until the clock is at least `margin` before the next boundary of a
/// `window_ms` window and out of the router's boundary guard (250 ms) after
/// the last, so a test's window neither rolls under it nor starts guarded.
async fn away_from_boundary(window_ms: u128, margin_ms: u128) {
    let into = local_now_ms() as u128 % window_ms;
    let wait = if window_ms - into < margin_ms {
        window_ms - into + 300
    } else {
        300u128.saturating_sub(into)
    };
    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
}

#[tokio::test]
async fn binance_weight_header_shows_what_another_program_spent() {
    let mut config = SimConfig::default();
    config.binance.weight_limit = 50;
    let sim = start_sim(config).await;
    let mut venue = shipped("binance", &sim, Venue::Binance);
    bucket(&mut venue, "weight", |b| b.limit = Some(50.0));
    venue.max_wait_ms = 300;
    let other = unlimited(venue.clone());
    let (router, state) = start_router(BTreeMap::from([
        ("binance".into(), venue),
        ("other".into(), other),
    ]))
    .await;
    away_from_boundary(60_000, 3_000).await;
    let client = reqwest::Client::new();
    // Another program on the same IP spends 40 of the minute's 50.
    for _ in 0..8 {
        let r = client
            .get(format!(
                "http://{router}/other/api/v3/depth?symbol=BTCUSDT&limit=5"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The router's next call learns it from X-MBX-USED-WEIGHT-1M (40, the
    // router's own clock reading 1, and this call's 5)...
    let r = client
        .get(format!(
            "http://{router}/binance/api/v3/depth?symbol=BTCUSDT&limit=5"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-mbx-used-weight-1m"], "46");
    let snapshot = state.snapshot();
    let weight = snapshot["binance"]["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["bucket"] == "weight")
        .unwrap()
        .clone();
    assert_eq!(weight["available"], 4.0, "{weight}");
    // ...so the next depth call (5) is held back locally, and a ping (1) is not.
    let (status, retry, code) = problem(
        client
            .get(format!(
                "http://{router}/binance/api/v3/depth?symbol=BTCUSDT&limit=5"
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (429, "venue_capacity"));
    assert!(retry.is_some_and(|r| (1..=60).contains(&r)));
    let r = client
        .get(format!("http://{router}/binance/api/v3/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sim.stats().binance.rate_limited, 0);
}

#[tokio::test]
async fn coinbase_remaining_header_lowers_the_bucket() {
    let mut config = SimConfig::default();
    config.coinbase.private_burst = 10.0;
    config.coinbase.private_rate = 0.5;
    // The Exchange documents no rate-limit headers; this tests the router's
    // resync for the day Coinbase sends `x-ratelimit-remaining`.
    config.coinbase.send_rate_limit_headers = true;
    let sim = start_sim(config).await;
    let mut venue = shipped("coinbase", &sim, Venue::Coinbase);
    bucket(&mut venue, "private", |b| {
        b.capacity = Some(10.0);
        b.refill_per_second = Some(0.5);
    });
    venue.max_wait_ms = 300;
    let other = unlimited(venue.clone());
    let (router, _) = start_router(BTreeMap::from([
        ("coinbase".into(), venue),
        ("other".into(), other),
    ]))
    .await;
    let client = reqwest::Client::new();
    let other_order = order(Venue::Coinbase).to("/coinbase", "/other");
    for _ in 0..7 {
        assert_eq!(
            other_order
                .send(&client, router)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // The router thinks 9 are left (10 less its reserve of 1); the venue
    // says 2 after this call, so the router keeps 1 (2 less the reserve).
    let r = order(Venue::Coinbase)
        .send(&client, router)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-remaining"], "2");
    let r = order(Venue::Coinbase)
        .send(&client, router)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The venue has 1 left, held in reserve: the next needs a refill (2 s).
    let (status, _, code) = problem(
        order(Venue::Coinbase)
            .send(&client, router)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (429, "venue_capacity"));
    assert_eq!(sim.stats().coinbase.rate_limited, 0);
}

#[tokio::test]
async fn each_venue_refusal_opens_the_breaker_of_its_scope() {
    let mut config = SimConfig::default();
    config.coinbase.private_burst = 3.0;
    config.coinbase.private_rate = 0.1;
    let tier = config.deribit.matching_engine_tier.clone();
    let t = config.deribit.matching_engine_tiers.get_mut(&tier).unwrap();
    t.rate = 0.1;
    t.burst = 3.0;
    config.kraken.rest_max = 3.0;
    config.kraken.rest_decay_per_s = 0.1;
    config.kraken.trading_threshold = 3.0;
    config.kraken.trading_decay_per_s = 0.1;
    config.kraken_futures.budget = 30;
    config.kraken_futures.window_ms = 10_000;
    let sim = start_sim(config).await;
    let mut venues = BTreeMap::new();
    for (name, venue) in [
        ("coinbase", Venue::Coinbase),
        ("deribit", Venue::Deribit),
        ("kraken", Venue::Kraken),
        ("kraken-futures", Venue::KrakenFutures),
    ] {
        let mut config = shipped(name, &sim, venue);
        config.max_wait_ms = 300;
        venues.insert(format!("other-{name}"), unlimited(config.clone()));
        venues.insert(name.to_owned(), config);
    }
    let (router, _) = start_router(venues).await;
    let client = reqwest::Client::new();

    let cases: [(Venue, &str, &str, Option<&str>); 4] = [
        (Venue::Coinbase, "/coinbase", "/other-coinbase", None),
        (Venue::Deribit, "/deribit", "/other-deribit", None),
        (
            Venue::Kraken,
            "/kraken",
            "/other-kraken",
            Some("EOrder:Rate limit exceeded"),
        ),
        (
            Venue::KrakenFutures,
            "/kraken-futures",
            "/other-kraken-futures",
            Some("apiLimitExceeded"),
        ),
    ];
    for (venue, prefix, other_prefix, text) in cases {
        let ours = order(venue);
        let theirs = ours.to(prefix, other_prefix);
        // Another program spends the account until the venue refuses it.
        let mut refused = false;
        for _ in 0..10 {
            let r = theirs.send(&client, router).send().await.unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            if !accepted(venue, status, &body) {
                refused = true;
                break;
            }
            // Kraken nonces must rise across both "programs".
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(refused, "{venue:?}: the other program was never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Our call meets the venue's refusal and passes it on as it is...
        let r = ours.send(&client, router).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert!(
            !accepted(venue, status, &body),
            "{venue:?}: {status} {body}"
        );
        if let Some(text) = text {
            assert!(body.contains(text), "{venue:?}: {body}");
        }
        // ...and the scope's breaker holds the next one locally.
        let (status, retry, code) = problem(ours.send(&client, router).send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (429, "venue_backoff"), "{venue:?}");
        assert!(retry.is_some_and(|r| r >= 1), "{venue:?}");
    }
    let stats = sim.stats();
    // Exactly one refusal per venue reached the router's own calls: the one
    // that taught it (the rest were the other program's).
    for venue in [
        Venue::Coinbase,
        Venue::Deribit,
        Venue::Kraken,
        Venue::KrakenFutures,
    ] {
        assert_eq!(
            stats.venue(venue).rate_limited,
            2,
            "{venue:?}: other's refusal + ours"
        );
    }
}

#[tokio::test]
async fn a_binance_ban_stops_every_call_on_the_ip() {
    let mut config = SimConfig::default();
    config.binance.weight_limit = 20;
    config.binance.ban_after_violations = 2;
    let sim = start_sim(config).await;
    let venue = shipped("binance", &sim, Venue::Binance);
    let other = unlimited(venue.clone());
    let (router, _) = start_router(BTreeMap::from([
        ("binance".into(), venue),
        ("other".into(), other),
    ]))
    .await;
    away_from_boundary(60_000, 3_000).await;
    let client = reqwest::Client::new();
    // A careless program on the same IP keeps sending after its 429s.
    let mut banned = false;
    for _ in 0..20 {
        let r = client
            .get(format!(
                "http://{router}/other/api/v3/depth?symbol=BTCUSDT&limit=5"
            ))
            .send()
            .await
            .unwrap();
        if r.status() == 418 {
            banned = true;
            break;
        }
    }
    assert!(banned, "the simulator never banned the careless program");
    // The router's next call meets the ban and passes the 418 on...
    let r = order(Venue::Binance)
        .send(&client, router)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 418);
    // ...then nothing more leaves for that IP until the ban ends.
    let before = sim.stats().binance.requests;
    let r = client
        .get(format!(
            "http://{router}/binance/api/v3/depth?symbol=BTCUSDT"
        ))
        .send()
        .await
        .unwrap();
    let (status, retry, code) = problem(r).await;
    assert_eq!((status, code.as_str()), (429, "venue_banned"));
    assert!(retry.is_some_and(|r| r >= 60), "retry-after {retry:?}");
    assert_eq!(sim.stats().binance.requests, before);
}

fn budget_available(router: &Router, venue: &str, bucket: &str) -> f64 {
    let snapshot = router.snapshot();
    snapshot[venue]["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["bucket"] == bucket)
        .unwrap_or_else(|| panic!("no {bucket} in {snapshot}"))["available"]
        .as_f64()
        .unwrap()
}

#[tokio::test]
async fn binance_order_count_resyncs_and_its_refusal_holds_orders_only() {
    let mut config = SimConfig::default();
    config.binance.orders_short_limit = 6;
    let sim = start_sim(config).await;
    let mut venue = shipped("binance", &sim, Venue::Binance);
    bucket(&mut venue, "orders_10s", |b| b.limit = Some(6.0));
    venue.max_wait_ms = 300;
    let other = unlimited(venue.clone());
    let (router, state) = start_router(BTreeMap::from([
        ("binance".into(), venue),
        ("other".into(), other),
    ]))
    .await;
    away_from_boundary(10_000, 4_000).await;
    let client = reqwest::Client::new();
    let theirs = order(Venue::Binance).to("/binance", "/other");
    for _ in 0..2 {
        assert_eq!(
            theirs.send(&client, router).send().await.unwrap().status(),
            200
        );
    }
    // Our order's answer says 3 orders in this window: the router now knows
    // the account has 3 left, not 5.
    let r = order(Venue::Binance)
        .send(&client, router)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-mbx-order-count-10s"], "3");
    assert_eq!(budget_available(&state, "binance", "orders_10s"), 3.0);
    // The other program fills the account behind the router's back...
    for _ in 0..3 {
        assert_eq!(
            theirs.send(&client, router).send().await.unwrap().status(),
            200
        );
    }
    // ...so our next order meets -1015, passed on as it is,
    let r = order(Venue::Binance)
        .send(&client, router)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], -1015);
    // and the account's breaker holds further orders, while market data
    // (the IP's weight) still flows.
    let (status, _, code) = problem(
        order(Venue::Binance)
            .send(&client, router)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (429, "venue_backoff"));
    let r = client
        .get(format!(
            "http://{router}/binance/api/v3/depth?symbol=BTCUSDT&limit=5"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sim.stats().binance.banned, 0);
}

#[tokio::test]
async fn kraken_rest_counter_refusal_holds_the_keys_calls_but_not_trading() {
    let mut config = SimConfig::default();
    config.kraken.rest_max = 4.0;
    config.kraken.rest_decay_per_s = 0.1;
    let sim = start_sim(config).await;
    let mut venue = shipped("kraken", &sim, Venue::Kraken);
    venue.max_wait_ms = 300;
    let other = unlimited(venue.clone());
    let (router, _) = start_router(BTreeMap::from([
        ("kraken".into(), venue),
        ("other".into(), other),
    ]))
    .await;
    let client = reqwest::Client::new();
    let balance = |prefix: &str| Order {
        method: reqwest::Method::POST,
        path: format!("/{prefix}/0/private/Balance"),
        content_type: Some("application/x-www-form-urlencoded"),
        body: String::new(),
    };
    let mut refused = false;
    for _ in 0..6 {
        let r = balance("other").send(&client, router).send().await.unwrap();
        if r.text().await.unwrap().contains("EAPI:Rate limit exceeded") {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(refused);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = balance("kraken")
        .send(&client, router)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "Kraken refuses inside a 200");
    assert!(r.text().await.unwrap().contains("EAPI:Rate limit exceeded"));
    let (status, _, code) = problem(
        balance("kraken")
            .send(&client, router)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (429, "venue_backoff"));
    // Orders use the per-pair trading counter, not the key's REST counter.
    let r = order(Venue::Kraken)
        .send(&client, router)
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(accepted(Venue::Kraken, 200, &body), "{body}");
    assert_eq!(sim.stats().kraken.auth_failures, 0);
}

#[tokio::test]
async fn deribit_ends_the_session_on_10028_and_the_router_signs_in_again() {
    let mut config = SimConfig::default();
    let tier = config.deribit.matching_engine_tier.clone();
    let t = config.deribit.matching_engine_tiers.get_mut(&tier).unwrap();
    t.rate = 5.0;
    t.burst = 3.0;
    let sim = start_sim(config).await;
    let mut venue = shipped("deribit", &sim, Venue::Deribit);
    venue.max_wait_ms = 2500;
    let other = unlimited(venue.clone());
    let (router, _) = start_router(BTreeMap::from([
        ("deribit".into(), venue),
        ("other".into(), other),
    ]))
    .await;
    let client = reqwest::Client::new();
    // The router signs in and trades once.
    let r = order(Venue::Deribit)
        .send(&client, router)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Another program spends the sub-account's matching-engine credits.
    let theirs = order(Venue::Deribit).to("/deribit", "/other");
    for _ in 0..4 {
        let r = theirs.send(&client, router).send().await.unwrap();
        if r.status() != 200 {
            break;
        }
    }
    // Ours meets 10028, which also ends our session on the venue. Its HTTP
    // status is not documented (the simulator answers 400, as for every
    // JSON-RPC error): only the code in the body says "rate".
    let r = order(Venue::Deribit)
        .send(&client, router)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], 10028, "{body}");
    // The next call waits out the backoff, signs in again, and goes through:
    // with the old token the venue would answer 13009 unauthorized.
    let r = order(Venue::Deribit)
        .send(&client, router)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body["result"]["order"].is_object(), "{body}");
    assert_eq!(sim.stats().deribit.auth_failures, 0);
}

#[tokio::test]
async fn a_venue_that_does_not_answer_gets_a_504_and_no_second_try() {
    let sim = start_sim(SimConfig::default()).await;
    sim.set_faults(faults(Venue::Coinbase, |f| {
        f.unknown_outcome = Some(1.0);
        f.hold_ms = Some(3000);
    }));
    let mut venue = shipped("coinbase", &sim, Venue::Coinbase);
    venue.timeout_ms = 500;
    let (router, _) = start_one("coinbase", venue).await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let (status, _, code) = problem(
        order(Venue::Coinbase)
            .send(&client, router)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (504, "venue_timeout"));
    assert!(started.elapsed() < Duration::from_millis(2500));
    let stats = sim.stats();
    assert_eq!(
        stats.coinbase.unknown_outcomes, 1,
        "the order reached the venue"
    );
    // The router's clock reading at start-up, and the order: never a resend.
    assert_eq!(stats.coinbase.requests, 2);
}

#[tokio::test]
async fn a_batch_costs_base_plus_items_and_mixed_results_pass_through() {
    let sim = start_sim(SimConfig::default()).await;
    sim.set_faults(faults(Venue::KrakenFutures, |f| f.batch_mixed = Some(1.0)));
    let venue = shipped("kraken-futures", &sim, Venue::KrakenFutures);
    let (router, state) = start_one("kraken-futures", venue).await;
    let batch = serde_json::json!({"batchOrder": [
        {"order": "send", "order_tag": "a", "orderType": "lmt", "symbol": "PI_XBTUSD", "side": "buy", "size": 1, "limitPrice": 1000},
        {"order": "send", "order_tag": "b", "orderType": "lmt", "symbol": "PI_XBTUSD", "side": "buy", "size": 1, "limitPrice": 1000},
        {"order": "cancel", "order_id": "missing"},
    ]});
    let body = format!(
        "json={}",
        url::form_urlencoded::byte_serialize(batch.to_string().as_bytes()).collect::<String>()
    );
    let r = reqwest::Client::new()
        .post(format!(
            "http://{router}/kraken-futures/derivatives/api/v3/batchorder"
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    let statuses: Vec<&str> = answer["batchStatus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "insufficientAvailableFunds",
            "insufficientAvailableFunds",
            "notFound"
        ]
    );
    // 9 + one per instruction.
    assert_eq!(
        budget_available(&state, "kraken-futures", "derivatives"),
        488.0
    );
    assert_eq!(sim.stats().kraken_futures.auth_failures, 0);
}

#[tokio::test]
async fn a_connection_dropped_after_sending_is_an_unknown_outcome_not_a_502() {
    let sim = start_sim(SimConfig::default()).await;
    sim.set_faults(faults(Venue::Coinbase, |f| {
        f.unknown_outcome = Some(1.0);
        f.hold_ms = Some(100);
        f.unknown_drop = Some(true);
    }));
    let venue = shipped("coinbase", &sim, Venue::Coinbase);
    let (router, _) = start_one("coinbase", venue).await;
    let client = reqwest::Client::new();
    let (status, _, code) = problem(
        order(Venue::Coinbase)
            .send(&client, router)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (504, "venue_connection_lost"));
    assert_eq!(
        sim.stats().coinbase.unknown_outcomes,
        1,
        "the order reached the venue"
    );
}

#[tokio::test]
async fn what_is_signed_is_what_is_sent_even_for_raw_characters() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = start_sim(SimConfig::default()).await;
    let venue = shipped("binance", &sim, Venue::Binance);
    let (router, _) = start_one("binance", venue).await;
    // A raw quote in the query: the HTTP client percent-encodes it on the
    // way out, so the router must sign the encoded form.
    let mut stream = tokio::net::TcpStream::connect(router).await.unwrap();
    let request = "POST /binance/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=1000&newClientOrderId=bot's-1 HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(sim.stats().binance.auth_failures, 0);
}
