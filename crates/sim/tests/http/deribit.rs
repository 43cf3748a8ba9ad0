use crate::common::{client, deribit_sign, json, now_ms, start, tamper};
use reqwest::StatusCode;
use serde_json::Value;
use tollgate_sim::config::{DERIBIT_TEST_CLIENT_ID, DERIBIT_TEST_CLIENT_SECRET};
use tollgate_sim::{Faults, MatchingEngineTier, SimConfig, SimHandle, Venue, VenueFaults};

async fn call(
    sim: &SimHandle,
    method: &str,
    query: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = client().get(format!(
        "{}/api/v2/{method}?{query}",
        sim.base_url(Venue::Deribit)
    ));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    request.send().await.unwrap()
}

async fn login(sim: &SimHandle) -> String {
    let query = format!(
        "grant_type=client_credentials&client_id={DERIBIT_TEST_CLIENT_ID}&client_secret={DERIBIT_TEST_CLIENT_SECRET}"
    );
    let response = call(sim, "public/auth", &query, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response).await;
    assert_eq!(body["result"]["token_type"], "bearer");
    assert_eq!(body["result"]["expires_in"], 900);
    assert!(body["result"]["refresh_token"].is_string());
    body["result"]["access_token"].as_str().unwrap().to_owned()
}

const BUY: &str = "instrument_name=BTC-PERPETUAL&amount=10&type=limit&price=64000&label=t1";

fn assert_envelope(body: &Value) {
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["testnet"], true);
    let (us_in, us_out) = (
        body["usIn"].as_i64().unwrap(),
        body["usOut"].as_i64().unwrap(),
    );
    assert!(us_out >= us_in);
    assert_eq!(body["usDiff"].as_i64().unwrap(), us_out - us_in);
}

fn assert_error(text: &str, code: i64, message: &str) {
    // Field order as Deribit sends it.
    assert!(
        text.starts_with(&format!(
            r#"{{"jsonrpc":"2.0","error":{{"message":"{message}","code":{code}"#
        )),
        "{text}"
    );
    let body: Value = serde_json::from_str(text).unwrap();
    assert_envelope(&body);
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in ["jsonrpc", "error", "usIn", "usOut", "usDiff", "testnet"] {
        assert!(keys.contains(&key), "{key} missing in {text}");
    }
}

