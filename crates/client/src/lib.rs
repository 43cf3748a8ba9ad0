//! Rust client SDK for the tollgate gateway.
//!
//! This crate owns what a client needs to talk to tollgate correctly:
//!
//! - **Request signing** in both schemes the gateway accepts, the tollgate
//!   scheme (`Tollgate-Timestamp` / `Tollgate-Signature`) and the Coinbase
//!   scheme (`CB-ACCESS-*`): [`signed_headers`], [`signed_headers_now`] and
//!   [`signed_headers_with_timestamp`]. The timestamp is sent in milliseconds,
//!   `<seconds>.<3 digits>` ([`format_timestamp`]), and signed exactly as
//!   sent. The signed message comes from `tollgate_core::signing`, the same
//!   code the gateway verifies with; nothing here rebuilds a canonical string.
//! - **Deterministic idempotency keys** from (user, venue, instrument, time
//!   window): [`idempotency_key`].
//! - **Parsing** of the `RateLimit-Policy` and `RateLimit` fields
//!   (draft-ietf-httpapi-ratelimit-headers-10) and `Retry-After`:
//!   [`RateLimitInfo`], [`parse_ratelimit_policy`], [`parse_ratelimit`],
//!   [`parse_retry_after`].
//! - **Backoff**: [`RetryPolicy::delay`], exponential with jitter and never
//!   earlier than `Retry-After`.
//! - **An async [`Client`]** that ties these together: it signs each attempt
//!   afresh with a timestamp strictly greater than the last one it sent
//!   ([`next_timestamp`]), since the gateway accepts a signature only once
//!   and two identical requests must therefore differ in timestamp. It keeps
//!   the same `Idempotency-Key` across retries and retries 429 and 409
//!   answers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tollgate_client::Error> {
//! use tollgate_client::{Body, Client, Credentials, Method, idempotency_key};
//!
//! let credentials = Credentials::new("tg_abcdefghijklmnop_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")?
//!     .with_signing_secret("c2lnbmluZy1zZWNyZXQtZm9yLWRvY3MtdmVjdG9ycyE=")?;
//! let key_id = credentials.key_id().to_owned();
//! let client = Client::builder("http://127.0.0.1:8080", credentials)
//!     .max_retries(3)
//!     .build()?;
//! let key = idempotency_key(&key_id, "demo", "BTC-USD", 1_700_000_000, 60)?;
//! let body = Body::json(r#"{"symbol":"BTC-USD","side":"buy","qty":"0.01","price":"64000"}"#);
//! let response = client.send(Method::POST, "/v1/orders", Some(body), Some(&key)).await?;
//! println!("{} {:?}", response.status(), response.rate_limit()?);
//! # Ok(())
//! # }
//! ```
//!
//! The wire formats are documented for other languages in `docs/signing.md`
//! and `docs/idempotency.md`.

#![warn(missing_docs)]

mod backoff;
mod client;
mod error;
mod idempotency;
mod ratelimit;
mod signing;

pub use backoff::{RetryPolicy, random_fraction};
pub use client::{
    Body, Client, ClientBuilder, IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_REPLAYED_HEADER, Response,
    is_retryable, next_timestamp,
};
pub use error::{Error, Result};
pub use idempotency::{
    KEY_PREFIX as IDEMPOTENCY_KEY_PREFIX, idempotency_key, is_valid_key, window_index,
};
pub use ratelimit::{
    LIMIT_HEADER, POLICY_HEADER, QuotaPolicy, RETRY_AFTER_HEADER, RateLimitInfo, RetryAfter,
    ServiceLimit, parse_ratelimit, parse_ratelimit_policy, parse_retry_after,
};
pub use signing::{
    API_KEY_HEADER, AuthScheme, CB_KEY_HEADER, CB_PASSPHRASE_HEADER, CB_SIGN_HEADER,
    CB_TIMESTAMP_HEADER, Credentials, SIGNATURE_HEADER, TIMESTAMP_HEADER, format_timestamp,
    signed_headers, signed_headers_now, signed_headers_with_timestamp,
};

pub use bytes::Bytes;
pub use reqwest::header::{HeaderMap, HeaderValue};
pub use reqwest::{Method, StatusCode};
pub use tollgate_core::signing::Scheme;
