//! Places one order through a running `tollgate serve --demo` with a signed
//! request, and prints the answer and its RateLimit fields.
//!
//! ```text
//! TOLLGATE_KEY=tg_... TOLLGATE_SIGNING_SECRET=... \
//!     cargo run -p tollgate-client --example place_order
//! ```
//!
//! Environment:
//! - `TOLLGATE_URL`: the gateway's ingress (default `http://127.0.0.1:8080`)
//! - `TOLLGATE_KEY`: the full API key `tg_<key id>_<secret>` (required)
//! - `TOLLGATE_SIGNING_SECRET`: the key's signing secret, base64 (required)
//! - `TOLLGATE_PASSPHRASE`: the passphrase (required with the Coinbase scheme)
//! - `TOLLGATE_SCHEME`: `tollgate` (default) or `coinbase`

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use tollgate_client::{AuthScheme, Body, Client, Credentials, Method, idempotency_key};

const ORDER: &str = r#"{"symbol":"BTC-USD","side":"buy","qty":"0.01","price":"64000"}"#;

/// A required variable, or a message saying what is missing.
fn required(name: &str, what: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(format!(
            "{name} is not set: export {name}=<{what}> (see crates/client/README.md)"
        )),
    }
}

async fn run() -> Result<bool, String> {
    let url = std::env::var("TOLLGATE_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".to_owned());
    let key = required("TOLLGATE_KEY", "the API key, tg_<key id>_<secret>")?;
    let secret = required(
        "TOLLGATE_SIGNING_SECRET",
        "the key's signing secret, base64",
    )?;
    let scheme_name = std::env::var("TOLLGATE_SCHEME").unwrap_or_else(|_| "tollgate".to_owned());
    let scheme = match AuthScheme::parse(&scheme_name) {
        Some(s @ (AuthScheme::Tollgate | AuthScheme::Coinbase)) => s,
        _ => {
            return Err(format!(
                "TOLLGATE_SCHEME must be tollgate or coinbase, not {scheme_name:?}"
            ));
        }
    };

    let mut credentials = Credentials::new(&key)
        .map_err(|e| format!("TOLLGATE_KEY: {e}"))?
        .with_signing_secret(&secret)
        .map_err(|e| format!("TOLLGATE_SIGNING_SECRET: {e}"))?;
    if let Ok(passphrase) = std::env::var("TOLLGATE_PASSPHRASE") {
        credentials = credentials
            .with_passphrase(&passphrase)
            .map_err(|e| format!("TOLLGATE_PASSPHRASE: {e}"))?;
    }
    if scheme == AuthScheme::Coinbase && !credentials.has_passphrase() {
        return Err(
            "TOLLGATE_SCHEME=coinbase needs TOLLGATE_PASSPHRASE: export TOLLGATE_PASSPHRASE=<passphrase>"
                .to_owned(),
        );
    }
    let key_id = credentials.key_id().to_owned();

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the system clock is before 1970".to_owned())?
        .as_secs();
    let idempotency =
        idempotency_key(&key_id, "demo", "BTC-USD", now, 60).map_err(|e| e.to_string())?;

    let client = Client::builder(&url, credentials)
        .scheme(scheme)
        .build()
        .map_err(|e| e.to_string())?;
    println!("POST {url}/v1/orders ({scheme:?} scheme, Idempotency-Key: {idempotency})");
    let response = client
        .send(
            Method::POST,
            "/v1/orders",
            Some(Body::json(ORDER)),
            Some(&idempotency),
        )
        .await
        .map_err(|e| e.to_string())?;

    println!("status: {}", response.status());
    if response.attempts() > 1 {
        println!("attempts: {}", response.attempts());
    }
    if response.is_idempotent_replay() {
        println!(
            "(replayed by the gateway: an order with this key was already placed in this minute)"
        );
    }
    println!("body: {}", response.text());
    match response.rate_limit() {
        Ok(info) if info.is_empty() => println!("no RateLimit headers"),
        Ok(info) => {
            for p in &info.policies {
                let window = p
                    .window_seconds
                    .map_or_else(|| "?".to_owned(), |w| w.to_string());
                println!("policy {:?}: {} per {window} s", p.name, p.quota);
            }
            for l in &info.limits {
                let reset = l
                    .reset_seconds
                    .map_or_else(|| "?".to_owned(), |t| t.to_string());
                println!(
                    "limit {:?}: {} remaining, resets in {reset} s",
                    l.name, l.remaining
                );
            }
            if let Some(retry_after) = info.retry_after {
                println!(
                    "retry after: {:?}",
                    retry_after.delay_from(SystemTime::now())
                );
            }
        }
        Err(e) => println!("RateLimit headers unreadable: {e}"),
    }
    Ok(response.status().is_success())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("place_order: {message}");
            ExitCode::from(2)
        }
    }
}
