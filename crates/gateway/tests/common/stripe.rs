//! A fake of Stripe's `POST /v1/payment_intents`, following Stripe's
//! documented request and response shapes: form-encoded body, `Bearer
//! sk_test_…`, a `Request-Id` on every answer, `{"error": {type, code,
//! message, param, decline_code, payment_intent}}` on failure, and
//! idempotency keys as Stripe documents them: the first answer is stored once
//! execution began and replayed with `Idempotent-Replayed: true` for the same
//! key and parameters; other parameters get 400 `idempotency_error`; a key
//! whose first request is still running gets 409 `idempotency_key_in_use`;
//! a request that fails validation is not stored. Test payment methods:
//! `pm_card_visa` succeeds, `pm_card_chargeDeclined` is declined (402
//! `card_declined`), `pm_card_authenticationRequired` fails off-session with
//! 402 `authentication_required` and leaves the PaymentIntent in
//! `requires_payment_method`. `stall_next` makes the next calls execute and
//! store their result but answer only once the test calls `release`, so a
//! client that gives up first does not know the outcome.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// One call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    pub idempotency_key: Option<String>,
    pub params: HashMap<String, String>,
}

/// A stored first answer: the parameters it was for, its status and body.
type Stored = (HashMap<String, String>, u16, Value);

#[derive(Clone, Default)]
pub struct FakeStripe {
    pub calls: Arc<Mutex<Vec<Call>>>,
    /// Idempotency key -> (params, status, body).
    stored: Arc<Mutex<HashMap<String, Stored>>>,
    /// Keys whose first request is executing.
    running: Arc<Mutex<std::collections::HashSet<String>>>,
    sequence: Arc<Mutex<u64>>,
    /// The next this many calls answer only once `release` is called.
    pub stall_next: Arc<Mutex<u32>>,
    released: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeStripe {
    /// Lets stalled calls finish, and waits until none is running.
    pub async fn release(&self) {
        self.released
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for _ in 0..200 {
            if self.running.lock().is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("stalled calls did not finish");
    }
}

async fn until(flag: &std::sync::atomic::AtomicBool) {
    while !flag.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn error(status: StatusCode, kind: &str, code: &str, message: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"error": {"type": kind, "code": code, "message": message, "doc_url": format!("https://stripe.com/docs/error-codes/{code}")}});
    if let (Some(map), Some(extra)) = (body["error"].as_object_mut(), extra.as_object()) {
        map.extend(extra.clone());
    }
    (status.as_u16(), body)
}

async fn payment_intents(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let request_id = {
        let mut n = fake.sequence.lock();
        *n += 1;
        format!("req_fake{:010}", *n)
    };
    let params: HashMap<String, String> = form_urlencoded_pairs(&body);
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    fake.calls.lock().push(Call {
        idempotency_key: key.clone(),
        params: params.clone(),
    });
    let answer = |status: u16, body: Value, replayed: bool| {
        let mut response = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            axum::Json(body),
        )
            .into_response();
        response
            .headers_mut()
            .insert("request-id", request_id.parse().expect("id"));
        if replayed {
            response
                .headers_mut()
                .insert("idempotent-replayed", "true".parse().expect("value"));
        }
        response
    };
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer sk_test_"));
    if !authorized {
        let (status, body) = error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "api_key_invalid",
            "Invalid API Key provided",
            json!({}),
        );
        return answer(status, body, false);
    }
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        let (status, body) = error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "parameter_invalid",
            "Request bodies must be form-encoded (application/x-www-form-urlencoded).",
            json!({}),
        );
        return answer(status, body, false);
    }
    if let Some(key) = &key {
        if fake.running.lock().contains(key) {
            let (status, body) = error(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "idempotency_key_in_use",
                "There is currently another in-progress request using this Stripe token (probably the same idempotent key).",
                json!({}),
            );
            return answer(status, body, false);
        }
        if let Some((stored_params, status, body)) = fake.stored.lock().get(key).cloned() {
            if stored_params != params {
                let mut body = json!({"error": {"type": "idempotency_error", "message": format!("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request.")}});
                body["error"]["doc_url"] =
                    "https://stripe.com/docs/error-codes/idempotency-error".into();
                return answer(400, body, false);
            }
            return answer(status, body, true);
        }
    }
    let (status, body) = match validate(&params) {
        // Validation failed: execution never began, nothing is stored.
        Err((status, body)) => return answer(status, body, false),
        Ok(amount) => decide(&params, amount, &fake),
    };
    let stall = {
        let mut next = fake.stall_next.lock();
        let stall = *next > 0;
        *next = next.saturating_sub(1);
        stall
    };
    if let Some(key) = key {
        fake.stored
            .lock()
            .insert(key.clone(), (params, status, body.clone()));
        if stall {
            // Running until released, whether or not the client waits
            // (hyper drops this future when the client leaves).
            fake.running.lock().insert(key.clone());
            let (running, released) = (Arc::clone(&fake.running), Arc::clone(&fake.released));
            tokio::spawn(async move {
                until(&released).await;
                running.lock().remove(&key);
            });
            until(&fake.released).await;
        }
    }
    answer(status, body, false)
}

