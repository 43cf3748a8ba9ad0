//! Simulator configuration: every limit the venues publish, the test
//! credentials, and the faults to inject. Defaults are the published values
//! (see `docs/venues.md`, "The simulator") and fixed test credentials.

use crate::error::SimError;
use crate::faults::Faults;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Everything the simulator enforces, per venue, plus the faults it starts
/// with.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    pub coinbase: CoinbaseConfig,
    pub binance: BinanceConfig,
    pub deribit: DeribitConfig,
    pub kraken: KrakenConfig,
    pub kraken_futures: KrakenFuturesConfig,
    pub faults: Faults,
}

impl SimConfig {
    /// Reads and validates a TOML file.
    pub fn from_toml_file(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
        let config = Self::from_toml_str(&text)
            .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
        Ok(config)
    }

    /// Parses and validates TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, SimError> {
        let config: SimConfig =
            toml::from_str(text).map_err(|error| SimError::Config(error.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values a server cannot run with.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |what: &str| Err(SimError::Config(what.to_owned()));
        let c = &self.coinbase;
        if !(c.public_rate > 0.0 && c.public_burst >= 1.0) {
            return bad("coinbase: public_rate must be > 0 and public_burst >= 1");
        }
        if !(c.private_rate > 0.0 && c.private_burst >= 1.0) {
            return bad("coinbase: private_rate must be > 0 and private_burst >= 1");
        }
        if c.keys.is_empty() {
            return bad("coinbase: at least one key is needed");
        }
        for key in &c.keys {
            if crate::sign::decode_secret(&key.secret).is_none() {
                return bad("coinbase: a key's secret is not standard base64");
            }
        }
        let b = &self.binance;
        for (name, window) in [
            ("weight_window_ms", b.weight_window_ms),
            ("orders_short_window_ms", b.orders_short_window_ms),
            ("orders_long_window_ms", b.orders_long_window_ms),
            ("raw_requests_window_ms", b.raw_requests_window_ms),
        ] {
            if window == 0 || !window.is_multiple_of(1_000) {
                return Err(SimError::Config(format!(
                    "binance: {name} must be a positive whole number of seconds in ms"
                )));
            }
        }
        if b.weight_limit == 0 || b.orders_short_limit == 0 || b.orders_long_limit == 0 {
            return bad("binance: limits must be > 0");
        }
        if b.ban_after_violations == 0 || b.ban_first_ms == 0 || b.ban_max_ms < b.ban_first_ms {
            return bad(
                "binance: ban_after_violations and ban_first_ms must be > 0, ban_max_ms >= ban_first_ms",
            );
        }
        if b.ban_after_refusals == 0 || b.ban_refusal_period_ms == 0 {
            return bad("binance: ban_after_refusals and ban_refusal_period_ms must be > 0");
        }
        if b.recv_window_default_ms > b.recv_window_max_ms {
            return bad("binance: recv_window_default_ms must not exceed recv_window_max_ms");
        }
        if b.keys.is_empty() {
            return bad("binance: at least one key is needed");
        }
        let d = &self.deribit;
        if d.non_matching_cost == 0 || d.non_matching_max < d.non_matching_cost {
            return bad("deribit: non_matching_cost must be > 0 and <= non_matching_max");
        }
        if d.non_matching_refill_per_s == 0 {
            return bad("deribit: non_matching_refill_per_s must be > 0");
        }
        match d.matching_engine_tiers.get(&d.matching_engine_tier) {
            Some(tier) if tier.rate > 0.0 && tier.burst >= 1.0 => {}
            Some(_) => return bad("deribit: the matching-engine tier needs rate > 0, burst >= 1"),
            None => {
                return Err(SimError::Config(format!(
                    "deribit: matching_engine_tier {:?} is not in matching_engine_tiers",
                    d.matching_engine_tier
                )));
            }
        }
        if d.clients.is_empty() {
            return bad("deribit: at least one client is needed");
        }
        if !(200..=599).contains(&d.rate_limit_status) {
            return bad("deribit: rate_limit_status must be an HTTP status from 200 to 599");
        }
        let k = &self.kraken;
        if !(k.rest_max >= 1.0 && k.rest_decay_per_s > 0.0) {
            return bad("kraken: rest_max must be >= 1 and rest_decay_per_s > 0");
        }
        if !(k.trading_threshold >= 1.0 && k.trading_decay_per_s > 0.0) {
            return bad("kraken: trading_threshold must be >= 1 and trading_decay_per_s > 0");
        }
        if k.keys.is_empty() {
            return bad("kraken: at least one key is needed");
        }
        for key in &k.keys {
            if crate::sign::decode_secret(&key.secret).is_none() {
                return bad("kraken: a key's secret is not standard base64");
            }
        }
        let f = &self.kraken_futures;
        if f.budget == 0 || f.window_ms == 0 {
            return bad("kraken_futures: budget and window_ms must be > 0");
        }
        if f.keys.is_empty() {
            return bad("kraken_futures: at least one key is needed");
        }
        if !(200..=599).contains(&f.rate_limit_status) {
            return bad("kraken_futures: rate_limit_status must be an HTTP status from 200 to 599");
        }
        for key in &f.keys {
            if crate::sign::decode_secret(&key.secret).is_none() {
                return bad("kraken_futures: a key's secret is not standard base64");
            }
        }
        self.faults.validate()
    }
}

// === Coinbase ===

/// Coinbase Exchange REST: lazy-fill token buckets, HMAC + passphrase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoinbaseConfig {
    /// Public endpoints, per IP: requests per second.
    pub public_rate: f64,
    /// Public endpoints, per IP: bucket size.
    pub public_burst: f64,
    /// Private endpoints, per profile: requests per second.
    pub private_rate: f64,
    /// Private endpoints, per profile: bucket size.
    pub private_burst: f64,
    /// How far `CB-ACCESS-TIMESTAMP` may be from the server's time.
    pub timestamp_window_ms: u64,
    /// Whether the signed requestPath includes `?query` (assumed, [S]).
    pub sign_query: bool,
    /// Send `Retry-After` (seconds until a token is back) on 429. Coinbase
    /// documents none, so off by default.
    pub send_retry_after: bool,
    /// Send `x-ratelimit-limit`, `-remaining` and `-reset` on private
    /// answers. The Exchange documents no rate-limit headers (these are
    /// Advanced Trade's), so off by default.
    pub send_rate_limit_headers: bool,
    pub keys: Vec<CoinbaseKey>,
}

