//! The client SDK against the real gateway: requests it signs in either
//! scheme are accepted, a replayed idempotent order is answered from the
//! store, and its RateLimit parsing reads what the gateway sends.

mod common;

use base64::Engine;
use common::TestGateway;
use serde_json::json;
use tollgate_client::{AuthScheme, Body, Client, Credentials, Method, idempotency_key};
use tollgate_gateway::config::RateConfig;

#[tokio::test]
async fn sdk_signed_requests_are_accepted_in_both_schemes() {
    let gw = TestGateway::start_with(|config| {
        config.credentials.master_key =
            Some(base64::engine::general_purpose::STANDARD.encode([5u8; 32]));
        let plan = config.plans.get_mut("full").unwrap();
        plan.rate_classes = [(
            "standard".to_owned(),
            RateConfig {
                rate: 50,
                per_seconds: 1,
                burst: 50,
            },
        )]
        .into();
        plan.default_rate_class = Some("standard".into());
    })
    .await;
    let org = gw.create_org(Some("full")).await;
    let (status, key) = gw
        .admin_call(
            reqwest::Method::POST,
            &format!("/orgs/{org}/keys"),
            Some(json!({ "name": "sdk", "credentials": { "signature": "all" } })),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let credentials = || {
        Credentials::new(key["key"].as_str().unwrap())
            .unwrap()
            .with_signing_secret(key["signing_secret"].as_str().unwrap())
            .unwrap()
            .with_passphrase(key["passphrase"].as_str().unwrap())
            .unwrap()
    };
    let base = format!("http://{}", gw.ingress);
    for scheme in [AuthScheme::Tollgate, AuthScheme::Coinbase] {
        let client = Client::builder(&base, credentials())
            .scheme(scheme)
            .build()
            .unwrap();
        let read = client
            .send(Method::GET, "/v1/ticker?symbol=BTC-USD&depth=5", None, None)
            .await
            .unwrap();
        assert_eq!(read.status(), 200, "{scheme:?}: {}", read.text());
        let limits = read.rate_limit().unwrap();
        assert_eq!(limits.policy("key").unwrap().quota, 50);
        assert!(limits.limit("key").unwrap().remaining < 50);

        let id = idempotency_key(
            credentials().key_id(),
            "demo",
            &format!("BTC-USD-{scheme:?}"),
            1_700_000_000,
            60,
        )
        .unwrap();
        let order = || Body::json(r#"{"symbol":"BTC-USD","side":"buy","qty":"0.01"}"#);
        let placed = client
            .send(Method::POST, "/v1/orders", Some(order()), Some(&id))
            .await
            .unwrap();
        assert_eq!(placed.status(), 200, "{scheme:?}: {}", placed.text());
        assert!(!placed.is_idempotent_replay());
        // The same order again (signed afresh by the SDK): replayed.
        let again = client
            .send(Method::POST, "/v1/orders", Some(order()), Some(&id))
            .await
            .unwrap();
        assert_eq!(again.status(), 200);
        assert!(again.is_idempotent_replay());
        assert_eq!(again.body(), placed.body());
    }
    // Two reads and two orders per scheme reached the upstream.
    assert_eq!(gw.upstream.count(), 4);
    gw.stop().await;
}
