//! Step 2, the API key: find it in the request, look it up by key id, compare
//! the secret's hash in constant time, then check status, expiry and product.
//!
//! Where the key is read from: `X-API-Key` if present (so that `Authorization`
//! stays free for a JWT), then `CB-ACCESS-KEY` (a bot using the Coinbase
//! signing scheme), otherwise `Authorization: Bearer tg_…`.

use super::Refusal;
use crate::directory::{Directory, KeyEntry};
use http::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName};
use std::sync::Arc;
use tollgate_core::Rejection;
use tollgate_core::access::{self, DECOY_HASH};
use tollgate_core::api_key::{self, SecretHash};
use tollgate_core::time::UnixMillis;

/// `X-API-Key`
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Where the key was found; the forward step removes it from there so the
/// upstream never sees a tollgate secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `X-API-Key`
    Header,
    /// `Authorization: Bearer`
    Bearer,
    /// `CB-ACCESS-KEY` (the Coinbase signing scheme)
    Coinbase,
}

fn challenge(refusal: Refusal) -> Refusal {
    refusal.with_header(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"tollgate\""),
    )
}

fn invalid(detail: &'static str) -> Refusal {
    challenge(Refusal::new(Rejection::InvalidApiKey, detail))
}

/// The raw key text and where it came from.
pub fn presented(headers: &HeaderMap) -> Result<(&str, KeySource), Refusal> {
    if let Some(value) = headers.get(&X_API_KEY) {
        let text = value
            .to_str()
            .map_err(|_| invalid("the API key is not a valid key"))?;
        return Ok((text.trim(), KeySource::Header));
    }
    if let Some(value) = headers.get(tollgate_core::signing::CB_KEY_HEADER) {
        let text = value
            .to_str()
            .map_err(|_| invalid("the API key is not a valid key"))?;
        return Ok((text.trim(), KeySource::Coinbase));
    }
    if let Some(value) = headers.get(AUTHORIZATION) {
        let text = value
            .to_str()
            .map_err(|_| invalid("the API key is not a valid key"))?;
        let mut parts = text.splitn(2, ' ');
        let scheme = parts.next().unwrap_or_default();
        if scheme.eq_ignore_ascii_case("bearer") {
            let token = parts.next().unwrap_or_default().trim();
            if token.starts_with(api_key::KEY_PREFIX) {
                return Ok((token, KeySource::Bearer));
            }
            return Err(invalid(
                "the Bearer token is not a tollgate API key; when Authorization carries another token, send the key in X-API-Key",
            ));
        }
    }
    Err(challenge(Refusal::new(
        Rejection::MissingApiKey,
        "send the API key as Authorization: Bearer <key> or X-API-Key: <key>",
    )))
}

/// Authenticates the key and checks that it may call `product` now.
pub fn authenticate(
    directory: &Directory,
    headers: &HeaderMap,
    product: &str,
    now: UnixMillis,
) -> Result<(Arc<KeyEntry>, KeySource), Refusal> {
    let (raw, source) = presented(headers)?;
    let Some(parsed) = api_key::parse(raw) else {
        return Err(invalid("the API key is not a valid key"));
    };
    let hash = SecretHash::of(parsed.key_id, parsed.secret);
    let entry = directory.key(parsed.key_id);
    let matched = match &entry {
        Some(entry) => access::secret_matches(&entry.facts, &hash, now),
        None => {
            // Same work as a wrong secret, so timing tells nothing either.
            let _ = DECOY_HASH.matches(&hash);
            false
        }
    };
    let entry = match (entry, matched) {
        (Some(entry), true) => entry,
        _ => return Err(invalid("the API key is not a valid key")),
    };
    access::check_key(&entry.facts, product, now).map_err(|rejection| {
        let detail = match rejection {
            Rejection::ApiKeyRevoked => "this API key was revoked".into(),
            Rejection::ApiKeyExpired => "this API key has expired".into(),
            Rejection::ProductNotAllowed => {
                format!("this API key may not call product {product:?}")
            }
            other => other.title().into(),
        };
        Refusal::new(rejection, detail)
    })?;
    Ok((entry, source))
}
