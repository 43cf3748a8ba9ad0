//! `[egress]` and `[venues.<name>]` in `tollgate.toml`: each venue's contract
//! as data. Numbers are in the venue's own units (requests, weight, credits)
//! and may be fractional (Kraken decays 0.33 per second); they become
//! micro-units when the contract is compiled.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The egress listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// Where bots send `/{venue}/...`. Loopback by default: the router holds
    /// venue secrets and signs with them, so it must not be reachable from
    /// outside the host unless the operator says so.
    pub listen: SocketAddr,
    /// Largest request body a bot may send, in bytes.
    pub max_body_bytes: usize,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            max_body_bytes: 1 << 20,
        }
    }
}

/// Which venue API a configured venue speaks: selects the signing recipe
/// and the clock endpoint's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VenueKind {
    /// Coinbase Exchange: CB-ACCESS-* HMAC-SHA256 with passphrase.
    Coinbase,
    /// Binance spot: HMAC-SHA256 over query + body, `timestamp`/`recvWindow`.
    Binance,
    /// Deribit: OAuth client credentials, `Authorization: Bearer`.
    Deribit,
    /// Kraken spot: HMAC-SHA512 over path + SHA-256(nonce + body).
    Kraken,
    /// Kraken Futures: HMAC-SHA512 over SHA-256(postData + nonce + path).
    KrakenFutures,
}

/// One venue (or one account at a venue: two entries may share a host).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VenueConfig {
    pub kind: VenueKind,
    /// The venue's API root, e.g. `https://api.binance.com`. A path is
    /// allowed (the simulator serves each venue under a prefix); signatures
    /// cover only what follows it, as the venue sees it.
    pub base_url: String,
    /// The secrets the router signs with. Absent: requests pass unsigned.
    #[serde(default)]
    pub credentials: Option<CredentialsConfig>,
    /// How long a call may wait in the queue for capacity before the router
    /// answers 429 itself.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
    /// How many calls may wait at once; beyond it, 429 at once.
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
    /// Timeout for the venue's answer. A timeout is reported as 504: the
    /// outcome of an order is then unknown, and the router never retries it.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The venue's time endpoint, for clock-offset correction.
    #[serde(default)]
    pub clock: Option<ClockConfig>,
    #[serde(default)]
    pub buckets: Vec<BucketConfig>,
    /// First match wins; a call no endpoint matches is not signed.
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
    /// What a call costs in each bucket its endpoint does not name (every
    /// bucket, for a call no endpoint matches). Name a bucket with cost 0 in
    /// an endpoint to exempt it.
    #[serde(default)]
    pub default_cost: BTreeMap<String, CostConfig>,
    /// First match wins.
    #[serde(default)]
    pub errors: Vec<ErrorRule>,
}

fn default_max_wait_ms() -> u64 {
    2000
}
fn default_max_queue() -> usize {
    1000
}
fn default_timeout_ms() -> u64 {
    10_000
}

/// Venue secrets. Prefer the `*_env` forms, which name an environment
/// variable, so secrets stay out of the file.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialsConfig {
    /// API key (Coinbase, Binance, Kraken) or client id (Deribit).
    pub key: Option<String>,
    pub key_env: Option<String>,
    /// Secret as the venue issued it (base64 for Coinbase and Kraken).
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    /// Coinbase passphrase.
    pub passphrase: Option<String>,
    pub passphrase_env: Option<String>,
    /// Binance `recvWindow` in milliseconds (default 5000, at most 60000).
    pub recv_window_ms: Option<u64>,
    /// Coinbase: whether `?query` is part of the signed path (Exchange: yes).
    pub sign_query: Option<bool>,
}

impl std::fmt::Debug for CredentialsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsConfig")
            .field("key_env", &self.key_env)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_env", &self.secret_env)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("recv_window_ms", &self.recv_window_ms)
            .finish_non_exhaustive()
    }
}

/// Where the venue tells its time.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockConfig {
    /// e.g. `/api/v3/time`.
    pub path: String,
    /// JSON pointer to the time, e.g. `/serverTime`.
    pub pointer: String,
    /// `ms` or `s` (fractions allowed).
    #[serde(default = "default_clock_unit")]
    pub unit: ClockUnit,
    /// How often to measure again, in seconds.
    #[serde(default = "default_clock_interval")]
    pub interval_seconds: u64,
}

fn default_clock_unit() -> ClockUnit {
    ClockUnit::Ms
}
fn default_clock_interval() -> u64 {
    60
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockUnit {
    Ms,
    S,
}

/// What a budget is shared by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The egress IP: shared by every entry of the same venue API on the same host.
    Ip,
    /// The account (UID, sub-account): this venue entry.
    Account,
    /// The API key: this venue entry.
    Key,
    /// The profile (Coinbase): this venue entry.
    Profile,
    /// One per value of `scope_param` (Kraken's per-pair trading counter).
    Pair,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ip => "ip",
            Scope::Account => "account",
            Scope::Key => "key",
            Scope::Profile => "profile",
            Scope::Pair => "pair",
        }
    }
}

