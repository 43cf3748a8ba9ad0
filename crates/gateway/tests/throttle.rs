//! Throttling and quotas over real HTTP: bursts and 429s with a Retry-After
//! that is never early, RateLimit headers parsed as structured fields, the org
//! aggregate bucket across keys, quota exhaustion with and without
//! pay-as-you-go, cycle reset under an injected clock, live plan changes,
//! committed use, per-key quotas, exactness under concurrency, and counters
//! that survive a restart.

mod common;

use common::{TestGateway, expect_problem, usage, used};
use reqwest::Method;
use serde_json::json;
use sfv::{BareItem, List, ListEntry, Parser};
use std::collections::HashMap;
use tollgate_core::time::UnixMillis;
use tollgate_gateway::Clock;
use tollgate_gateway::config::PlanConfig;

fn plan(toml_text: &str) -> PlanConfig {
    toml::from_str(toml_text).expect("plan toml")
}

async fn gateway_with(plans: &[(&str, &str)]) -> TestGateway {
    let plans: Vec<(String, PlanConfig)> = plans
        .iter()
        .map(|(n, t)| ((*n).to_owned(), plan(t)))
        .collect();
    TestGateway::start_with(move |config| {
        for (name, plan) in plans {
            config.plans.insert(name, plan);
        }
    })
    .await
}

/// Parameters of each item of a RateLimit or RateLimit-Policy field, by policy name.
fn parse_field(response: &reqwest::Response, name: &str) -> HashMap<String, HashMap<String, i64>> {
    let value = response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} present"))
        .to_str()
        .expect("ascii");
    let list: List = Parser::new(value)
        .parse()
        .unwrap_or_else(|e| panic!("{name} is a structured-field list: {e}: {value}"));
    let mut out = HashMap::new();
    for entry in list {
        let ListEntry::Item(item) = entry else {
            panic!("{name}: inner list")
        };
        let BareItem::String(policy) = &item.bare_item else {
            panic!("{name}: policy name is an sf-string")
        };
        let mut params = HashMap::new();
        for (key, value) in &item.params {
            match value {
                BareItem::Integer(n) => {
                    params.insert(key.as_str().to_owned(), i64::from(*n));
                }
                BareItem::String(_) => {
                    params.insert(key.as_str().to_owned(), -1);
                }
                other => panic!("{name}: unexpected parameter {other:?}"),
            }
        }
        out.insert(policy.as_str().to_owned(), params);
    }
    out
}

fn remaining(response: &reqwest::Response, policy: &str) -> i64 {
    parse_field(response, "ratelimit")[policy]["r"]
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("whole seconds")
}

const SMALL_BUCKET: &str = r#"
    default_rate_class = "standard"
    [rate_classes.standard]
    rate = 2
    burst = 4
"#;