/// One Coinbase Exchange API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoinbaseKey {
    pub key: String,
    /// Standard base64; the HMAC key is the decoded bytes.
    pub secret: String,
    pub passphrase: String,
    /// Keys of one profile share its private bucket.
    pub profile_id: String,
}

/// Test key of the default configuration (not a real Coinbase key).
pub const COINBASE_TEST_KEY: &str = "sim-coinbase-key";
/// Its secret: base64 of 64 bytes.
pub const COINBASE_TEST_SECRET: &str =
    "dG9sbGdhdGUtc2ltIGNvaW5iYXNlIGV4Y2hhbmdlIHRlc3Qgc2VjcmV0OyBuZXZlciBhIHJlYWwga2V5LiAwMQ==";
pub const COINBASE_TEST_PASSPHRASE: &str = "sim-passphrase";
pub const COINBASE_TEST_PROFILE: &str = "sim-profile";

impl Default for CoinbaseConfig {
    fn default() -> Self {
        CoinbaseConfig {
            public_rate: 10.0,
            public_burst: 15.0,
            private_rate: 15.0,
            private_burst: 30.0,
            timestamp_window_ms: 30_000,
            sign_query: true,
            send_retry_after: false,
            send_rate_limit_headers: false,
            keys: vec![CoinbaseKey {
                key: COINBASE_TEST_KEY.to_owned(),
                secret: COINBASE_TEST_SECRET.to_owned(),
                passphrase: COINBASE_TEST_PASSPHRASE.to_owned(),
                profile_id: COINBASE_TEST_PROFILE.to_owned(),
            }],
        }
    }
}

