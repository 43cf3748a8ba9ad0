//! Automatic top-ups against a fake Stripe that follows the PaymentIntents
//! API shape: one that succeeds, declines that turn autocharge off after
//! three failures, a payment that needs authentication, which restricts
//! writes until it is resolved, an unknown outcome retried under its key with
//! what it first sent (one top-up in flight, admin changes kept), and the
//! monthly cap, and a provider error that keeps the attempt pending.

mod common;

use common::{TestGateway, expect_problem, of_kind, stripe};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tollgate_gateway::config::PlanConfig;

async fn gateway(stripe_addr: std::net::SocketAddr) -> TestGateway {
    TestGateway::start_with(move |config| {
        // A stalled call to the fake is an unknown outcome after this.
        config.payments.timeout_ms = 1500;
        let plan: PlanConfig =
            toml::from_str("[prices.request]\ntiers = [{ micros = 1000 }]\n").expect("plan");
        config.plans.insert("perreq".into(), plan);
        config.payments.stripe_api_base = format!("http://{stripe_addr}");
        config.payments.stripe_secret_key = Some("sk_test_fake_000".into());
    })
    .await
}

async fn org_with_autocharge(gw: &TestGateway, payment_method: &str) -> (String, String) {
    let org = gw.create_org(Some("perreq")).await;
    gw.admin_call(
        Method::PUT,
        &format!("/orgs/{org}/pay-as-you-go"),
        Some(json!({"enabled": true})),
    )
    .await;
    let (status, _) = gw
        .admin_call(
            Method::POST,
            &format!("/orgs/{org}/top-ups"),
            Some(json!({"amount_micros": 3000})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = gw
        .admin_call(
            Method::PUT,
            &format!("/orgs/{org}/autocharge"),
            Some(json!({"enabled": true, "threshold_micros": 2500, "amount_micros": 1_000_000, "customer": "cus_test1", "payment_method": payment_method})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, key) = gw.create_key(&org, json!({"name": "bot"})).await;
    (org, key)
}

async fn wait_for(gw: &TestGateway, org: &str, what: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let (_, balance) = gw
            .admin_call(Method::GET, &format!("/orgs/{org}/balance"), None)
            .await;
        if what(&balance) {
            return balance;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached for {org}");
}

async fn notifications(gw: &TestGateway, org: &str) -> Vec<String> {
    gw.notifications(org)
        .await
        .iter()
        .map(|n| n["kind"].as_str().expect("kind").to_owned())
        .collect()
}

#[tokio::test]
async fn a_charge_below_the_threshold_tops_up_once() {
    let (fake, addr) = stripe::start().await;
    let gw = gateway(addr).await;
    let (org, key) = org_with_autocharge(&gw, "pm_card_visa").await;
    assert_eq!(
        gw.get("/v1/ticker", Some(&key)).await.status(),
        200,
        "3000 - 1000 = 2000 < 2500"
    );
    let balance = wait_for(&gw, &org, |b| b["balance_micros"] == 1_002_000).await;
    assert_eq!(balance["autocharge"]["consecutive_failures"], 0);
    let calls = fake.calls.lock().clone();
    assert_eq!(
        calls.len(),
        1,
        "one top-up in flight at a time, and one was needed"
    );
    let call = &calls[0];
    assert_eq!(
        call.idempotency_key.as_deref(),
        Some(format!("autocharge:{org}:1").as_str())
    );
    for (param, value) in [
        ("amount", "100"),
        ("currency", "usd"),
        ("customer", "cus_test1"),
        ("payment_method", "pm_card_visa"),
        ("confirm", "true"),
        ("off_session", "true"),
    ] {
        assert_eq!(
            call.params.get(param).map(String::as_str),
            Some(value),
            "{param}"
        );
    }
    let ledger = gw.ledger(&org).await;
    let autocharge = of_kind(&ledger, "autocharge")[0];
    assert_eq!(autocharge["amount_micros"], 1_000_000);
    assert_eq!(autocharge["reference"], format!("autocharge:{org}:1"));
    assert_eq!(autocharge["detail"]["payment_id"], "pi_fake1");
    // Above the threshold again: no more top-ups.
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.calls.lock().len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn declines_are_counted_and_turn_autocharge_off_after_three() {
    let (fake, addr) = stripe::start().await;
    let gw = gateway(addr).await;
    let (org, key) = org_with_autocharge(&gw, "pm_card_chargeDeclined").await;
    for attempt in 1..=3u64 {
        assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
        wait_for(&gw, &org, |b| {
            b["autocharge"]["consecutive_failures"] == attempt
        })
        .await;
    }
    let balance = wait_for(&gw, &org, |b| b["autocharge"]["enabled"] == false).await;
    assert!(
        balance["autocharge"]["disabled_reason"]
            .as_str()
            .expect("reason")
            .contains("generic_decline"),
        "{balance}"
    );
    assert_eq!(
        balance["balance_micros"], 0,
        "no credit for a declined payment"
    );
    let kinds = notifications(&gw, &org).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "autocharge_failed").count(),
        3
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "autocharge_disabled").count(),
        1
    );
    let keys: Vec<Option<String>> = fake
        .calls
        .lock()
        .iter()
        .map(|c| c.idempotency_key.clone())
        .collect();
    assert_eq!(
        keys,
        (1..=3)
            .map(|n| Some(format!("autocharge:{org}:{n}")))
            .collect::<Vec<_>>(),
        "a new key per attempt"
    );
    // Off now: the account falls to its standing rules.
    expect_problem(
        gw.get("/v1/ticker", Some(&key)).await,
        402,
        "payment_required",
    )
    .await;
    assert_eq!(fake.calls.lock().len(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn a_payment_that_needs_authentication_restricts_writes_until_resolved() {
    let (_fake, addr) = stripe::start().await;
    let gw = gateway(addr).await;
    let (org, key) = org_with_autocharge(&gw, "pm_card_authenticationRequired").await;
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    wait_for(&gw, &org, |b| b["payment_action_required"] == true).await;
    assert!(
        notifications(&gw, &org)
            .await
            .contains(&"payment_action_required".to_owned())
    );
    let write = || gw.post_write("/v1/orders", &key, "after-sca", json!({}));
    let seen = gw.upstream.count();
    let before = gw.ledger(&org).await;
    expect_problem(write().await, 402, "payment_action_required").await;
    assert_eq!(gw.upstream.count(), seen, "the upstream is not called");
    assert_eq!(gw.ledger(&org).await, before, "nothing is charged");
    assert_eq!(
        gw.get("/v1/ticker", Some(&key)).await.status(),
        200,
        "reads pass"
    );
    // A new payment method resolves it.
    let (status, _) = gw
        .admin_call(
            Method::PUT,
            &format!("/orgs/{org}/autocharge"),
            Some(json!({"enabled": true, "payment_method": "pm_card_visa"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(write().await.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn an_unknown_outcome_is_retried_under_its_key_with_what_it_first_sent() {
    let (fake, addr) = stripe::start().await;
    let gw = gateway(addr).await;
    let (org, key) = org_with_autocharge(&gw, "pm_card_visa").await;
    // Stripe takes the payment but answers after tollgate gave up.
    *fake.stall_next.lock() = 1;
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    for _ in 0..100 {
        if !fake.calls.lock().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // While that call runs, another charge below the threshold starts no
    // second top-up (one in flight per organization).
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.calls.lock().len(), 1, "one top-up in flight");
    // And the operator changes the settings: a new amount and a budget. The
    // attempt's outcome must not undo them.
    let (status, _) = gw
        .admin_call(
            Method::PUT,
            &format!("/orgs/{org}/autocharge"),
            Some(json!({"enabled": true, "amount_micros": 2_000_000})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = gw
        .admin_call(
            Method::PUT,
            &format!("/orgs/{org}/account"),
            Some(json!({"budget_micros": 50_000_000})),
        )
        .await;
    assert_eq!(status, 200);
    let after = wait_for(&gw, &org, |b| b["autocharge"]["consecutive_failures"] == 1).await;
    assert_eq!(after["autocharge"]["amount_micros"], 2_000_000, "{after}");
    assert_eq!(after["budget_micros"], 50_000_000, "{after}");
    assert_eq!(after["balance_micros"], 1_000, "nothing credited yet");

    // Once Stripe has finished, the next top-up retries the pending attempt:
    // same key, the amount it first sent (1.00, not the new 2.00).
    fake.release().await;
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    let credited = wait_for(&gw, &org, |b| b["balance_micros"] == 1_000_000).await;
    assert_eq!(credited["autocharge"]["consecutive_failures"], 0);
    let calls = fake.calls.lock().clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let first_key = format!("autocharge:{org}:1");
    for call in &calls {
        assert_eq!(call.idempotency_key.as_deref(), Some(first_key.as_str()));
    }
    assert_eq!(
        calls[0].params, calls[1].params,
        "the retry sends what the first try sent"
    );
    assert_eq!(calls[1].params["amount"], "100");
    let ledger = gw.ledger(&org).await;
    let credits = of_kind(&ledger, "autocharge");
    assert_eq!(credits.len(), 1, "credited once: {ledger:?}");
    assert_eq!(credits[0]["amount_micros"], 1_000_000);
    assert_eq!(credits[0]["reference"], first_key);
    let sum: i64 = ledger
        .iter()
        .map(|e| e["amount_micros"].as_i64().expect("amount"))
        .sum();
    assert_eq!(sum, 1_000_000, "the balance is the sum of the ledger");
    let kinds = notifications(&gw, &org).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "autocharge_failed").count(),
        1,
        "{kinds:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn no_top_up_goes_past_the_monthly_cap() {
    let (fake, addr) = stripe::start().await;
    let gw = gateway(addr).await;
    let (org, key) = org_with_autocharge(&gw, "pm_card_visa").await;
    let (status, _) = gw
        .admin_call(
            Method::PUT,
            &format!("/orgs/{org}/autocharge"),
            Some(json!({"enabled": true, "monthly_cap_micros": 1_500_000})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    wait_for(&gw, &org, |b| b["balance_micros"] == 1_002_000).await;
    // Spend it (an adjustment stands in for many requests), so the next
    // charge is below the threshold again: a second 1.00 would make 2.00
    // this month, past the 1.50 cap.
    let (status, _) = gw
        .admin_call(
            Method::POST,
            &format!("/orgs/{org}/adjustments"),
            Some(json!({"amount_micros": -1_000_000, "reason": "spent elsewhere"})),
        )
        .await;
    assert_eq!(status, 201);
    for _ in 0..2 {
        assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    }
    for _ in 0..100 {
        if notifications(&gw, &org)
            .await
            .contains(&"autocharge_cap_reached".to_owned())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let kinds = notifications(&gw, &org).await;
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "autocharge_cap_reached")
            .count(),
        1,
        "once per month: {kinds:?}"
    );
    assert_eq!(fake.calls.lock().len(), 1, "Stripe was not called again");
    let b = wait_for(&gw, &org, |_| true).await;
    assert_eq!(b["balance_micros"], 0, "{b}");
    assert_eq!(
        b["autocharge"]["consecutive_failures"], 0,
        "the cap is not a failure"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_provider_error_keeps_the_attempt_pending_under_its_key() {
    let (fake, addr) = stripe::start().await;
    // A live key the (test-mode) fake refuses with 401: no payment is made,
    // but tollgate cannot tell that from an answer it could not read.
    let gw = TestGateway::start_with(move |config| {
        let plan: PlanConfig =
            toml::from_str("[prices.request]\ntiers = [{ micros = 1000 }]\n").expect("plan");
        config.plans.insert("perreq".into(), plan);
        config.payments.stripe_api_base = format!("http://{addr}");
        config.payments.stripe_secret_key = Some("sk_live_wrong_000".into());
    })
    .await;
    let (org, key) = org_with_autocharge(&gw, "pm_card_visa").await;
    for failures in 1..=2u64 {
        assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
        wait_for(&gw, &org, |b| {
            b["autocharge"]["consecutive_failures"] == failures
        })
        .await;
    }
    let first_key = format!("autocharge:{org}:1");
    let keys: Vec<Option<String>> = fake
        .calls
        .lock()
        .iter()
        .map(|c| c.idempotency_key.clone())
        .collect();
    assert_eq!(
        keys,
        vec![Some(first_key.clone()), Some(first_key.clone())],
        "the pending attempt is retried, not replaced"
    );
    let notes = gw.notifications(&org).await;
    let failed = of_kind(&notes, "autocharge_failed");
    assert_eq!(failed.len(), 2, "{notes:?}");
    assert!(
        failed[0]["detail"]["reason"]
            .as_str()
            .expect("reason")
            .contains("Invalid API Key"),
        "{notes:?}"
    );
    let references: std::collections::HashSet<&str> = failed
        .iter()
        .map(|n| n["reference"].as_str().expect("reference"))
        .collect();
    assert_eq!(references.len(), 2, "one notification per failed try");
    assert!(
        references
            .iter()
            .all(|r| r.starts_with(&format!("{first_key}:failure:"))),
        "{references:?}"
    );
    let b = wait_for(&gw, &org, |_| true).await;
    assert_eq!(b["balance_micros"], 1_000, "nothing credited: {b}");

    // A day later Stripe may have forgotten the key, and a retry under it
    // would be a new payment: the attempt is closed for the operator to
    // reconcile, and a new attempt with a new key starts.
    gw.clock.advance_millis(24 * 3_600_000);
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    wait_for(&gw, &org, |b| b["autocharge"]["enabled"] == false).await;
    let keys: Vec<Option<String>> = fake
        .calls
        .lock()
        .iter()
        .map(|c| c.idempotency_key.clone())
        .collect();
    assert_eq!(
        keys.last().cloned().flatten(),
        Some(format!("autocharge:{org}:2")),
        "{keys:?}"
    );
    assert_eq!(keys.len(), 3, "{keys:?}");
    let notes = gw.notifications(&org).await;
    let unresolved = of_kind(&notes, "autocharge_unresolved");
    assert_eq!(unresolved.len(), 1, "{notes:?}");
    assert_eq!(unresolved[0]["detail"]["idempotency_key"], first_key);
    assert_eq!(unresolved[0]["detail"]["amount_micros"], 1_000_000);
    assert_eq!(of_kind(&notes, "autocharge_disabled").len(), 1, "{notes:?}");
    gw.stop().await;
}