#[tokio::test]
async fn burst_then_429_with_a_retry_after_that_is_never_early() {
    let gw = gateway_with(&[("small", SMALL_BUCKET)]).await;
    let org = gw.create_org(Some("small")).await;
    let (_, key) = gw.create_key(&org, json!({"name": "k"})).await;
    for expected in [3, 2, 1, 0] {
        let r = gw.get("/v1/ticker", Some(&key)).await;
        assert_eq!(r.status(), 200);
        let policy = parse_field(&r, "ratelimit-policy");
        assert_eq!(policy["key"]["q"], 4, "burst");
        assert_eq!(policy["key"]["w"], 2, "4 units at 2/s refill in 2 s");
        assert_eq!(remaining(&r, "key"), expected);
        assert!(parse_field(&r, "ratelimit")["key"]["t"] >= 1);
    }
    let seen = gw.upstream.count();
    let refused = gw.get("/v1/ticker", Some(&key)).await;
    assert_eq!(retry_after(&refused), 1, "half a second, rounded up");
    assert_eq!(remaining(&refused, "key"), 0);
    let body = expect_problem(refused, 429, "rate_limited").await;
    assert_eq!(body["violated-policies"], json!(["key"]));
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("standard"),
        "{body}"
    );
    assert_eq!(
        gw.upstream.count(),
        seen,
        "a refused request never reaches the upstream"
    );

    // Refused again at once: a refusal consumed nothing, the wait is the same.
    let again = gw.get("/v1/ticker", Some(&key)).await;
    assert_eq!(retry_after(&again), 1);
    // Waiting exactly Retry-After is enough.
    gw.clock.advance_millis(1_000);
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn costs_weigh_per_route_and_method() {
    let gw = gateway_with(&[(
        "small",
        r#"
        default_rate_class = "standard"
        costs = { "POST /v1/orders" = 3 }
        [rate_classes.standard]
        rate = 1
        burst = 4
    "#,
    )])
    .await;
    let org = gw.create_org(Some("small")).await;
    let (_, key) = gw.create_key(&org, json!({"name": "k"})).await;
    let order = gw
        .http
        .post(gw.url("/v1/orders"))
        .bearer_auth(&key)
        .header("Idempotency-Key", "order-1")
        .json(&json!({}))
        .send()
        .await
        .expect("req");
    assert_eq!(order.status(), 200);
    assert_eq!(remaining(&order, "key"), 1);
    let second = gw
        .http
        .post(gw.url("/v1/orders"))
        .bearer_auth(&key)
        .header("Idempotency-Key", "order-2")
        .json(&json!({}))
        .send()
        .await
        .expect("req");
    assert_eq!(retry_after(&second), 2, "needs 2 more units at 1/s");
    expect_problem(second, 429, "rate_limited").await;
    // A ticker read costs 1 and still fits.
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn org_aggregate_limit_spans_keys_and_refusals_consume_nothing() {
    let gw = gateway_with(&[(
        "shared",
        r#"
        default_rate_class = "standard"
        org_rate = { rate = 1, burst = 3 }
        [rate_classes.standard]
        rate = 1
        burst = 2
    "#,
    )])
    .await;
    let org = gw.create_org(Some("shared")).await;
    let (_, a) = gw.create_key(&org, json!({"name": "a"})).await;
    let (_, b) = gw.create_key(&org, json!({"name": "b"})).await;
    assert_eq!(gw.get("/v1/ticker", Some(&a)).await.status(), 200);
    let r = gw.get("/v1/ticker", Some(&b)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(remaining(&r, "org"), 1, "the org bucket counts both keys");
    assert_eq!(remaining(&r, "key"), 1, "each key has its own bucket");
    assert_eq!(gw.get("/v1/ticker", Some(&a)).await.status(), 200);
    // The org bucket is empty; b's own bucket still holds 1.
    let refused = gw.get("/v1/ticker", Some(&b)).await;
    assert_eq!(
        remaining(&refused, "key"),
        1,
        "the org refusal took nothing from the key"
    );
    let body = expect_problem(refused, 429, "rate_limited").await;
    assert_eq!(body["violated-policies"], json!(["org"]));
    gw.clock.advance_millis(1_000);
    let r = gw.get("/v1/ticker", Some(&b)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        remaining(&r, "key"),
        1,
        "b kept its token through the refusal (and refilled to its burst of 2 before this request)"
    );
    gw.stop().await;
}

const QUOTA_3: &str = r#"
    [quotas]
    request = 3
"#;

#[tokio::test]
async fn quota_exhaustion_restricts_every_key_until_the_cycle_resets() {
    let gw = gateway_with(&[("q3", QUOTA_3)]).await;
    let org = gw.create_org(Some("q3")).await;
    let (_, a) = gw.create_key(&org, json!({"name": "a"})).await;
    let (_, b) = gw.create_key(&org, json!({"name": "b"})).await;
    for (key, left) in [(&a, 2), (&b, 1), (&a, 0)] {
        let r = gw.get("/v1/ticker", Some(key)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(parse_field(&r, "ratelimit-policy")["cycle-request"]["q"], 3);
        assert_eq!(remaining(&r, "cycle-request"), left);
    }
    let seen = gw.upstream.count();
    let report = usage(&gw, &org).await;
    let reset =
        UnixMillis::parse_rfc3339(report["resets_at"].as_str().expect("resets_at")).expect("time");
    let expected_wait = (reset.0 - gw.clock.now().0 + 999) / 1000;
    for key in [&a, &b] {
        let refused = gw.get("/v1/ticker", Some(key)).await;
        assert_eq!(
            retry_after(&refused) as i64,
            expected_wait,
            "Retry-After is the time to the cycle reset"
        );
        let body = expect_problem(refused, 429, "quota_exhausted").await;
        assert_eq!(body["violated-policies"], json!(["cycle-request"]));
    }
    assert_eq!(gw.upstream.count(), seen);
    assert_eq!(
        used(&usage(&gw, &org).await, "request"),
        3,
        "refusals are not counted"
    );

    // One millisecond before the reset: still refused. At the reset: open.
    gw.clock.set(UnixMillis(reset.0 - 1));
    expect_problem(gw.get("/v1/ticker", Some(&a)).await, 429, "quota_exhausted").await;
    gw.clock.set(reset);
    let r = gw.get("/v1/ticker", Some(&a)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(remaining(&r, "cycle-request"), 2);
    let report = usage(&gw, &org).await;
    assert_eq!(used(&report, "request"), 1);
    assert_eq!(report["cycle"]["start"], reset.to_rfc3339());
    gw.stop().await;
}

#[tokio::test]
async fn pay_as_you_go_continues_past_the_quota_as_overage() {
    let gw = gateway_with(&[("q3", QUOTA_3)]).await;
    let org = gw.create_org(Some("q3")).await;
    let (_, key) = gw.create_key(&org, json!({"name": "k"})).await;
    let (status, body) = gw
        .admin_call(
            Method::PUT,
            &format!("/orgs/{org}/pay-as-you-go"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!((status, body["pay_as_you_go"].as_bool()), (200, Some(true)));
    for _ in 0..5 {
        let r = gw.get("/v1/ticker", Some(&key)).await;
        assert_eq!(r.status(), 200);
    }
    let report = usage(&gw, &org).await;
    assert_eq!(used(&report, "request"), 5, "overage is counted");
    // Turning it off restricts at once.
    gw.admin_call(
        Method::PUT,
        &format!("/orgs/{org}/pay-as-you-go"),
        Some(json!({"enabled": false})),
    )
    .await;
    expect_problem(
        gw.get("/v1/ticker", Some(&key)).await,
        429,
        "quota_exhausted",
    )
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn plan_changes_and_committed_use_apply_on_the_next_request() {
    let gw = gateway_with(&[("q3", QUOTA_3), ("q10", "[quotas]\nrequest = 10\n")]).await;
    let org = gw.create_org(Some("q3")).await;
    let (_, key) = gw.create_key(&org, json!({"name": "k"})).await;
    for _ in 0..3 {
        assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    }
    expect_problem(
        gw.get("/v1/ticker", Some(&key)).await,
        429,
        "quota_exhausted",
    )
    .await;
    let anchor_before = usage(&gw, &org).await["cycle"]["start"].clone();

    // Upgrade: lifted at once, same cycle, counts kept.
    let (status, _) = gw
        .admin_call(
            Method::PUT,
            &format!("/orgs/{org}/plan"),
            Some(json!({"plan": "q10"})),
        )
        .await;
    assert_eq!(status, 200);
    let r = gw.get("/v1/ticker", Some(&key)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(remaining(&r, "cycle-request"), 6);
    assert_eq!(
        usage(&gw, &org).await["cycle"]["start"],
        anchor_before,
        "a plan change keeps the cycle"
    );

    // Downgrade: applies at once.
    gw.admin_call(
        Method::PUT,
        &format!("/orgs/{org}/plan"),
        Some(json!({"plan": "q3"})),
    )
    .await;
    expect_problem(
        gw.get("/v1/ticker", Some(&key)).await,
        429,
        "quota_exhausted",
    )
    .await;

    // Committed use raises the quota for its term.
    let ends = UnixMillis(gw.clock.now().0 + 3_600_000).to_rfc3339();
    let (status, commitment) = gw
        .admin_call(
            Method::POST,
            &format!("/orgs/{org}/commitments"),
            Some(json!({"quotas": {"request": 2}, "ends_at": ends})),
        )
        .await;
    assert_eq!(status, 201, "{commitment}");
    assert_eq!(
        gw.get("/v1/ticker", Some(&key)).await.status(),
        200,
        "4 used of 3 + 2"
    );
    expect_problem(
        gw.get("/v1/ticker", Some(&key)).await,
        429,
        "quota_exhausted",
    )
    .await;
    let (_, list) = gw
        .admin_call(Method::GET, &format!("/orgs/{org}/commitments"), None)
        .await;
    assert_eq!(list["data"][0]["quotas"]["request"], 2);
    // After its term it no longer counts.
    gw.clock.advance_millis(3_600_000);
    let report = usage(&gw, &org).await;
    let request = report["quotas"]
        .as_array()
        .expect("q")
        .iter()
        .find(|q| q["meter"] == "request")
        .cloned()
        .expect("request");
    assert_eq!(request["limit"], 3);
    gw.stop().await;
}

#[tokio::test]
async fn a_key_quota_can_be_lower_than_the_org_quota() {
    let gw = gateway_with(&[("q10", "[quotas]\nrequest = 10\n")]).await;
    let org = gw.create_org(Some("q10")).await;
    let (a_id, a) = gw.create_key(&org, json!({"name": "a"})).await;
    let (_, b) = gw.create_key(&org, json!({"name": "b"})).await;
    let (status, key) = gw
        .admin_call(
            Method::PUT,
            &format!("/keys/{a_id}/quotas"),
            Some(json!({"quotas": {"request": 1}})),
        )
        .await;
    assert_eq!((status, key["quotas"]["request"].as_u64()), (200, Some(1)));
    assert_eq!(gw.get("/v1/ticker", Some(&a)).await.status(), 200);
    let refused = gw.get("/v1/ticker", Some(&a)).await;
    let body = expect_problem(refused, 429, "quota_exhausted").await;
    assert_eq!(body["violated-policies"], json!(["key-cycle-request"]));
    assert_eq!(
        gw.get("/v1/ticker", Some(&b)).await.status(),
        200,
        "other keys keep the org quota"
    );
    let report = usage(&gw, &org).await;
    let key_a = report["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["key_id"] == a_id.as_str())
        .cloned()
        .expect("a");
    let request = key_a["quotas"]
        .as_array()
        .expect("q")
        .iter()
        .find(|q| q["meter"] == "request")
        .cloned()
        .expect("r");
    assert_eq!(
        (request["used"].as_u64(), request["limit"].as_u64()),
        (Some(1), Some(1))
    );
    let (status, _) = gw
        .admin_call(
            Method::PUT,
            &format!("/keys/{a_id}/quotas"),
            Some(json!({"quotas": {"gpu": 1}})),
        )
        .await;
    assert_eq!(status, 400);
    gw.stop().await;
}

#[tokio::test]
async fn exactly_n_of_many_concurrent_requests_are_admitted() {
    const N: u64 = 37;
    let gw = gateway_with(&[("qn", &format!("[quotas]\nrequest = {N}\n"))]).await;
    let org = gw.create_org(Some("qn")).await;
    let mut keys = Vec::new();
    for i in 0..4 {
        keys.push(
            gw.create_key(&org, json!({"name": format!("k{i}")}))
                .await
                .1,
        );
    }
    let url = gw.url("/v1/ticker");
    let mut tasks = Vec::new();
    for client in 0..64 {
        let http = reqwest::Client::new();
        let key = keys[client % keys.len()].clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..3 {
                let r = http
                    .get(&url)
                    .bearer_auth(&key)
                    .send()
                    .await
                    .expect("request");
                statuses.push(r.status().as_u16());
            }
            statuses
        }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for task in tasks {
        for status in task.await.expect("join") {
            match status {
                200 => ok += 1,
                429 => limited += 1,
                other => panic!("unexpected status {other}"),
            }
        }
    }
    assert_eq!(ok, N, "exactly the quota is admitted");
    assert_eq!(limited, 64 * 3 - N);
    assert_eq!(gw.upstream.count() as u64, N);
    assert_eq!(used(&usage(&gw, &org).await, "request"), N);
    gw.stop().await;
}

#[tokio::test]
async fn bytes_and_reported_meters_are_counted() {
    let gw = gateway_with(&[(
        "metered",
        "[quotas]\nrequest = 100\nbytes_out = 100000\norder_sent = 2\n",
    )])
    .await;
    let org = gw.create_org(Some("metered")).await;
    let (_, key) = gw.create_key(&org, json!({"name": "k"})).await;
    let r = gw.get("/v1/ticker", Some(&key)).await;
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.expect("body");
    // The test upstream reports order_sent=1 on every response.
    let r2 = gw.get("/v1/ticker", Some(&key)).await;
    r2.bytes().await.expect("body");
    let report = usage(&gw, &org).await;
    assert_eq!(used(&report, "request"), 2);
    assert_eq!(used(&report, "order_sent"), 2);
    assert_eq!(used(&report, "bytes_out"), 2 * body.len() as u64);
    // order_sent is now at its limit of 2: the next request is refused.
    let refused = gw.get("/v1/ticker", Some(&key)).await;
    let problem = expect_problem(refused, 429, "quota_exhausted").await;
    assert_eq!(problem["violated-policies"], json!(["cycle-order_sent"]));
    gw.stop().await;
}

#[tokio::test]
async fn upstream_failures_are_not_counted() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let gw = TestGateway::start_with(move |config| {
        config.plans.insert("q3".into(), plan(QUOTA_3));
        config.upstream.url = format!("http://{free}");
    })
    .await;
    let org = gw.create_org(Some("q3")).await;
    let (_, key) = gw.create_key(&org, json!({"name": "k"})).await;
    for _ in 0..5 {
        let r = gw.get("/v1/ticker", Some(&key)).await;
        assert!(
            r.headers().get("ratelimit").is_some(),
            "metered route answers carry RateLimit"
        );
        expect_problem(r, 502, "upstream_unavailable").await;
    }
    assert_eq!(used(&usage(&gw, &org).await, "request"), 0);
    gw.stop().await;
}

#[tokio::test]
async fn cycle_counts_survive_a_restart() {
    let gw = gateway_with(&[("q3", QUOTA_3)]).await;
    let org = gw.create_org(Some("q3")).await;
    let (key_id, key) = gw.create_key(&org, json!({"name": "k"})).await;
    // A key with its own quota keeps its count across the restart too.
    let (status, _) = gw
        .admin_call(
            Method::PUT,
            &format!("/keys/{key_id}/quotas"),
            Some(json!({"quotas": {"request": 2}})),
        )
        .await;
    assert_eq!(status, 200);
    for _ in 0..2 {
        assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    }
    let gw = gw
        .restart(|config| {
            config.plans.insert("q3".into(), plan(QUOTA_3));
        })
        .await;
    assert_eq!(used(&usage(&gw, &org).await, "request"), 2);
    let refused = expect_problem(
        gw.get("/v1/ticker", Some(&key)).await,
        429,
        "quota_exhausted",
    )
    .await;
    assert_eq!(
        refused["violated-policies"],
        json!(["key-cycle-request"]),
        "the key's count of 2 was restored"
    );
    gw.stop().await;
}

#[tokio::test]
async fn unmetered_plans_send_no_ratelimit_headers() {
    let gw = TestGateway::start().await;
    let (_, _, key) = gw.org_and_key().await;
    let r = gw.get("/v1/ticker", Some(&key)).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("ratelimit").is_none());
    assert!(r.headers().get("ratelimit-policy").is_none());
    gw.stop().await;
}
