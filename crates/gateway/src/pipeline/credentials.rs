//! Step 4, credentials: what the key's policy demands beyond the key itself,
//! on this route's class.
//!
//! - A client certificate (mTLS listener) matching one of the key's pins.
//! - A JWT from a configured issuer, bound to the key's organization, and,
//!   if it carries `cnf.x5t#S256` (RFC 8705), presented over a connection
//!   whose client certificate has that thumbprint. A claim may choose the
//!   rate class.
//! - An HMAC-SHA256 request signature in the tollgate or Coinbase scheme
//!   (docs/signing.md), inside the route's timestamp window, never seen
//!   before within that window.
//!
//! A signature that is sent is always verified, demanded or not: a client
//! that signs expects a tampered request to be refused.

use super::Refusal;
use crate::directory::{KeyEntry, LiveSecret};
use crate::jwt::{JwtVerifier, TokenError, VerifiedToken};
use http::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, request::Parts};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tollgate_core::Rejection;
use tollgate_core::api_key;
use tollgate_core::credential::Thumbprint;
use tollgate_core::route::RouteClass;
use tollgate_core::signing::{self, Scheme, SignedParts};
use tollgate_core::time::UnixMillis;

/// The connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client's address.
    pub remote: std::net::SocketAddr,
    /// SHA-256 of the client certificate's DER, on the TLS listener.
    pub certificate: Option<Thumbprint>,
    /// Whether the connection is TLS.
    pub tls: bool,
}

impl Peer {
    /// A plain-HTTP peer.
    pub fn plain(remote: std::net::SocketAddr) -> Self {
        Peer {
            remote,
            certificate: None,
            tls: false,
        }
    }
}

/// What step 4 learned.
#[derive(Debug, Default)]
pub struct Verified {
    /// Which signature scheme verified the request, if one did.
    pub scheme: Option<Scheme>,
    /// The verified token, if one was demanded.
    pub token: Option<Arc<VerifiedToken>>,
}

/// Whether the request carries a signature (so its body must be read first).
pub fn signature_sent(headers: &HeaderMap) -> bool {
    headers.contains_key(signing::SIGNATURE_HEADER) || headers.contains_key(signing::CB_SIGN_HEADER)
}

/// Whether step 4 needs the body in memory for this key and class.
pub fn needs_body(headers: &HeaderMap, key: &KeyEntry, class: RouteClass) -> bool {
    signature_sent(headers) || key.credentials.policy.signature.contains(class)
}

/// Signatures seen recently, by signature, with the end of their window.
/// Sharded so concurrent requests rarely meet on a lock.
pub struct ReplayCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
}

struct Shard {
    seen: HashMap<[u8; 32], i64, foldhash::fast::RandomState>,
    sweep_at: usize,
}

const SHARDS: usize = 16;

impl ReplayCache {
    /// Remembers at most `capacity` live signatures.
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(16);
        ReplayCache {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        seen: HashMap::default(),
                        sweep_at: 1024.min(per_shard),
                    })
                })
                .collect(),
            per_shard,
        }
    }

    /// Records `signature` as used until `until`. `Ok(true)` if it is new,
    /// `Ok(false)` if it was seen and its window is not over, `Err` if the
    /// cache is full of live signatures.
    fn first_use(&self, signature: &[u8; 32], until: i64, now: i64) -> Result<bool, ()> {
        let shard = &self.shards[usize::from(signature[0]) % SHARDS];
        let mut shard = shard.lock();
        if let Some(end) = shard.seen.get(signature)
            && *end >= now
        {
            return Ok(false);
        }
        if shard.seen.len() >= shard.sweep_at {
            shard.seen.retain(|_, end| *end >= now);
            shard.sweep_at = (shard.seen.len() * 2).clamp(1024.min(self.per_shard), self.per_shard);
            if shard.seen.len() >= self.per_shard {
                return Err(());
            }
        }
        shard.seen.insert(*signature, until);
        Ok(true)
    }
}

/// Step 4's settings and state.
pub struct Credentials {
    /// Signature window per route index, seconds.
    pub windows: Vec<u32>,
    /// Signatures already used.
    pub replays: ReplayCache,
    /// JWT issuers and the verified-token cache.
    pub jwt: Arc<JwtVerifier>,
}

fn unauthorized(
    rejection: Rejection,
    detail: impl Into<std::borrow::Cow<'static, str>>,
) -> Refusal {
    Refusal::new(rejection, detail)
}

