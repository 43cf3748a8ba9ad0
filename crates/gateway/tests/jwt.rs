//! Step 4, JWTs over real HTTP: HS256 and JWKS issuers (RS256, ES256,
//! EdDSA), every refusal, claim → rate class, the verified-token cache, and
//! JWKS rotation with a cooldown on unknown `kid`s.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{TestGateway, expect_problem};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tollgate_gateway::Clock;
use tollgate_gateway::config::{ClaimClassConfig, IssuerConfig, RateConfig};

const HS_ISSUER: &str = "https://hs.issuer.test";
const RS_ISSUER: &str = "https://rs.issuer.test";
const HS_SECRET: &str = "a-shared-secret-of-at-least-32-characters!";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

/// A JWKS endpoint whose document the test swaps, counting fetches.
#[derive(Clone)]
struct JwksServer {
    document: Arc<Mutex<Vec<u8>>>,
    fetches: Arc<AtomicU64>,
    url: String,
}

async fn jwks_server(initial: &str) -> JwksServer {
    let document = Arc::new(Mutex::new(fixture(initial)));
    let fetches = Arc::new(AtomicU64::new(0));
    let (doc, count) = (Arc::clone(&document), Arc::clone(&fetches));
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let (doc, count) = (Arc::clone(&doc), Arc::clone(&count));
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                ([("content-type", "application/json")], doc.lock().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    JwksServer {
        document,
        fetches,
        url,
    }
}

fn issuers(jwks_url: &str, cooldown_seconds: u64) -> Vec<IssuerConfig> {
    let class = |claim: &str, value: &str, class: &str| ClaimClassConfig {
        claim: claim.into(),
        value: value.into(),
        class: class.into(),
    };
    vec![
        IssuerConfig {
            issuer: HS_ISSUER.into(),
            audiences: vec!["tollgate".into(), "free-tier".into()],
            algorithms: vec!["HS256".into()],
            hs256_secret: Some(HS_SECRET.into()),
            jwks_file: None,
            jwks_url: None,
            refresh_seconds: 300,
            cooldown_seconds: 10,
            leeway_seconds: 30,
            org_claim: "org".into(),
            rate_classes: vec![
                class("tier", "premium", "premium"),
                class("aud", "free-tier", "free"),
            ],
        },
        IssuerConfig {
            issuer: RS_ISSUER.into(),
            audiences: vec!["tollgate".into()],
            algorithms: vec!["RS256".into(), "ES256".into(), "EdDSA".into()],
            hs256_secret: None,
            jwks_file: None,
            jwks_url: Some(jwks_url.into()),
            refresh_seconds: 3600,
            cooldown_seconds,
            leeway_seconds: 30,
            org_claim: "org".into(),
            rate_classes: vec![],
        },
    ]
}

/// A gateway whose clock sits on a whole second, like JWT times.
async fn gateway(jwks: &JwksServer, cooldown_seconds: u64) -> TestGateway {
    let issuers = issuers(&jwks.url, cooldown_seconds);
    let gw = TestGateway::start_with(move |config| {
        config.jwt.issuers = issuers;
        let plan = config.plans.get_mut("full").unwrap();
        let bucket = |burst| RateConfig {
            rate: 100,
            per_seconds: 1,
            burst,
        };
        plan.rate_classes = [
            ("standard".to_owned(), bucket(10)),
            ("premium".to_owned(), bucket(100)),
            ("free".to_owned(), bucket(2)),
        ]
        .into();
        plan.default_rate_class = Some("standard".into());
    })
    .await;
    gw.clock.set(tollgate_core::time::UnixMillis(
        gw.clock.now().0 / 1000 * 1000,
    ));
    gw
}

fn now_s(gw: &TestGateway) -> i64 {
    gw.clock.now().0 / 1000
}

fn claims(gw: &TestGateway, iss: &str, org: &str) -> Value {
    json!({ "iss": iss, "aud": "tollgate", "org": org, "sub": "bot-1", "exp": now_s(gw) + 300 })
}

fn hs(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

fn signed(alg: Algorithm, kid: &str, pem: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&fixture(pem)),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&fixture(pem)),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&fixture(pem)),
        _ => unreachable!(),
    }
    .unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

