use crate::common::{client, coinbase_sign, json, now_secs_f64, start};
use reqwest::StatusCode;
use std::time::{Duration, Instant};
use tollgate_sim::config::{COINBASE_TEST_KEY, COINBASE_TEST_PASSPHRASE, COINBASE_TEST_SECRET};
use tollgate_sim::{Faults, SimConfig, SimHandle, Stats, Venue};

async fn coinbase_order(sim: &SimHandle) -> Result<reqwest::Response, reqwest::Error> {
    let body = r#"{"product_id":"ETH-USD","side":"sell","price":"3300","size":"1"}"#;
    let timestamp = format!("{:.3}", now_secs_f64());
    client()
        .post(format!("{}/orders", sim.base_url(Venue::Coinbase)))
        .header("CB-ACCESS-KEY", COINBASE_TEST_KEY)
        .header("CB-ACCESS-PASSPHRASE", COINBASE_TEST_PASSPHRASE)
        .header("CB-ACCESS-TIMESTAMP", &timestamp)
        .header(
            "CB-ACCESS-SIGN",
            coinbase_sign(COINBASE_TEST_SECRET, &timestamp, "POST", "/orders", body),
        )
        .body(body)
        .send()
        .await
}

fn admin(sim: &SimHandle, path: &str) -> String {
    format!("http://{}/_sim/{path}", sim.addr())
}

#[tokio::test]
async fn base_urls_and_unknown_prefixes() {
    let sim = start(SimConfig::default()).await;
    let port = sim.addr().port();
    assert_eq!(
        sim.base_url(Venue::Binance),
        format!("http://127.0.0.1:{port}/binance")
    );
    assert_eq!(
        sim.base_url(Venue::KrakenFutures),
        format!("http://127.0.0.1:{port}/krakenfutures")
    );
    let response = client()
        .get(format!("http://{}/bitmex/api", sim.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(sim.stats(), Stats::default());
    sim.shutdown().await;
}

#[tokio::test]
async fn stats_faults_and_reset_over_http() {
    let mut config = SimConfig::default();
    config.coinbase.private_burst = 1.0;
    config.coinbase.private_rate = 0.001;
    let sim = start(config).await;
    assert_eq!(coinbase_order(&sim).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        coinbase_order(&sim).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    let response = client().get(admin(&sim, "stats")).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    let over_http: Stats = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let stats = sim.stats();
    assert_eq!(over_http, stats);
    assert_eq!(over_http.coinbase.requests, 2);
    assert_eq!(over_http.coinbase.rate_limited, 1);
    assert_eq!(over_http.coinbase.orders_placed, 1);
    assert_eq!(over_http.binance.requests, 0);

    let faults =
        r#"{"seed":9,"all":{"latency_ms":1},"binance":{"storm_ms":60000,"storm_retry_after_s":3}}"#;
    let response = client()
        .post(admin(&sim, "faults"))
        .body(faults)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let current: Faults = serde_json::from_str(
        &client()
            .get(admin(&sim, "faults"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(current.seed, 9);
    assert_eq!(current.binance.storm_ms, Some(60_000));
    assert_eq!(sim.faults(), current);
    let response = client()
        .get(format!("{}/api/v3/ping", sim.base_url(Venue::Binance)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "3");
    for bad in [
        r#"{"binance":{"storm":1}}"#,
        r#"{"kraken":{"partial_cancel":2}}"#,
        "nope",
    ] {
        let response = client()
            .post(admin(&sim, "faults"))
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(json(response).await["error"].is_string());
    }

    let response = client().post(admin(&sim, "reset")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(sim.stats(), Stats::default());
    // The limiter is fresh again; the faults stay (Binance storm still on).
    assert_eq!(coinbase_order(&sim).await.unwrap().status(), StatusCode::OK);
    assert_eq!(sim.faults().binance.storm_ms, Some(60_000));
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_outcomes_hold_then_answer_504_or_drop() {
    let mut config = SimConfig::default();
    config.faults.coinbase.unknown_outcome = Some(1.0);
    config.faults.coinbase.hold_ms = Some(150);
    let sim = start(config).await;
    let started = Instant::now();
    let response = coinbase_order(&sim).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);

    let mut faults = sim.faults();
    faults.coinbase.unknown_drop = Some(true);
    sim.set_faults(faults);
    let error = coinbase_order(&sim).await.unwrap_err();
    // The connection closed before any answer: no status, not a timeout.
    assert!(!error.is_timeout(), "{error}");
    assert!(error.is_request(), "{error:?}");
    assert_eq!(error.status(), None);

    // Both orders exist: a cancel-all finds them.
    sim.set_faults(Faults::default());
    let timestamp = format!("{:.3}", now_secs_f64());
    let response = client()
        .delete(format!("{}/orders", sim.base_url(Venue::Coinbase)))
        .header("CB-ACCESS-KEY", COINBASE_TEST_KEY)
        .header("CB-ACCESS-PASSPHRASE", COINBASE_TEST_PASSPHRASE)
        .header("CB-ACCESS-TIMESTAMP", &timestamp)
        .header(
            "CB-ACCESS-SIGN",
            coinbase_sign(COINBASE_TEST_SECRET, &timestamp, "DELETE", "/orders", ""),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(json(response).await.as_array().unwrap().len(), 2);
    let stats = sim.stats().coinbase;
    assert_eq!(stats.unknown_outcomes, 2);
    assert_eq!(stats.orders_placed, 2);
    assert_eq!(stats.orders_cancelled, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_is_added_to_every_request() {
    let mut config = SimConfig::default();
    config.faults.all.latency_ms = Some(120);
    let sim = start(config).await;
    for venue in [Venue::Binance, Venue::Kraken] {
        let path = match venue {
            Venue::Binance => "/api/v3/ping",
            _ => "/0/public/Time",
        };
        let started = Instant::now();
        let response = client()
            .get(format!("{}{path}", sim.base_url(venue)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(started.elapsed() >= Duration::from_millis(120), "{venue}");
    }
    sim.shutdown().await;
}

/// Every request counted in `requests` has exactly one outcome, even when
/// the client gives up during the latency fault's sleep.
#[tokio::test]
async fn a_client_that_gives_up_during_latency_leaves_no_request_without_an_outcome() {
    let mut config = SimConfig::default();
    config.faults.binance.latency_ms = Some(400);
    let sim = start(config).await;
    let url = format!("{}/api/v3/ping", sim.base_url(Venue::Binance));
    let outcomes = |s: &tollgate_sim::VenueStats| {
        s.accepted
            + s.rate_limited
            + s.storm_refusals
            + s.banned
            + s.auth_failures
            + s.rejected
            + s.unknown_outcomes
    };
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let error = impatient.get(&url).send().await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    // Mid-sleep nothing is counted yet, and after it either nothing or an
    // answered request.
    let stats = sim.stats().binance;
    assert_eq!((stats.requests, outcomes(&stats)), (0, 0));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let stats = sim.stats().binance;
    assert_eq!(stats.requests, outcomes(&stats));
    // A patient client is counted with its outcome.
    let before = stats.requests;
    let response = client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let stats = sim.stats().binance;
    assert_eq!(stats.requests, before + 1);
    assert_eq!(stats.requests, outcomes(&stats));
    sim.shutdown().await;
}
