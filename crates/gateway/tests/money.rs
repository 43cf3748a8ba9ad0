//! Money over real HTTP: 402 when the account does not cover the hold,
//! graduated prices charged exactly, exactly K of N concurrent requests
//! admitted against a balance that covers K, the daily spend limit, budget
//! alerts exactly once and read-only mode (lifted by a higher budget or the
//! next cycle), no charge for failures and replays, holds at the dearest
//! tier, the tier position across a restart, a client that leaves
//! mid-request, and balances that equal the sum of their ledger entries.

mod common;

use common::{TestGateway, expect_problem, of_kind, usage, used};
use reqwest::Method;
use serde_json::{Value, json};
use tollgate_core::time::UnixMillis;
use tollgate_gateway::Clock;
use tollgate_gateway::config::PlanConfig;

/// 1,000 µ per request; order_sent 100,000 µ for the first 2 units, then 50,000 µ.
const GRADUATED: &str = r#"
    [prices.request]
    tiers = [{ micros = 1000 }]
    [prices.order_sent]
    tiers = [{ up_to = 2, micros = 100000 }, { micros = 50000 }]
"#;
/// 1,000 µ per request, nothing else.
const PER_REQUEST: &str = r#"
    [prices.request]
    tiers = [{ micros = 1000 }]
"#;

/// 1,000 µ per request and 1 µ per byte of the answer.
const PER_BYTE: &str = r#"
    [prices.request]
    tiers = [{ micros = 1000 }]
    [prices.bytes_out]
    tiers = [{ micros = 1 }]
"#;

async fn gateway() -> TestGateway {
    TestGateway::start_with(|config| {
        for (name, text) in [
            ("graduated", GRADUATED),
            ("perreq", PER_REQUEST),
            ("perbyte", PER_BYTE),
        ] {
            let plan: PlanConfig = toml::from_str(text).expect("plan");
            config.plans.insert(name.into(), plan);
        }
        // Research answers may be up to 10,000 bytes (the hold's size).
        for route in &mut config.routes {
            if route.path.starts_with("/v1/research") {
                route.max_units.insert("bytes_out".into(), 10_000);
            }
        }
    })
    .await
}