async fn jwt_key(gw: &TestGateway, org: &str) -> String {
    let (status, body) = gw
        .admin_call(
            reqwest::Method::POST,
            &format!("/orgs/{org}/keys"),
            Some(json!({ "name": "jwt", "credentials": { "jwt": "all" } })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().unwrap().to_owned()
}

async fn call(gw: &TestGateway, key: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = gw.http.get(gw.url("/v1/ticker")).header("X-API-Key", key);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

fn key_quota(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("ratelimit-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn hs256_tokens_pick_the_rate_class_and_are_bound_to_the_org() {
    let jwks = jwks_server("jwks-a.json").await;
    let gw = gateway(&jwks, 10).await;
    let org = gw.create_org(Some("full")).await;
    let key = jwt_key(&gw, &org).await;
    let base = claims(&gw, HS_ISSUER, &org);

    let plain = call(&gw, &key, Some(&hs(&base))).await;
    assert_eq!(plain.status(), 200);
    assert!(
        key_quota(&plain).contains("\"key\";q=10;"),
        "{}",
        key_quota(&plain)
    );

    let mut premium = base.clone();
    premium["tier"] = json!("premium");
    let response = call(&gw, &key, Some(&hs(&premium))).await;
    assert_eq!(response.status(), 200);
    assert!(
        key_quota(&response).contains("\"key\";q=100;"),
        "{}",
        key_quota(&response)
    );

    // (The key's bucket is shared by its classes: let it refill first.)
    gw.clock.advance_millis(1000);
    let mut free = base.clone();
    free["aud"] = json!(["x", "free-tier"]);
    let response = call(&gw, &key, Some(&hs(&free))).await;
    assert_eq!(response.status(), 200);
    assert!(
        key_quota(&response).contains("\"key\";q=2;"),
        "{}",
        key_quota(&response)
    );

    // An unknown tier falls back to the plan's default class.
    let mut unknown = base.clone();
    unknown["tier"] = json!("platinum");
    let response = call(&gw, &key, Some(&hs(&unknown))).await;
    assert!(key_quota(&response).contains("\"key\";q=10;"));

    // A token for another org.
    let mut other = base.clone();
    other["org"] = json!("org_someoneelse");
    expect_problem(
        call(&gw, &key, Some(&hs(&other))).await,
        401,
        "token_org_mismatch",
    )
    .await;
    // No token at all.
    let missing = call(&gw, &key, None).await;
    assert!(
        missing.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    expect_problem(missing, 401, "token_required").await;
    assert_eq!(gw.upstream.count(), 4);
    // The upstream never saw the API key.
    assert!(
        !gw.upstream
            .last()
            .unwrap()
            .headers
            .contains_key("x-api-key")
    );
    gw.stop().await;
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_code() {
    let jwks = jwks_server("jwks-a.json").await;
    let gw = gateway(&jwks, 10).await;
    let org = gw.create_org(Some("full")).await;
    let key = jwt_key(&gw, &org).await;
    let base = claims(&gw, HS_ISSUER, &org);
    let now = now_s(&gw);

    let with = |changes: Value| {
        let mut c = base.clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired beyond leeway",
            hs(&with(json!({ "exp": now - 31 }))),
            "token_expired",
        ),
        (
            "nbf beyond leeway",
            hs(&with(json!({ "nbf": now + 31 }))),
            "token_not_yet_valid",
        ),
        (
            "wrong audience",
            hs(&with(json!({ "aud": "someone-else" }))),
            "invalid_token",
        ),
        (
            "unknown issuer",
            hs(&with(json!({ "iss": "https://evil.test" }))),
            "invalid_token",
        ),
        ("no exp", hs(&with(json!({ "exp": null }))), "invalid_token"),
        (
            "string nbf",
            hs(&with(json!({ "nbf": (now - 60).to_string() }))),
            "invalid_token",
        ),
        (
            "string exp",
            hs(&with(json!({ "exp": (now + 60).to_string() }))),
            "invalid_token",
        ),
        ("not a JWT", "abc.def".to_owned(), "invalid_token"),
    ];
    for (what, token, code) in cases {
        let response = call(&gw, &key, Some(&token)).await;
        let body = expect_problem(response, 401, code).await;
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{what}");
    }
    // Within the leeway either side: accepted.
    let edge = hs(&with(json!({ "exp": now - 30, "nbf": now + 30 })));
    assert_eq!(call(&gw, &key, Some(&edge)).await.status(), 200);

    // alg none: a token with no signature at all.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(base.to_string());
    let none = format!("{header}.{payload}.");
    let body = expect_problem(call(&gw, &key, Some(&none)).await, 401, "invalid_token").await;
    assert!(body["detail"].as_str().unwrap().contains("alg"), "{body}");

    // HS/RS confusion: HS256 "signed" with the RSA issuer's public key.
    let mut rs_claims = base.clone();
    rs_claims["iss"] = json!(RS_ISSUER);
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &rs_claims,
        &EncodingKey::from_secret(&fixture("rsa-a.pub.pem")),
    )
    .unwrap();
    let body = expect_problem(call(&gw, &key, Some(&confused)).await, 401, "invalid_token").await;
    assert!(
        body["detail"].as_str().unwrap().contains("not accepted"),
        "{body}"
    );

    // A valid signature under the wrong secret.
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &base,
        &EncodingKey::from_secret(b"another-secret-another-secret-another"),
    )
    .unwrap();
    expect_problem(call(&gw, &key, Some(&forged)).await, 401, "invalid_token").await;
    assert_eq!(
        gw.upstream.count(),
        1,
        "only the in-leeway token reached the upstream"
    );
    gw.stop().await;
}

#[tokio::test]
async fn cached_tokens_still_expire() {
    let jwks = jwks_server("jwks-a.json").await;
    let gw = gateway(&jwks, 10).await;
    let org = gw.create_org(Some("full")).await;
    let key = jwt_key(&gw, &org).await;
    let mut c = claims(&gw, HS_ISSUER, &org);
    c["exp"] = json!(now_s(&gw) + 5);
    let token = hs(&c);
    assert_eq!(call(&gw, &key, Some(&token)).await.status(), 200);
    assert_eq!(call(&gw, &key, Some(&token)).await.status(), 200);
    gw.clock.advance_millis(36_000); // past exp + 30 s leeway
    expect_problem(call(&gw, &key, Some(&token)).await, 401, "token_expired").await;
    gw.stop().await;
}

#[tokio::test]
async fn jwks_keys_rs256_es256_eddsa_and_rotation() {
    let jwks = jwks_server("jwks-a.json").await;
    let gw = gateway(&jwks, 1).await;
    let org = gw.create_org(Some("full")).await;
    let key = jwt_key(&gw, &org).await;
    let c = claims(&gw, RS_ISSUER, &org);
    for token in [
        signed(Algorithm::RS256, "rsa-a", "rsa-a.pem", &c),
        signed(Algorithm::ES256, "ec-1", "ec.pem", &c),
        signed(Algorithm::EdDSA, "ed-1", "ed.pem", &c),
    ] {
        let response = call(&gw, &key, Some(&token)).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    // A token from the next key, before the issuer publishes it.
    let next = signed(Algorithm::RS256, "rsa-b", "rsa-b.pem", &c);
    let body = expect_problem(call(&gw, &key, Some(&next)).await, 401, "invalid_token").await;
    assert!(
        body["detail"].as_str().unwrap().contains("unknown kid"),
        "{body}"
    );
    // The issuer rotates in rsa-b; after the cooldown the unknown kid
    // fetches the set again and the token is accepted.
    *jwks.document.lock() = fixture("jwks-ab.json");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(call(&gw, &key, Some(&next)).await.status(), 200);
    let old = signed(Algorithm::RS256, "rsa-a", "rsa-a.pem", &c);
    assert_eq!(
        call(&gw, &key, Some(&old)).await.status(),
        200,
        "both keys during the overlap"
    );
    // rsa-a leaves the set: once the set is fetched again, tokens it signed
    // (even cached ones) are refused.
    *jwks.document.lock() = fixture("jwks-b.json");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let unknown = signed(Algorithm::RS256, "rsa-z", "rsa-b.pem", &c);
    expect_problem(call(&gw, &key, Some(&unknown)).await, 401, "invalid_token").await;
    expect_problem(call(&gw, &key, Some(&old)).await, 401, "invalid_token").await;
    assert_eq!(call(&gw, &key, Some(&next)).await.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_the_set_once_per_cooldown() {
    let jwks = jwks_server("jwks-a.json").await;
    let gw = gateway(&jwks, 60).await;
    let org = gw.create_org(Some("full")).await;
    let key = jwt_key(&gw, &org).await;
    let before = jwks.fetches.load(Ordering::SeqCst);
    let c = claims(&gw, RS_ISSUER, &org);
    let mut calls = Vec::new();
    for i in 0..50 {
        let token = signed(Algorithm::RS256, &format!("unknown-{i}"), "rsa-a.pem", &c);
        let (gw_http, url, key) = (gw.http.clone(), gw.url("/v1/ticker"), key.clone());
        calls.push(tokio::spawn(async move {
            gw_http
                .get(url)
                .header("X-API-Key", key)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for call in calls {
        assert_eq!(call.await.unwrap(), 401);
    }
    let fetched = jwks.fetches.load(Ordering::SeqCst) - before;
    assert!(fetched <= 1, "{fetched} fetches for 50 unknown kids");
    gw.stop().await;
}