/// Runs step 4. `body` is the whole request body when [`needs_body`] said so.
#[allow(clippy::too_many_arguments)]
pub async fn check(
    settings: &Credentials,
    parts: &Parts,
    body: Option<&[u8]>,
    key: &KeyEntry,
    class: RouteClass,
    route: usize,
    peer: &Peer,
    now: UnixMillis,
) -> Result<Verified, Refusal> {
    let policy = key.credentials.policy;
    let mut verified = Verified::default();
    if policy.certificate.contains(class) {
        let pinned = peer
            .certificate
            .as_ref()
            .is_some_and(|t| key.credentials.pinned(t, now));
        if !pinned {
            let detail = if peer.certificate.is_none() {
                "this key demands a client certificate: connect to the TLS listener with the pinned certificate"
            } else {
                "the client certificate is not one this key is pinned to"
            };
            return Err(unauthorized(Rejection::CertificateMismatch, detail));
        }
    }
    if policy.jwt.contains(class) {
        let token = check_token(settings, &parts.headers, key, now).await?;
        if let Some(bound) = &token.certificate {
            let matches = peer
                .certificate
                .as_ref()
                .is_some_and(|t| bool::from(t.ct_eq(bound)));
            if !matches {
                return Err(unauthorized(
                    Rejection::CertificateMismatch,
                    "the token is bound to a client certificate (cnf.x5t#S256) that this connection did not present",
                ));
            }
        }
        verified.token = Some(token);
    }
    if signature_sent(&parts.headers) {
        let window = settings.windows.get(route).copied().unwrap_or(30);
        let scheme = check_signature(settings, parts, body.unwrap_or_default(), key, window, now)?;
        verified.scheme = Some(scheme);
    } else if policy.signature.contains(class) {
        return Err(unauthorized(
            Rejection::SignatureRequired,
            "this key demands signed requests: send Tollgate-Timestamp and Tollgate-Signature (or the CB-ACCESS-* headers); see docs/signing.md",
        ));
    }
    Ok(verified)
}

/// RFC 6750 §3: a `Bearer` challenge, with `error="invalid_token"` when a
/// token was sent and refused.
fn bearer_challenge(refusal: Refusal, token_refused: bool) -> Refusal {
    refusal.with_header(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(if token_refused {
            "Bearer realm=\"tollgate\", error=\"invalid_token\""
        } else {
            "Bearer realm=\"tollgate\""
        }),
    )
}

async fn check_token(
    settings: &Credentials,
    headers: &HeaderMap,
    key: &KeyEntry,
    now: UnixMillis,
) -> Result<Arc<VerifiedToken>, Refusal> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| !t.starts_with(api_key::KEY_PREFIX) && !t.is_empty());
    let Some(token) = token else {
        return Err(bearer_challenge(
            unauthorized(
                Rejection::TokenRequired,
                "this key demands a JWT: send Authorization: Bearer <jwt>, with the API key in X-API-Key",
            ),
            false,
        ));
    };
    let verified = settings.jwt.verify(token, now).await.map_err(|error| {
        let (rejection, detail) = match error {
            TokenError::Invalid(why) => (Rejection::InvalidToken, why),
            TokenError::Expired => (Rejection::TokenExpired, "the token's exp has passed".into()),
            TokenError::NotYetValid => (
                Rejection::TokenNotYetValid,
                "the token's nbf is in the future".into(),
            ),
        };
        bearer_challenge(unauthorized(rejection, detail), true)
    })?;
    if verified.org.as_deref() != Some(key.org_id.as_str()) {
        return Err(unauthorized(
            Rejection::TokenOrgMismatch,
            "the token's organization claim does not name this API key's organization",
        ));
    }
    Ok(verified)
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Refusal> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value.to_str().map(|t| Some(t.trim())).map_err(|_| {
            unauthorized(
                Rejection::BadSignature,
                format!("the {name} header is not visible ASCII"),
            )
        }),
    }
}