/// Parameter validation; the amount in cents when it passes.
fn validate(params: &HashMap<String, String>) -> Result<i64, (u16, Value)> {
    for required in ["amount", "currency", "customer", "payment_method"] {
        if !params.contains_key(required) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "parameter_missing",
                &format!("Missing required param: {required}."),
                json!({"param": required}),
            ));
        }
    }
    let Some(amount) = params["amount"].parse::<i64>().ok().filter(|a| *a >= 50) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "amount_too_small",
            "Amount must be at least 50 cents",
            json!({"param": "amount"}),
        ));
    };
    if params.get("confirm").map(String::as_str) != Some("true")
        || params.get("off_session").map(String::as_str) != Some("true")
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "parameter_invalid",
            "an off-session top-up needs confirm=true and off_session=true",
            json!({}),
        ));
    }
    Ok(amount)
}

/// The payment itself: what the test payment method does.
fn decide(params: &HashMap<String, String>, amount: i64, fake: &FakeStripe) -> (u16, Value) {
    let id = format!("pi_fake{}", fake.calls.lock().len());
    let intent = |status: &str| json!({"id": id, "object": "payment_intent", "amount": amount, "currency": params["currency"], "customer": params["customer"], "payment_method": params["payment_method"], "status": status});
    match params["payment_method"].as_str() {
        "pm_card_visa" => (200, intent("succeeded")),
        "pm_card_chargeDeclined" => error(
            StatusCode::PAYMENT_REQUIRED,
            "card_error",
            "card_declined",
            "Your card was declined.",
            json!({"decline_code": "generic_decline", "payment_intent": intent("requires_payment_method")}),
        ),
        "pm_card_authenticationRequired" => error(
            StatusCode::PAYMENT_REQUIRED,
            "card_error",
            "authentication_required",
            "This payment requires authentication.",
            // Off-session, the customer is not there to authenticate: the
            // attempt fails and the PaymentIntent waits for a new method.
            json!({"decline_code": "authentication_required", "payment_intent": intent("requires_payment_method")}),
        ),
        _ => error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "resource_missing",
            "No such PaymentMethod",
            json!({"param": "payment_method"}),
        ),
    }
}

fn form_urlencoded_pairs(body: &str) -> HashMap<String, String> {
    fn decode(text: &str) -> String {
        let bytes = text.replace('+', " ").into_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len()
                && let Ok(b) = u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                )
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('=').map(|(k, v)| (decode(k), decode(v))))
        .collect()
}

/// Starts the fake on a free loopback port.
pub async fn start() -> (FakeStripe, SocketAddr) {
    let fake = FakeStripe::default();
    let app = axum::Router::new()
        .route("/v1/payment_intents", axum::routing::post(payment_intents))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (fake, addr)
}
