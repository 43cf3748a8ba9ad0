use crate::common::{client, coinbase_sign, header, json, now_secs_f64, start, tamper};
use reqwest::{Method, StatusCode};
use tollgate_sim::config::{COINBASE_TEST_KEY, COINBASE_TEST_PASSPHRASE, COINBASE_TEST_SECRET};
use tollgate_sim::{Faults, SimConfig, SimHandle, Venue, VenueFaults};

const ORDER: &str =
    r#"{"product_id":"BTC-USD","side":"buy","type":"limit","price":"64000.00","size":"0.01"}"#;

struct Signed<'a> {
    method: Method,
    path: &'a str,
    body: &'a str,
    timestamp: String,
    passphrase: &'a str,
    tamper: bool,
    /// Sign the path without its query (a client bug the simulator catches).
    drop_query: bool,
}

impl<'a> Signed<'a> {
    fn new(method: Method, path: &'a str, body: &'a str) -> Self {
        Signed {
            method,
            path,
            body,
            timestamp: format!("{:.3}", now_secs_f64()),
            passphrase: COINBASE_TEST_PASSPHRASE,
            tamper: false,
            drop_query: false,
        }
    }

    async fn send(self, sim: &SimHandle) -> reqwest::Response {
        let signed_path = if self.drop_query {
            self.path.split('?').next().unwrap()
        } else {
            self.path
        };
        let mut signature = coinbase_sign(
            COINBASE_TEST_SECRET,
            &self.timestamp,
            self.method.as_str(),
            signed_path,
            self.body,
        );
        if self.tamper {
            signature = tamper(&signature);
        }
        let url = format!("{}{}", sim.base_url(Venue::Coinbase), self.path);
        let mut request = client()
            .request(self.method, url)
            .header("CB-ACCESS-KEY", COINBASE_TEST_KEY)
            .header("CB-ACCESS-SIGN", signature)
            .header("CB-ACCESS-TIMESTAMP", &self.timestamp)
            .header("CB-ACCESS-PASSPHRASE", self.passphrase);
        if !self.body.is_empty() {
            request = request
                .header("Content-Type", "application/json")
                .body(self.body.to_owned());
        }
        request.send().await.unwrap()
    }
}

async fn body_text(response: reqwest::Response) -> String {
    response.text().await.unwrap()
}

