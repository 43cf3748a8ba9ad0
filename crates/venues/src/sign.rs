//! Request signing with venue credentials, one recipe per venue, each
//! written from the venue's own documentation (see docs/venues.md). The
//! bot never holds these secrets: the router adds the signature on the way
//! out, with timestamps on the venue's clock.
//!
//! This module shares nothing with `tollgate_core::signing`, which is
//! tollgate's own ingress scheme.

use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use crate::config::{CredentialsConfig, VenueKind};

/// Credentials that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{0} is not set (neither in the file nor in the environment variable it names)")]
    Missing(&'static str),
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    #[error("the secret is not valid base64, as this venue issues it")]
    NotBase64,
    #[error("recv_window_ms must be between 1 and 60000")]
    RecvWindow,
}

/// A call on its way to the venue; signing edits it in place.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub method: http::Method,
    /// Path as the venue sees it (after the venue root).
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    pub body: Vec<u8>,
    /// Headers the signer adds.
    pub headers: Vec<(&'static str, String)>,
}

/// One venue's signing key.
pub struct Signer {
    kind: VenueKind,
    key: String,
    secret: Vec<u8>,
    passphrase: Option<String>,
    recv_window_ms: u64,
    sign_query: bool,
    last_nonce: AtomicI64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

fn resolve(
    value: &Option<String>,
    env: &Option<String>,
) -> Result<Option<String>, CredentialsError> {
    if let Some(v) = value {
        return Ok(Some(v.clone()));
    }
    match env {
        Some(name) => std::env::var(name)
            .map(Some)
            .map_err(|_| CredentialsError::MissingEnv(name.clone())),
        None => Ok(None),
    }
}

impl Signer {
    /// Reads the credentials a venue of `kind` needs.
    pub fn new(kind: VenueKind, c: &CredentialsConfig) -> Result<Signer, CredentialsError> {
        let key = resolve(&c.key, &c.key_env)?.ok_or(CredentialsError::Missing("key"))?;
        let secret_text =
            resolve(&c.secret, &c.secret_env)?.ok_or(CredentialsError::Missing("secret"))?;
        let secret = match kind {
            // Coinbase and Kraken issue base64 secrets and key the HMAC with
            // the decoded bytes; Binance keys with the text's bytes; Deribit's
            // client secret is sent as text to its auth endpoint.
            VenueKind::Coinbase | VenueKind::Kraken | VenueKind::KrakenFutures => B64
                .decode(secret_text.trim())
                .map_err(|_| CredentialsError::NotBase64)?,
            VenueKind::Binance | VenueKind::Deribit => secret_text.into_bytes(),
        };
        let passphrase = resolve(&c.passphrase, &c.passphrase_env)?;
        if kind == VenueKind::Coinbase && passphrase.is_none() {
            return Err(CredentialsError::Missing("passphrase"));
        }
        let recv_window_ms = c.recv_window_ms.unwrap_or(5000);
        if recv_window_ms == 0 || recv_window_ms > 60_000 {
            return Err(CredentialsError::RecvWindow);
        }
        Ok(Signer {
            kind,
            key,
            secret,
            passphrase,
            recv_window_ms,
            sign_query: c.sign_query.unwrap_or(true),
            last_nonce: AtomicI64::new(0),
        })
    }

    /// Deribit's client id and secret, for `public/auth`.
    pub fn client_credentials(&self) -> (&str, String) {
        (
            &self.key,
            String::from_utf8_lossy(&self.secret).into_owned(),
        )
    }