fn check_signature(
    settings: &Credentials,
    parts: &Parts,
    body: &[u8],
    key: &KeyEntry,
    window: u32,
    now: UnixMillis,
) -> Result<Scheme, Refusal> {
    let headers = &parts.headers;
    let tollgate = header_text(headers, signing::SIGNATURE_HEADER)?;
    let coinbase = header_text(headers, signing::CB_SIGN_HEADER)?;
    let (scheme, signature, timestamp_header) = match (tollgate, coinbase) {
        (Some(sig), None) => (Scheme::Tollgate, sig, signing::TIMESTAMP_HEADER),
        (None, Some(sig)) => (Scheme::Coinbase, sig, signing::CB_TIMESTAMP_HEADER),
        _ => {
            return Err(unauthorized(
                Rejection::BadSignature,
                "send one signature scheme per request, not both",
            ));
        }
    };
    let Some(signature) = signing::decode_signature(signature) else {
        return Err(unauthorized(
            Rejection::BadSignature,
            "the signature is not base64 of a 32-byte HMAC-SHA256",
        ));
    };
    let Some(timestamp_text) = header_text(headers, timestamp_header)? else {
        return Err(unauthorized(
            Rejection::BadSignature,
            format!("a signed request needs the {timestamp_header} header"),
        ));
    };
    let timestamp = signing::parse_timestamp(timestamp_text).ok_or_else(|| {
        unauthorized(
            Rejection::BadSignature,
            format!("{timestamp_header} must be Unix seconds (a fraction is allowed)"),
        )
    })?;
    let passphrase = match scheme {
        Scheme::Tollgate => None,
        Scheme::Coinbase => Some(
            header_text(headers, signing::CB_PASSPHRASE_HEADER)?.ok_or_else(|| {
                unauthorized(
                    Rejection::BadSignature,
                    "the Coinbase scheme needs CB-ACCESS-PASSPHRASE",
                )
            })?,
        ),
    };
    let signed = SignedParts {
        timestamp: timestamp_text,
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        body,
    };
    let message = signing::message(scheme, &signed, key.id.as_str());
    let passphrase_hash: Option<[u8; 32]> = passphrase.map(|p| Sha256::digest(p.as_bytes()).into());
    // Every active secret is tried, so a rotation overlap accepts both; each
    // comparison is constant-time and every secret is always tried.
    let mut matched = false;
    let mut any = false;
    for secret in key.credentials.active_secrets(now) {
        any = true;
        matched |= secret_matches(secret, &message, &signature, passphrase_hash.as_ref());
    }
    if !any {
        return Err(unauthorized(
            Rejection::BadSignature,
            "this key has no signing secret; create one with POST /admin/v1/keys/{id}/signing-secrets",
        ));
    }
    if !matched {
        return Err(unauthorized(
            Rejection::BadSignature,
            "the signature does not match this request",
        ));
    }
    // Only a genuine signature is checked against the window and the replay
    // cache, so nobody can fill the cache with made-up signatures.
    if !signing::within_window(timestamp, now, window) {
        return Err(unauthorized(
            Rejection::TimestampOutOfWindow,
            format!(
                "the signed timestamp is {} s from the gateway's clock; this route accepts {window} s",
                (timestamp.0 - now.0).abs() / 1000
            ),
        ));
    }
    let until = timestamp.0 + i64::from(window) * 1000;
    match settings.replays.first_use(&signature, until, now.0) {
        Ok(true) => Ok(scheme),
        Ok(false) => Err(unauthorized(
            Rejection::ReplayedRequest,
            "this signature was already used; sign every request (and every retry) afresh",
        )),
        Err(()) => Err(Refusal::new(
            Rejection::StoreUnavailable,
            "the replay cache is full; retry shortly",
        )
        .with_header(
            super::throttle::RETRY_AFTER.clone(),
            HeaderValue::from_static("1"),
        )),
    }
}

fn secret_matches(
    secret: &LiveSecret,
    message: &[u8],
    signature: &[u8; 32],
    passphrase_hash: Option<&[u8; 32]>,
) -> bool {
    let signature_ok = signing::verify(&secret.key, message, signature);
    let passphrase_ok =
        passphrase_hash.is_none_or(|h| bool::from(h.ct_eq(&secret.passphrase_hash)));
    signature_ok & passphrase_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_cache_refuses_a_second_use_until_the_window_ends() {
        let cache = ReplayCache::new(64);
        let sig = [3u8; 32];
        assert_eq!(cache.first_use(&sig, 1_000, 0), Ok(true));
        assert_eq!(cache.first_use(&sig, 1_000, 999), Ok(false));
        assert_eq!(cache.first_use(&sig, 1_000, 1_000), Ok(false));
        // After its window, the timestamp check refuses it anyway; the cache
        // may forget it.
        assert_eq!(cache.first_use(&sig, 5_000, 1_001), Ok(true));
    }

    #[test]
    fn a_full_cache_refuses_rather_than_forgets_a_live_signature() {
        let cache = ReplayCache::new(16 * 16);
        let mut refused = 0;
        for i in 0..2000u32 {
            let mut sig = [0u8; 32];
            sig[0] = 7; // all in one shard
            sig[1..5].copy_from_slice(&i.to_be_bytes());
            if cache.first_use(&sig, 10_000, 0).is_err() {
                refused += 1;
            }
        }
        assert!(refused > 0);
        let mut first = [0u8; 32];
        first[0] = 7;
        assert_eq!(cache.first_use(&first, 10_000, 0), Ok(false));
    }
}