// === Binance ===

/// Binance spot: clock-aligned weight window per IP, unfilled-order counts
/// per account, HMAC-SHA256 hex signatures, 429 → 418 escalation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BinanceConfig {
    /// REQUEST_WEIGHT limit per IP per window.
    pub weight_limit: u64,
    /// REQUEST_WEIGHT window, aligned to the clock; a whole number of
    /// seconds. Names the header: 60 000 → `X-MBX-USED-WEIGHT-1M`.
    pub weight_window_ms: u64,
    /// ORDERS (unfilled order count) per account, short window.
    pub orders_short_limit: u64,
    pub orders_short_window_ms: u64,
    /// ORDERS per account, long window.
    pub orders_long_limit: u64,
    pub orders_long_window_ms: u64,
    /// RAW_REQUESTS, reported in exchangeInfo only: the weight limit always
    /// binds first.
    pub raw_requests_limit: u64,
    pub raw_requests_window_ms: u64,
    /// `recvWindow` when the request sends none.
    pub recv_window_default_ms: u64,
    /// Largest `recvWindow` accepted.
    pub recv_window_max_ms: u64,
    /// A timestamp this far ahead of the server or more is refused.
    pub future_tolerance_ms: u64,
    /// Requests during a running `Retry-After` that earn a 418 ban.
    pub ban_after_violations: u32,
    /// 429s (storm refusals included) answered to one IP within
    /// `ban_refusal_period_ms` that also earn a 418 ban.
    pub ban_after_refusals: u32,
    pub ban_refusal_period_ms: u64,
    /// First ban; each later ban doubles, up to `ban_max_ms`.
    pub ban_first_ms: u64,
    pub ban_max_ms: u64,
    pub keys: Vec<BinanceKey>,
}

/// One Binance API key (HMAC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinanceKey {
    pub api_key: String,
    /// Used as-is (its bytes), not base64-decoded.
    pub secret: String,
    /// Keys of one account share its order counts.
    pub account: String,
}

pub const BINANCE_TEST_KEY: &str = "sim-binance-key";
pub const BINANCE_TEST_SECRET: &str =
    "SimBinanceSecretNotReal0123456789abcdefghijklmnopqrstuvwxyzABCDE";
pub const BINANCE_TEST_ACCOUNT: &str = "sim-account";

impl Default for BinanceConfig {
    fn default() -> Self {
        BinanceConfig {
            weight_limit: 6_000,
            weight_window_ms: 60_000,
            orders_short_limit: 50,
            orders_short_window_ms: 10_000,
            orders_long_limit: 160_000,
            orders_long_window_ms: 86_400_000,
            raw_requests_limit: 300_000,
            raw_requests_window_ms: 300_000,
            recv_window_default_ms: 5_000,
            recv_window_max_ms: 60_000,
            future_tolerance_ms: 1_000,
            ban_after_violations: 3,
            ban_after_refusals: 10,
            ban_refusal_period_ms: 60_000,
            ban_first_ms: 120_000,
            ban_max_ms: 259_200_000,
            keys: vec![BinanceKey {
                api_key: BINANCE_TEST_KEY.to_owned(),
                secret: BINANCE_TEST_SECRET.to_owned(),
                account: BINANCE_TEST_ACCOUNT.to_owned(),
            }],
        }
    }
}

// === Deribit ===

/// Deribit: credit pools per sub-account, matching-engine tiers, OAuth-style
/// access tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeribitConfig {
    /// Credits one non-matching-engine request costs.
    pub non_matching_cost: u64,
    /// Pool size (burst) in credits.
    pub non_matching_max: u64,
    /// Credits refilled per second.
    pub non_matching_refill_per_s: u64,
    /// Which entry of `matching_engine_tiers` applies.
    pub matching_engine_tier: String,
    /// Matching-engine limits by tier name: requests per second and burst.
    pub matching_engine_tiers: BTreeMap<String, MatchingEngineTier>,
    /// After a 10028 the session is terminated: the access token stops working.
    pub terminate_session_on_limit: bool,
    /// HTTP status of a 10028 answer ([U]). 400, like every other JSON-RPC
    /// error, by default: a client must read the error code in the body.
    pub rate_limit_status: u16,
    /// Lifetime of an access token.
    pub token_ttl_s: u64,
    /// How far a `client_signature` timestamp may be from the server ([U]).
    pub client_signature_window_ms: u64,
    /// The `testnet` field of every answer.
    pub testnet: bool,
    pub clients: Vec<DeribitClient>,
}