async fn payg_org(gw: &TestGateway, plan: &str) -> (String, String) {
    let org = gw.create_org(Some(plan)).await;
    let (status, _) = gw
        .admin_call(
            Method::PUT,
            &format!("/orgs/{org}/pay-as-you-go"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, key) = gw.create_key(&org, json!({"name": "bot"})).await;
    (org, key)
}

async fn top_up(gw: &TestGateway, org: &str, micros: i64) {
    let (status, body) = gw
        .admin_call(
            Method::POST,
            &format!("/orgs/{org}/top-ups"),
            Some(json!({"amount_micros": micros})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

async fn balance(gw: &TestGateway, org: &str) -> Value {
    let (status, body) = gw
        .admin_call(Method::GET, &format!("/orgs/{org}/balance"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn ledger_sum(gw: &TestGateway, org: &str) -> (i64, usize) {
    let entries = gw.ledger(org).await;
    (
        entries
            .iter()
            .map(|e| e["amount_micros"].as_i64().expect("amount"))
            .sum(),
        entries.len(),
    )
}

#[tokio::test]
async fn an_account_that_does_not_cover_the_hold_gets_402_and_nothing_moves() {
    let gw = gateway().await;
    let (org, key) = payg_org(&gw, "perreq").await;
    let body = expect_problem(
        gw.get("/v1/ticker", Some(&key)).await,
        402,
        "payment_required",
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("0.001000"),
        "{body}"
    );
    assert_eq!(gw.upstream.count(), 0);
    assert_eq!(ledger_sum(&gw, &org).await, (0, 0));
    // A credit limit is money to spend too.
    gw.admin_call(
        Method::PUT,
        &format!("/orgs/{org}/account"),
        Some(json!({"credit_limit_micros": 1000})),
    )
    .await;
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    let b = balance(&gw, &org).await;
    assert_eq!(
        (b["balance_micros"].as_i64(), b["available_micros"].as_i64()),
        (Some(-1000), Some(0))
    );
    expect_problem(
        gw.get("/v1/ticker", Some(&key)).await,
        402,
        "payment_required",
    )
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn graduated_prices_are_charged_exactly_and_the_ledger_adds_up() {
    let gw = gateway().await;
    let (org, key) = payg_org(&gw, "graduated").await;
    top_up(&gw, &org, 1_000_000).await;
    // The test upstream reports order_sent=1 on every answer.
    let mut expected = 1_000_000;
    for charge in [101_000, 101_000, 51_000, 51_000] {
        assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
        expected -= charge;
        assert_eq!(
            balance(&gw, &org).await["balance_micros"],
            expected,
            "after a charge of {charge}"
        );
    }
    let (sum, entries) = ledger_sum(&gw, &org).await;
    assert_eq!(
        (sum, entries),
        (expected, 5),
        "balance = sum of the ledger: one top-up, four charges"
    );
    // Charged usage per meter for a period.
    let now = gw.clock.now();
    let period = format!(
        "/orgs/{org}/charged?from={}&to={}",
        UnixMillis(now.0 - 60_000).to_rfc3339(),
        UnixMillis(now.0 + 60_000).to_rfc3339()
    );
    let (status, charged) = gw.admin_call(Method::GET, &period, None).await;
    assert_eq!(status, 200, "{charged}");
    assert_eq!(charged["charged_micros"], 1_000_000 - expected);
    assert_eq!(
        (
            charged["units"]["request"].as_u64(),
            charged["units"]["order_sent"].as_u64()
        ),
        (Some(4), Some(4))
    );
    let (status, _) = gw
        .admin_call(
            Method::GET,
            &format!("/orgs/{org}/charged?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"),
            None,
        )
        .await;
    assert_eq!(status, 400);
    let ledger = gw.ledger(&org).await;
    assert_eq!(
        ledger[1]["detail"]["units"],
        json!({"request": 1, "order_sent": 1, "bytes_out": ledger[1]["detail"]["units"]["bytes_out"]})
    );
    // Orgs not on pay-as-you-go are not charged.
    let plain = gw.create_org(Some("graduated")).await;
    let (_, plain_key) = gw.create_key(&plain, json!({"name": "k"})).await;
    assert_eq!(gw.get("/v1/ticker", Some(&plain_key)).await.status(), 200);
    assert_eq!(ledger_sum(&gw, &plain).await, (0, 0));
    gw.stop().await;
}

#[tokio::test]
async fn exactly_k_of_many_concurrent_requests_fit_a_balance_of_k() {
    let gw = gateway().await;
    let (org, key) = payg_org(&gw, "perreq").await;
    top_up(&gw, &org, 7 * 1000).await;
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let http = reqwest::Client::new();
        let url = gw.url("/v1/ticker");
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            http.get(url)
                .bearer_auth(key)
                .send()
                .await
                .expect("req")
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.expect("join") {
            200 => ok += 1,
            402 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 7);
    assert_eq!(gw.upstream.count(), 7);
    let b = balance(&gw, &org).await;
    assert_eq!(
        (b["balance_micros"].as_i64(), b["held_micros"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(ledger_sum(&gw, &org).await.0, 0);
    gw.stop().await;
}

#[tokio::test]
async fn failures_and_replays_are_not_charged() {
    let gw = gateway().await;
    let (org, key) = payg_org(&gw, "perreq").await;
    top_up(&gw, &org, 100_000).await;
    let order = |idem: &'static str, body: Value| gw.post_write("/v1/orders", &key, idem, body);
    assert_eq!(order("fail-1", json!({"fail": true})).await.status(), 500);
    assert_eq!(
        balance(&gw, &org).await["balance_micros"],
        100_000,
        "a 5xx is not charged"
    );
    assert_eq!(order("o-1", json!({"qty": 1})).await.status(), 200);
    assert_eq!(balance(&gw, &org).await["balance_micros"], 99_000);
    let replay = order("o-1", json!({"qty": 1})).await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let b = balance(&gw, &org).await;
    assert_eq!(
        (b["balance_micros"].as_i64(), b["held_micros"].as_i64()),
        (Some(99_000), Some(0)),
        "a replay moves nothing"
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_daily_spend_limit_stops_every_request_until_the_next_utc_day() {
    let gw = gateway().await;
    let (org, key) = payg_org(&gw, "perreq").await;
    top_up(&gw, &org, 100_000).await;
    let (status, _) = gw
        .admin_call(
            Method::PUT,
            &format!("/orgs/{org}/account"),
            Some(json!({"daily_spend_limit_micros": 2000})),
        )
        .await;
    assert_eq!(status, 200);
    for _ in 0..2 {
        assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    }
    let seen = gw.upstream.count();
    let refused = gw.get("/v1/ticker", Some(&key)).await;
    assert!(refused.headers().get("retry-after").is_some());
    expect_problem(refused, 402, "daily_spend_limit").await;
    assert_eq!(gw.upstream.count(), seen);
    assert_eq!(balance(&gw, &org).await["daily_spend_micros"], 2000);
    // null clears a limit; absent keeps it.
    let (_, kept) = gw
        .admin_call(
            Method::PUT,
            &format!("/orgs/{org}/account"),
            Some(json!({"credit_limit_micros": 0})),
        )
        .await;
    assert_eq!(kept["daily_spend_limit_micros"], 2000);
    let (_, cleared) = gw
        .admin_call(
            Method::PUT,
            &format!("/orgs/{org}/account"),
            Some(json!({"daily_spend_limit_micros": null})),
        )
        .await;
    assert_eq!(
        cleared["daily_spend_limit_micros"],
        Value::Null,
        "{cleared}"
    );
    assert_eq!(
        gw.get("/v1/ticker", Some(&key)).await.status(),
        200,
        "no limit any more"
    );
    gw.admin_call(
        Method::PUT,
        &format!("/orgs/{org}/account"),
        Some(json!({"daily_spend_limit_micros": 3000})),
    )
    .await;
    // The next UTC day opens again.
    let tomorrow = (gw.clock.now().0 / 86_400_000 + 1) * 86_400_000;
    gw.clock.set(UnixMillis(tomorrow));
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn budget_alerts_fire_once_and_an_exhausted_budget_makes_the_org_read_only() {
    let gw = gateway().await;
    let (org, key) = payg_org(&gw, "perreq").await;
    top_up(&gw, &org, 100_000).await;
    gw.admin_call(
        Method::PUT,
        &format!("/orgs/{org}/account"),
        Some(json!({"budget_micros": 3000, "budget_thresholds": [50, 90]})),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    }
    let notes = gw.notifications(&org).await;
    let mut thresholds: Vec<i64> = notes
        .iter()
        .map(|n| n["detail"]["threshold_percent"].as_i64().expect("t"))
        .collect();
    thresholds.sort_unstable();
    assert_eq!(
        thresholds,
        vec![50, 90, 100],
        "each threshold once: {notes:?}"
    );
    assert_eq!(balance(&gw, &org).await["read_only"], true);

    // Writes are refused (the upstream not called, nothing charged), reads
    // still pass.
    let write = |idem: &'static str| gw.post_write("/v1/orders", &key, idem, json!({}));
    let seen = gw.upstream.count();
    let charged = ledger_sum(&gw, &org).await;
    expect_problem(write("w-1").await, 403, "budget_read_only").await;
    assert_eq!(gw.upstream.count(), seen, "the upstream is not called");
    assert_eq!(ledger_sum(&gw, &org).await, charged, "nothing is charged");
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    assert_eq!(gw.notifications(&org).await.len(), 3, "no repeat alerts");

    // Raising the budget lifts read-only at once.
    gw.admin_call(
        Method::PUT,
        &format!("/orgs/{org}/account"),
        Some(json!({"budget_micros": 100000})),
    )
    .await;
    assert_eq!(write("w-1").await.status(), 200);

    // So does the next billing cycle: use the budget up again (5 requests
    // of 1,000 so far), then move the clock past the cycle's end.
    gw.admin_call(
        Method::PUT,
        &format!("/orgs/{org}/account"),
        Some(json!({"budget_micros": 5000})),
    )
    .await;
    let b = balance(&gw, &org).await;
    assert_eq!(b["read_only"], true, "{b}");
    expect_problem(write("w-2").await, 403, "budget_read_only").await;
    let cycle_end = UnixMillis::parse_rfc3339(b["cycle_end"].as_str().expect("cycle_end"))
        .expect("an RFC 3339 time");
    gw.clock.set(cycle_end.plus_seconds(1));
    assert_eq!(
        write("w-2").await.status(),
        200,
        "a new cycle starts with nothing spent"
    );
    assert_eq!(balance(&gw, &org).await["read_only"], false);
    gw.stop().await;
}

#[tokio::test]
async fn top_ups_and_adjustments_are_idempotent_by_reference_and_survive_restart() {
    let gw = gateway().await;
    let (org, key) = payg_org(&gw, "perreq").await;
    for _ in 0..2 {
        let (status, body) = gw
            .admin_call(
                Method::POST,
                &format!("/orgs/{org}/top-ups"),
                Some(json!({"amount_micros": 5000, "reference": "invoice-77"})),
            )
            .await;
        assert!(
            status == 201 || (status == 200 && body["duplicate"] == true),
            "{status} {body}"
        );
    }
    let (status, _) = gw
        .admin_call(
            Method::POST,
            &format!("/orgs/{org}/adjustments"),
            Some(json!({"amount_micros": -500})),
        )
        .await;
    assert_eq!(status, 400, "an adjustment needs a reason");
    let (status, _) = gw
        .admin_call(
            Method::POST,
            &format!("/orgs/{org}/adjustments"),
            Some(json!({"amount_micros": -500, "reason": "goodwill reversal"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    assert_eq!(balance(&gw, &org).await["balance_micros"], 3500);
    let gw = gw
        .restart(|config| {
            config
                .plans
                .insert("perreq".into(), toml::from_str(PER_REQUEST).expect("plan"));
        })
        .await;
    let b = balance(&gw, &org).await;
    assert_eq!(b["balance_micros"], 3500);
    assert_eq!(
        b["daily_spend_micros"], 1000,
        "today's spend is read back from the ledger"
    );
    assert_eq!(ledger_sum(&gw, &org).await, (3500, 3));
    gw.stop().await;
}

#[tokio::test]
async fn a_failed_forward_releases_the_hold_and_priced_requests_count_once() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let gw = TestGateway::start_with(move |config| {
        config
            .plans
            .insert("perreq".into(), toml::from_str(PER_REQUEST).expect("plan"));
        config.upstream.url = format!("http://{free}");
    })
    .await;
    let (org, key) = payg_org(&gw, "perreq").await;
    top_up(&gw, &org, 2_500).await;
    for _ in 0..5 {
        expect_problem(
            gw.get("/v1/ticker", Some(&key)).await,
            502,
            "upstream_unavailable",
        )
        .await;
    }
    let b = balance(&gw, &org).await;
    assert_eq!(
        (b["balance_micros"].as_i64(), b["held_micros"].as_i64()),
        (Some(2_500), Some(0)),
        "holds released: {b}"
    );
    gw.stop().await;

    let gw = gateway().await;
    let (org, key) = payg_org(&gw, "perreq").await;
    top_up(&gw, &org, 100_000).await;
    let body = gw
        .get("/v1/ticker", Some(&key))
        .await
        .bytes()
        .await
        .expect("body");
    let report = usage(&gw, &org).await;
    assert_eq!(used(&report, "request"), 1, "counted once: {report}");
    assert_eq!(
        used(&report, "bytes_out"),
        body.len() as u64,
        "bytes counted once"
    );
    gw.stop().await;
}

#[tokio::test]
async fn relaxed_durability_still_records_every_charge() {
    let gw = TestGateway::start_with(|config| {
        config
            .plans
            .insert("perreq".into(), toml::from_str(PER_REQUEST).expect("plan"));
        config.store.durability = tollgate_gateway::config::Durability::Relaxed;
    })
    .await;
    let (org, key) = payg_org(&gw, "perreq").await;
    top_up(&gw, &org, 10_000).await;
    for _ in 0..3 {
        assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    }
    assert_eq!(
        balance(&gw, &org).await["balance_micros"],
        7_000,
        "the in-memory balance moves at once"
    );
    for _ in 0..100 {
        if ledger_sum(&gw, &org).await == (7_000, 4) {
            gw.stop().await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "the charges were not written: {:?}",
        ledger_sum(&gw, &org).await
    );
}

#[tokio::test]
async fn chunked_answers_are_priced_by_their_bytes_before_release() {
    let gw = gateway().await;
    let (org, key) = payg_org(&gw, "perbyte").await;
    top_up(&gw, &org, 100_000).await;
    // 5,000 bytes with no Content-Length: read, priced, then sent whole.
    let r = gw.get("/v1/research/chunked?bytes=5000", Some(&key)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "5000");
    assert_eq!(r.bytes().await.unwrap().len(), 5000);
    assert_eq!(
        balance(&gw, &org).await["balance_micros"],
        100_000 - 1000 - 5000
    );
    // 25,000 bytes: more than the route's bytes_out maximum (10,000). The
    // client gets every byte; the charge stops at the maximum the hold covered.
    let r = gw.get("/v1/research/chunked?bytes=25000", Some(&key)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 25_000);
    assert_eq!(
        balance(&gw, &org).await["balance_micros"],
        100_000 - 6000 - 1000 - 10_000
    );
    let ledger = gw.ledger(&org).await;
    // Oldest first: the top-up, then the two charges.
    assert_eq!(ledger[1]["detail"]["units"]["bytes_out"], 5000);
    assert_eq!(ledger[2]["detail"]["units"]["bytes_out"], 10_000);
    // Quotas still count every byte that streamed.
    let report = usage(&gw, &org).await;
    assert_eq!(used(&report, "bytes_out"), 30_000);
    assert_eq!(ledger_sum(&gw, &org).await.0, 100_000 - 17_000);
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_goes_away_mid_request_leaves_no_hold_and_its_charge_mirrored() {
    let gw = gateway().await;
    let (org, key) = payg_org(&gw, "graduated").await;
    top_up(&gw, &org, 1_000_000).await;
    // The client gives up after 100 ms; the upstream answers after 700 ms.
    let gone = gw
        .http
        .post(gw.url("/v1/orders"))
        .bearer_auth(&key)
        .header("Idempotency-Key", "left-early")
        .timeout(std::time::Duration::from_millis(100))
        .json(&json!({"delay_ms": 700}))
        .send()
        .await;
    assert!(gone.is_err(), "the client timed out");
    assert!(
        balance(&gw, &org).await["held_micros"].as_i64() > Some(0),
        "held while the upstream works"
    );
    // The request went on without its client: the order was placed, so it
    // is charged (1,000 for the request, 100,000 for the order), the hold is
    // resolved, and the mirror equals the ledger.
    let mut b = balance(&gw, &org).await;
    for _ in 0..100 {
        if b["held_micros"] == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        b = balance(&gw, &org).await;
    }
    assert_eq!(b["held_micros"], 0, "no hold left behind: {b}");
    assert_eq!(ledger_sum(&gw, &org).await, (1_000_000 - 101_000, 2));
    assert_eq!(b["balance_micros"], 1_000_000 - 101_000, "{b}");
    // Its Idempotency-Key is completed (409 only while that finishes), so
    // the client's retry gets the answer it missed and is not charged again.
    let mut retry;
    let mut tries = 0;
    loop {
        retry = gw
            .post_write("/v1/orders", &key, "left-early", json!({"delay_ms": 700}))
            .await;
        tries += 1;
        if retry.status() != 409 || tries == 50 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(retry.status(), 200);
    assert_eq!(
        retry
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(gw.upstream.count(), 1, "the upstream saw the order once");
    assert_eq!(ledger_sum(&gw, &org).await, (1_000_000 - 101_000, 2));
    gw.stop().await;
}

/// Graduated prices, and orders that may send up to 3 orders each.
fn orders_up_to_three(config: &mut tollgate_gateway::config::Config) {
    config
        .plans
        .insert("graduated".into(), toml::from_str(GRADUATED).expect("plan"));
    for route in &mut config.routes {
        if route.path == "/v1/orders" {
            route.max_units.insert("order_sent".into(), 3);
        }
    }
}

#[tokio::test]
async fn holds_are_priced_at_the_highest_tier_and_the_tier_position_survives_restart() {
    let gw = TestGateway::start_with(orders_up_to_three).await;
    let (org, key) = payg_org(&gw, "graduated").await;
    let order = |idempotency_key: String, delay_ms: u64| {
        gw.http
            .post(gw.url("/v1/orders"))
            .bearer_auth(&key)
            .header("Idempotency-Key", idempotency_key)
            .json(&json!({ "delay_ms": delay_ms }))
            .send()
    };
    // The hold: 1,000 for the request + 3 orders at the dearest tier
    // (100,000 each) = 301,000, whatever the order will really cost.
    top_up(&gw, &org, 300_999).await;
    expect_problem(
        order("o-1".into(), 0).await.expect("req"),
        402,
        "payment_required",
    )
    .await;
    assert_eq!(gw.upstream.count(), 0, "the upstream is not called");
    top_up(&gw, &org, 1).await;
    let slow = tokio::spawn(order("o-1".into(), 300));
    let mut held = Value::Null;
    for _ in 0..50 {
        held = balance(&gw, &org).await["held_micros"].clone();
        if held != 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(held, 301_000, "held while in flight");
    assert_eq!(slow.await.expect("join").expect("req").status(), 200);
    // 301,000 - 101,000 left: top up so the next hold is covered again.
    top_up(&gw, &org, 101_000).await;
    assert_eq!(order("o-2".into(), 0).await.expect("req").status(), 200);
    // Two orders in the first tier: 2 x 101,000.
    let b = balance(&gw, &org).await;
    assert_eq!(
        (b["balance_micros"].as_i64(), b["held_micros"].as_i64()),
        (Some(200_000), Some(0))
    );

    // After a restart the third order is priced in the second tier.
    let gw = gw.restart(orders_up_to_three).await;
    top_up(&gw, &org, 101_000).await;
    let third = gw.post_write("/v1/orders", &key, "o-3", json!({})).await;
    assert_eq!(third.status(), 200);
    let b = balance(&gw, &org).await;
    assert_eq!(b["balance_micros"], 301_000 - 51_000, "{b}");
    assert_eq!(
        b["budget_spent_micros"], 253_000,
        "the cycle's spend is read back"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_charge_is_refunded_at_most_once_and_never_for_more_than_it_cost() {
    let gw = gateway().await;
    let (org, key) = payg_org(&gw, "graduated").await;
    top_up(&gw, &org, 1_000_000).await;
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    let entries = gw.ledger(&org).await;
    let charge = of_kind(&entries, "charge")[0];
    assert_eq!(charge["amount_micros"], -101_000);
    let charge_reference = charge["reference"].as_str().expect("reference").to_owned();
    let top_up_reference = of_kind(&entries, "top_up")[0]["reference"].clone();
    let refunds = format!("/orgs/{org}/refunds");
    let refund = |body: Value| gw.admin_call(Method::POST, &refunds, Some(body));

    for (body, status, code) in [
        (
            json!({"charge_reference": charge_reference, "reason": " "}),
            400,
            "invalid_request",
        ),
        (
            json!({"charge_reference": charge_reference}),
            400,
            "invalid_request",
        ),
        (
            json!({"charge_reference": "charge:nope", "reason": "r"}),
            404,
            "charge_not_found",
        ),
        (
            json!({"charge_reference": top_up_reference, "reason": "r"}),
            404,
            "charge_not_found",
        ),
        (
            json!({"charge_reference": charge_reference, "amount_micros": 101_001, "reason": "r"}),
            400,
            "invalid_request",
        ),
        (
            json!({"charge_reference": charge_reference, "amount_micros": 0, "reason": "r"}),
            400,
            "invalid_request",
        ),
    ] {
        let (got, problem) = refund(body.clone()).await;
        assert_eq!(
            (got, problem["code"].as_str()),
            (status, Some(code)),
            "{body}: {problem}"
        );
    }
    assert_eq!(
        ledger_sum(&gw, &org).await,
        (899_000, 2),
        "refused refunds write nothing"
    );

    let (status, first) = refund(json!({"charge_reference": charge_reference, "amount_micros": 1_000, "reason": "the order was rejected"})).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["entry"]["kind"], "refund");
    assert_eq!(first["entry"]["amount_micros"], 1_000);
    assert_eq!(
        first["entry"]["reference"],
        format!("refund:{charge_reference}")
    );
    assert_eq!(
        first["entry"]["detail"]["charge_reference"],
        charge_reference.as_str()
    );
    // A second refund of the same charge returns the first, writing nothing.
    let (status, again) =
        refund(json!({"charge_reference": charge_reference, "reason": "again"})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["entry"], first["entry"]);
    assert_eq!(ledger_sum(&gw, &org).await, (900_000, 3));
    assert_eq!(balance(&gw, &org).await["balance_micros"], 900_000);
    gw.stop().await;
}
