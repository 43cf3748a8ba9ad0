//! Step 4, HMAC request signatures over real HTTP: both schemes accepted,
//! every tampered field refused, the timestamp window's boundaries, replays,
//! secret rotation with overlap, and secrets sealed at rest.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{TestGateway, expect_problem};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tollgate_core::signing::{self, SignedParts};
use tollgate_core::time::UnixMillis;

const MASTER_KEY: [u8; 32] = [42; 32];

fn with_signing(config: &mut tollgate_gateway::Config) {
    config.credentials.master_key = Some(STANDARD.encode(MASTER_KEY));
    // DELETE /v1/orders/{id} is the strict route: 5 s.
    config.routes[2].signing_window = Some("strict".into());
}

/// Starts a gateway and pins its clock to a whole second, so that signed
/// timestamps (whole seconds) sit exactly where the tests put them.
async fn gateway() -> TestGateway {
    let gw = TestGateway::start_with(with_signing).await;
    let now = gw.clock_now();
    gw.clock.set(UnixMillis(now.0 / 1000 * 1000));
    gw
}

trait ClockNow {
    fn clock_now(&self) -> UnixMillis;
    fn now_seconds(&self) -> i64;
}

impl ClockNow for TestGateway {
    fn clock_now(&self) -> UnixMillis {
        use tollgate_gateway::Clock;
        self.clock.now()
    }
    fn now_seconds(&self) -> i64 {
        self.clock_now().0 / 1000
    }
}

struct SignedKey {
    id: String,
    key: String,
    secret: String,
    passphrase: String,
}