    /// A nonce greater than every earlier one, and at least `now_ms`.
    fn nonce(&self, now_ms: i64) -> i64 {
        let previous = self
            .last_nonce
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(now_ms.max(last + 1))
            })
            .unwrap_or(0);
        now_ms.max(previous + 1)
    }

    /// Signs `out` at `venue_now_ms` (the venue's clock). `token` is the
    /// session token for venues that use one (Deribit).
    pub fn sign(&self, out: &mut Outgoing, venue_now_ms: i64, token: Option<&str>) {
        match self.kind {
            VenueKind::Coinbase => self.sign_coinbase(out, venue_now_ms),
            VenueKind::Binance => self.sign_binance(out, venue_now_ms),
            VenueKind::Kraken => self.sign_kraken(out, venue_now_ms),
            VenueKind::KrakenFutures => self.sign_kraken_futures(out, venue_now_ms),
            VenueKind::Deribit => {
                if let Some(token) = token {
                    out.headers
                        .push(("authorization", format!("Bearer {token}")));
                }
            }
        }
    }

    fn sign_coinbase(&self, out: &mut Outgoing, now_ms: i64) {
        let timestamp = format!("{}.{:03}", now_ms.div_euclid(1000), now_ms.rem_euclid(1000));
        let mut prehash = format!("{timestamp}{}{}", out.method.as_str(), out.path).into_bytes();
        if self.sign_query && !out.query.is_empty() {
            prehash.push(b'?');
            prehash.extend_from_slice(out.query.as_bytes());
        }
        prehash.extend_from_slice(&out.body);
        let signature = B64.encode(hmac_sha256(&self.secret, &prehash));
        out.headers.push(("cb-access-key", self.key.clone()));
        out.headers.push(("cb-access-sign", signature));
        out.headers.push(("cb-access-timestamp", timestamp));
        out.headers.push((
            "cb-access-passphrase",
            self.passphrase.clone().unwrap_or_default(),
        ));
    }

    fn sign_binance(&self, out: &mut Outgoing, now_ms: i64) {
        let bot_window = query_value(&out.query, "recvWindow").is_some();
        let mut query = without_keys(&out.query, &["timestamp", "signature"]);
        if !bot_window {
            append(&mut query, &format!("recvWindow={}", self.recv_window_ms));
        }
        append(&mut query, &format!("timestamp={now_ms}"));
        let mut payload = query.clone().into_bytes();
        payload.extend_from_slice(&out.body);
        let signature = binance_signature(&self.secret, &payload);
        append(&mut query, &format!("signature={signature}"));
        out.query = query;
        out.headers.push(("x-mbx-apikey", self.key.clone()));
    }

    fn sign_kraken(&self, out: &mut Outgoing, now_ms: i64) {
        let nonce = self.nonce(now_ms).to_string();
        out.body = with_nonce(&out.body, &nonce);
        let signature = kraken_signature(&self.secret, &out.path, &nonce, &out.body);
        out.headers.push(("api-key", self.key.clone()));
        out.headers.push(("api-sign", signature));
    }

    fn sign_kraken_futures(&self, out: &mut Outgoing, now_ms: i64) {
        let nonce = self.nonce(now_ms).to_string();
        let post_data = if out.method == http::Method::GET || out.body.is_empty() {
            out.query.as_bytes().to_vec()
        } else {
            out.body.clone()
        };
        let endpoint = out.path.strip_prefix("/derivatives").unwrap_or(&out.path);
        let authent = kraken_futures_authent(&self.secret, &post_data, &nonce, endpoint);
        out.headers.push(("apikey", self.key.clone()));
        out.headers.push(("nonce", nonce));
        out.headers.push(("authent", authent));
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Binance: hex HMAC-SHA256 of `totalParams` (query then body), keyed with
/// the secret's text.
pub fn binance_signature(secret: &[u8], total_params: &[u8]) -> String {
    hex::encode(hmac_sha256(secret, total_params))
}

/// Kraken spot `API-Sign`: base64 HMAC-SHA512 over the URI path followed by
/// the raw SHA-256 of nonce + POST body, keyed with the decoded secret.
pub fn kraken_signature(secret: &[u8], path: &str, nonce: &str, body: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(nonce.as_bytes())
        .chain_update(body)
        .finalize();
    B64.encode(hmac_sha512(secret, &[path.as_bytes(), &digest]))
}

/// Kraken Futures `Authent`: base64 HMAC-SHA512 over SHA-256(postData +
/// nonce + endpoint path without `/derivatives`), keyed with the decoded secret.
pub fn kraken_futures_authent(secret: &[u8], post_data: &[u8], nonce: &str, path: &str) -> String {
    let digest = Sha256::new()
        .chain_update(post_data)
        .chain_update(nonce.as_bytes())
        .chain_update(path.as_bytes())
        .finalize();
    B64.encode(hmac_sha512(secret, &[&digest]))
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

fn without_keys(query: &str, keys: &[&str]) -> String {
    query
        .split('&')
        .filter(|pair| {
            !pair.is_empty() && {
                let key = pair.split('=').next().unwrap_or("");
                !keys.contains(&key)
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn append(query: &mut String, pair: &str) {
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str(pair);
}

/// Puts `nonce` first in a form body (replacing any the bot sent), or into a
/// JSON body's top-level object.
fn with_nonce(body: &[u8], nonce: &str) -> Vec<u8> {
    if body.first() == Some(&b'{')
        && let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(body)
    {
        let value = nonce
            .parse::<u64>()
            .map(serde_json::Value::from)
            .unwrap_or_else(|_| serde_json::Value::from(nonce));
        map.insert("nonce".into(), value);
        return serde_json::to_vec(&map).unwrap_or_else(|_| body.to_vec());
    }
    let rest = without_keys(&String::from_utf8_lossy(body), &["nonce"]);
    let mut out = format!("nonce={nonce}");
    if !rest.is_empty() {
        out.push('&');
        out.push_str(&rest);
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binance_published_vector() {
        let secret = b"NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
        let payload = b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        assert_eq!(
            binance_signature(secret, payload),
            "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        );
    }

    #[test]
    fn binance_signer_appends_timestamp_window_and_signature() {
        let c = CredentialsConfig {
            key: Some("k".into()),
            secret: Some("NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j".into()),
            ..Default::default()
        };
        let signer = Signer::new(VenueKind::Binance, &c).unwrap();
        let mut out = Outgoing {
            method: http::Method::POST,
            path: "/api/v3/order".into(),
            query: "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&timestamp=1&signature=bogus".into(),
            body: Vec::new(),
            headers: Vec::new(),
        };
        signer.sign(&mut out, 1_499_827_319_559, None);
        assert_eq!(
            out.query,
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        );
        assert_eq!(out.headers, vec![("x-mbx-apikey", "k".to_owned())]);
    }

    #[test]
    fn kraken_published_vector() {
        let secret = B64
            .decode("kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==")
            .unwrap();
        let body =
            b"nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25";
        assert_eq!(
            kraken_signature(&secret, "/0/private/AddOrder", "1616492376594", body),
            "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
        );
    }

    #[test]
    fn kraken_signer_puts_the_nonce_first_and_never_repeats_it() {
        let c = CredentialsConfig {
            key: Some("k".into()),
            secret: Some("kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==".into()),
            ..Default::default()
        };
        let signer = Signer::new(VenueKind::Kraken, &c).unwrap();
        let out = |body: &[u8]| Outgoing {
            method: http::Method::POST,
            path: "/0/private/AddOrder".into(),
            query: String::new(),
            body: body.to_vec(),
            headers: Vec::new(),
        };
        let mut first = out(b"ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25");
        signer.sign(&mut first, 1_616_492_376_594, None);
        assert_eq!(
            first.body,
            b"nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
        );
        assert_eq!(
            first.headers[1].1,
            "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
        );
        // Same millisecond (or a clock step back): the nonce still rises.
        let mut second = out(b"nonce=5&pair=XBTUSD");
        signer.sign(&mut second, 1_616_492_376_000, None);
        assert_eq!(second.body, b"nonce=1616492376595&pair=XBTUSD");
        let mut json = out(br#"{"pair":"XBTUSD","orders":[]}"#);
        signer.sign(&mut json, 1_616_492_376_000, None);
        let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(v["nonce"], 1_616_492_376_596u64);
    }

    #[test]
    fn coinbase_prehash_is_timestamp_method_path_query_body() {
        let secret = B64.encode([7u8; 64]);
        let c = CredentialsConfig {
            key: Some("key".into()),
            secret: Some(secret),
            passphrase: Some("pass".into()),
            ..Default::default()
        };
        let signer = Signer::new(VenueKind::Coinbase, &c).unwrap();
        let mut out = Outgoing {
            method: http::Method::GET,
            path: "/orders".into(),
            query: "status=open".into(),
            body: Vec::new(),
            headers: Vec::new(),
        };
        signer.sign(&mut out, 1_700_000_000_250, None);
        let expected = B64.encode(hmac_sha256(
            &[7u8; 64],
            b"1700000000.250GET/orders?status=open",
        ));
        assert!(out.headers.contains(&("cb-access-sign", expected)));
        assert!(
            out.headers
                .contains(&("cb-access-timestamp", "1700000000.250".into()))
        );
        assert!(
            out.headers
                .contains(&("cb-access-passphrase", "pass".into()))
        );
        // Missing passphrase is refused up front.
        let c = CredentialsConfig {
            key: Some("key".into()),
            secret: Some(B64.encode([7u8; 64])),
            ..Default::default()
        };
        assert!(matches!(
            Signer::new(VenueKind::Coinbase, &c),
            Err(CredentialsError::Missing("passphrase"))
        ));
    }

    #[test]
    fn kraken_futures_signs_path_without_derivatives_prefix() {
        let secret = [3u8; 64];
        let c = CredentialsConfig {
            key: Some("k".into()),
            secret: Some(B64.encode(secret)),
            ..Default::default()
        };
        let signer = Signer::new(VenueKind::KrakenFutures, &c).unwrap();
        let mut out = Outgoing {
            method: http::Method::POST,
            path: "/derivatives/api/v3/sendorder".into(),
            query: String::new(),
            body: b"orderType=lmt&symbol=PI_XBTUSD&side=buy&size=1&limitPrice=1".to_vec(),
            headers: Vec::new(),
        };
        signer.sign(&mut out, 42, None);
        let expected = kraken_futures_authent(
            &secret,
            b"orderType=lmt&symbol=PI_XBTUSD&side=buy&size=1&limitPrice=1",
            "42",
            "/api/v3/sendorder",
        );
        assert!(out.headers.contains(&("authent", expected)));
        assert!(out.headers.contains(&("nonce", "42".into())));
    }
}
