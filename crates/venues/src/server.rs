//! The egress listener: bots send `/{venue}/<the venue's own path>`.

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

use crate::router::{LocalRefusal, Outcome, Router};

#[derive(Clone)]
struct Egress {
    router: Arc<Router>,
    max_body_bytes: usize,
}

/// Serves the router on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Arc<Router>,
    max_body_bytes: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route(
            "/_tollgate/venues",
            axum::routing::get(
                |State(e): State<Egress>| async move { axum::Json(e.router.snapshot()) },
            ),
        )
        .fallback(route)
        .with_state(Egress {
            router,
            max_body_bytes,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn route(State(egress): State<Egress>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let (venue, rest) = match trimmed.find('/') {
        Some(i) => (&trimmed[..i], &trimmed[i..]),
        None => (trimmed, "/"),
    };
    if !egress.router.has_venue(venue) {
        return problem(
            StatusCode::NOT_FOUND,
            "unknown_venue",
            "Unknown venue",
            format!("no venue named {venue:?} is configured; send /{{venue}}/<path>"),
            None,
        );
    }
    let body = match axum::body::to_bytes(body, egress.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "Request body too large",
                format!("the body exceeds {} bytes", egress.max_body_bytes),
                None,
            );
        }
    };
    let query = parts.uri.query().unwrap_or("");
    let Some(outcome) = egress
        .router
        .route(venue, parts.method, rest, query, body, &parts.headers)
        .await
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match outcome {
        Outcome::Venue {
            status,
            headers,
            body,
            waited,
        } => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            for (name, value) in &headers {
                if !matches!(
                    name.as_str(),
                    "connection" | "keep-alive" | "transfer-encoding" | "content-length"
                ) {
                    response.headers_mut().append(name, value.clone());
                }
            }
            if let Ok(v) = HeaderValue::from_str(&waited.as_millis().to_string()) {
                response.headers_mut().insert("tollgate-venue-wait-ms", v);
            }
            response
        }
        Outcome::Refused(LocalRefusal::Capacity { retry_after_ms }) => problem(
            StatusCode::TOO_MANY_REQUESTS,
            "venue_capacity",
            "Venue capacity not available in time",
            format!(
                "{venue}: the venue's limits leave no room within the queue bound; nothing was sent"
            ),
            Some(retry_after_ms),
        ),
        Outcome::Refused(LocalRefusal::Backoff {
            retry_after_ms,
            banned,
        }) => problem(
            StatusCode::TOO_MANY_REQUESTS,
            if banned {
                "venue_banned"
            } else {
                "venue_backoff"
            },
            if banned {
                "Venue ban in force"
            } else {
                "Backing off after a venue refusal"
            },
            format!("{venue}: the venue asked us to wait; nothing was sent"),
            Some(retry_after_ms),
        ),
        Outcome::Refused(LocalRefusal::TooExpensive { bucket }) => problem(
            StatusCode::BAD_REQUEST,
            "venue_cost_exceeds_limit",
            "Call costs more than the venue allows",
            format!("{venue}: this call costs more than bucket {bucket:?} can ever hold"),
            None,
        ),
        Outcome::Unreachable(reason) => problem(
            StatusCode::BAD_GATEWAY,
            "venue_unreachable",
            "Venue unreachable",
            format!("{venue}: {reason}"),
            None,
        ),
        Outcome::Timeout => problem(
            StatusCode::GATEWAY_TIMEOUT,
            "venue_timeout",
            "Venue did not answer in time",
            format!(
                "{venue}: no answer within the timeout; the call may or may not have taken effect (check before sending it again)"
            ),
            None,
        ),
        Outcome::ConnectionLost(reason) => problem(
            StatusCode::GATEWAY_TIMEOUT,
            "venue_connection_lost",
            "Venue connection lost",
            format!(
                "{venue}: the connection broke after the call may have been sent ({reason}); the call may or may not have taken effect (check before sending it again)"
            ),
            None,
        ),
        Outcome::BadRequest(reason) => problem(
            StatusCode::BAD_REQUEST,
            "venue_bad_request",
            "Call cannot be sent",
            format!("{venue}: {reason}"),
            None,
        ),
        Outcome::AuthFailed(reason) => problem(
            StatusCode::BAD_GATEWAY,
            "venue_auth_failed",
            "Venue authentication failed",
            format!("{venue}: {reason}"),
            None,
        ),
    }
}

fn problem(
    status: StatusCode,
    code: &str,
    title: &str,
    detail: String,
    retry_after_ms: Option<u64>,
) -> Response {
    let body = serde_json::json!({
        "type": format!("urn:tollgate:problem:{code}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Some(ms) = retry_after_ms {
        // Whole seconds, rounded up: never earlier than capacity returns.
        let seconds = ms.div_ceil(1000).max(1);
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    response
}