/// How a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BucketKind {
    /// `capacity`, refilled at `refill_per_second` (Coinbase, Deribit).
    TokenBucket,
    /// A counter that rises by each cost and falls by `decay_per_second`,
    /// refused above `max` (Kraken).
    Decaying,
    /// `limit` per `window_ms`, windows aligned to the venue clock (Binance).
    FixedWindow,
    /// `limit` in any `window_ms` (Kraken Futures).
    SlidingWindow,
}

/// One budget.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    pub name: String,
    pub kind: BucketKind,
    #[serde(default = "default_scope")]
    pub scope: Scope,
    /// For `scope = "pair"`: the request parameter naming the pair.
    #[serde(default)]
    pub scope_param: Option<String>,
    pub capacity: Option<f64>,
    pub refill_per_second: Option<f64>,
    pub max: Option<f64>,
    pub decay_per_second: Option<f64>,
    pub limit: Option<f64>,
    pub window_ms: Option<i64>,
    /// Fixed windows: sends this close to a boundary count in both windows,
    /// covering the error of the measured clock offset. Sliding windows: a
    /// send is remembered this much longer than the window, covering the
    /// spread between when sends leave and when the venue counts them.
    #[serde(default = "default_guard_ms")]
    pub guard_ms: i64,
    /// Units held back from the venue's figure, covering jitter between
    /// when the router sends and when the venue counts.
    #[serde(default)]
    pub reserve: f64,
    /// A response header carrying the venue's own count for this budget.
    #[serde(default)]
    pub header: Option<String>,
    /// What `header` reports: `used` (windows) or `remaining` (buckets).
    #[serde(default)]
    pub header_reports: Option<HeaderReports>,
}

fn default_scope() -> Scope {
    Scope::Account
}
fn default_guard_ms() -> i64 {
    250
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderReports {
    Used,
    Remaining,
}

/// A call pattern and what it costs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Any method when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// Segments; `{name}` matches one segment, a final `*` matches the rest.
    pub path: String,
    /// Whether the router signs this call with the venue credentials.
    #[serde(default)]
    pub signed: bool,
    /// Bucket name → cost. Buckets not named cost their `default_cost`.
    #[serde(default)]
    pub cost: BTreeMap<String, CostConfig>,
}

/// A cost: a number, a step table over a parameter, or a base plus a cost
/// per item of a JSON array.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CostConfig {
    Fixed(f64),
    /// The first step whose bound is at least the parameter's value
    /// (`default` when absent); above the last bound, the last cost.
    Steps {
        param: String,
        default: f64,
        steps: Vec<(f64, f64)>,
    },
    /// `base + per_item × n`, n = length of the JSON array at `pointer`, in
    /// the JSON body, or in the JSON held by the form/query field `field`.
    Items {
        #[serde(default)]
        base: f64,
        per_item: f64,
        #[serde(default)]
        field: Option<String>,
        pointer: String,
    },
}

/// How the router reads a venue's refusal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRule {
    /// Match on the HTTP status.
    #[serde(default)]
    pub status: Option<u16>,
    /// Match on the JSON value at `pointer` (e.g. `/error/code` = 10028).
    #[serde(default)]
    pub pointer: Option<String>,
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
    /// Match on text in the body (Kraken's `EAPI:Rate limit exceeded`).
    #[serde(default)]
    pub body_contains: Option<String>,
    /// `backoff` (slow down), `ban` (stop everything in the scope), or
    /// `reauthenticate` (the session token is no longer valid).
    pub action: ErrorAction,
    /// Whose breaker opens: `ip` and `key` hold every call of the venue
    /// (every call is sent from the IP with the key); `account`, `profile`
    /// and `pair` hold the calls that spend a budget of that scope.
    #[serde(default = "default_scope")]
    pub scope: Scope,
    /// Instead of a scope: the budget the refusal is about (Kraken's REST
    /// counter); its breaker holds only calls that spend it.
    #[serde(default)]
    pub bucket: Option<String>,
    /// Used when the venue sends no `Retry-After`.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Forget the session token (Deribit ends the session on 10028).
    #[serde(default)]
    pub reauthenticate: bool,
}

fn default_backoff_ms() -> u64 {
    1000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorAction {
    /// Slow down: the scope's breaker opens until `Retry-After`.
    Backoff,
    /// Stop: the same, reported as a ban (`venue_banned`).
    Ban,
    /// The session is gone (Deribit 13009): sign in again on the next call;
    /// no breaker opens.
    Reauthenticate,
}