async fn signed_key(gw: &TestGateway, org: &str, policy: Value) -> SignedKey {
    let (status, body) = gw
        .admin_call(
            reqwest::Method::POST,
            &format!("/orgs/{org}/keys"),
            Some(json!({ "name": "bot", "credentials": policy, "signing_secret": true })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    SignedKey {
        id: body["id"].as_str().unwrap().to_owned(),
        key: body["key"].as_str().unwrap().to_owned(),
        secret: body["signing_secret"].as_str().unwrap().to_owned(),
        passphrase: body["passphrase"].as_str().unwrap().to_owned(),
    }
}

struct Call<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    body: &'a str,
    timestamp: String,
}

fn tollgate_signature(key: &SignedKey, call: &Call<'_>) -> String {
    let secret = signing::decode_secret(&key.secret).unwrap();
    let parts = SignedParts {
        timestamp: &call.timestamp,
        method: call.method,
        path: call.path,
        query: call.query,
        body: call.body.as_bytes(),
    };
    signing::sign(
        &secret,
        signing::canonical_string(&parts, &key.id).as_bytes(),
    )
}

/// What a bot written for Coinbase Exchange computes, written here from
/// Coinbase's documentation rather than with tollgate's code:
/// base64(HMAC-SHA256(base64decode(secret), timestamp + METHOD + requestPath + body)).
fn coinbase_signature(
    secret_b64: &str,
    timestamp: &str,
    method: &str,
    path_query: &str,
    body: &str,
) -> String {
    let secret = STANDARD.decode(secret_b64).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
    mac.update(format!("{timestamp}{method}{path_query}{body}").as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

async fn send(
    gw: &TestGateway,
    key: &SignedKey,
    call: &Call<'_>,
    signature: &str,
    idempotency_key: &str,
) -> reqwest::Response {
    let url = if call.query.is_empty() {
        gw.url(call.path)
    } else {
        gw.url(&format!("{}?{}", call.path, call.query))
    };
    gw.http
        .request(call.method.parse().unwrap(), url)
        .header("X-API-Key", &key.key)
        .header("Tollgate-Timestamp", &call.timestamp)
        .header("Tollgate-Signature", signature)
        .header("Idempotency-Key", idempotency_key)
        .header("Content-Type", "application/json")
        .body(call.body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn tollgate_scheme_accepts_a_signed_request_and_refuses_each_tampered_field() {
    let gw = gateway().await;
    let org = gw.create_org(Some("full")).await;
    let key = signed_key(&gw, &org, json!({ "signature": "write" })).await;
    let ts = gw.now_seconds().to_string();
    let call = Call {
        method: "POST",
        path: "/v1/orders",
        query: "venue=x&b=2&a=1",
        body: r#"{"symbol":"BTC-USD","qty":"1"}"#,
        timestamp: ts.clone(),
    };
    let signature = tollgate_signature(&key, &call);
    let response = send(&gw, &key, &call, &signature, "ok-1").await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(gw.upstream.count(), 1);
    let seen = gw.upstream.last().unwrap();
    assert_eq!(
        seen.headers
            .get("tollgate-signature-scheme")
            .and_then(|v| v.to_str().ok()),
        Some("tollgate-hmac-sha256")
    );
    assert_eq!(seen.body, call.body.as_bytes());

    // Each field changed after signing: the signature no longer matches.
    let tampered: Vec<(&str, Call<'_>)> = vec![
        (
            "path",
            Call {
                path: "/v1/orders/",
                ..clone(&call)
            },
        ),
        (
            "query",
            Call {
                query: "venue=y&b=2&a=1",
                ..clone(&call)
            },
        ),
        (
            "query added",
            Call {
                query: "venue=x&b=2&a=1&c=3",
                ..clone(&call)
            },
        ),
        (
            "body",
            Call {
                body: r#"{"symbol":"BTC-USD","qty":"9"}"#,
                ..clone(&call)
            },
        ),
        (
            "timestamp",
            Call {
                timestamp: (gw.now_seconds() - 1).to_string(),
                ..clone(&call)
            },
        ),
    ];
    for (i, (what, changed)) in tampered.iter().enumerate() {
        let response = send(&gw, &key, changed, &signature, &format!("t-{i}")).await;
        let status = response.status();
        if what == &"path" && status == 404 {
            continue; // a path no route matches is refused before step 4
        }
        expect_problem(response, 401, "bad_signature").await;
    }
    // The method: DELETE on the order route signed as POST.
    let delete = Call {
        method: "DELETE",
        path: "/v1/orders/abc",
        ..clone(&call)
    };
    let delete_sig = tollgate_signature(
        &key,
        &Call {
            method: "POST",
            ..clone(&delete)
        },
    );
    expect_problem(
        send(&gw, &key, &delete, &delete_sig, "t-m").await,
        401,
        "bad_signature",
    )
    .await;
    // Another key's id in the canonical string.
    let other = SignedKey {
        id: "AAAAAAAAAAAAAAAA".into(),
        ..clone_key(&key)
    };
    let foreign = tollgate_signature(&other, &call);
    expect_problem(
        send(&gw, &key, &call, &foreign, "t-k").await,
        401,
        "bad_signature",
    )
    .await;
    // Garbage and missing signatures.
    expect_problem(
        send(&gw, &key, &call, "not base64!", "t-g").await,
        401,
        "bad_signature",
    )
    .await;
    let unsigned = gw
        .http
        .post(gw.url("/v1/orders"))
        .header("X-API-Key", &key.key)
        .header("Idempotency-Key", "t-u")
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_problem(unsigned, 401, "signature_required").await;
    assert_eq!(
        gw.upstream.count(),
        1,
        "no refused request reached the upstream"
    );
    // The policy demands signatures on writes only: reads pass unsigned.
    let read = gw.get("/v1/ticker", Some(&key.key)).await;
    assert_eq!(read.status(), 200);
    gw.stop().await;
}

fn clone<'a>(call: &Call<'a>) -> Call<'a> {
    Call {
        method: call.method,
        path: call.path,
        query: call.query,
        body: call.body,
        timestamp: call.timestamp.clone(),
    }
}

fn clone_key(key: &SignedKey) -> SignedKey {
    SignedKey {
        id: key.id.clone(),
        key: key.key.clone(),
        secret: key.secret.clone(),
        passphrase: key.passphrase.clone(),
    }
}

#[tokio::test]
async fn the_timestamp_window_is_inclusive_and_per_route_class() {
    let gw = gateway().await;
    let org = gw.create_org(Some("full")).await;
    let key = signed_key(&gw, &org, json!({ "signature": "all" })).await;
    let now = gw.now_seconds();
    let cases = [
        // (route, offset seconds, accepted)
        ("/v1/orders", -30, true),
        ("/v1/orders", 30, true),
        ("/v1/orders", -31, false),
        ("/v1/orders", 31, false),
        ("/v1/orders/o1", -5, true),
        ("/v1/orders/o2", 5, true),
        ("/v1/orders/o3", -6, false),
        ("/v1/orders/o4", 6, false),
    ];
    for (i, (path, offset, accepted)) in cases.into_iter().enumerate() {
        let method = if path == "/v1/orders" {
            "POST"
        } else {
            "DELETE"
        };
        let call = Call {
            method,
            path,
            query: "",
            body: "",
            timestamp: (now + offset).to_string(),
        };
        let signature = tollgate_signature(&key, &call);
        let response = send(&gw, &key, &call, &signature, &format!("w-{i}")).await;
        if accepted {
            assert_eq!(response.status(), 200, "{path} {offset}");
        } else {
            let body = expect_problem(response, 401, "timestamp_out_of_window").await;
            assert!(
                body["detail"].as_str().unwrap().contains("accepts"),
                "{body}"
            );
        }
    }
    assert_eq!(gw.upstream.count(), 4);
    gw.stop().await;
}

#[tokio::test]
async fn a_signature_is_accepted_once() {
    let gw = gateway().await;
    let org = gw.create_org(Some("full")).await;
    let key = signed_key(&gw, &org, json!({ "signature": "all" })).await;
    let call = Call {
        method: "GET",
        path: "/v1/ticker",
        query: "symbol=BTC-USD",
        body: "",
        timestamp: gw.now_seconds().to_string(),
    };
    let signature = tollgate_signature(&key, &call);
    assert_eq!(send(&gw, &key, &call, &signature, "r").await.status(), 200);
    expect_problem(
        send(&gw, &key, &call, &signature, "r").await,
        401,
        "replayed_request",
    )
    .await;
    assert_eq!(gw.upstream.count(), 1);
    // Signed afresh one second later: a new signature, accepted.
    gw.clock.advance_millis(1000);
    let again = Call {
        timestamp: gw.now_seconds().to_string(),
        ..clone(&call)
    };
    let signature = tollgate_signature(&key, &again);
    assert_eq!(send(&gw, &key, &again, &signature, "r").await.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn a_coinbase_bot_works_unchanged_and_its_headers_stay_here() {
    let gw = gateway().await;
    let org = gw.create_org(Some("full")).await;
    let key = signed_key(&gw, &org, json!({ "signature": "all" })).await;
    let coinbase = |method: &str, path_query: &str, body: &str, ts: &str, passphrase: &str| {
        let sig = coinbase_signature(&key.secret, ts, method, path_query, body);
        gw.http
            .request(method.parse().unwrap(), gw.url(path_query))
            .header("CB-ACCESS-KEY", &key.key)
            .header("CB-ACCESS-SIGN", sig)
            .header("CB-ACCESS-TIMESTAMP", ts)
            .header("CB-ACCESS-PASSPHRASE", passphrase)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", format!("cb-{ts}-{method}"))
            .body(body.to_owned())
    };
    // Decimal timestamps are allowed by Coinbase Exchange.
    let ts = format!("{}.250", gw.now_seconds());
    let get = coinbase("GET", "/v1/ticker?symbol=BTC-USD", "", &ts, &key.passphrase)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200, "{}", get.text().await.unwrap());
    let seen = gw.upstream.last().unwrap();
    for header in [
        "cb-access-key",
        "cb-access-sign",
        "cb-access-timestamp",
        "cb-access-passphrase",
    ] {
        assert!(
            !seen.headers.contains_key(header),
            "{header} reached the upstream"
        );
    }
    assert_eq!(
        seen.headers
            .get("tollgate-signature-scheme")
            .and_then(|v| v.to_str().ok()),
        Some("coinbase-hmac-sha256")
    );
    let ts = gw.now_seconds().to_string();
    let post = coinbase(
        "POST",
        "/v1/orders",
        r#"{"size":"0.01","side":"buy"}"#,
        &ts,
        &key.passphrase,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(post.status(), 200);
    // The right signature with a wrong passphrase.
    gw.clock.advance_millis(1000);
    let ts = gw.now_seconds().to_string();
    let wrong = coinbase("GET", "/v1/ticker", "", &ts, "not-the-passphrase")
        .send()
        .await
        .unwrap();
    expect_problem(wrong, 401, "bad_signature").await;
    // The query is part of Coinbase's requestPath: dropping it from the
    // signature fails.
    let sig = coinbase_signature(&key.secret, &ts, "GET", "/v1/ticker", "");
    let no_query = gw
        .http
        .get(gw.url("/v1/ticker?symbol=ETH-USD"))
        .header("CB-ACCESS-KEY", &key.key)
        .header("CB-ACCESS-SIGN", sig)
        .header("CB-ACCESS-TIMESTAMP", &ts)
        .header("CB-ACCESS-PASSPHRASE", &key.passphrase)
        .send()
        .await
        .unwrap();
    expect_problem(no_query, 401, "bad_signature").await;
    assert_eq!(gw.upstream.count(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn rotation_keeps_the_old_secret_for_the_overlap_only() {
    let gw = gateway().await;
    let org = gw.create_org(Some("full")).await;
    let old = signed_key(&gw, &org, json!({ "signature": "all" })).await;
    let (status, rotated) = gw
        .admin_call(
            reqwest::Method::POST,
            &format!("/keys/{}/signing-secrets", old.id),
            Some(json!({ "overlap_seconds": 60 })),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = SignedKey {
        secret: rotated["signing_secret"].as_str().unwrap().to_owned(),
        passphrase: rotated["passphrase"].as_str().unwrap().to_owned(),
        ..clone_key(&old)
    };
    assert_ne!(new.secret, old.secret);
    assert_eq!(
        rotated["credentials"]["signing_secrets"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let call_at = |gw: &TestGateway| Call {
        method: "GET",
        path: "/v1/ticker",
        query: "",
        body: "",
        timestamp: gw.now_seconds().to_string(),
    };
    let call = call_at(&gw);
    for (i, key) in [&old, &new].into_iter().enumerate() {
        let sig = tollgate_signature(key, &call);
        assert_eq!(
            send(&gw, key, &call, &sig, &format!("o{i}")).await.status(),
            200
        );
    }
    gw.clock.advance_millis(61_000);
    let call = call_at(&gw);
    let sig = tollgate_signature(&old, &call);
    expect_problem(
        send(&gw, &old, &call, &sig, "late").await,
        401,
        "bad_signature",
    )
    .await;
    let sig = tollgate_signature(&new, &call);
    assert_eq!(send(&gw, &new, &call, &sig, "new").await.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_and_need_the_same_master_key() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let (upstream, addr) = common::start_upstream().await;
    let mut config = common::test_config(addr, &dir.path().join("tollgate.db"));
    with_signing(&mut config);
    let clock = || {
        use tollgate_gateway::Clock;
        let now = tollgate_gateway::SystemClock.now();
        tollgate_gateway::ManualClock::new(UnixMillis(now.0 / 1000 * 1000))
    };
    let gw = TestGateway::start_on(config.clone(), upstream.clone(), dir.clone(), clock()).await;
    let org = gw.create_org(Some("full")).await;
    let key = signed_key(&gw, &org, json!({ "signature": "all" })).await;
    // Listings never show the secret.
    let (_, view) = gw
        .admin_call(reqwest::Method::GET, &format!("/keys/{}", key.id), None)
        .await;
    assert!(!view.to_string().contains(&key.secret));
    assert!(
        view["credentials"]["signing_secrets"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("ss_")
    );
    gw.stop().await;
    // Neither the secret's base64 nor its raw bytes are in the database.
    let raw = signing::decode_secret(&key.secret).unwrap();
    for file in std::fs::read_dir(dir.path()).unwrap() {
        // The WAL and shared-memory files may be gone by now.
        let Ok(bytes) = std::fs::read(file.unwrap().path()) else {
            continue;
        };
        assert!(!bytes.windows(raw.len()).any(|w| w == raw.as_slice()));
        let text = key.secret.as_bytes();
        assert!(!bytes.windows(text.len()).any(|w| w == text));
    }
    // Restarted with the same master key: the secret still verifies.
    let gw = TestGateway::start_on(config.clone(), upstream, dir.clone(), clock()).await;
    let call = Call {
        method: "GET",
        path: "/v1/ticker",
        query: "",
        body: "",
        timestamp: gw.now_seconds().to_string(),
    };
    let sig = tollgate_signature(&key, &call);
    assert_eq!(send(&gw, &key, &call, &sig, "x").await.status(), 200);
    gw.stop().await;
    // Another master key cannot open it: the gateway refuses to start.
    config.credentials.master_key = Some(STANDARD.encode([7u8; 32]));
    let listeners = tollgate_gateway::Listeners {
        ingress: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tls: None,
        egress: None,
    };
    let error = tollgate_gateway::run(config, listeners, std::future::pending())
        .await
        .expect_err("must not start");
    let text = format!("{error:#}");
    assert!(text.contains("could not be opened"), "{text}");
}

#[tokio::test]
async fn admin_refuses_policies_that_cannot_be_met() {
    let gw = gateway().await;
    let org = gw.create_org(Some("full")).await;
    let (id, _) = gw.create_key(&org, json!({ "name": "plain" })).await;
    let (status, body) = gw
        .admin_call(
            reqwest::Method::PUT,
            &format!("/keys/{id}/credentials"),
            Some(json!({ "signature": "write" })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("signing secret"));
    let (status, body) = gw
        .admin_call(
            reqwest::Method::PUT,
            &format!("/keys/{id}/credentials"),
            Some(json!({ "certificate": "all" })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    gw.stop().await;
    // Without a master key, no signing secret can be made.
    let gw = TestGateway::start().await;
    let org = gw.create_org(Some("full")).await;
    let (status, body) = gw
        .admin_call(
            reqwest::Method::POST,
            &format!("/orgs/{org}/keys"),
            Some(json!({ "name": "bot", "signing_secret": true })),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "master_key_missing");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("TOLLGATE_MASTER_KEY")
    );
    gw.stop().await;
}
