use crate::common::{binance_sign, client, header, json, now_ms, start, tamper};
use reqwest::{Method, StatusCode};
use std::time::Duration;
use tollgate_sim::config::{BINANCE_TEST_KEY, BINANCE_TEST_SECRET};
use tollgate_sim::{Faults, SimConfig, SimHandle, Venue, VenueFaults};

const HOUR: u64 = 3_600_000;

/// Sends a signed request: `query` in the URL, `body` form-encoded; the
/// signature goes at the end of the body (or of the query when there is no
/// body), over query + body as sent.
async fn signed(
    sim: &SimHandle,
    method: Method,
    path: &str,
    query: &str,
    body: &str,
    corrupt: bool,
) -> reqwest::Response {
    let mut signature = binance_sign(BINANCE_TEST_SECRET, &format!("{query}{body}"));
    if corrupt {
        signature = tamper(&signature);
    }
    let base = sim.base_url(Venue::Binance);
    let request = if body.is_empty() {
        let query = if query.is_empty() {
            format!("signature={signature}")
        } else {
            format!("{query}&signature={signature}")
        };
        client().request(method, format!("{base}{path}?{query}"))
    } else {
        let url = if query.is_empty() {
            format!("{base}{path}")
        } else {
            format!("{base}{path}?{query}")
        };
        client()
            .request(method, url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("{body}&signature={signature}"))
    };
    request
        .header("X-MBX-APIKEY", BINANCE_TEST_KEY)
        .send()
        .await
        .unwrap()
}

fn order_body(timestamp: u64) -> String {
    format!(
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=64000&recvWindow=5000&timestamp={timestamp}"
    )
}

async fn place(sim: &SimHandle) -> reqwest::Response {
    signed(
        sim,
        Method::POST,
        "/api/v3/order",
        "",
        &order_body(now_ms()),
        false,
    )
    .await
}

