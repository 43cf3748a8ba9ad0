//! Test plumbing and each venue's signing recipe, written from the docs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tollgate_sim::{SimConfig, SimHandle};

pub async fn start(config: SimConfig) -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    tollgate_sim::start(listener, config).await.unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub fn now_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

pub fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
}

pub async fn json(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

/// Flips one character of a base64 or hex signature.
pub fn tamper(signature: &str) -> String {
    let mut chars: Vec<char> = signature.chars().collect();
    chars[2] = if chars[2] == 'a' { 'b' } else { 'a' };
    chars.into_iter().collect()
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha512(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha512>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Coinbase Exchange: base64(HMAC-SHA256(base64decode(secret),
/// timestamp + METHOD + requestPath + body)).
pub fn coinbase_sign(
    secret_b64: &str,
    timestamp: &str,
    method: &str,
    path: &str,
    body: &str,
) -> String {
    let key = STANDARD.decode(secret_b64).unwrap();
    let prehash = format!("{timestamp}{method}{path}{body}");
    STANDARD.encode(hmac_sha256(&key, prehash.as_bytes()))
}

/// Binance: hex(HMAC-SHA256(secret, query string + body)).
pub fn binance_sign(secret: &str, payload: &str) -> String {
    hex::encode(hmac_sha256(secret.as_bytes(), payload.as_bytes()))
}

/// Deribit client_signature: hex(HMAC-SHA256(secret, ts\nnonce\ndata)).
pub fn deribit_sign(secret: &str, timestamp: &str, nonce: &str, data: &str) -> String {
    hex::encode(hmac_sha256(
        secret.as_bytes(),
        format!("{timestamp}\n{nonce}\n{data}").as_bytes(),
    ))
}

/// Kraken spot: base64(HMAC-SHA512(base64decode(secret),
/// path + SHA256(nonce + body))).
pub fn kraken_sign(secret_b64: &str, path: &str, nonce: &str, body: &str) -> String {
    let key = STANDARD.decode(secret_b64).unwrap();
    let digest = Sha256::digest(format!("{nonce}{body}").as_bytes());
    let mut message = path.as_bytes().to_vec();
    message.extend_from_slice(&digest);
    STANDARD.encode(hmac_sha512(&key, &message))
}

/// Kraken Futures: base64(HMAC-SHA512(base64decode(secret),
/// SHA256(postData + nonce + endpointPath))).
pub fn futures_sign(secret_b64: &str, post_data: &str, nonce: &str, endpoint_path: &str) -> String {
    let key = STANDARD.decode(secret_b64).unwrap();
    let digest = Sha256::digest(format!("{post_data}{nonce}{endpoint_path}").as_bytes());
    STANDARD.encode(hmac_sha512(&key, &digest))
}
