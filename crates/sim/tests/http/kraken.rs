use crate::common::{client, json, kraken_sign, now_ms, start, tamper};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use tollgate_sim::config::{KRAKEN_TEST_KEY, KRAKEN_TEST_SECRET};
use tollgate_sim::{Faults, SimConfig, SimHandle, Venue, VenueFaults};

/// Strictly increasing nonces across the whole test binary.
fn nonce() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let candidate = now_ms() * 1_000;
    let mut last = LAST.load(Ordering::SeqCst);
    loop {
        let next = candidate.max(last + 1);
        match LAST.compare_exchange(last, next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return next,
            Err(actual) => last = actual,
        }
    }
}

/// POSTs a form body that already holds its nonce.
async fn post_with(
    sim: &SimHandle,
    method: &str,
    nonce: u64,
    body: &str,
    corrupt: bool,
) -> reqwest::Response {
    let path = format!("/0/private/{method}");
    let mut signature = kraken_sign(KRAKEN_TEST_SECRET, &path, &nonce.to_string(), body);
    if corrupt {
        signature = tamper(&signature);
    }
    client()
        .post(format!("{}{path}", sim.base_url(Venue::Kraken)))
        .header("API-Key", KRAKEN_TEST_KEY)
        .header("API-Sign", signature)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn post(sim: &SimHandle, method: &str, params: &str) -> Value {
    let nonce = nonce();
    let body = if params.is_empty() {
        format!("nonce={nonce}")
    } else {
        format!("nonce={nonce}&{params}")
    };
    let response = post_with(sim, method, nonce, &body, false).await;
    // Kraken reports errors inside an HTTP 200.
    assert_eq!(response.status(), StatusCode::OK);
    json(response).await
}

const ORDER: &str = "ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25";

fn errors(body: &Value) -> Vec<String> {
    body["error"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn signed_order_is_accepted_and_cancelled() {
    let sim = start(SimConfig::default()).await;
    let body = post(&sim, "AddOrder", ORDER).await;
    assert!(errors(&body).is_empty(), "{body}");
    assert_eq!(
        body["result"]["descr"]["order"],
        "buy 1.25 XBTUSD @ limit 37500"
    );
    let txid = body["result"]["txid"][0].as_str().unwrap().to_owned();
    assert!(txid.starts_with('O') && txid.len() == 19, "{txid}");
    let body = post(&sim, "CancelOrder", &format!("txid={txid}")).await;
    assert_eq!(body, json!({"error": [], "result": {"count": 1}}));
    let body = post(&sim, "CancelOrder", &format!("txid={txid}")).await;
    assert_eq!(body, json!({"error": ["EOrder:Unknown order"]}));

    let time = json(
        client()
            .get(format!("{}/0/public/Time", sim.base_url(Venue::Kraken)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let unixtime = time["result"]["unixtime"].as_u64().unwrap();
    assert!((unixtime as i64 - (now_ms() / 1_000) as i64).abs() < 5);
    assert!(
        time["result"]["rfc1123"]
            .as_str()
            .unwrap()
            .ends_with("+0000")
    );
    let depth = json(
        client()
            .get(format!(
                "{}/0/public/Depth?pair=XBTUSD&count=10",
                sim.base_url(Venue::Kraken)
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        depth["result"]["XBTUSD"]["asks"].as_array().unwrap().len(),
        10
    );
    let balance = post(&sim, "Balance", "").await;
    assert!(balance["result"]["ZUSD"].is_string());
    let stats = sim.stats().kraken;
    assert_eq!((stats.orders_placed, stats.orders_cancelled), (1, 1));
    assert_eq!(stats.accepted, 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_signature_key_and_nonce_are_refused() {
    let sim = start(SimConfig::default()).await;
    let n = nonce();
    let body = format!("nonce={n}&{ORDER}");
    let response = post_with(&sim, "AddOrder", n, &body, true).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"error":["EAPI:Invalid signature"]}"#
    );
    // The refused request did not use up its nonce; accepted once, then not.
    let response = post_with(&sim, "AddOrder", n, &body, false).await;
    assert!(errors(&json(response).await).is_empty());
    let response = post_with(&sim, "AddOrder", n, &body, false).await;
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"error":["EAPI:Invalid nonce"]}"#
    );
    let older = n - 1;
    let response = post_with(
        &sim,
        "AddOrder",
        older,
        &format!("nonce={older}&{ORDER}"),
        false,
    )
    .await;
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"error":["EAPI:Invalid nonce"]}"#
    );

    let response = client()
        .post(format!("{}/0/private/Balance", sim.base_url(Venue::Kraken)))
        .header("API-Key", "who")
        .header("API-Sign", "AAAA")
        .body(format!("nonce={}", nonce()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"error":["EAPI:Invalid key"]}"#
    );
    // No timestamp window on spot: a skewed venue clock changes nothing.
    sim.set_faults(Faults {
        kraken: VenueFaults {
            skew_ms: Some(-600_000),
            ..VenueFaults::default()
        },
        ..Faults::default()
    });
    assert!(errors(&post(&sim, "Balance", "").await).is_empty());
    assert_eq!(sim.stats().kraken.auth_failures, 4);
    sim.shutdown().await;
}

fn scaled() -> SimConfig {
    let mut config = SimConfig::default();
    config.kraken.rest_max = 3.0;
    config.kraken.rest_decay_per_s = 0.001;
    config.kraken.trading_threshold = 10.0;
    config.kraken.trading_decay_per_s = 0.001;
    config
}

#[tokio::test]
async fn the_rest_counter_refuses_above_its_maximum() {
    let sim = start(scaled()).await;
    // Ledgers costs 2, Balance 1: 3 reached, the next call is refused.
    assert!(errors(&post(&sim, "Ledgers", "").await).is_empty());
    assert!(errors(&post(&sim, "Balance", "").await).is_empty());
    let body = post(&sim, "Balance", "").await;
    assert_eq!(body, json!({"error": ["EAPI:Rate limit exceeded"]}));
    // Orders do not use the REST counter.
    assert!(errors(&post(&sim, "AddOrder", ORDER).await).is_empty());
    let stats = sim.stats().kraken;
    assert_eq!(stats.rate_limited, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn amend_batch_and_cancel_all_also_spend_the_rest_counter() {
    let sim = start(scaled()).await;
    let placed = post(&sim, "AddOrder", ORDER).await;
    let txid = placed["result"]["txid"][0].as_str().unwrap().to_owned();
    // AddOrder is exempt; AmendOrder, AddOrderBatch and CancelAll add 1
    // each: 3 of 3.
    let amended = post(
        &sim,
        "AmendOrder",
        &format!("txid={txid}&limit_price=37000"),
    )
    .await;
    assert!(errors(&amended).is_empty(), "{amended}");
    assert!(errors(&batch(&sim, 2).await).is_empty());
    assert_eq!(post(&sim, "CancelAll", "").await["result"]["count"], 3);
    for method in ["Balance", "CancelAll", "AmendOrder"] {
        assert_eq!(
            post(&sim, method, &format!("txid={txid}&limit_price=36000")).await,
            json!({"error": ["EAPI:Rate limit exceeded"]}),
            "{method}"
        );
    }
    // AddOrder and CancelOrder still go through (on a pair whose trading
    // counter the cancel-all did not fill).
    let placed = post(
        &sim,
        "AddOrder",
        "ordertype=limit&pair=ETHUSD&price=3000&type=sell&volume=1",
    )
    .await;
    let txid = placed["result"]["txid"][0].as_str().unwrap().to_owned();
    assert_eq!(
        post(&sim, "CancelOrder", &format!("txid={txid}")).await["result"]["count"],
        1
    );
    assert_eq!(sim.stats().kraken.rate_limited, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_trading_counter_prices_cancels_by_order_age() {
    let sim = start(scaled()).await;
    let first = post(&sim, "AddOrder", ORDER).await;
    let txid = first["result"]["txid"][0].as_str().unwrap().to_owned();
    assert!(errors(&post(&sim, "AddOrder", ORDER).await).is_empty());
    // Cancelling a fresh order costs 8: 2 + 8 = 10, exactly the threshold.
    assert_eq!(
        post(&sim, "CancelOrder", &format!("txid={txid}")).await["result"]["count"],
        1
    );
    let body = post(&sim, "AddOrder", ORDER).await;
    assert_eq!(body, json!({"error": ["EOrder:Rate limit exceeded"]}));
    // Another pair has its own counter.
    let other = post(
        &sim,
        "AddOrder",
        "ordertype=limit&pair=ETHUSD&price=3000&type=sell&volume=1",
    )
    .await;
    assert!(errors(&other).is_empty());
    // CancelAll is a batch cancel: accepted even above the threshold.
    let body = post(&sim, "CancelAll", "").await;
    assert_eq!(body, json!({"error": [], "result": {"count": 2}}));
    let stats = sim.stats().kraken;
    assert_eq!(stats.rate_limited, 1);
    assert_eq!(stats.orders_cancelled, 3);
    sim.shutdown().await;
}

async fn batch(sim: &SimHandle, orders: usize) -> Value {
    let nonce = nonce();
    let order = json!({"ordertype": "limit", "type": "buy", "volume": "1.0", "price": "37000"});
    let body = json!({"nonce": nonce.to_string(), "pair": "XBTUSD", "orders": vec![order; orders]})
        .to_string();
    let path = "/0/private/AddOrderBatch";
    let response = client()
        .post(format!("{}{path}", sim.base_url(Venue::Kraken)))
        .header("API-Key", KRAKEN_TEST_KEY)
        .header(
            "API-Sign",
            kraken_sign(KRAKEN_TEST_SECRET, path, &nonce.to_string(), &body),
        )
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    json(response).await
}

#[tokio::test]
async fn batches_report_each_entry_and_faults_mix_them() {
    let mut config = scaled();
    // Each batch also adds 1 to the REST counter: room for all of them.
    config.kraken.rest_max = 15.0;
    config.faults.kraken.batch_mixed = Some(1.0);
    let sim = start(config).await;
    let body = batch(&sim, 4).await;
    let entries = body["result"]["orders"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert!(
        entries
            .iter()
            .all(|e| e["error"] == "EOrder:Insufficient funds")
    );
    sim.set_faults(Faults::default());
    // 4/2 + 4/2 + 6/2 = 7 of 10: a batch of 8 (+4) no longer fits.
    let body = batch(&sim, 4).await;
    let entries = body["result"]["orders"].as_array().unwrap();
    assert!(entries.iter().all(|e| e["txid"].is_string()));
    assert!(errors(&batch(&sim, 6).await).is_empty());
    assert_eq!(
        batch(&sim, 8).await,
        json!({"error": ["EOrder:Rate limit exceeded"]})
    );
    assert_eq!(
        batch(&sim, 1).await,
        json!({"error": ["EGeneral:Invalid arguments:orders"]})
    );
    let stats = sim.stats().kraken;
    assert_eq!(stats.orders_placed, 10);
    assert_eq!(stats.rate_limited, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn storm_and_partial_cancel() {
    let sim = start(SimConfig::default()).await;
    for _ in 0..4 {
        post(&sim, "AddOrder", ORDER).await;
    }
    sim.set_faults(Faults {
        kraken: VenueFaults {
            partial_cancel: Some(1.0),
            ..VenueFaults::default()
        },
        ..Faults::default()
    });
    assert_eq!(post(&sim, "CancelAll", "").await["result"]["count"], 0);
    sim.set_faults(Faults {
        kraken: VenueFaults {
            storm_ms: Some(300),
            ..VenueFaults::default()
        },
        ..Faults::default()
    });
    assert_eq!(
        post(&sim, "Balance", "").await,
        json!({"error": ["EAPI:Rate limit exceeded"]})
    );
    assert_eq!(
        post(&sim, "AddOrder", ORDER).await,
        json!({"error": ["EOrder:Rate limit exceeded"]})
    );
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    assert_eq!(post(&sim, "CancelAll", "").await["result"]["count"], 4);
    let stats = sim.stats().kraken;
    assert_eq!(stats.storm_refusals, 2);
    assert_eq!(stats.rate_limited, 0);
    assert_eq!(stats.orders_cancelled, 4);
    sim.shutdown().await;
}