async fn get(sim: &SimHandle, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", sim.base_url(Venue::Binance)))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn signed_order_is_accepted_and_weighs_nothing() {
    let sim = start(SimConfig::default()).await;
    // Parameters split between the query and the body.
    let query = "symbol=BTCUSDT&side=BUY&type=LIMIT";
    let body = format!(
        "timeInForce=GTC&quantity=0.01&price=64000&newClientOrderId=my-1&timestamp={}",
        now_ms()
    );
    let response = signed(&sim, Method::POST, "/api/v3/order", query, &body, false).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "x-mbx-used-weight-1m").as_deref(),
        Some("0")
    );
    assert_eq!(
        header(&response, "x-mbx-order-count-10s").as_deref(),
        Some("1")
    );
    assert_eq!(
        header(&response, "x-mbx-order-count-1d").as_deref(),
        Some("1")
    );
    let order = json(response).await;
    assert_eq!(order["status"], "NEW");
    assert_eq!(order["clientOrderId"], "my-1");
    let order_id = order["orderId"].as_u64().unwrap();

    let response = get(&sim, "/api/v3/depth?symbol=BTCUSDT&limit=500").await;
    assert_eq!(
        header(&response, "x-mbx-used-weight-1m").as_deref(),
        Some("25")
    );
    assert_eq!(json(response).await["bids"].as_array().unwrap().len(), 500);

    let query = format!("symbol=BTCUSDT&orderId={order_id}&timestamp={}", now_ms());
    let response = signed(&sim, Method::DELETE, "/api/v3/order", &query, "", false).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "x-mbx-used-weight-1m").as_deref(),
        Some("25")
    );
    assert_eq!(json(response).await["status"], "CANCELED");
    // A failed cancel weighs 1.
    let response = signed(&sim, Method::DELETE, "/api/v3/order", &query, "", false).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        header(&response, "x-mbx-used-weight-1m").as_deref(),
        Some("26")
    );
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"code":-2011,"msg":"Unknown order sent."}"#
    );

    let time = json(get(&sim, "/api/v3/time").await).await;
    assert!((time["serverTime"].as_u64().unwrap() as i64 - now_ms() as i64).abs() < 5_000);
    let stats = sim.stats().binance;
    assert_eq!((stats.orders_placed, stats.orders_cancelled), (1, 1));
    assert_eq!(stats.accepted, 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn tampered_signature_and_unknown_key_are_refused() {
    let sim = start(SimConfig::default()).await;
    let response = signed(
        &sim,
        Method::POST,
        "/api/v3/order",
        "",
        &order_body(now_ms()),
        true,
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        header(&response, "x-mbx-used-weight-1m").as_deref(),
        Some("1")
    );
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"code":-1022,"msg":"Signature for this request is not valid."}"#
    );
    // Upper-case hex is the same HMAC signature.
    let body = order_body(now_ms());
    let signature = binance_sign(BINANCE_TEST_SECRET, &body).to_ascii_uppercase();
    let response = client()
        .post(format!("{}/api/v3/order", sim.base_url(Venue::Binance)))
        .header("X-MBX-APIKEY", BINANCE_TEST_KEY)
        .body(format!("{body}&signature={signature}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = client()
        .post(format!("{}/api/v3/order", sim.base_url(Venue::Binance)))
        .header("X-MBX-APIKEY", "someone-else")
        .body(format!("{body}&signature={signature}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}"#
    );
    assert_eq!(sim.stats().binance.auth_failures, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn timestamps_outside_the_windows_are_refused() {
    let sim = start(SimConfig::default()).await;
    let old = signed(
        &sim,
        Method::POST,
        "/api/v3/order",
        "",
        &order_body(now_ms() - 6_000),
        false,
    )
    .await;
    assert_eq!(old.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        old.text().await.unwrap(),
        r#"{"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}"#
    );
    let ahead = signed(
        &sim,
        Method::POST,
        "/api/v3/order",
        "",
        &order_body(now_ms() + 1_500),
        false,
    )
    .await;
    assert_eq!(ahead.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        ahead.text().await.unwrap(),
        r#"{"code":-1021,"msg":"Timestamp for this request was 1000ms ahead of the server's time."}"#
    );
    // Microsecond timestamps are accepted.
    let micros = format!(
        "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.01&timestamp={}",
        now_ms() * 1_000
    );
    let response = signed(&sim, Method::POST, "/api/v3/order", "", &micros, false).await;
    assert_eq!(response.status(), StatusCode::OK);
    let too_wide = format!(
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&recvWindow=60001&timestamp={}",
        now_ms()
    );
    let response = signed(&sim, Method::POST, "/api/v3/order", "", &too_wide, false).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(response).await["code"], -1131);

    // The venue's clock is 3 s behind: our "now" is ahead of it.
    sim.set_faults(Faults {
        binance: VenueFaults {
            skew_ms: Some(-3_000),
            ..VenueFaults::default()
        },
        ..Faults::default()
    });
    let response = place(&sim).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(response).await["code"], -1021);
    let server = json(get(&sim, "/api/v3/time").await).await["serverTime"]
        .as_u64()
        .unwrap();
    let response = signed(
        &sim,
        Method::POST,
        "/api/v3/order",
        "",
        &order_body(server),
        false,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(sim.stats().binance.auth_failures, 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn exceeding_request_weight_is_refused_with_retry_after() {
    let mut config = SimConfig::default();
    config.binance.weight_limit = 30;
    config.binance.weight_window_ms = HOUR;
    let sim = start(config).await;
    let response = get(&sim, "/api/v3/exchangeInfo").await;
    assert_eq!(
        header(&response, "x-mbx-used-weight-1h").as_deref(),
        Some("20")
    );
    let info = json(response).await;
    assert_eq!(
        info["rateLimits"][0],
        serde_json::json!({"rateLimitType":"REQUEST_WEIGHT","interval":"HOUR","intervalNum":1,"limit":30})
    );
    assert_eq!(info["rateLimits"][1]["limit"], 50);
    assert_eq!(info["rateLimits"][1]["intervalNum"], 10);
    assert_eq!(info["rateLimits"][1]["interval"], "SECOND");
    for used in ["25", "30"] {
        let response = get(&sim, "/api/v3/depth?symbol=BTCUSDT").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, "x-mbx-used-weight-1h").as_deref(),
            Some(used)
        );
    }
    let response = get(&sim, "/api/v3/ping").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&response, "x-mbx-used-weight-1h").as_deref(),
        Some("30")
    );
    let retry: u64 = header(&response, "retry-after").unwrap().parse().unwrap();
    let until_hour_end = (HOUR - now_ms() % HOUR).div_ceil(1_000);
    assert!(retry >= 1 && retry <= until_hour_end + 1, "retry {retry}");
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"code":-1003,"msg":"Too much request weight used; current limit is 30 request weight per 1 HOUR. Please use WebSocket Streams for live updates to avoid polling the API."}"#
    );
    let stats = sim.stats().binance;
    assert_eq!(stats.rate_limited, 1);
    assert_eq!(stats.accepted, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_weight_window_resets_on_the_clock() {
    let mut config = SimConfig::default();
    config.binance.weight_limit = 5;
    config.binance.weight_window_ms = 1_000;
    let sim = start(config).await;
    // Start just after a second boundary so the burst fits in one window.
    tokio::time::sleep(Duration::from_millis(1_000 - now_ms() % 1_000 + 20)).await;
    let response = get(&sim, "/api/v3/depth?symbol=ETHUSDT").await;
    assert_eq!(
        header(&response, "x-mbx-used-weight-1s").as_deref(),
        Some("5")
    );
    let response = get(&sim, "/api/v3/time").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&response, "retry-after").unwrap().parse().unwrap();
    assert_eq!(retry, 1);
    // A client that honours Retry-After is never counted as a violator.
    tokio::time::sleep(Duration::from_millis(retry * 1_000 + 20)).await;
    let response = get(&sim, "/api/v3/time").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "x-mbx-used-weight-1s").as_deref(),
        Some("1")
    );
    let stats = sim.stats().binance;
    assert_eq!(stats.violations_during_backoff, 0);
    assert_eq!(stats.rate_limited, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_unfilled_order_count_is_limited() {
    let mut config = SimConfig::default();
    config.binance.orders_short_limit = 3;
    config.binance.orders_short_window_ms = HOUR;
    let sim = start(config).await;
    for count in ["1", "2", "3"] {
        let response = place(&sim).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, "x-mbx-order-count-1h").as_deref(),
            Some(count)
        );
        assert_eq!(
            header(&response, "x-mbx-order-count-1d").as_deref(),
            Some(count)
        );
    }
    let response = place(&sim).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&response, "retry-after").is_some());
    assert_eq!(header(&response, "x-mbx-order-count-1h"), None);
    // The refused order weighs 1.
    assert_eq!(
        header(&response, "x-mbx-used-weight-1m").as_deref(),
        Some("1")
    );
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"code":-1015,"msg":"Too many new orders; current limit is 3 orders per 1 HOUR."}"#
    );
    // Cancelling does not give the count back.
    let query = format!("symbol=BTCUSDT&timestamp={}", now_ms());
    let response = signed(
        &sim,
        Method::DELETE,
        "/api/v3/openOrders",
        &query,
        "",
        false,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await.as_array().unwrap().len(), 3);
    assert_eq!(sim.stats().binance.orders_cancelled, 3);
    let stats = sim.stats().binance;
    assert_eq!(stats.rate_limited, 1);
    assert_eq!(stats.orders_placed, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_storm_ignored_escalates_to_a_418_ban_on_the_ladder() {
    let mut config = SimConfig::default();
    config.binance.ban_first_ms = 1_000;
    config.faults.binance.storm_ms = Some(20_000);
    config.faults.binance.storm_retry_after_s = Some(2);
    let sim = start(config).await;
    let first = get(&sim, "/api/v3/ping").await;
    assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&first, "retry-after").as_deref(), Some("2"));
    assert_eq!(header(&first, "x-mbx-used-weight-1m").as_deref(), Some("0"));
    assert_eq!(json(first).await["code"], -1003);
    // Two requests inside the Retry-After: violations, still 429.
    for _ in 0..2 {
        assert_eq!(
            get(&sim, "/api/v3/ping").await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    // The third violation earns the first ban of the ladder.
    let before = now_ms();
    let banned = get(&sim, "/api/v3/ping").await;
    assert_eq!(banned.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(header(&banned, "retry-after").as_deref(), Some("1"));
    let text = banned.text().await.unwrap();
    let until: u64 = text
        .split("IP banned until ")
        .nth(1)
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        until >= before + 900 && until <= now_ms() + 1_100,
        "until {until}"
    );
    assert_eq!(
        text,
        format!(
            r#"{{"code":-1003,"msg":"Way too much request weight used; IP banned until {until}. Please use WebSocket Streams for live updates to avoid bans."}}"#
        )
    );
    // While banned every request gets 418, signed or not.
    assert_eq!(place(&sim).await.status(), StatusCode::IM_A_TEAPOT);
    // After the ban the storm still runs: a repeat offender's ban doubles.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        get(&sim, "/api/v3/ping").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..2 {
        assert_eq!(
            get(&sim, "/api/v3/ping").await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    let second = get(&sim, "/api/v3/ping").await;
    assert_eq!(second.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(header(&second, "retry-after").as_deref(), Some("2"));

    let stats = sim.stats().binance;
    assert_eq!(stats.storm_refusals, 6);
    assert_eq!(stats.banned, 3);
    assert_eq!(stats.violations_during_backoff, 7);
    assert_eq!(stats.rate_limited, 0, "the client earned no 429 of its own");
    assert_eq!(stats.requests, 9);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_outcome_is_a_503_for_an_order_that_exists() {
    let mut config = SimConfig::default();
    config.faults.binance.unknown_outcome = Some(1.0);
    let sim = start(config).await;
    let response = place(&sim).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        header(&response, "x-mbx-used-weight-1m").as_deref(),
        Some("0")
    );
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"code":-1007,"msg":"Timeout waiting for response from backend server. Send status unknown; execution status unknown."}"#
    );
    sim.set_faults(Faults::default());
    let query = format!("symbol=BTCUSDT&timestamp={}", now_ms());
    let response = signed(
        &sim,
        Method::DELETE,
        "/api/v3/openOrders",
        &query,
        "",
        false,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await.as_array().unwrap().len(), 1);
    let stats = sim.stats().binance;
    assert_eq!(stats.unknown_outcomes, 1);
    assert_eq!(stats.orders_placed, 1);
    assert_eq!(stats.orders_cancelled, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn repeated_429s_earn_a_ban_even_when_retry_after_is_honoured() {
    let mut config = SimConfig::default();
    config.binance.ban_after_refusals = 3;
    config.binance.ban_first_ms = 2_000;
    config.faults.binance.storm_ms = Some(30_000);
    config.faults.binance.storm_retry_after_s = Some(1);
    let sim = start(config).await;
    for _ in 0..3 {
        let response = get(&sim, "/api/v3/ping").await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&response, "retry-after").as_deref(), Some("1"));
        // Waits out every Retry-After.
        tokio::time::sleep(Duration::from_millis(1_050)).await;
    }
    assert_eq!(sim.stats().binance.violations_during_backoff, 0);
    // The third 429 within the period started a ban: the next request,
    // however patient, meets the 418.
    let response = get(&sim, "/api/v3/ping").await;
    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(header(&response, "retry-after").as_deref(), Some("1"));
    let stats = sim.stats().binance;
    assert_eq!(stats.storm_refusals, 3);
    assert_eq!(stats.banned, 1);
    assert_eq!(stats.rate_limited, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_skew_change_does_not_shorten_a_retry_after() {
    let mut config = SimConfig::default();
    config.faults.binance.storm_ms = Some(30_000);
    config.faults.binance.storm_retry_after_s = Some(2);
    let sim = start(config).await;
    let response = get(&sim, "/api/v3/ping").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, "retry-after").as_deref(), Some("2"));
    // The storm ends and the venue's clock jumps a minute ahead: the wait
    // the client was given still runs on the host's clock.
    sim.set_faults(Faults {
        binance: VenueFaults {
            skew_ms: Some(60_000),
            ..VenueFaults::default()
        },
        ..Faults::default()
    });
    let response = get(&sim, "/api/v3/ping").await;
    assert_eq!(response.status(), StatusCode::OK);
    let stats = sim.stats().binance;
    assert_eq!(stats.violations_during_backoff, 1);
    assert_eq!(stats.storm_refusals, 1);
    assert_eq!(stats.requests, 2);
    sim.shutdown().await;
}
