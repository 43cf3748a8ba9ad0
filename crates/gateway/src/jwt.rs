//! JWT verification for step 4: configured issuers, JWKS with refresh and a
//! cooldown on unknown `kid`s, and a cache of verified tokens.
//!
//! What a token must satisfy: an issuer from `[[jwt.issuers]]` (its `iss`),
//! an algorithm that issuer accepts (the header's `alg`; `none` is never
//! accepted and an RSA issuer never accepts HS256, so an RSA public key can
//! not be used as an HMAC secret), a valid signature under that issuer's key
//! (selected by `kid` for a JWKS), one of the issuer's audiences, `exp` in the
//! future and `nbf` (if present) in the past, each within the leeway, as
//! JSON numbers. The signature and the claims' format are checked by the
//! `jsonwebtoken` crate; the times are checked here against the gateway's
//! clock.
//!
//! Verified tokens are cached under the SHA-256 of the token until they
//! expire, so a repeated token costs one hash and one map lookup.

use crate::config::{IssuerConfig, JwtConfig};
use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dashmap::DashMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_core::credential::Thumbprint;
use tollgate_core::time::UnixMillis;

/// What a verified token says, as the pipeline uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The issuer that vouched for it.
    pub issuer: String,
    /// The organization claim.
    pub org: Option<String>,
    /// A rate class chosen by a claim, if one matched.
    pub rate_class: Option<String>,
    /// RFC 8705 `cnf.x5t#S256`: the certificate the token is bound to.
    pub certificate: Option<Thumbprint>,
    /// `exp`, Unix milliseconds.
    pub expires_at: UnixMillis,
    /// `nbf`, Unix milliseconds.
    pub not_before: Option<UnixMillis>,
    /// The issuer's leeway, milliseconds.
    leeway_ms: i64,
    /// The issuer's key-set generation it was verified under: when the set
    /// changes, cached tokens are verified again (a key that left the set
    /// no longer vouches for them).
    generation: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Bad shape, algorithm, signature, issuer, audience or claim format.
    Invalid(String),
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` has not come yet (beyond the leeway).
    NotYetValid,
}

impl VerifiedToken {
    fn check_times(&self, now: UnixMillis) -> Result<(), TokenError> {
        if now.0 > self.expires_at.0.saturating_add(self.leeway_ms) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = self.not_before
            && now.0 < nbf.0.saturating_sub(self.leeway_ms)
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }
}

/// Where a JWKS comes from.
#[derive(Debug, Clone)]
enum JwksSource {
    File(PathBuf),
    Url(String),
}

/// One issuer's key set, replaced whole on every successful fetch (so keys
/// stay exactly as long as the issuer publishes them).
struct Jwks {
    source: JwksSource,
    keys: ArcSwap<HashMap<String, Arc<DecodingKey>>>,
    cooldown: Duration,
    last_fetch: parking_lot::Mutex<Option<Instant>>,
    fetching: tokio::sync::Mutex<()>,
    http: reqwest::Client,
    fetches: std::sync::atomic::AtomicU64,
    generation: std::sync::atomic::AtomicU64,
    /// SHA-256 of the last document, to tell a changed set from the same.
    document: parking_lot::Mutex<Option<[u8; 32]>>,
}

impl Jwks {
    async fn fetch(&self) -> Result<usize, String> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *self.last_fetch.lock() = Some(Instant::now());
        let text = match &self.source {
            JwksSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            JwksSource::Url(url) => {
                let response = self
                    .http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| format!("cannot fetch {url}: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("{url} answered {}", response.status()));
                }
                response
                    .text()
                    .await
                    .map_err(|e| format!("cannot read {url}: {e}"))?
            }
        };
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(&text).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = &jwk.common.key_id else {
                continue;
            };
            if matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            ) {
                continue;
            }
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid.clone(), Arc::new(key));
                }
                Err(error) => tracing::warn!(kid, %error, "JWKS key skipped"),
            }
        }
        let count = keys.len();
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        let changed = self.document.lock().replace(digest) != Some(digest);
        self.keys.store(Arc::new(keys));
        if changed {
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        Ok(count)
    }

    /// Fetches again because a token named an unknown `kid`, unless a fetch
    /// happened within the cooldown. Concurrent callers share one fetch.
    async fn refresh_for_unknown(&self) {
        let _one_at_a_time = self.fetching.lock().await;
        let recent = self
            .last_fetch
            .lock()
            .is_some_and(|at| at.elapsed() < self.cooldown);
        if recent {
            return;
        }
        if let Err(error) = self.fetch().await {
            tracing::warn!(%error, "JWKS refresh for an unknown kid failed");
        }
    }
}

struct Issuer {
    name: String,
    algorithms: Vec<Algorithm>,
    hs256: Option<DecodingKey>,
    jwks: Option<Arc<Jwks>>,
    validation: Validation,
    leeway_ms: i64,
    org_claim: String,
    classes: Vec<(String, String, String)>,
}

/// Verifies tokens for every configured issuer.
pub struct JwtVerifier {
    issuers: Vec<Issuer>,
    cache: DashMap<[u8; 32], Arc<VerifiedToken>, foldhash::fast::RandomState>,
    cache_limit: usize,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuers", &self.issuers.len())
            .field("cached", &self.cache.len())
            .finish()
    }
}

fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "HS256" => Some(Algorithm::HS256),
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

impl JwtVerifier {
    /// Builds the verifier and loads every JWKS once. A JWKS file that
    /// cannot be read is an error; a URL that cannot be fetched is retried
    /// on the refresh interval and on the first unknown `kid`.
    pub async fn start(config: &JwtConfig, cache_limit: usize) -> anyhow::Result<Arc<Self>> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let mut issuers = Vec::with_capacity(config.issuers.len());
        for issuer in &config.issuers {
            issuers.push(Self::issuer(issuer, &http).await?);
        }
        let verifier = Arc::new(JwtVerifier {
            issuers,
            cache: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            cache_limit,
        });
        for (issuer, config) in verifier.issuers.iter().zip(&config.issuers) {
            if let Some(jwks) = &issuer.jwks {
                let jwks = Arc::clone(jwks);
                let every = Duration::from_secs(config.refresh_seconds);
                let name = issuer.name.clone();
                tokio::spawn(async move {
                    let mut ticker = tokio::time::interval(every);
                    ticker.tick().await;
                    loop {
                        ticker.tick().await;
                        let _one_at_a_time = jwks.fetching.lock().await;
                        if let Err(error) = jwks.fetch().await {
                            tracing::warn!(issuer = name, %error, "JWKS refresh failed; keeping the previous set");
                        }
                    }
                });
            }
        }
        Ok(verifier)
    }

    async fn issuer(config: &IssuerConfig, http: &reqwest::Client) -> anyhow::Result<Issuer> {
        let algorithms: Vec<Algorithm> = config
            .algorithms
            .iter()
            .filter_map(|a| algorithm(a))
            .collect();
        let jwks = match (&config.jwks_file, &config.jwks_url) {
            (Some(path), _) => Some(JwksSource::File(path.clone())),
            (None, Some(url)) => Some(JwksSource::Url(url.clone())),
            (None, None) => None,
        }
        .map(|source| {
            Arc::new(Jwks {
                source,
                keys: ArcSwap::from_pointee(HashMap::new()),
                cooldown: Duration::from_secs(config.cooldown_seconds),
                last_fetch: parking_lot::Mutex::new(None),
                fetching: tokio::sync::Mutex::new(()),
                http: http.clone(),
                fetches: std::sync::atomic::AtomicU64::new(0),
                generation: std::sync::atomic::AtomicU64::new(0),
                document: parking_lot::Mutex::new(None),
            })
        });
        if let Some(jwks) = &jwks {
            match (jwks.fetch().await, &jwks.source) {
                (Ok(count), _) => {
                    tracing::info!(issuer = config.issuer, keys = count, "JWKS loaded");
                }
                (Err(error), JwksSource::File(_)) => {
                    anyhow::bail!("jwt issuer {:?}: {error}", config.issuer)
                }
                (Err(error), JwksSource::Url(_)) => {
                    tracing::warn!(issuer = config.issuer, %error, "JWKS not loaded yet; will retry");
                }
            }
        }
        let mut validation = Validation::new(algorithms.first().copied().unwrap_or_default());
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&config.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        // Times are checked against the gateway's clock in `check_times`.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        Ok(Issuer {
            name: config.issuer.clone(),
            hs256: config
                .hs256_secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.as_bytes())),
            algorithms,
            jwks,
            validation,
            leeway_ms: i64::try_from(config.leeway_seconds.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            org_claim: config.org_claim.clone(),
            classes: config
                .rate_classes
                .iter()
                .map(|c| (c.claim.clone(), c.value.clone(), c.class.clone()))
                .collect(),
        })
    }

    /// How many times an issuer's key set was fetched (for tests and metrics).
    pub fn jwks_fetches(&self, issuer: &str) -> u64 {
        self.issuers
            .iter()
            .find(|i| i.name == issuer)
            .and_then(|i| i.jwks.as_ref())
            .map_or(0, |j| j.fetches.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether any issuer is configured.
    pub fn is_configured(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// The cached answer for `token`, if it was verified before and is
    /// still within its times. The hot path of a repeated token.
    pub fn cached(
        &self,
        token: &str,
        now: UnixMillis,
    ) -> Option<Result<Arc<VerifiedToken>, TokenError>> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let entry = self.lookup(&hash)?;
        Some(entry.check_times(now).map(|()| entry))
    }

    fn generation(&self, issuer: &str) -> u64 {
        self.issuers
            .iter()
            .find(|i| i.name == issuer)
            .and_then(|i| i.jwks.as_ref())
            .map_or(0, |j| {
                j.generation.load(std::sync::atomic::Ordering::Acquire)
            })
    }

    fn lookup(&self, hash: &[u8; 32]) -> Option<Arc<VerifiedToken>> {
        let entry = self.cache.get(hash).map(|e| Arc::clone(e.value()))?;
        (entry.generation == self.generation(&entry.issuer)).then_some(entry)
    }

    /// Verifies `token` at `now`.
    pub async fn verify(
        &self,
        token: &str,
        now: UnixMillis,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(entry) = self.lookup(&hash) {
            entry.check_times(now)?;
            return Ok(entry);
        }
        let verified = Arc::new(self.verify_fresh(token).await?);
        verified.check_times(now)?;
        self.remember(hash, &verified, now);
        Ok(verified)
    }

    fn remember(&self, hash: [u8; 32], token: &Arc<VerifiedToken>, now: UnixMillis) {
        if self.cache.len() >= self.cache_limit {
            self.cache
                .retain(|_, t| now.0 <= t.expires_at.0.saturating_add(t.leeway_ms));
            if self.cache.len() >= self.cache_limit {
                return;
            }
        }
        self.cache.insert(hash, Arc::clone(token));
    }

    async fn verify_fresh(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let invalid = |why: &str| TokenError::Invalid(why.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            invalid("not a signed JWT (three base64url parts, a JSON header with a supported alg; alg none is refused)")
        })?;
        let iss = unverified_issuer(token).ok_or_else(|| invalid("the token has no iss claim"))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.name == iss)
            .ok_or_else(|| TokenError::Invalid(format!("issuer {iss:?} is not accepted")))?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(TokenError::Invalid(format!(
                "algorithm {:?} is not accepted for issuer {iss:?}",
                header.alg
            )));
        }
        let generation = self.generation(&issuer.name);
        let key = match header.alg {
            Algorithm::HS256 => issuer
                .hs256
                .clone()
                .map(Arc::new)
                .ok_or_else(|| invalid("HS256 has no secret"))?,
            _ => {
                let jwks = issuer
                    .jwks
                    .as_ref()
                    .ok_or_else(|| invalid("the issuer has no key set"))?;
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| invalid("the token has no kid"))?;
                let found = jwks.keys.load().get(kid).cloned();
                match found {
                    Some(key) => key,
                    None => {
                        jwks.refresh_for_unknown().await;
                        jwks.keys.load().get(kid).cloned().ok_or_else(|| {
                            TokenError::Invalid(format!("unknown kid {kid:?} for issuer {iss:?}"))
                        })?
                    }
                }
            }
        };
        let mut validation = issuer.validation.clone();
        validation.algorithms = vec![header.alg];
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| TokenError::Invalid(describe(e.kind())))?;
        let claims = data.claims;
        let expires_at = numeric_date(&claims, "exp")?.ok_or_else(|| invalid("exp is missing"))?;
        let not_before = numeric_date(&claims, "nbf")?;
        let org = claims
            .get(&issuer.org_claim)
            .and_then(Value::as_str)
            .map(str::to_owned);
        let rate_class = issuer
            .classes
            .iter()
            .find(|(claim, value, _)| claim_has(&claims, claim, value))
            .map(|(_, _, class)| class.clone());
        let certificate = match claims.get("cnf").and_then(|c| c.get("x5t#S256")) {
            None => None,
            Some(value) => Some(
                value
                    .as_str()
                    .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| invalid("cnf.x5t#S256 is not a base64url SHA-256 thumbprint"))?,
            ),
        };
        Ok(VerifiedToken {
            issuer: issuer.name.clone(),
            org,
            rate_class,
            certificate,
            expires_at,
            not_before,
            leeway_ms: issuer.leeway_ms,
            generation,
        })
    }
}

/// Reads `iss` from the payload without verifying, only to pick the issuer
/// whose key and rules then verify everything.
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// A NumericDate claim (RFC 7519 §2: a JSON number of seconds). A string or
/// any other type is refused, not ignored.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<UnixMillis>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            let millis = if let Some(i) = n.as_i64() {
                i.checked_mul(1000)
            } else {
                // A fractional NumericDate: whole milliseconds, rounded down.
                n.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 1e15)
                    .map(|f| (f * 1000.0).floor() as i64)
            };
            millis
                .map(|m| Some(UnixMillis(m)))
                .ok_or_else(|| TokenError::Invalid(format!("{name} is out of range")))
        }
        Some(_) => Err(TokenError::Invalid(format!(
            "{name} must be a JSON number (NumericDate)"
        ))),
    }
}

fn claim_has(claims: &Map<String, Value>, claim: &str, wanted: &str) -> bool {
    match claims.get(claim) {
        Some(Value::String(s)) => s == wanted,
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(wanted)),
        _ => false,
    }
}

fn describe(kind: &jsonwebtoken::errors::ErrorKind) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => "the signature does not verify".into(),
        K::InvalidAudience => "the audience (aud) is not accepted".into(),
        K::InvalidIssuer => "the issuer (iss) is not accepted".into(),
        K::InvalidAlgorithm => "the algorithm does not match the key".into(),
        K::MissingRequiredClaim(claim) => format!("the {claim} claim is missing"),
        K::InvalidClaimFormat(claim) => format!("the {claim} claim is malformed"),
        _ => "the token is malformed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_dates_must_be_numbers() {
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"a": 1700000000, "b": "1700000000", "c": 1700000000.5}"#)
                .unwrap();
        assert_eq!(
            numeric_date(&claims, "a"),
            Ok(Some(UnixMillis(1_700_000_000_000)))
        );
        assert!(numeric_date(&claims, "b").is_err());
        assert_eq!(
            numeric_date(&claims, "c"),
            Ok(Some(UnixMillis(1_700_000_000_500)))
        );
        assert_eq!(numeric_date(&claims, "d"), Ok(None));
    }

    #[test]
    fn claims_match_strings_and_arrays() {
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"tier": "premium", "aud": ["x", "free-tier"]}"#).unwrap();
        assert!(claim_has(&claims, "tier", "premium"));
        assert!(claim_has(&claims, "aud", "free-tier"));
        assert!(!claim_has(&claims, "tier", "free"));
        assert!(!claim_has(&claims, "missing", "x"));
    }
}
