//! The admin API over real HTTP: authentication, validation, listings that
//! never leak secrets, health, readiness and the OpenAPI document.

mod common;

use common::{ADMIN_TOKEN, TestGateway};
use reqwest::Method;
use serde_json::{Value, json};

async fn problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    body
}

#[tokio::test]
async fn admin_api_requires_the_token() {
    let gw = TestGateway::start().await;
    let url = format!("http://{}/admin/v1/orgs", gw.admin);
    let none = gw.http.get(&url).send().await.expect("req");
    assert_eq!(
        none.headers()["www-authenticate"],
        "Bearer realm=\"tollgate-admin\""
    );
    problem(none, 401, "admin_unauthorized").await;
    let wrong = gw
        .http
        .get(&url)
        .bearer_auth("test-admin-token-0123456780")
        .send()
        .await
        .expect("req");
    problem(wrong, 401, "admin_unauthorized").await;
    let post = gw
        .http
        .post(&url)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .expect("req");
    problem(post, 401, "admin_unauthorized").await;
    let ok = gw
        .http
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("req");
    assert_eq!(ok.status(), 200);
    // Health, readiness, metrics and the OpenAPI document need no token.
    for path in ["/healthz", "/readyz", "/metrics", "/admin/v1/openapi.json"] {
        let r = gw
            .http
            .get(format!("http://{}{path}", gw.admin))
            .send()
            .await
            .expect("req");
        assert_eq!(r.status(), 200, "{path}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn org_lifecycle_and_listing() {
    let gw = TestGateway::start().await;
    let (status, created) = gw
        .admin_call(
            Method::POST,
            "/orgs",
            Some(json!({"name": "  Alpha Desk ", "plan": "basic"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(created["name"], "Alpha Desk");
    assert_eq!(created["status"], "active");
    assert_eq!(created["plan"], "basic");
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("org_"));

    let (status, got) = gw
        .admin_call(Method::GET, &format!("/orgs/{id}"), None)
        .await;
    assert_eq!((status, &got["id"]), (200, &created["id"]));
    let (_, suspended) = gw
        .admin_call(Method::POST, &format!("/orgs/{id}/suspend"), None)
        .await;
    assert_eq!(suspended["status"], "suspended");
    let (_, active) = gw
        .admin_call(Method::POST, &format!("/orgs/{id}/activate"), None)
        .await;
    assert_eq!(active["status"], "active");
    let (_, cleared) = gw
        .admin_call(
            Method::PUT,
            &format!("/orgs/{id}/plan"),
            Some(json!({"plan": null})),
        )
        .await;
    assert_eq!(cleared["plan"], Value::Null);
    let (status, body) = gw
        .admin_call(Method::PUT, &format!("/orgs/{id}/plan"), Some(json!({})))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request")),
        "a missing plan is not a removal"
    );
    let (status, _) = gw
        .admin_call(
            Method::PUT,
            &format!("/orgs/{id}/plan"),
            Some(json!({"plan": 7})),
        )
        .await;
    assert_eq!(status, 400);

    for _ in 0..3 {
        gw.create_org(None).await;
    }
    let (_, page) = gw.admin_call(Method::GET, "/orgs?limit=2", None).await;
    assert_eq!(page["data"].as_array().expect("data").len(), 2);
    let after = page["next_after"].as_str().expect("more pages");
    let (_, rest) = gw
        .admin_call(Method::GET, &format!("/orgs?limit=2&after={after}"), None)
        .await;
    assert_eq!(rest["data"].as_array().expect("data").len(), 2);
    assert_eq!(rest["next_after"].as_str().map(|_| ()), Some(()));
    let (_, last) = gw
        .admin_call(
            Method::GET,
            &format!(
                "/orgs?limit=2&after={}",
                rest["next_after"].as_str().expect("s")
            ),
            None,
        )
        .await;
    assert_eq!(last["data"].as_array().expect("data").len(), 0);
    assert_eq!(last["next_after"], Value::Null);
    gw.stop().await;
}

#[tokio::test]
async fn admin_validation_errors_are_problems() {
    let gw = TestGateway::start().await;
    let url = |p: &str| format!("http://{}/admin/v1{p}", gw.admin);
    let bad_json = gw
        .http
        .post(url("/orgs"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("req");
    problem(bad_json, 400, "invalid_request").await;
    let unknown_field = gw
        .http
        .post(url("/orgs"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "x", "colour": "red"}))
        .send()
        .await
        .expect("req");
    problem(unknown_field, 400, "invalid_request").await;
    let empty_name = gw
        .http
        .post(url("/orgs"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "  "}))
        .send()
        .await
        .expect("req");
    problem(empty_name, 400, "invalid_request").await;
    let plan = gw
        .http
        .post(url("/orgs"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "x", "plan": "gold"}))
        .send()
        .await
        .expect("req");
    let body = problem(plan, 400, "unknown_plan").await;
    assert!(
        body["detail"].as_str().expect("detail").contains("basic"),
        "lists the configured plans"
    );
    let missing = gw
        .http
        .get(url("/orgs/org_aaaaaaaaaaaaaaaa"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("req");
    problem(missing, 404, "org_not_found").await;
    let malformed = gw
        .http
        .get(url("/orgs/../../etc"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("req");
    assert_eq!(malformed.status(), 404);
    let no_endpoint = gw
        .http
        .get(url("/nothing"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("req");
    problem(no_endpoint, 404, "not_found").await;
    let wrong_method = gw
        .http
        .delete(url("/orgs"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("req");
    problem(wrong_method, 405, "method_not_allowed").await;

    let org = gw.create_org(None).await;
    let product = gw
        .http
        .post(url(&format!("/orgs/{org}/keys")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "k", "products": ["gold"]}))
        .send()
        .await
        .expect("req");
    problem(product, 400, "unknown_product").await;
    let none = gw
        .http
        .post(url(&format!("/orgs/{org}/keys")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "k", "products": []}))
        .send()
        .await
        .expect("req");
    problem(none, 400, "invalid_request").await;
    let past = gw
        .http
        .post(url(&format!("/orgs/{org}/keys")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "k", "expires_at": "2001-01-01T00:00:00Z"}))
        .send()
        .await
        .expect("req");
    problem(past, 400, "invalid_request").await;
    let not_a_time = gw
        .http
        .post(url(&format!("/orgs/{org}/keys")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "k", "expires_at": "tomorrow"}))
        .send()
        .await
        .expect("req");
    problem(not_a_time, 400, "invalid_request").await;
    let no_org = gw
        .http
        .post(url("/orgs/org_bbbbbbbbbbbbbbbb/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "k"}))
        .send()
        .await
        .expect("req");
    problem(no_org, 404, "org_not_found").await;
    let no_key = gw
        .http
        .post(url("/keys/aaaaaaaaaaaaaaaa/revoke"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("req");
    problem(no_key, 404, "key_not_found").await;
    let long_overlap = gw
        .http
        .post(url("/keys/aaaaaaaaaaaaaaaa/rotate"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"overlap_seconds": 99999999}))
        .send()
        .await
        .expect("req");
    problem(long_overlap, 400, "invalid_request").await;
    gw.stop().await;
}

#[tokio::test]
async fn secrets_are_shown_once_and_never_listed() {
    let gw = TestGateway::start().await;
    let org = gw.create_org(None).await;
    let (status, created) = gw
        .admin_call(
            Method::POST,
            &format!("/orgs/{org}/keys"),
            Some(json!({"name": "bot", "products": ["market-data"]})),
        )
        .await;
    assert_eq!(status, 201);
    let key = created["key"].as_str().expect("key").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(key.len(), "tg_".len() + 16 + 1 + 32);
    let secret = &key[20..];

    let (_, listed) = gw
        .admin_call(Method::GET, &format!("/orgs/{org}/keys"), None)
        .await;
    let (_, single) = gw
        .admin_call(Method::GET, &format!("/keys/{id}"), None)
        .await;
    for text in [listed.to_string(), single.to_string()] {
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains("\"key\""), "{text}");
        assert!(!text.contains("hash"), "{text}");
    }
    assert_eq!(listed["data"][0]["id"], id.as_str());
    assert_eq!(single["products"], json!(["market-data"]));
    assert_eq!(single["status"], "active");

    // A revoked key cannot be rotated back to life.
    gw.admin_call(Method::POST, &format!("/keys/{id}/revoke"), None)
        .await;
    let (status, body) = gw
        .admin_call(Method::POST, &format!("/keys/{id}/rotate"), None)
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("key_revoked")));
    gw.stop().await;
}

#[tokio::test]
async fn openapi_document_lists_every_admin_path() {
    let gw = TestGateway::start().await;
    let doc: Value = gw
        .http
        .get(format!("http://{}/admin/v1/openapi.json", gw.admin))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    let expected = [
        ("/admin/v1/orgs", vec!["get", "post"]),
        ("/admin/v1/orgs/{id}", vec!["get"]),
        ("/admin/v1/orgs/{id}/suspend", vec!["post"]),
        ("/admin/v1/orgs/{id}/activate", vec!["post"]),
        ("/admin/v1/orgs/{id}/plan", vec!["put"]),
        ("/admin/v1/orgs/{id}/pay-as-you-go", vec!["put"]),
        ("/admin/v1/orgs/{id}/commitments", vec!["get", "post"]),
        ("/admin/v1/orgs/{id}/usage", vec!["get"]),
        ("/admin/v1/orgs/{id}/keys", vec!["get", "post"]),
        ("/admin/v1/keys/{id}", vec!["get"]),
        ("/admin/v1/keys/{id}/revoke", vec!["post"]),
        ("/admin/v1/keys/{id}/rotate", vec!["post"]),
        ("/admin/v1/keys/{id}/quotas", vec!["put"]),
        ("/admin/v1/orgs/{id}/balance", vec!["get"]),
        ("/admin/v1/orgs/{id}/account", vec!["put"]),
        ("/admin/v1/orgs/{id}/autocharge", vec!["put"]),
        ("/admin/v1/orgs/{id}/top-ups", vec!["post"]),
        ("/admin/v1/orgs/{id}/adjustments", vec!["post"]),
        ("/admin/v1/orgs/{id}/refunds", vec!["post"]),
        ("/admin/v1/orgs/{id}/ledger", vec!["get"]),
        ("/admin/v1/orgs/{id}/charged", vec!["get"]),
        ("/admin/v1/orgs/{id}/notifications", vec!["get"]),
        ("/admin/v1/keys/{id}/credentials", vec!["put"]),
        ("/admin/v1/keys/{id}/signing-secrets", vec!["post"]),
        ("/admin/v1/keys/{id}/certificate-pins", vec!["post"]),
        (
            "/admin/v1/keys/{id}/certificate-pins/{thumbprint}",
            vec!["delete"],
        ),
    ];
    assert_eq!(
        paths.len(),
        expected.len(),
        "documented paths: {:?}",
        paths.keys()
    );
    for (path, methods) in expected {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} documented"));
        for method in methods {
            assert!(item.get(method).is_some(), "{method} {path} documented");
            // And it exists: an unauthenticated call gets 401, not 404/405.
            let concrete = path.replace("{id}", "org_aaaaaaaaaaaaaaaa");
            let response = gw
                .http
                .request(
                    method.to_uppercase().parse().expect("method"),
                    format!("http://{}{concrete}", gw.admin),
                )
                .send()
                .await
                .expect("req");
            assert_eq!(response.status(), 401, "{method} {path} is served");
        }
    }
    gw.stop().await;
}
