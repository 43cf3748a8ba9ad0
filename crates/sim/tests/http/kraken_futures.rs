use crate::common::{client, futures_sign, json, now_ms, start, tamper};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tollgate_sim::config::{KRAKEN_FUTURES_TEST_KEY, KRAKEN_FUTURES_TEST_SECRET};
use tollgate_sim::{Faults, FuturesWindow, SimConfig, SimHandle, Venue, VenueFaults};

/// Increasing nonces, two apart, so `n - 1` is never one already used.
fn nonce() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let candidate = now_ms() * 1_000;
    let mut last = LAST.load(Ordering::SeqCst);
    loop {
        let next = candidate.max(last + 2);
        match LAST.compare_exchange(last, next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return next,
            Err(actual) => last = actual,
        }
    }
}

struct Call<'a> {
    method: Method,
    endpoint: &'a str,
    data: &'a str,
    nonce: Option<u64>,
    /// Sign the path with its /derivatives prefix (a client bug).
    sign_full_path: bool,
    corrupt: bool,
}

impl<'a> Call<'a> {
    fn post(endpoint: &'a str, data: &'a str) -> Self {
        Call {
            method: Method::POST,
            endpoint,
            data,
            nonce: Some(nonce()),
            sign_full_path: false,
            corrupt: false,
        }
    }