#[tokio::test]
async fn rate_limit_headers_are_sent_only_when_configured() {
    let mut config = SimConfig::default();
    config.coinbase.send_rate_limit_headers = true;
    let sim = start(config).await;
    let before = now_secs_f64() as u64;
    let response = Signed::new(Method::POST, "/orders", ORDER).send(&sim).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "x-ratelimit-limit").as_deref(),
        Some("30")
    );
    assert_eq!(
        header(&response, "x-ratelimit-remaining").as_deref(),
        Some("29")
    );
    let reset: u64 = header(&response, "x-ratelimit-reset")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (before..=before + 2).contains(&reset),
        "reset {reset}, now {before}"
    );
    sim.shutdown().await;

    // By default the Exchange sends none: it documents none.
    let sim = start(SimConfig::default()).await;
    let response = Signed::new(Method::POST, "/orders", ORDER).send(&sim).await;
    assert_eq!(response.status(), StatusCode::OK);
    for name in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        assert_eq!(header(&response, name), None, "{name}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn signed_order_is_accepted_and_cancelled() {
    let sim = start(SimConfig::default()).await;
    let response = Signed::new(Method::POST, "/orders", ORDER).send(&sim).await;
    assert_eq!(response.status(), StatusCode::OK);
    let order = json(response).await;
    assert_eq!(order["status"], "pending");
    assert_eq!(order["product_id"], "BTC-USD");
    let id = order["id"].as_str().unwrap().to_owned();

    let path = format!("/orders/{id}");
    let response = Signed::new(Method::DELETE, &path, "").send(&sim).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await, serde_json::json!(id));
    let response = Signed::new(Method::DELETE, &path, "").send(&sim).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Public endpoints need no signature.
    let time = json(
        client()
            .get(format!("{}/time", sim.base_url(Venue::Coinbase)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!((time["epoch"].as_f64().unwrap() - now_secs_f64()).abs() < 5.0);
    assert!(time["iso"].as_str().unwrap().ends_with('Z'));
    let book = client()
        .get(format!(
            "{}/products/BTC-USD/book?level=2",
            sim.base_url(Venue::Coinbase)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(book.status(), StatusCode::OK);
    let book = json(book).await;
    assert_eq!(book["bids"].as_array().unwrap().len(), 50);

    let stats = sim.stats().coinbase;
    assert_eq!(stats.orders_placed, 1);
    assert_eq!(stats.orders_cancelled, 1);
    assert_eq!(stats.accepted, 4);
    assert_eq!(stats.rejected, 1);
    assert_eq!(stats.rate_limited, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_signature_passphrase_and_key_are_refused() {
    let sim = start(SimConfig::default()).await;
    let mut signed = Signed::new(Method::POST, "/orders", ORDER);
    signed.tamper = true;
    let response = signed.send(&sim).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        body_text(response).await,
        r#"{"message":"invalid signature"}"#
    );

    let mut signed = Signed::new(Method::POST, "/orders", ORDER);
    signed.passphrase = "not-it";
    let response = signed.send(&sim).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        body_text(response).await,
        r#"{"message":"invalid passphrase"}"#
    );

    let response = client()
        .post(format!("{}/orders", sim.base_url(Venue::Coinbase)))
        .header("CB-ACCESS-KEY", "nobody")
        .body(ORDER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        body_text(response).await,
        r#"{"message":"Invalid API Key"}"#
    );

    // The query string is part of the signed path.
    Signed::new(Method::POST, "/orders", ORDER).send(&sim).await;
    let mut signed = Signed::new(Method::DELETE, "/orders?product_id=BTC-USD", "");
    signed.drop_query = true;
    let response = signed.send(&sim).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        body_text(response).await,
        r#"{"message":"invalid signature"}"#
    );
    let response = Signed::new(Method::DELETE, "/orders?product_id=BTC-USD", "")
        .send(&sim)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await.as_array().unwrap().len(), 1);

    let stats = sim.stats().coinbase;
    assert_eq!(stats.auth_failures, 4);
    assert_eq!(stats.orders_placed, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn timestamps_outside_thirty_seconds_are_expired() {
    let sim = start(SimConfig::default()).await;
    let mut signed = Signed::new(Method::POST, "/orders", ORDER);
    signed.timestamp = format!("{:.3}", now_secs_f64() - 31.0);
    let response = signed.send(&sim).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        body_text(response).await,
        r#"{"message":"request timestamp expired"}"#
    );
    let mut signed = Signed::new(Method::POST, "/orders", ORDER);
    signed.timestamp = format!("{}", now_secs_f64() as u64 - 25);
    assert_eq!(signed.send(&sim).await.status(), StatusCode::OK);

    // The venue's clock runs 60 s ahead: our clock is now expired, the
    // venue's own time (from GET /time) is accepted.
    sim.set_faults(Faults {
        coinbase: VenueFaults {
            skew_ms: Some(60_000),
            ..VenueFaults::default()
        },
        ..Faults::default()
    });
    let response = Signed::new(Method::POST, "/orders", ORDER).send(&sim).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        body_text(response).await,
        r#"{"message":"request timestamp expired"}"#
    );
    let time = json(
        client()
            .get(format!("{}/time", sim.base_url(Venue::Coinbase)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let venue_now = time["epoch"].as_f64().unwrap();
    assert!((venue_now - now_secs_f64() - 60.0).abs() < 5.0);
    let mut signed = Signed::new(Method::POST, "/orders", ORDER);
    signed.timestamp = format!("{venue_now:.3}");
    assert_eq!(signed.send(&sim).await.status(), StatusCode::OK);
    assert_eq!(sim.stats().coinbase.auth_failures, 2);
    sim.shutdown().await;
}

fn scaled() -> SimConfig {
    let mut config = SimConfig::default();
    config.coinbase.private_burst = 3.0;
    config.coinbase.private_rate = 0.001;
    config.coinbase.public_burst = 2.0;
    config.coinbase.public_rate = 0.001;
    config
}

#[tokio::test]
async fn exceeding_the_private_bucket_is_refused() {
    let mut config = scaled();
    config.coinbase.send_rate_limit_headers = true;
    let sim = start(config).await;
    for remaining in ["2", "1", "0"] {
        let response = Signed::new(Method::POST, "/orders", ORDER).send(&sim).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(
            header(&response, "x-ratelimit-remaining").as_deref(),
            Some(remaining)
        );
    }
    let response = Signed::new(Method::POST, "/orders", ORDER).send(&sim).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&response, "x-ratelimit-remaining").as_deref(),
        Some("0")
    );
    assert_eq!(header(&response, "retry-after"), None);
    assert_eq!(
        body_text(response).await,
        r#"{"message":"Private rate limit exceeded"}"#
    );
    // A bad signature takes no token and is not a 429.
    let mut signed = Signed::new(Method::POST, "/orders", ORDER);
    signed.tamper = true;
    assert_eq!(signed.send(&sim).await.status(), StatusCode::UNAUTHORIZED);

    let url = format!("{}/time", sim.base_url(Venue::Coinbase));
    for _ in 0..2 {
        assert_eq!(
            client().get(&url).send().await.unwrap().status(),
            StatusCode::OK
        );
    }
    let response = client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body_text(response).await,
        r#"{"message":"Public rate limit exceeded"}"#
    );

    let stats = sim.stats().coinbase;
    assert_eq!(stats.rate_limited, 2);
    assert_eq!(stats.storm_refusals, 0);
    assert_eq!(stats.orders_placed, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn retry_after_is_sent_when_configured_and_violations_are_counted() {
    let mut config = scaled();
    config.coinbase.send_retry_after = true;
    let sim = start(config).await;
    for _ in 0..3 {
        Signed::new(Method::POST, "/orders", ORDER).send(&sim).await;
    }
    let response = Signed::new(Method::POST, "/orders", ORDER).send(&sim).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&response, "retry-after").unwrap().parse().unwrap();
    assert!(
        retry >= 900,
        "one token at 0.001/s takes 1000 s, got {retry}"
    );
    // Sending again while told to wait is a violation (no 418 outside Binance).
    let response = Signed::new(Method::POST, "/orders", ORDER).send(&sim).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let stats = sim.stats().coinbase;
    assert_eq!(stats.violations_during_backoff, 1);
    assert_eq!(stats.banned, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn storm_refusals_are_counted_apart() {
    let mut config = SimConfig::default();
    config.faults.coinbase.storm_ms = Some(400);
    let sim = start(config).await;
    let response = Signed::new(Method::POST, "/orders", ORDER).send(&sim).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body_text(response).await,
        r#"{"message":"Private rate limit exceeded"}"#
    );
    let response = client()
        .get(format!("{}/time", sim.base_url(Venue::Coinbase)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body_text(response).await,
        r#"{"message":"Public rate limit exceeded"}"#
    );
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    let response = Signed::new(Method::POST, "/orders", ORDER).send(&sim).await;
    assert_eq!(response.status(), StatusCode::OK);
    let stats = sim.stats().coinbase;
    assert_eq!(stats.storm_refusals, 2);
    assert_eq!(stats.rate_limited, 0);
    assert_eq!(stats.accepted, 1);
    sim.shutdown().await;
}

async fn partial_cancel_run(seed: u64) -> (usize, u64) {
    let sim = start(SimConfig::default()).await;
    for _ in 0..20 {
        Signed::new(Method::POST, "/orders", ORDER).send(&sim).await;
    }
    sim.set_faults(Faults {
        seed,
        coinbase: VenueFaults {
            partial_cancel: Some(0.5),
            ..VenueFaults::default()
        },
        ..Faults::default()
    });
    let response = Signed::new(Method::DELETE, "/orders", "").send(&sim).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cancelled = json(response).await.as_array().unwrap().len();
    // The rest are still open: a second cancel-all without the fault gets them.
    sim.set_faults(Faults::default());
    let rest = json(Signed::new(Method::DELETE, "/orders", "").send(&sim).await).await;
    assert_eq!(cancelled + rest.as_array().unwrap().len(), 20);
    let stats = sim.stats().coinbase;
    sim.shutdown().await;
    (cancelled, stats.orders_cancelled)
}

#[tokio::test]
async fn partial_cancel_is_seeded_and_leaves_orders_open() {
    let (first, total) = partial_cancel_run(11).await;
    let (again, _) = partial_cancel_run(11).await;
    assert_eq!(first, again, "same seed, same orders left open");
    assert!(first > 0 && first < 20, "{first} of 20 cancelled");
    assert_eq!(total, 20);
}
