//! Helpers shared by the router's integration tests.

/// A problem+json answer's status, `Retry-After` (seconds) and `code`.
pub async fn problem(response: reqwest::Response) -> (u16, Option<u64>, String) {
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (
        status,
        retry,
        body["code"].as_str().unwrap_or_default().to_owned(),
    )
}