    async fn send(self, sim: &SimHandle) -> reqwest::Response {
        let path = format!("/derivatives/api/v3/{}", self.endpoint);
        let signed_path = if self.sign_full_path {
            path.clone()
        } else {
            format!("/api/v3/{}", self.endpoint)
        };
        let nonce = self.nonce.map(|n| n.to_string()).unwrap_or_default();
        let mut authent = futures_sign(KRAKEN_FUTURES_TEST_SECRET, self.data, &nonce, &signed_path);
        if self.corrupt {
            authent = tamper(&authent);
        }
        let base = sim.base_url(Venue::KrakenFutures);
        let mut request = if self.method == Method::GET {
            client().get(format!("{base}{path}?{}", self.data))
        } else {
            client()
                .post(format!("{base}{path}"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(self.data.to_owned())
        };
        request = request
            .header("APIKey", KRAKEN_FUTURES_TEST_KEY)
            .header("Authent", authent);
        if self.nonce.is_some() {
            request = request.header("Nonce", nonce);
        }
        request.send().await.unwrap()
    }
}

const ORDER: &str = "orderType=lmt&symbol=PF_XBTUSD&side=buy&size=1&limitPrice=50000&cliOrdId=c1";

fn assert_error_body(text: &str, error: &str) {
    let prefix = format!(r#"{{"result":"error","error":"{error}","serverTime":""#);
    assert!(text.starts_with(&prefix), "{text}");
    let body: Value = serde_json::from_str(text).unwrap();
    assert!(body["serverTime"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn signed_order_is_placed_and_cancelled() {
    let sim = start(SimConfig::default()).await;
    let response = Call::post("sendorder", ORDER).send(&sim).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response).await;
    assert_eq!(body["result"], "success");
    assert_eq!(body["sendStatus"]["status"], "placed");
    let id = body["sendStatus"]["order_id"].as_str().unwrap().to_owned();
    let data = format!("order_id={id}");
    let body = json(Call::post("cancelorder", &data).send(&sim).await).await;
    assert_eq!(body["cancelStatus"]["status"], "cancelled");
    let body = json(Call::post("cancelorder", &data).send(&sim).await).await;
    assert_eq!(body["cancelStatus"]["status"], "notFound");
    // Public tickers need no key and cost nothing.
    let tickers = json(
        client()
            .get(format!(
                "{}/derivatives/api/v3/tickers",
                sim.base_url(Venue::KrakenFutures)
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(tickers["tickers"][0]["symbol"], "PF_XBTUSD");
    // A signed GET signs its query string.
    let mut positions = Call::post("openpositions", "");
    positions.method = Method::GET;
    assert_eq!(json(positions.send(&sim).await).await["result"], "success");
    let stats = sim.stats().kraken_futures;
    assert_eq!((stats.orders_placed, stats.orders_cancelled), (1, 1));
    assert_eq!(stats.rejected, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_authent_and_nonces_are_refused() {
    let sim = start(SimConfig::default()).await;
    let mut call = Call::post("sendorder", ORDER);
    call.corrupt = true;
    let response = call.send(&sim).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_error_body(&response.text().await.unwrap(), "authenticationError");
    let mut call = Call::post("sendorder", ORDER);
    call.sign_full_path = true;
    assert_eq!(call.send(&sim).await.status(), StatusCode::UNAUTHORIZED);
    // Without a Nonce header the signature covers postData + path only.
    let mut call = Call::post("sendorder", ORDER);
    call.nonce = None;
    assert_eq!(call.send(&sim).await.status(), StatusCode::OK);

    let n = nonce();
    let mut call = Call::post("sendorder", ORDER);
    call.nonce = Some(n);
    assert_eq!(call.send(&sim).await.status(), StatusCode::OK);
    let mut replay = Call::post("sendorder", ORDER);
    replay.nonce = Some(n);
    let response = replay.send(&sim).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_error_body(&response.text().await.unwrap(), "nonceDuplicate");
    // Below every nonce seen so far: refused, although far fewer than 100
    // are remembered.
    let mut backwards = Call::post("sendorder", ORDER);
    backwards.nonce = Some(n - 1);
    let response = backwards.send(&sim).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_error_body(&response.text().await.unwrap(), "nonceBelowThreshold");
    // Slightly out of order (above the lowest remembered) is tolerated.
    let m = nonce();
    assert_eq!(
        Call::post("sendorder", ORDER).send(&sim).await.status(),
        StatusCode::OK
    );
    let mut late = Call::post("sendorder", ORDER);
    late.nonce = Some(m);
    assert_eq!(late.send(&sim).await.status(), StatusCode::OK);

    // A skewed venue clock shows in serverTime.
    sim.set_faults(Faults {
        kraken_futures: VenueFaults {
            skew_ms: Some(3_600_000),
            ..VenueFaults::default()
        },
        ..Faults::default()
    });
    let body = json(Call::post("sendorder", ORDER).send(&sim).await).await;
    let server_hour: u32 = body["serverTime"].as_str().unwrap()[11..13]
        .parse()
        .unwrap();
    let local_hour = ((now_ms() / 3_600_000) % 24) as u32;
    assert_eq!(server_hour, (local_hour + 1) % 24);
    assert_eq!(sim.stats().kraken_futures.auth_failures, 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_budget_refuses_with_api_limit_exceeded() {
    let mut config = SimConfig::default();
    config.kraken_futures.budget = 30;
    config.kraken_futures.window_ms = 60_000;
    let sim = start(config).await;
    for _ in 0..3 {
        assert_eq!(
            Call::post("sendorder", ORDER).send(&sim).await.status(),
            StatusCode::OK
        );
    }
    // The status is not documented: 200 by default, only the body says it.
    let response = Call::post("sendorder", ORDER).send(&sim).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_error_body(&response.text().await.unwrap(), "apiLimitExceeded");
    let mut positions = Call::post("openpositions", "");
    positions.method = Method::GET;
    let response = positions.send(&sim).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_error_body(&response.text().await.unwrap(), "apiLimitExceeded");
    assert_eq!(sim.stats().kraken_futures.rate_limited, 2);
    sim.shutdown().await;

    // The status can be chosen.
    let mut config = SimConfig::default();
    config.kraken_futures.budget = 10;
    config.kraken_futures.window_ms = 60_000;
    config.kraken_futures.rate_limit_status = 429;
    let sim = start(config).await;
    assert_eq!(
        Call::post("sendorder", ORDER).send(&sim).await.status(),
        StatusCode::OK
    );
    let response = Call::post("sendorder", ORDER).send(&sim).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_error_body(&response.text().await.unwrap(), "apiLimitExceeded");
    sim.shutdown().await;
}

/// Whether Kraken Futures took the call (`"result":"success"`).
async fn succeeded(response: reqwest::Response) -> bool {
    assert_eq!(response.status(), StatusCode::OK);
    json(response).await["result"] == "success"
}

/// Whether a sendorder `wait_ms` after exhausting the budget is taken.
async fn budget_after(window: FuturesWindow, wait_ms: u64) -> bool {
    let mut config = SimConfig::default();
    config.kraken_futures.budget = 20;
    config.kraken_futures.window_ms = 400;
    config.kraken_futures.window = window;
    let sim = start(config).await;
    for _ in 0..2 {
        assert!(succeeded(Call::post("sendorder", ORDER).send(&sim).await).await);
    }
    assert!(!succeeded(Call::post("sendorder", ORDER).send(&sim).await).await);
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    let taken = succeeded(Call::post("sendorder", ORDER).send(&sim).await).await;
    sim.shutdown().await;
    taken
}

#[tokio::test]
async fn sliding_window_is_stricter_than_the_bucket() {
    // Half a window later the bucket has refilled half; the window nothing.
    assert!(budget_after(FuturesWindow::Bucket, 250).await);
    assert!(!budget_after(FuturesWindow::Sliding, 250).await);
    assert!(budget_after(FuturesWindow::Sliding, 450).await);
}

#[tokio::test]
async fn batches_cost_nine_plus_instructions_and_report_each() {
    let mut config = SimConfig::default();
    config.kraken_futures.budget = 30;
    config.kraken_futures.window_ms = 60_000;
    let sim = start(config).await;
    let placed = json(Call::post("sendorder", ORDER).send(&sim).await).await;
    let id = placed["sendStatus"]["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let instructions = json!({"batchOrder": [
        {"order": "send", "order_tag": "1", "orderType": "lmt", "symbol": "PF_XBTUSD", "side": "buy", "size": 1, "limitPrice": 49000},
        {"order": "send", "order_tag": "2", "orderType": "lmt", "symbol": "PF_XBTUSD", "side": "sell", "size": 1, "limitPrice": 51000},
        {"order": "cancel", "order_id": id},
    ]});
    let data = format!("json={}", urlencode(&instructions.to_string()));
    let response = Call::post("batchorder", &data).send(&sim).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response).await;
    let statuses: Vec<&str> = body["batchStatus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["placed", "placed", "cancelled"]);
    // 10 + (9 + 3) = 22 of 30: another sendorder (10) no longer fits.
    let response = Call::post("sendorder", ORDER).send(&sim).await;
    assert_error_body(&response.text().await.unwrap(), "apiLimitExceeded");
    let stats = sim.stats().kraken_futures;
    assert_eq!((stats.orders_placed, stats.orders_cancelled), (3, 1));
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_mix_batches_leave_orders_open_and_storm() {
    let mut config = SimConfig::default();
    config.faults.kraken_futures.batch_mixed = Some(1.0);
    let sim = start(config).await;
    let instructions = json!({"batchOrder": [
        {"order": "send", "order_tag": "a", "orderType": "lmt", "symbol": "PF_XBTUSD", "side": "buy", "size": 1, "limitPrice": 49000},
        {"order": "send", "order_tag": "b", "orderType": "lmt", "symbol": "PF_XBTUSD", "side": "buy", "size": 1, "limitPrice": 49000},
    ]});
    let data = format!("json={}", urlencode(&instructions.to_string()));
    let body = json(Call::post("batchorder", &data).send(&sim).await).await;
    assert!(
        body["batchStatus"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "insufficientAvailableFunds")
    );

    sim.set_faults(Faults::default());
    for _ in 0..3 {
        Call::post("sendorder", ORDER).send(&sim).await;
    }
    sim.set_faults(Faults {
        kraken_futures: VenueFaults {
            partial_cancel: Some(1.0),
            ..VenueFaults::default()
        },
        ..Faults::default()
    });
    let body = json(Call::post("cancelallorders", "").send(&sim).await).await;
    assert_eq!(body["cancelStatus"]["cancelledOrders"], json!([]));
    sim.set_faults(Faults {
        kraken_futures: VenueFaults {
            storm_ms: Some(300),
            ..VenueFaults::default()
        },
        ..Faults::default()
    });
    let response = Call::post("cancelallorders", "").send(&sim).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_error_body(&response.text().await.unwrap(), "apiLimitExceeded");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let body = json(Call::post("cancelallorders", "").send(&sim).await).await;
    assert_eq!(
        body["cancelStatus"]["cancelledOrders"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let stats = sim.stats().kraken_futures;
    assert_eq!(stats.storm_refusals, 1);
    assert_eq!(stats.rate_limited, 0);
    assert_eq!(stats.orders_placed, 3);
    sim.shutdown().await;
}

/// Percent-encodes everything but unreserved characters.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