/// Matching-engine allowance of one tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchingEngineTier {
    pub rate: f64,
    pub burst: f64,
}

/// One Deribit API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeribitClient {
    pub client_id: String,
    pub client_secret: String,
    /// Clients of one sub-account share its credit pools.
    pub subaccount: String,
}

pub const DERIBIT_TEST_CLIENT_ID: &str = "sim-deribit-client";
pub const DERIBIT_TEST_CLIENT_SECRET: &str = "sim-deribit-secret-not-real";
pub const DERIBIT_TEST_SUBACCOUNT: &str = "sim-subaccount";

impl Default for DeribitConfig {
    fn default() -> Self {
        let tier = |rate: f64, burst: f64| MatchingEngineTier { rate, burst };
        DeribitConfig {
            non_matching_cost: 500,
            non_matching_max: 50_000,
            non_matching_refill_per_s: 10_000,
            matching_engine_tier: "tier4".to_owned(),
            matching_engine_tiers: BTreeMap::from([
                ("tier1".to_owned(), tier(30.0, 100.0)),
                ("tier2".to_owned(), tier(20.0, 50.0)),
                ("tier3".to_owned(), tier(10.0, 30.0)),
                ("tier4".to_owned(), tier(5.0, 20.0)),
            ]),
            terminate_session_on_limit: true,
            rate_limit_status: 400,
            token_ttl_s: 900,
            client_signature_window_ms: 60_000,
            testnet: true,
            clients: vec![DeribitClient {
                client_id: DERIBIT_TEST_CLIENT_ID.to_owned(),
                client_secret: DERIBIT_TEST_CLIENT_SECRET.to_owned(),
                subaccount: DERIBIT_TEST_SUBACCOUNT.to_owned(),
            }],
        }
    }
}

// === Kraken ===

/// Kraken spot: the REST call counter per key and the trading counter per
/// (account, pair). Defaults are the Starter tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KrakenConfig {
    /// REST counter maximum (Starter 15, Intermediate 20, Pro 20).
    pub rest_max: f64,
    /// REST counter decay per second (Starter 0.33, Intermediate 0.5, Pro 1).
    pub rest_decay_per_s: f64,
    /// Trading counter threshold per account and pair (Starter 60,
    /// Intermediate 125, Pro 180).
    pub trading_threshold: f64,
    /// Trading counter decay per second (Starter 1, Intermediate 2.34, Pro 3.75).
    pub trading_decay_per_s: f64,
    pub keys: Vec<KrakenKey>,
}

/// One Kraken spot API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KrakenKey {
    pub api_key: String,
    /// Standard base64; the HMAC key is the decoded bytes.
    pub secret: String,
    /// The client (account) the key belongs to. Keys of one account share
    /// its per-pair trading counters and its open orders; the REST counter
    /// and the nonce stay per key.
    pub account: String,
}

pub const KRAKEN_TEST_KEY: &str = "sim-kraken-key";
pub const KRAKEN_TEST_SECRET: &str =
    "dG9sbGdhdGUtc2ltIGtyYWtlbiBzcG90IHRlc3Qgc2VjcmV0OyBuZXZlciB1c2UgaXQgd2l0aCBrcmFrZW4hIQ==";
/// The account of the default test key.
pub const KRAKEN_TEST_ACCOUNT: &str = "sim-kraken-account";