#[tokio::test]
async fn authenticated_order_is_accepted_and_cancelled() {
    let sim = start(SimConfig::default()).await;
    let token = login(&sim).await;
    let response = call(&sim, "private/buy", BUY, Some(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response).await;
    assert_envelope(&body);
    let order = &body["result"]["order"];
    assert_eq!(order["order_state"], "open");
    assert_eq!(order["direction"], "buy");
    assert_eq!(order["label"], "t1");
    let id = order["order_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("BTC-"));

    let response = call(
        &sim,
        "private/cancel",
        &format!("order_id={id}"),
        Some(&token),
    )
    .await;
    assert_eq!(json(response).await["result"]["order_state"], "cancelled");
    let response = call(
        &sim,
        "private/cancel",
        &format!("order_id={id}"),
        Some(&token),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_error(&response.text().await.unwrap(), 11044, "not_open_order");

    let time = json(call(&sim, "public/get_time", "", None).await).await;
    assert!((time["result"].as_i64().unwrap() - now_ms() as i64).abs() < 5_000);
    let summary = json(
        call(
            &sim,
            "private/get_account_summary",
            "currency=BTC",
            Some(&token),
        )
        .await,
    )
    .await;
    assert_eq!(
        summary["result"]["limits"]["matching_engine"]["trading"]["total"]["burst"],
        20.0
    );
    assert_eq!(
        summary["result"]["limits"]["non_matching_engine"]["burst"],
        100.0
    );
    let book = json(
        call(
            &sim,
            "public/get_order_book",
            "instrument_name=BTC-PERPETUAL",
            None,
        )
        .await,
    )
    .await;
    assert_eq!(book["result"]["bids"].as_array().unwrap().len(), 5);

    let stats = sim.stats().deribit;
    assert_eq!((stats.orders_placed, stats.orders_cancelled), (1, 1));
    assert_eq!(stats.rejected, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_tokens_and_credentials_are_refused() {
    let sim = start(SimConfig::default()).await;
    let token = login(&sim).await;
    let response = call(&sim, "private/buy", BUY, Some(&tamper(&token))).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_error(&response.text().await.unwrap(), 13009, "unauthorized");
    let response = call(&sim, "private/buy", BUY, None).await;
    assert_error(&response.text().await.unwrap(), 13009, "unauthorized");
    let query = format!(
        "grant_type=client_credentials&client_id={DERIBIT_TEST_CLIENT_ID}&client_secret=wrong"
    );
    let response = call(&sim, "public/auth", &query, None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_error(
        &response.text().await.unwrap(),
        13004,
        "invalid_credentials",
    );
    assert_eq!(sim.stats().deribit.auth_failures, 3);
    sim.shutdown().await;
}

fn signature_query(timestamp: u64, corrupt: bool) -> String {
    let nonce = "n0nce123";
    let mut signature = deribit_sign(
        DERIBIT_TEST_CLIENT_SECRET,
        &timestamp.to_string(),
        nonce,
        "",
    );
    if corrupt {
        signature = tamper(&signature);
    }
    format!(
        "grant_type=client_signature&client_id={DERIBIT_TEST_CLIENT_ID}&timestamp={timestamp}&nonce={nonce}&data=&signature={signature}"
    )
}

#[tokio::test]
async fn client_signature_grant_checks_signature_and_clock() {
    let sim = start(SimConfig::default()).await;
    let response = call(&sim, "public/auth", &signature_query(now_ms(), false), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let token = json(response).await["result"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        call(&sim, "private/buy", BUY, Some(&token)).await.status(),
        StatusCode::OK
    );

    let response = call(&sim, "public/auth", &signature_query(now_ms(), true), None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let text = response.text().await.unwrap();
    assert_error(&text, 13004, "invalid_credentials");
    let response = call(
        &sim,
        "public/auth",
        &signature_query(now_ms() - 120_000, false),
        None,
    )
    .await;
    let body = json(response).await;
    assert_eq!(body["error"]["code"], 13004);
    assert_eq!(
        body["error"]["data"]["reason"],
        "timestamp outside of the allowed window"
    );

    // The venue's clock runs 2 minutes ahead: our timestamp is stale, the
    // venue's (public/get_time) is fine.
    sim.set_faults(Faults {
        deribit: VenueFaults {
            skew_ms: Some(120_000),
            ..VenueFaults::default()
        },
        ..Faults::default()
    });
    let response = call(&sim, "public/auth", &signature_query(now_ms(), false), None).await;
    assert_eq!(json(response).await["error"]["code"], 13004);
    let venue_now = json(call(&sim, "public/get_time", "", None).await).await["result"]
        .as_u64()
        .unwrap();
    assert!(venue_now > now_ms() + 110_000);
    let response = call(
        &sim,
        "public/auth",
        &signature_query(venue_now, false),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(sim.stats().deribit.auth_failures, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn matching_engine_limit_refuses_with_10028_and_ends_the_session() {
    let mut config = SimConfig::default();
    config.deribit.matching_engine_tiers.insert(
        "tiny".to_owned(),
        MatchingEngineTier {
            rate: 0.001,
            burst: 3.0,
        },
    );
    config.deribit.matching_engine_tier = "tiny".to_owned();
    let sim = start(config).await;
    let token = login(&sim).await;
    for _ in 0..3 {
        assert_eq!(
            call(&sim, "private/buy", BUY, Some(&token)).await.status(),
            StatusCode::OK
        );
    }
    // 400, like every other JSON-RPC error: only the code says "rate".
    let response = call(&sim, "private/sell", BUY, Some(&token)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let text = response.text().await.unwrap();
    assert_error(&text, 10028, "too_many_requests");
    assert!(!text.contains("result"));
    // The session is terminated: the token no longer works.
    let response = call(
        &sim,
        "private/get_account_summary",
        "currency=BTC",
        Some(&token),
    )
    .await;
    assert_error(&response.text().await.unwrap(), 13009, "unauthorized");
    // A new session shares the sub-account's (still empty) allowance, but
    // non-matching-engine calls have their own pool.
    let token = login(&sim).await;
    assert_eq!(
        call(
            &sim,
            "private/get_account_summary",
            "currency=BTC",
            Some(&token)
        )
        .await
        .status(),
        StatusCode::OK
    );
    let response = call(&sim, "private/cancel_all", "", Some(&token)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_error(&response.text().await.unwrap(), 10028, "too_many_requests");
    let stats = sim.stats().deribit;
    assert_eq!(stats.rate_limited, 2);
    assert_eq!(stats.auth_failures, 1);
    assert_eq!(stats.orders_placed, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn non_matching_engine_credits_run_out() {
    let mut config = SimConfig::default();
    config.deribit.non_matching_max = 1_500;
    config.deribit.non_matching_refill_per_s = 1;
    let sim = start(config).await;
    for _ in 0..3 {
        assert_eq!(
            call(&sim, "public/get_time", "", None).await.status(),
            StatusCode::OK
        );
    }
    let response = call(&sim, "public/get_time", "", None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_error(&response.text().await.unwrap(), 10028, "too_many_requests");
    assert_eq!(sim.stats().deribit.rate_limited, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_status_of_10028_is_configurable() {
    let mut config = SimConfig::default();
    config.deribit.non_matching_max = 500;
    config.deribit.non_matching_refill_per_s = 1;
    config.deribit.rate_limit_status = 429;
    let sim = start(config).await;
    assert_eq!(
        call(&sim, "public/get_time", "", None).await.status(),
        StatusCode::OK
    );
    let response = call(&sim, "public/get_time", "", None).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_error(&response.text().await.unwrap(), 10028, "too_many_requests");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_storm_answers_10028_and_ends_the_session() {
    let sim = start(SimConfig::default()).await;
    let token = login(&sim).await;
    sim.set_faults(Faults {
        deribit: VenueFaults {
            storm_ms: Some(300),
            ..VenueFaults::default()
        },
        ..Faults::default()
    });
    let response = call(&sim, "private/buy", BUY, Some(&token)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_error(&response.text().await.unwrap(), 10028, "too_many_requests");
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    let response = call(&sim, "private/buy", BUY, Some(&token)).await;
    assert_error(&response.text().await.unwrap(), 13009, "unauthorized");
    let token = login(&sim).await;
    assert_eq!(
        call(&sim, "private/buy", BUY, Some(&token)).await.status(),
        StatusCode::OK
    );
    let stats = sim.stats().deribit;
    assert_eq!(stats.storm_refusals, 1);
    assert_eq!(stats.rate_limited, 0);
    sim.shutdown().await;
}
