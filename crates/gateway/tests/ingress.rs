//! The ingress pipeline over real HTTP: every rejection of steps 1-3 with its
//! status and code and an untouched upstream, and what forwarding does to
//! headers and bodies.

mod common;

use common::{TestGateway, expect_problem, raw_exchange};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use tollgate_gateway::Clock;

#[tokio::test]
async fn allowed_request_is_forwarded_with_clean_headers() {
    let gw = TestGateway::start().await;
    let (org, key_id, key) = gw.org_and_key().await;
    let response = gw
        .http
        .get(gw.url("/v1/ticker?symbol=BTC-USD&depth=2"))
        .bearer_auth(&key)
        .header("X-Forwarded-For", "203.0.113.9")
        .header("Tollgate-Org-Id", "org_forgedforgedforg")
        .header("Tollgate-Usage", "order_sent=0")
        .header("Connection", "keep-alive, X-Hop")
        .header("X-Hop", "must not pass")
        .header("X-Custom", "passes")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    assert!(uuid_like(&request_id), "{request_id}");
    assert_eq!(response.headers()["x-upstream"], "yes");
    assert!(
        response.headers().get("tollgate-usage").is_none(),
        "usage report stripped"
    );
    assert!(
        response.headers().get("keep-alive").is_none(),
        "hop-by-hop stripped"
    );

    let seen = gw.upstream.last().expect("upstream saw it");
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.uri, "/v1/ticker?symbol=BTC-USD&depth=2");
    let h = &seen.headers;
    assert_eq!(h["x-request-id"], request_id.as_str());
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(
        h["tollgate-org-id"],
        org.as_str(),
        "client's forged value replaced"
    );
    assert_eq!(h["tollgate-key-id"], key_id.as_str());
    assert_eq!(h["tollgate-product"], "market-data");
    assert_eq!(h["tollgate-route-class"], "read");
    assert!(
        h.get("tollgate-usage").is_none(),
        "client may not set tollgate headers"
    );
    assert!(
        h.get("authorization").is_none(),
        "the API key never reaches the upstream"
    );
    assert!(
        h.get("x-hop").is_none(),
        "headers named in Connection are hop-by-hop"
    );
    assert_eq!(h["x-custom"], "passes");
    assert!(
        h["x-forwarded-host"]
            .to_str()
            .expect("host")
            .starts_with("127.0.0.1:")
    );
    gw.stop().await;
}

fn uuid_like(id: &str) -> bool {
    id.len() == 36 && id.bytes().filter(|b| *b == b'-').count() == 4
}

#[tokio::test]
async fn valid_client_request_id_is_kept_and_invalid_one_replaced() {
    let gw = TestGateway::start().await;
    let (_, _, key) = gw.org_and_key().await;
    let kept = gw
        .http
        .get(gw.url("/v1/ticker"))
        .bearer_auth(&key)
        .header("X-Request-Id", "client-id.42:a_b")
        .send()
        .await
        .expect("request");
    assert_eq!(kept.headers()["x-request-id"], "client-id.42:a_b");
    assert_eq!(
        gw.upstream.last().expect("seen").headers["x-request-id"],
        "client-id.42:a_b"
    );

    let replaced = gw
        .http
        .get(gw.url("/v1/ticker"))
        .bearer_auth(&key)
        .header("X-Request-Id", "bad id with spaces")
        .send()
        .await
        .expect("request");
    assert!(uuid_like(
        replaced.headers()["x-request-id"].to_str().expect("id")
    ));

    // Rejections carry the client's id too.
    let refused = gw
        .http
        .get(gw.url("/v1/ticker"))
        .header("X-Request-Id", "trace-77")
        .send()
        .await
        .expect("request");
    let body = expect_problem(refused, 401, "missing_api_key").await;
    assert_eq!(body["request_id"], "trace-77");
    gw.stop().await;
}