impl Default for KrakenConfig {
    fn default() -> Self {
        KrakenConfig {
            rest_max: 15.0,
            rest_decay_per_s: 0.33,
            trading_threshold: 60.0,
            trading_decay_per_s: 1.0,
            keys: vec![KrakenKey {
                api_key: KRAKEN_TEST_KEY.to_owned(),
                secret: KRAKEN_TEST_SECRET.to_owned(),
                account: KRAKEN_TEST_ACCOUNT.to_owned(),
            }],
        }
    }
}

// === Kraken Futures ===

/// How the Kraken Futures budget refills ([U]: the docs say "up to 500
/// every 10 seconds").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FuturesWindow {
    /// Costs admitted in the last `window_ms` may not exceed the budget.
    Sliding,
    /// A bucket of `budget` refilling `budget` per `window_ms`, continuously.
    Bucket,
}

/// Kraken Futures `/derivatives` cost budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KrakenFuturesConfig {
    /// Cost units per window.
    pub budget: u64,
    pub window_ms: u64,
    pub window: FuturesWindow,
    /// Out-of-order nonces are tolerated among the last this many ([U]).
    pub nonce_memory: usize,
    /// HTTP status of an `apiLimitExceeded` answer ([U]). 200 by default,
    /// the least helpful choice: a client must read the body.
    pub rate_limit_status: u16,
    pub keys: Vec<KrakenFuturesKey>,
}

/// One Kraken Futures API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KrakenFuturesKey {
    pub api_key: String,
    /// Standard base64; the HMAC key is the decoded bytes.
    pub secret: String,
}

pub const KRAKEN_FUTURES_TEST_KEY: &str = "sim-krakenfutures-key";
pub const KRAKEN_FUTURES_TEST_SECRET: &str =
    "dG9sbGdhdGUtc2ltIGtyYWtlbiBmdXR1cmVzIHRlc3Qgc2VjcmV0OyBuZXZlciB1c2UgaXQgYW55d2hlcmUhIQ==";

impl Default for KrakenFuturesConfig {
    fn default() -> Self {
        KrakenFuturesConfig {
            budget: 500,
            window_ms: 10_000,
            window: FuturesWindow::Sliding,
            nonce_memory: 100,
            rate_limit_status: 200,
            keys: vec![KrakenFuturesKey {
                api_key: KRAKEN_FUTURES_TEST_KEY.to_owned(),
                secret: KRAKEN_FUTURES_TEST_SECRET.to_owned(),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_spells_out_the_defaults() {
        let text = include_str!("../sim.example.toml");
        let parsed = SimConfig::from_toml_str(text).unwrap();
        assert_eq!(parsed, SimConfig::default());
    }

    #[test]
    fn defaults_validate_and_unknown_fields_are_refused() {
        SimConfig::default().validate().unwrap();
        assert!(SimConfig::from_toml_str("[binance]\nweight_limt = 5\n").is_err());
        assert!(SimConfig::from_toml_str("[binance]\nweight_window_ms = 1500\n").is_err());
        assert!(SimConfig::from_toml_str("[deribit]\nmatching_engine_tier = \"gold\"\n").is_err());
        let scaled = SimConfig::from_toml_str(
            "[binance]\nweight_limit = 10\nweight_window_ms = 1000\n[faults.binance]\nstorm_ms = 500\n",
        )
        .unwrap();
        assert!(SimConfig::from_toml_str("[binance]\nban_after_refusals = 0\n").is_err());
        assert!(SimConfig::from_toml_str("[deribit]\nrate_limit_status = 99\n").is_err());
        assert!(SimConfig::from_toml_str("[kraken_futures]\nrate_limit_status = 600\n").is_err());
        // A Kraken key names its account.
        assert!(
            SimConfig::from_toml_str(&format!(
                "[[kraken.keys]]\napi_key = \"k\"\nsecret = \"{KRAKEN_TEST_SECRET}\"\n"
            ))
            .is_err()
        );
        assert_eq!(scaled.binance.weight_limit, 10);
        assert_eq!(scaled.binance.orders_short_limit, 50);
        assert_eq!(scaled.faults.binance.storm_ms, Some(500));
    }
}
