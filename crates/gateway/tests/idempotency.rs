//! Idempotency keys over real HTTP: each rule of docs/idempotency.md, 50
//! concurrent retries of which exactly one executes, a replay after restart,
//! and replays that move no usage count.

mod common;

use common::{TestGateway, expect_problem, usage, used};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tollgate_gateway::config::PlanConfig;

async fn order(gw: &TestGateway, key: &str, idem: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = gw
        .http
        .post(gw.url("/v1/orders"))
        .bearer_auth(key)
        .json(body);
    if let Some(idem) = idem {
        request = request.header("Idempotency-Key", idem);
    }
    request.send().await.expect("request")
}

fn replayed(r: &reqwest::Response) -> bool {
    r.headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

#[tokio::test]
async fn a_key_is_required_and_must_be_well_formed() {
    let gw = TestGateway::start().await;
    let (_, _, key) = gw.org_and_key().await;
    let body = json!({"symbol": "BTC-USD"});
    expect_problem(
        order(&gw, &key, None, &body).await,
        400,
        "idempotency_key_required",
    )
    .await;
    expect_problem(
        order(&gw, &key, Some(&"k".repeat(256)), &body).await,
        400,
        "idempotency_key_invalid",
    )
    .await;
    expect_problem(
        order(&gw, &key, Some("\"unterminated"), &body).await,
        400,
        "idempotency_key_invalid",
    )
    .await;
    let twice = gw
        .http
        .post(gw.url("/v1/orders"))
        .bearer_auth(&key)
        .header("Idempotency-Key", "a")
        .header("Idempotency-Key", "b")
        .json(&body)
        .send()
        .await
        .expect("req");
    expect_problem(twice, 400, "idempotency_key_invalid").await;
    assert_eq!(gw.upstream.count(), 0);
    // Read routes ignore the header.
    let read = gw
        .http
        .get(gw.url("/v1/ticker"))
        .bearer_auth(&key)
        .header("Idempotency-Key", "x")
        .send()
        .await
        .expect("req");
    assert_eq!(read.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn a_completed_request_is_replayed_byte_for_byte_without_the_upstream() {
    let gw = TestGateway::start().await;
    let (_, _, key) = gw.org_and_key().await;
    let body = json!({"symbol": "BTC-USD", "qty": "1"});
    let first = order(&gw, &key, Some("order-0001"), &body).await;
    assert_eq!(first.status(), 200);
    assert!(!replayed(&first));
    let first_id = first.headers()["x-request-id"].clone();
    let first_type = first.headers()["content-type"].clone();
    let first_body = first.bytes().await.expect("body");
    assert_eq!(gw.upstream.count(), 1);
    assert_eq!(
        gw.upstream.last().expect("seen").headers["idempotency-key"],
        "order-0001",
        "the key is forwarded"
    );

    // Bare and quoted forms are the same key.
    for form in ["order-0001", "\"order-0001\""] {
        let again = order(&gw, &key, Some(form), &body).await;
        assert_eq!(again.status(), 200);
        assert!(replayed(&again));
        assert_eq!(again.headers()["content-type"], first_type);
        assert_ne!(
            again.headers()["x-request-id"],
            first_id,
            "a replay is its own request"
        );
        assert_eq!(
            again.bytes().await.expect("body"),
            first_body,
            "byte for byte"
        );
    }
    assert_eq!(gw.upstream.count(), 1, "no upstream call for a replay");

    // The same key for a different request is refused.
    let other = json!({"symbol": "ETH-USD", "qty": "1"});
    expect_problem(
        order(&gw, &key, Some("order-0001"), &other).await,
        422,
        "idempotency_key_mismatch",
    )
    .await;
    let cancel = gw
        .http
        .delete(gw.url("/v1/orders/9"))
        .bearer_auth(&key)
        .header("Idempotency-Key", "order-0001")
        .send()
        .await
        .expect("req");
    expect_problem(cancel, 422, "idempotency_key_mismatch").await;
    assert_eq!(gw.upstream.count(), 1);

    // After the retention window the key is free for a new request.
    gw.clock.advance_millis(24 * 3600 * 1000);
    let fresh = order(&gw, &key, Some("order-0001"), &other).await;
    assert_eq!(fresh.status(), 200);
    assert!(!replayed(&fresh));
    assert_eq!(gw.upstream.count(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn a_retry_while_the_first_runs_gets_409_then_the_replay() {
    let gw = TestGateway::start().await;
    let (_, _, key) = gw.org_and_key().await;
    let body = json!({"symbol": "BTC-USD", "delay_ms": 800});
    let first = {
        let http = gw.http.clone();
        let url = gw.url("/v1/orders");
        let key = key.clone();
        let body = body.clone();
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", "slow-1")
                .json(&body)
                .send()
                .await
                .expect("req")
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = order(&gw, &key, Some("slow-1"), &body).await;
    assert_eq!(busy.headers()["retry-after"], "1");
    expect_problem(busy, 409, "idempotency_in_flight").await;
    let first = first.await.expect("join");
    assert_eq!(first.status(), 200);
    let first_body = first.bytes().await.expect("body");
    let after = order(&gw, &key, Some("slow-1"), &body).await;
    assert!(replayed(&after));
    assert_eq!(after.bytes().await.expect("body"), first_body);
    assert_eq!(gw.upstream.count(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_retries_execute_once_and_count_once() {
    let gw = TestGateway::start_with(|config| {
        let plan: PlanConfig = toml::from_str("[quotas]\nrequest = 1000\n").expect("plan");
        config.plans.insert("metered".into(), plan);
    })
    .await;
    let org = gw.create_org(Some("metered")).await;
    let (_, key) = gw.create_key(&org, json!({"name": "bot"})).await;
    let body = json!({"symbol": "BTC-USD", "delay_ms": 300});
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let http = reqwest::Client::new();
        let url = gw.url("/v1/orders");
        let key = key.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", "storm-1")
                .json(&body)
                .send()
                .await
                .expect("req");
            let replay = replayed(&r);
            (r.status().as_u16(), replay, r.bytes().await.expect("body"))
        }));
    }
    let mut executed = Vec::new();
    let mut replays = 0;
    let mut in_flight = 0;
    for task in tasks {
        match task.await.expect("join") {
            (200, false, body) => executed.push(body),
            (200, true, _) => replays += 1,
            (409, _, _) => in_flight += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(executed.len(), 1, "exactly one execution");
    assert_eq!(replays + in_flight, 49);
    assert_eq!(gw.upstream.count(), 1, "exactly one upstream call");
    let report = usage(&gw, &org).await;
    assert_eq!(used(&report, "request"), 1, "counted once: {report}");
    assert_eq!(
        used(&report, "bytes_out"),
        executed[0].len() as u64,
        "bytes metered once"
    );
    gw.stop().await;
}

#[tokio::test]
async fn upstream_failures_release_the_key_and_4xx_are_replayed() {
    let gw = TestGateway::start().await;
    let (_, _, key) = gw.org_and_key().await;
    // 5xx: not stored; the retry runs again.
    let fail = json!({"fail": true});
    assert_eq!(order(&gw, &key, Some("f-1"), &fail).await.status(), 500);
    let again = order(&gw, &key, Some("f-1"), &fail).await;
    assert_eq!(again.status(), 500);
    assert!(!replayed(&again));
    assert_eq!(gw.upstream.count(), 2);

    // Timeout: released too.
    let slow = || {
        gw.http
            .post(gw.url("/v1/slow-orders"))
            .bearer_auth(&key)
            .header("Idempotency-Key", "s-1")
            .json(&json!({}))
            .send()
    };
    expect_problem(slow().await.expect("req"), 504, "upstream_timeout").await;
    expect_problem(slow().await.expect("req"), 504, "upstream_timeout").await;
    assert_eq!(
        gw.upstream.count(),
        4,
        "the retry after a timeout ran again"
    );

    // 4xx: stored and replayed.
    let reject = json!({"reject": true});
    let first = order(&gw, &key, Some("r-1"), &reject).await;
    assert_eq!(first.status(), 400);
    let first_body = first.bytes().await.expect("body");
    let replay = order(&gw, &key, Some("r-1"), &reject).await;
    assert_eq!(replay.status(), 400);
    assert!(replayed(&replay));
    assert_eq!(replay.bytes().await.expect("body"), first_body);
    assert_eq!(gw.upstream.count(), 5);
    gw.stop().await;
}

#[tokio::test]
async fn refusals_before_the_upstream_store_nothing() {
    let gw = TestGateway::start().await;
    let (org, _, key) = gw.org_and_key().await;
    gw.admin_call(Method::POST, &format!("/orgs/{org}/suspend"), None)
        .await;
    let body = json!({"symbol": "BTC-USD"});
    expect_problem(
        order(&gw, &key, Some("after-fix"), &body).await,
        403,
        "org_suspended",
    )
    .await;
    gw.admin_call(Method::POST, &format!("/orgs/{org}/activate"), None)
        .await;
    let r = order(&gw, &key, Some("after-fix"), &body).await;
    assert_eq!(r.status(), 200);
    assert!(
        !replayed(&r),
        "the key was free: the refused attempt stored nothing"
    );
    assert_eq!(gw.upstream.count(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn keys_are_scoped_to_the_organization() {
    let gw = TestGateway::start().await;
    let (_, _, a) = gw.org_and_key().await;
    let (_, _, b) = gw.org_and_key().await;
    let body = json!({"symbol": "BTC-USD"});
    assert!(!replayed(&order(&gw, &a, Some("shared-key"), &body).await));
    assert!(!replayed(&order(&gw, &b, Some("shared-key"), &body).await));
    assert_eq!(gw.upstream.count(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn a_replay_survives_a_restart() {
    let gw = TestGateway::start().await;
    let (_, _, key) = gw.org_and_key().await;
    let body = json!({"symbol": "BTC-USD"});
    let first = order(&gw, &key, Some("durable-1"), &body).await;
    let first_body = first.bytes().await.expect("body");
    let gw = gw.restart(|_| {}).await;
    let again = order(&gw, &key, Some("durable-1"), &body).await;
    assert!(replayed(&again));
    assert_eq!(again.bytes().await.expect("body"), first_body);
    assert_eq!(gw.upstream.count(), 0, "the new upstream was never called");
    gw.stop().await;
}