#[tokio::test]
async fn key_is_accepted_in_x_api_key_and_bearer() {
    let gw = TestGateway::start().await;
    let (_, _, key) = gw.org_and_key().await;
    let via_header = gw
        .http
        .get(gw.url("/v1/ticker"))
        .header("X-API-Key", &key)
        .send()
        .await
        .expect("req");
    assert_eq!(via_header.status(), 200);
    assert!(
        gw.upstream
            .last()
            .expect("seen")
            .headers
            .get("x-api-key")
            .is_none()
    );
    // With X-API-Key present, Authorization is left for another credential and forwarded.
    let both = gw
        .http
        .get(gw.url("/v1/ticker"))
        .header("X-API-Key", &key)
        .header("Authorization", "Bearer some.jwt.token")
        .send()
        .await
        .expect("req");
    assert_eq!(both.status(), 200);
    assert_eq!(
        gw.upstream.last().expect("seen").headers["authorization"],
        "Bearer some.jwt.token"
    );
    let lower_scheme = gw
        .http
        .get(gw.url("/v1/ticker"))
        .header("Authorization", format!("bearer {key}"))
        .send()
        .await
        .expect("req");
    assert_eq!(lower_scheme.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn missing_malformed_unknown_and_wrong_keys_are_refused_alike() {
    let gw = TestGateway::start().await;
    let (_, key_id, key) = gw.org_and_key().await;
    let before = gw.upstream.count();

    let missing = gw.get("/v1/ticker", None).await;
    assert_eq!(
        missing.headers()["www-authenticate"],
        "Bearer realm=\"tollgate\""
    );
    expect_problem(missing, 401, "missing_api_key").await;
    let basic = gw
        .http
        .get(gw.url("/v1/ticker"))
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .expect("req");
    expect_problem(basic, 401, "missing_api_key").await;

    let malformed = expect_problem(
        gw.get("/v1/ticker", Some("tg_nonsense")).await,
        401,
        "invalid_api_key",
    )
    .await;
    let unknown_id = format!("tg_{}_{}", "a".repeat(16), &key[20..]);
    let unknown = expect_problem(
        gw.get("/v1/ticker", Some(&unknown_id)).await,
        401,
        "invalid_api_key",
    )
    .await;
    let mut wrong_secret = key.clone();
    let last = wrong_secret.pop().expect("char");
    wrong_secret.push(if last == 'a' { 'b' } else { 'a' });
    let wrong = expect_problem(
        gw.get("/v1/ticker", Some(&wrong_secret)).await,
        401,
        "invalid_api_key",
    )
    .await;
    // No oracle: unknown key id and wrong secret read the same.
    assert_eq!(unknown["detail"], wrong["detail"]);
    assert_eq!(malformed["detail"], wrong["detail"]);
    let not_ours = gw
        .http
        .get(gw.url("/v1/ticker"))
        .header("Authorization", "Bearer eyJhbGciOi.x.y")
        .send()
        .await
        .expect("req");
    expect_problem(not_ours, 401, "invalid_api_key").await;
    let non_ascii = gw
        .http
        .get(gw.url("/v1/ticker"))
        .header(
            "X-API-Key",
            reqwest::header::HeaderValue::from_bytes(b"tg_\xff\xfe").expect("bytes"),
        )
        .send()
        .await
        .expect("req");
    expect_problem(non_ascii, 401, "invalid_api_key").await;

    assert_eq!(
        gw.upstream.count(),
        before,
        "no refused request reached the upstream"
    );
    assert!(key.contains(&key_id));
    gw.stop().await;
}

#[tokio::test]
async fn revocation_and_suspension_apply_to_the_next_request() {
    let gw = TestGateway::start().await;
    let (org, key_id, key) = gw.org_and_key().await;
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    let seen = gw.upstream.count();

    let (status, _) = gw
        .admin_call(Method::POST, &format!("/orgs/{org}/suspend"), None)
        .await;
    assert_eq!(status, 200);
    expect_problem(gw.get("/v1/ticker", Some(&key)).await, 403, "org_suspended").await;
    let (status, _) = gw
        .admin_call(Method::POST, &format!("/orgs/{org}/activate"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);

    let (status, body) = gw
        .admin_call(Method::POST, &format!("/keys/{key_id}/revoke"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "revoked");
    expect_problem(
        gw.get("/v1/ticker", Some(&key)).await,
        403,
        "api_key_revoked",
    )
    .await;
    assert_eq!(
        gw.upstream.count(),
        seen + 1,
        "only the request between the two refusals passed"
    );
    gw.stop().await;
}

#[tokio::test]
async fn expired_key_is_refused() {
    let gw = TestGateway::start().await;
    let org = gw.create_org(None).await;
    let expires = tollgate_core::time::UnixMillis(gw.clock.now().0 + 60_000).to_rfc3339();
    let (_, key) = gw
        .create_key(&org, json!({ "name": "short", "expires_at": expires }))
        .await;
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    let seen = gw.upstream.count();
    gw.clock.advance_millis(60_000);
    expect_problem(
        gw.get("/v1/ticker", Some(&key)).await,
        403,
        "api_key_expired",
    )
    .await;
    assert_eq!(gw.upstream.count(), seen);
    gw.stop().await;
}

#[tokio::test]
async fn product_scope_of_key_and_plan() {
    let gw = TestGateway::start().await;
    let org = gw.create_org(Some("full")).await;
    let (_, data_only) = gw
        .create_key(&org, json!({ "name": "data", "products": ["market-data"] }))
        .await;
    assert_eq!(gw.get("/v1/ticker", Some(&data_only)).await.status(), 200);
    let seen = gw.upstream.count();
    let order = gw
        .http
        .post(gw.url("/v1/orders"))
        .bearer_auth(&data_only)
        .json(&json!({"symbol": "BTC-USD"}))
        .send()
        .await
        .expect("req");
    expect_problem(order, 403, "product_not_allowed").await;

    let basic = gw.create_org(Some("basic")).await;
    let (_, all) = gw
        .create_key(&basic, json!({ "name": "all", "products": ["*"] }))
        .await;
    assert_eq!(gw.get("/v1/ticker", Some(&all)).await.status(), 200);
    expect_problem(
        gw.get("/v1/research/notes/1", Some(&all)).await,
        403,
        "product_not_in_plan",
    )
    .await;
    assert_eq!(gw.upstream.count(), seen + 1);

    // Upgrading the plan opens the product on the next request.
    let (status, _) = gw
        .admin_call(
            Method::PUT,
            &format!("/orgs/{basic}/plan"),
            Some(json!({"plan": "full"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        gw.get("/v1/research/notes/1", Some(&all)).await.status(),
        200
    );
    gw.stop().await;
}

#[tokio::test]
async fn rotation_keeps_the_old_secret_for_the_overlap_only() {
    let gw = TestGateway::start().await;
    let (_, key_id, old) = gw.org_and_key().await;
    let (status, rotated) = gw
        .admin_call(
            Method::POST,
            &format!("/keys/{key_id}/rotate"),
            Some(json!({"overlap_seconds": 30})),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["key"].as_str().expect("new key").to_owned();
    assert_ne!(new, old);
    assert!(new.starts_with(&format!("tg_{key_id}_")), "same key id");
    assert!(rotated["previous_secret_expires_at"].is_string());
    assert_eq!(gw.get("/v1/ticker", Some(&old)).await.status(), 200);
    assert_eq!(gw.get("/v1/ticker", Some(&new)).await.status(), 200);
    gw.clock.advance_millis(30_000);
    expect_problem(
        gw.get("/v1/ticker", Some(&old)).await,
        401,
        "invalid_api_key",
    )
    .await;
    assert_eq!(gw.get("/v1/ticker", Some(&new)).await.status(), 200);

    // A rotation without a body uses the configured default overlap (60 s).
    let (status, second) = gw
        .admin_call(Method::POST, &format!("/keys/{key_id}/rotate"), None)
        .await;
    assert_eq!(status, 200, "{second}");
    let newest = second["key"].as_str().expect("key").to_owned();
    gw.clock.advance_millis(59_000);
    assert_eq!(gw.get("/v1/ticker", Some(&new)).await.status(), 200);
    gw.clock.advance_millis(1_000);
    expect_problem(
        gw.get("/v1/ticker", Some(&new)).await,
        401,
        "invalid_api_key",
    )
    .await;
    assert_eq!(gw.get("/v1/ticker", Some(&newest)).await.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn unknown_route_and_wrong_method() {
    let gw = TestGateway::start().await;
    let (_, _, key) = gw.org_and_key().await;
    let before = gw.upstream.count();
    expect_problem(
        gw.get("/v2/nothing", Some(&key)).await,
        404,
        "route_not_found",
    )
    .await;
    // Route lookup comes first: an unknown path is 404 even without a key.
    expect_problem(gw.get("/v2/nothing", None).await, 404, "route_not_found").await;
    let wrong = gw
        .http
        .put(gw.url("/v1/orders"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("req");
    assert_eq!(wrong.headers()["allow"], "POST");
    expect_problem(wrong, 405, "method_not_allowed").await;
    assert_eq!(gw.upstream.count(), before);
    gw.stop().await;
}

#[tokio::test]
async fn oversized_bodies_and_headers_are_refused() {
    let gw = TestGateway::start().await;
    let (_, _, key) = gw.org_and_key().await;
    let before = gw.upstream.count();
    let declared = gw
        .http
        .post(gw.url("/v1/upload"))
        .bearer_auth(&key)
        .body(vec![b'x'; 2048])
        .send()
        .await
        .expect("req");
    expect_problem(declared, 413, "payload_too_large").await;

    let at_limit = gw
        .http
        .post(gw.url("/v1/upload"))
        .bearer_auth(&key)
        .body(vec![b'x'; 1024])
        .send()
        .await
        .expect("req");
    assert_eq!(at_limit.status(), 200);
    assert_eq!(
        gw.upstream.last().expect("seen").body.len(),
        1024,
        "body streamed intact"
    );

    // Chunked, no Content-Length: counted while streaming.
    let chunk = "x".repeat(600);
    let chunked = format!(
        "POST /v1/upload HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let answer = raw_exchange(gw.ingress, chunked.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");

    let big = "v".repeat(5000);
    let headers = gw
        .http
        .get(gw.url("/v1/ticker"))
        .bearer_auth(&key)
        .header("X-Big", big)
        .send()
        .await
        .expect("req");
    expect_problem(headers, 431, "request_header_too_large").await;
    assert_eq!(
        gw.upstream.count(),
        before + 1,
        "only the request at the limit passed"
    );
    gw.stop().await;
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_upstream_is_504() {
    // A port that nothing listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let gw = TestGateway::start_with(|config| config.upstream.url = format!("http://{free}")).await;
    let (_, _, key) = gw.org_and_key().await;
    expect_problem(
        gw.get("/v1/ticker", Some(&key)).await,
        502,
        "upstream_unavailable",
    )
    .await;
    gw.stop().await;

    let gw = TestGateway::start().await;
    let (_, _, key) = gw.org_and_key().await;
    let started = std::time::Instant::now();
    expect_problem(gw.get("/slow", Some(&key)).await, 504, "upstream_timeout").await;
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "cut at the 1 s request timeout"
    );
    gw.stop().await;
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_garbage_does_not_hurt() {
    let gw = TestGateway::start().await;
    let (_, _, key) = gw.org_and_key().await;
    // Half a request head, then silence: the 500 ms header timeout closes it.
    let started = std::time::Instant::now();
    let answer = raw_exchange(gw.ingress, b"GET /v1/ticker HTTP/1.1\r\nHost: t\r\n").await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(2_900),
        "closed by the server after {elapsed:?}: {answer:?}"
    );
    assert!(!answer.contains("200 OK"));

    for garbage in [
        &b"\x00\x01\x02 not http at all\r\n\r\n"[..],
        b"GET /v1/ticker HTTP/9.9\r\n\r\n",
        b"GET \xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /v1/ticker HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
    ] {
        let answer = raw_exchange(gw.ingress, garbage).await;
        assert!(!answer.contains("200 OK"), "{answer}");
    }
    assert_eq!(
        gw.get("/v1/ticker", Some(&key)).await.status(),
        200,
        "still serving"
    );
    gw.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_code() {
    let gw = TestGateway::start().await;
    let (_, _, key) = gw.org_and_key().await;
    gw.get("/v1/ticker", Some(&key)).await;
    gw.get("/v1/ticker", None).await;
    gw.get("/nope", None).await;
    let text = gw
        .http
        .get(format!("http://{}/metrics", gw.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(r#"tollgate_requests_total{route="/v1/ticker",code="ok"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"tollgate_requests_total{route="/v1/ticker",code="missing_api_key"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"tollgate_requests_total{route="unmatched",code="route_not_found"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("tollgate_request_duration_seconds_bucket{route=\"/v1/ticker\""),
        "{text}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn keys_and_orgs_survive_a_restart() {
    let gw = TestGateway::start().await;
    let (_, _, key) = gw.org_and_key().await;
    let gw = gw.restart(|_| {}).await;
    assert_eq!(gw.get("/v1/ticker", Some(&key)).await.status(), 200);
    gw.stop().await;
}
