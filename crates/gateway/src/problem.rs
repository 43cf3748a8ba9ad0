//! RFC 9457 problem details: the one shape of every error tollgate answers.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use tollgate_core::Rejection;

/// Base of every problem `type` URI; the code follows it.
pub const TYPE_BASE: &str = "urn:tollgate:problem:";

/// The media type of problem bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem body.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// `urn:tollgate:problem:<code>`
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short, the same for every occurrence of the code.
    pub title: String,
    /// HTTP status, repeated in the body.
    pub status: u16,
    /// What happened this time, for a human.
    pub detail: String,
    /// Stable machine-readable code; see docs/errors.md.
    pub code: String,
    /// The request id, also in `X-Request-Id`.
    pub request_id: String,
    /// For 429s: the RateLimit policies that refused (draft-ietf-httpapi-ratelimit-headers).
    #[serde(rename = "violated-policies", skip_serializing_if = "Vec::is_empty")]
    pub violated_policies: Vec<String>,
}

impl Problem {
    /// A problem with an explicit code, status and title.
    pub fn new(
        code: &str,
        status: u16,
        title: &str,
        detail: impl Into<String>,
        request_id: &str,
    ) -> Self {
        Problem {
            type_uri: format!("{TYPE_BASE}{code}"),
            title: title.to_owned(),
            status,
            detail: detail.into(),
            code: code.to_owned(),
            request_id: request_id.to_owned(),
            violated_policies: Vec::new(),
        }
    }

    /// The problem for an ingress rejection.
    pub fn from_rejection(
        rejection: Rejection,
        detail: impl Into<String>,
        request_id: &str,
    ) -> Self {
        Problem::new(
            rejection.code(),
            rejection.status(),
            rejection.title(),
            detail,
            request_id,
        )
    }

    /// Status, headers and body bytes.
    pub fn into_parts(self) -> (StatusCode, HeaderMap, Bytes) {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(value) = HeaderValue::from_str(&self.request_id) {
            headers.insert(&crate::REQUEST_ID, value);
        }
        (status, headers, Bytes::from(body))
    }
}
