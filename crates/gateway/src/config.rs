//! `tollgate.toml`: static configuration, with every setting overridable by a
//! `TOLLGATE_*` environment variable.
//!
//! Environment variables name a setting by its path with `__` between levels:
//! `TOLLGATE_INGRESS__LISTEN=0.0.0.0:8080` sets `ingress.listen`. One alias is
//! kept because operators expect it: `TOLLGATE_ADMIN_TOKEN` sets `admin.token`.
//! Unknown keys are errors, so a typo never silently falls back to a default.

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tollgate_core::access::ProductScope;
use tollgate_core::limit::BucketSpec;
use tollgate_core::meter::Meter;
use tollgate_core::pricing::{Schedule, ScheduleError, Tier};
use tollgate_core::route::{IdempotencyMode, PathPattern, Route, RouteClass, RouteTable};

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The client-facing listener.
    pub ingress: IngressConfig,
    /// The operator-facing listener.
    pub admin: AdminConfig,
    /// Where allowed requests go.
    pub upstream: UpstreamConfig,
    /// The durable store.
    pub store: StoreConfig,
    /// API key settings.
    pub keys: KeysConfig,
    /// Products by name.
    pub products: BTreeMap<String, ProductConfig>,
    /// Plans by name.
    pub plans: BTreeMap<String, PlanConfig>,
    /// Routes, tried in order.
    pub routes: Vec<RouteConfig>,
    /// Idempotency-Key records.
    pub idempotency: IdempotencyConfig,
    /// The payment provider used for automatic top-ups.
    pub payments: PaymentsConfig,
    /// Request signatures and the master key sealing signing secrets.
    pub credentials: CredentialsConfig,
    /// JWT issuers.
    pub jwt: JwtConfig,
    /// The egress listener, where bots send their venue calls.
    pub egress: tollgate_venues::EgressConfig,
    /// Venue contracts by name (the first path segment of an egress call).
    pub venues: BTreeMap<String, tollgate_venues::VenueConfig>,
}

/// `[credentials]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialsConfig {
    /// Base64 of 32 random bytes; seals signing secrets at rest. Better set
    /// with `TOLLGATE_MASTER_KEY`. Without it, keys cannot get signing secrets.
    pub master_key: Option<String>,
    /// Timestamp window of signed requests, in seconds either side of the
    /// gateway's clock, by window class. A route uses the class named by its
    /// `signing_window`, else the one named after its class (`read`/`write`).
    pub windows: BTreeMap<String, u32>,
    /// Most signatures remembered for replay detection (oldest dropped first
    /// only once their window is over; beyond this, signed requests are
    /// refused rather than risk a replay).
    pub replay_cache_entries: usize,
    /// Most verified JWTs cached until their expiry.
    pub token_cache_entries: usize,
}

impl Default for CredentialsConfig {
    fn default() -> Self {
        CredentialsConfig {
            master_key: None,
            windows: [
                ("read".to_owned(), 30),
                ("write".to_owned(), 30),
                ("strict".to_owned(), 5),
            ]
            .into(),
            replay_cache_entries: 1_000_000,
            token_cache_entries: 100_000,
        }
    }
}

/// `[jwt]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Accepted issuers.
    pub issuers: Vec<IssuerConfig>,
}

/// `[[jwt.issuers]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` claim this issuer's tokens carry.
    pub issuer: String,
    /// Accepted `aud` values; a token must name one of them.
    pub audiences: Vec<String>,
    /// Accepted `alg` values: `HS256`, `RS256`, `ES256` or `EdDSA`. A token
    /// with any other algorithm is refused, whatever its signature.
    pub algorithms: Vec<String>,
    /// Shared secret for `HS256`.
    #[serde(default)]
    pub hs256_secret: Option<String>,
    /// JWKS document on disk (for `RS256`, `ES256`, `EdDSA`).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// JWKS document URL (for `RS256`, `ES256`, `EdDSA`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// The key set is fetched again this often.
    #[serde(default = "default_jwks_refresh")]
    pub refresh_seconds: u64,
    /// A token with an unknown `kid` fetches the set again, at most once per
    /// this many seconds.
    #[serde(default = "default_jwks_cooldown")]
    pub cooldown_seconds: u64,
    /// Allowed clock difference for `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// The claim that names the key's organization.
    #[serde(default = "default_org_claim")]
    pub org_claim: String,
    /// Claim values mapped to rate classes; the first match wins.
    #[serde(default)]
    pub rate_classes: Vec<ClaimClassConfig>,
}

/// `[[jwt.issuers.rate_classes]]`: `claim = value` → `class`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimClassConfig {
    /// Claim name, e.g. `tier` or `aud`.
    pub claim: String,
    /// The value (or one of the array's values) that selects the class.
    pub value: String,
    /// The plan's rate class to use.
    pub class: String,
}

fn default_jwks_refresh() -> u64 {
    300
}
fn default_jwks_cooldown() -> u64 {
    10
}
fn default_leeway() -> u64 {
    30
}
fn default_org_claim() -> String {
    "org".to_owned()
}

/// `[ingress.tls]`: a second, TLS listener that asks for client certificates.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Address of the TLS listener.
    pub listen: SocketAddr,
    /// Server certificate chain, PEM.
    pub cert_file: PathBuf,
    /// Server private key, PEM.
    pub key_file: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to.
    pub client_ca_file: PathBuf,
    /// `optional` (the default: a client may connect without a certificate;
    /// keys that demand one are refused) or `required`.
    #[serde(default)]
    pub client_certificates: ClientCertificates,
}

/// Whether the TLS listener insists on a client certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCertificates {
    /// Asked for, verified if sent.
    #[default]
    Optional,
    /// The handshake fails without one.
    Required,
}

/// `[payments]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// Stripe's API base; the tests point it at a local fake.
    pub stripe_api_base: String,
    /// Stripe secret key (`sk_…`); better set with
    /// `TOLLGATE_PAYMENTS__STRIPE_SECRET_KEY`. Without it, no autocharge runs.
    pub stripe_secret_key: Option<String>,
    /// Currency of balances and top-ups (two-decimal currencies only).
    pub currency: String,
    /// Autocharge turns itself off after this many failures in a row.
    pub max_consecutive_failures: u32,
    /// How long to wait for Stripe's answer to a top-up. One that does not
    /// come in time is an unknown outcome: the attempt stays pending and is
    /// retried under the same idempotency key.
    pub timeout_ms: u64,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig {
            stripe_api_base: "https://api.stripe.com".into(),
            stripe_secret_key: None,
            currency: "usd".into(),
            max_consecutive_failures: 3,
            timeout_ms: 30_000,
        }
    }
}

/// `[idempotency]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    /// How long a completed request's response is replayed for its key.
    pub retention_seconds: u64,
    /// An in-flight record left by a crashed process is taken over after
    /// this long. Must exceed `upstream.request_timeout_ms`.
    pub lock_timeout_seconds: u64,
    /// Largest response body kept for replay; larger bodies are replayed
    /// with status and headers only.
    pub max_response_bytes: usize,
    /// Expired records are deleted this often.
    pub purge_interval_seconds: u64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            retention_seconds: 24 * 3600,
            lock_timeout_seconds: 60,
            max_response_bytes: 1024 * 1024,
            purge_interval_seconds: 300,
        }
    }
}

/// `[ingress]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request header section accepted (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// A client that has not sent a complete header section within this time is cut off.
    pub header_read_timeout_ms: u64,
    /// An optional TLS listener (mTLS).
    pub tls: Option<TlsConfig>,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            header_read_timeout_ms: 10_000,
            tls: None,
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address to listen on. Keep it on loopback or a private network.
    pub listen: SocketAddr,
    /// Bearer token for `/admin/v1/*`. Required; `TOLLGATE_ADMIN_TOKEN` sets it.
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            token: None,
        }
    }
}

/// `[upstream]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Base URL, `http://host:port` with an optional path prefix.
    pub url: String,
    /// Time allowed to open a TCP connection.
    pub connect_timeout_ms: u64,
    /// Time allowed from sending the request to receiving the response head.
    pub request_timeout_ms: u64,
    /// Idle pooled connections are closed after this long.
    pub pool_idle_timeout_ms: u64,
    /// Idle connections kept per upstream host.
    pub pool_max_idle_per_host: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            url: String::new(),
            connect_timeout_ms: 2_000,
            request_timeout_ms: 30_000,
            pool_idle_timeout_ms: 90_000,
            pool_max_idle_per_host: 256,
        }
    }
}

/// `[store]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// SQLite database file; created if missing.
    pub sqlite_path: PathBuf,
    /// Cycle usage counters are written to the store this often.
    pub usage_flush_ms: u64,
    /// `strict` (the default): a request's charge is durable before its
    /// answer is released. `relaxed`: the answer does not wait for the
    /// write, which saves its latency but can lose charges of answers sent
    /// just before a crash.
    pub durability: Durability,
}

/// When a charge must be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Before the answer is released.
    #[default]
    Strict,
    /// Soon after; the answer does not wait.
    Relaxed,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            sqlite_path: PathBuf::from("tollgate.db"),
            usage_flush_ms: 1_000,
            durability: Durability::Strict,
        }
    }
}

/// `[keys]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// How long the old secret keeps working after a rotation, unless the
    /// rotate call says otherwise.
    pub rotation_overlap_seconds: u64,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            rotation_overlap_seconds: 24 * 3600,
        }
    }
}

/// `[products.<name>]`
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ProductConfig {
    /// Shown in listings.
    pub description: String,
}

/// `[plans.<name>]`
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PlanConfig {
    /// Products the plan opens; `["*"]` (the default) opens all.
    pub products: Vec<String>,
    /// Rate classes by name: each a token bucket per API key.
    pub rate_classes: BTreeMap<String, RateConfig>,
    /// The class a key gets unless a credential names another. Required
    /// when `rate_classes` is not empty.
    pub default_rate_class: Option<String>,
    /// The organization's aggregate bucket, shared by all its keys.
    pub org_rate: Option<RateConfig>,
    /// Limits per billing cycle, by meter name (`request`, `bytes_out`,
    /// `order_sent`, `order_filled`, `compute_ms`).
    pub quotas: BTreeMap<String, u64>,
    /// Bucket cost by route: keys are a route's path pattern, optionally
    /// preceded by a method (`"POST /v1/orders" = 5`). Overrides the route's
    /// own `cost`.
    pub costs: BTreeMap<String, u64>,
    /// Graduated prices per billing cycle, by meter name. Pay-as-you-go
    /// organizations are charged for what they use.
    pub prices: BTreeMap<String, PriceConfig>,
}

/// `[plans.<name>.prices.<meter>]`: units included, then graduated tiers.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PriceConfig {
    /// Units per cycle at no charge.
    pub included: u64,
    /// Tiers in order; the last has no `up_to`.
    pub tiers: Vec<TierConfig>,
}

/// One price tier: `micros` per `per` units, up to `up_to` billable units.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Cumulative billable units (after the included ones) this tier ends at; absent on the last tier.
    #[serde(default)]
    pub up_to: Option<u64>,
    /// Price in micro-units of `per` units.
    pub micros: u64,
    /// Units the price is for (default 1).
    #[serde(default = "one")]
    pub per: u64,
}

impl PriceConfig {
    /// The schedule in core's terms.
    pub fn schedule(&self) -> Result<Schedule, ScheduleError> {
        Schedule::new(
            self.included,
            self.tiers
                .iter()
                .map(|t| Tier {
                    up_to: t.up_to,
                    price_micros: t.micros,
                    per_units: t.per,
                })
                .collect(),
        )
    }
}

/// A token bucket: `rate` cost units per `per_seconds`, holding at most `burst`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Units refilled per period.
    pub rate: u64,
    /// The period in seconds (default 1).
    #[serde(default = "one")]
    pub per_seconds: u64,
    /// Capacity.
    pub burst: u64,
}

fn one() -> u64 {
    1
}

fn default_cost() -> u64 {
    1
}

/// `[[routes]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path pattern, e.g. `/v1/orders/{id}`.
    pub path: String,
    /// Methods; empty or absent means any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Product name, declared under `[products]`.
    pub product: String,
    /// `read` or `write`.
    pub class: RouteClass,
    /// Token-bucket cost of one request (default 1); plans may override it.
    #[serde(default = "default_cost")]
    pub cost: u64,
    /// `required`, `optional` or `off`; by default required on write routes
    /// and off on read routes.
    #[serde(default)]
    pub idempotency: Option<IdempotencyMode>,
    /// The most a request may use per meter, to size the hold placed before
    /// forwarding (`request` is always 1; `bytes_out` defaults to 1 MiB).
    #[serde(default)]
    pub max_units: BTreeMap<String, u64>,
    /// The window class (under `[credentials.windows]`) of this route's
    /// signature timestamps; by default the route's class.
    #[serde(default)]
    pub signing_window: Option<String>,
}

impl Config {
    fn validate_credentials(&self) -> Result<(), ConfigError> {
        if let Some(key) = &self.credentials.master_key {
            crate::secrets::LocalKeyProvider::from_base64(key)
                .map_err(|e| invalid("credentials.master_key", e.to_string()))?;
        }
        for (name, seconds) in &self.credentials.windows {
            if *seconds == 0 || *seconds > 3600 {
                return Err(invalid(
                    format!("credentials.windows.{name}"),
                    "must be between 1 and 3600 seconds",
                ));
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            let window = route
                .signing_window
                .as_deref()
                .unwrap_or(route.class.as_str());
            if !self.credentials.windows.contains_key(window) {
                return Err(invalid(
                    format!("routes[{i}].signing_window"),
                    format!("no window class {window:?} under [credentials.windows]"),
                ));
            }
        }
        for (i, issuer) in self.jwt.issuers.iter().enumerate() {
            let at = |field: &str| format!("jwt.issuers[{i}].{field}");
            if issuer.issuer.is_empty() {
                return Err(invalid(at("issuer"), "must not be empty"));
            }
            if self.jwt.issuers[..i]
                .iter()
                .any(|o| o.issuer == issuer.issuer)
            {
                return Err(invalid(at("issuer"), "names an issuer twice"));
            }
            if issuer.audiences.is_empty() {
                return Err(invalid(
                    at("audiences"),
                    "name at least one accepted audience",
                ));
            }
            if issuer.algorithms.is_empty() {
                return Err(invalid(at("algorithms"), "name at least one algorithm"));
            }
            let mut needs_jwks = false;
            for alg in &issuer.algorithms {
                match alg.as_str() {
                    "HS256" => {
                        if issuer.hs256_secret.as_deref().is_none_or(|s| s.len() < 32) {
                            return Err(invalid(
                                at("hs256_secret"),
                                "HS256 needs a shared secret of at least 32 characters",
                            ));
                        }
                    }
                    "RS256" | "ES256" | "EdDSA" => needs_jwks = true,
                    other => {
                        return Err(invalid(
                            at("algorithms"),
                            format!("{other:?} is not supported; use HS256, RS256, ES256 or EdDSA"),
                        ));
                    }
                }
            }
            if needs_jwks && issuer.jwks_file.is_none() && issuer.jwks_url.is_none() {
                return Err(invalid(
                    at("jwks_file"),
                    "RS256, ES256 and EdDSA need jwks_file or jwks_url",
                ));
            }
            if issuer.jwks_file.is_some() && issuer.jwks_url.is_some() {
                return Err(invalid(
                    at("jwks_url"),
                    "set jwks_file or jwks_url, not both",
                ));
            }
            if issuer.refresh_seconds == 0 || issuer.cooldown_seconds == 0 {
                return Err(invalid(
                    at("refresh_seconds"),
                    "refresh_seconds and cooldown_seconds must be positive",
                ));
            }
        }
        Ok(())
    }

    /// Each route's signature window in seconds, by route index.
    pub fn route_windows(&self) -> Vec<u32> {
        self.routes
            .iter()
            .map(|route| {
                let name = route
                    .signing_window
                    .as_deref()
                    .unwrap_or(route.class.as_str());
                self.credentials.windows.get(name).copied().unwrap_or(30)
            })
            .collect()
    }
}

/// Why configuration was refused. Each message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be read or parsed.
    #[error("{0}")]
    Load(#[from] Box<figment::Error>),
    /// A setting has an invalid value.
    #[error("{setting}: {problem}")]
    Invalid {
        /// Dotted path of the setting.
        setting: String,
        /// What is wrong.
        problem: String,
    },
}

fn invalid(setting: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.into(),
        problem: problem.into(),
    }
}

/// The environment layer: `TOLLGATE_SECTION__KEY` and the `TOLLGATE_ADMIN_TOKEN` alias.
fn env_layer(figment: Figment) -> Figment {
    figment
        .merge(
            Env::prefixed("TOLLGATE_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        )
        .merge(
            Env::raw()
                .only(&["TOLLGATE_ADMIN_TOKEN"])
                .map(|_| "admin.token".into()),
        )
        .merge(
            Env::raw()
                .only(&["TOLLGATE_MASTER_KEY"])
                .map(|_| "credentials.master_key".into()),
        )
}

impl Config {
    /// Loads `path` (which must exist), then the environment, then validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if !path.exists() {
            return Err(invalid(
                "--config",
                format!("file {} does not exist", path.display()),
            ));
        }
        Self::from_figment(Figment::from(Toml::file_exact(path)))
    }

    /// Parses TOML text, then the environment, then validates.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(text)))
    }

    /// Parses TOML text alone, ignoring the environment.
    pub fn from_toml_str_without_env(text: &str) -> Result<Config, ConfigError> {
        let config: Config = Figment::from(Toml::string(text))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    fn from_figment(base: Figment) -> Result<Config, ConfigError> {
        let config: Config = env_layer(base).extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every cross-reference and bound. Called by every loader; call it
    /// again after changing a loaded config by hand.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ingress.max_header_bytes < 1024 {
            return Err(invalid("ingress.max_header_bytes", "must be at least 1024"));
        }
        if self.ingress.header_read_timeout_ms == 0 {
            return Err(invalid(
                "ingress.header_read_timeout_ms",
                "must be positive",
            ));
        }
        if let Some(token) = &self.admin.token
            && token.len() < 16
        {
            return Err(invalid("admin.token", "must be at least 16 characters"));
        }
        self.upstream_base()?;
        if !self.venues.is_empty() {
            tollgate_venues::Router::new(&self.venues)
                .map_err(|e| invalid("venues", e.to_string()))?;
        }
        self.validate_credentials()?;
        let idem = &self.idempotency;
        if idem.retention_seconds == 0 || idem.purge_interval_seconds == 0 {
            return Err(invalid(
                "idempotency",
                "retention_seconds and purge_interval_seconds must be positive",
            ));
        }
        if idem.lock_timeout_seconds.saturating_mul(1000) <= self.upstream.request_timeout_ms {
            return Err(invalid(
                "idempotency.lock_timeout_seconds",
                "must be longer than upstream.request_timeout_ms, or a slow request's key could be taken over while it runs",
            ));
        }
        for (setting, value) in [
            ("store.usage_flush_ms", self.store.usage_flush_ms),
            (
                "upstream.connect_timeout_ms",
                self.upstream.connect_timeout_ms,
            ),
            (
                "upstream.request_timeout_ms",
                self.upstream.request_timeout_ms,
            ),
        ] {
            if value == 0 {
                return Err(invalid(setting, "must be positive"));
            }
        }
        for (name, plan) in &self.plans {
            self.validate_plan_limits(name, plan)?;
            for product in &plan.products {
                if product != "*" && !self.products.contains_key(product) {
                    return Err(invalid(
                        format!("plans.{name}.products"),
                        format!("unknown product {product:?}; declare it under [products]"),
                    ));
                }
            }
        }
        self.route_table()?;
        Ok(())
    }

    fn validate_plan_limits(&self, name: &str, plan: &PlanConfig) -> Result<(), ConfigError> {
        let at = |field: &str| format!("plans.{name}.{field}");
        let spec = |field: String, rate: &RateConfig| {
            BucketSpec::new(rate.rate, rate.per_seconds, rate.burst)
                .ok_or_else(|| invalid(field, "rate, per_seconds and burst must all be positive"))
        };
        let mut smallest_burst = u64::MAX;
        for (class, rate) in &plan.rate_classes {
            smallest_burst =
                smallest_burst.min(spec(at(&format!("rate_classes.{class}")), rate)?.burst());
        }
        if let Some(rate) = &plan.org_rate {
            smallest_burst = smallest_burst.min(spec(at("org_rate"), rate)?.burst());
        }
        match (&plan.default_rate_class, plan.rate_classes.is_empty()) {
            (None, false) => {
                return Err(invalid(
                    at("default_rate_class"),
                    "required when rate_classes are set",
                ));
            }
            (Some(class), _) if !plan.rate_classes.contains_key(class) => {
                return Err(invalid(
                    at("default_rate_class"),
                    format!("{class:?} is not one of rate_classes"),
                ));
            }
            _ => {}
        }
        for (meter, price) in &plan.prices {
            if Meter::parse(meter).is_none() {
                return Err(invalid(at(&format!("prices.{meter}")), "unknown meter"));
            }
            price
                .schedule()
                .map_err(|e| invalid(at(&format!("prices.{meter}")), e.to_string()))?;
        }
        for meter in plan.quotas.keys() {
            if Meter::parse(meter).is_none() {
                let known: Vec<&str> = Meter::ALL.iter().map(|m| m.as_str()).collect();
                return Err(invalid(
                    at(&format!("quotas.{meter}")),
                    format!("unknown meter; meters: {known:?}"),
                ));
            }
        }
        let table = self.route_table()?;
        for (target, cost) in &plan.costs {
            let (method, pattern) = cost_target(target);
            let known = table.routes().iter().any(|r| {
                r.pattern.as_str() == pattern
                    && method
                        .as_ref()
                        .is_none_or(|m| r.methods.is_empty() || r.methods.contains(m))
            });
            if !known {
                return Err(invalid(
                    at(&format!("costs.{target:?}")),
                    "matches no configured route",
                ));
            }
            if *cost == 0 || *cost > smallest_burst {
                return Err(invalid(
                    at(&format!("costs.{target:?}")),
                    format!(
                        "must be between 1 and the smallest burst of the plan ({smallest_burst})"
                    ),
                ));
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            if route.cost == 0 || route.cost > smallest_burst {
                return Err(invalid(
                    format!("routes[{i}].cost"),
                    format!(
                        "must be between 1 and the smallest burst of plan {name:?} ({smallest_burst}), or a request could never pass"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The upstream base URL split into authority and path prefix.
    pub fn upstream_base(&self) -> Result<UpstreamBase, ConfigError> {
        let url = self.upstream.url.trim();
        if url.is_empty() {
            return Err(invalid(
                "upstream.url",
                "not set; e.g. url = \"http://127.0.0.1:9000\" (or TOLLGATE_UPSTREAM__URL)",
            ));
        }
        let uri: http::Uri = url
            .parse()
            .map_err(|e| invalid("upstream.url", format!("{url:?} is not a URL: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(invalid(
                    "upstream.url",
                    "https upstreams are not supported yet; put the upstream on loopback or a private network",
                ));
            }
            _ => {
                return Err(invalid(
                    "upstream.url",
                    format!("{url:?} must start with http://"),
                ));
            }
        }
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("upstream.url", format!("{url:?} has no host")))?
            .clone();
        if uri.query().is_some() {
            return Err(invalid("upstream.url", "must not contain a query"));
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(UpstreamBase { authority, prefix })
    }

    /// Compiles `[[routes]]` into a table, checking patterns, methods and products.
    pub fn route_table(&self) -> Result<RouteTable, ConfigError> {
        let mut routes = Vec::with_capacity(self.routes.len());
        for (i, route) in self.routes.iter().enumerate() {
            let setting = format!("routes[{i}]");
            let pattern = PathPattern::parse(&route.path)
                .map_err(|e| invalid(format!("{setting}.path"), e.to_string()))?;
            let mut methods = Vec::new();
            for method in &route.methods {
                let upper = method.to_ascii_uppercase();
                if http::Method::from_bytes(upper.as_bytes()).is_err() {
                    return Err(invalid(
                        format!("{setting}.methods"),
                        format!("{method:?} is not an HTTP method"),
                    ));
                }
                methods.push(upper);
            }
            if !self.products.contains_key(&route.product) {
                return Err(invalid(
                    format!("{setting}.product"),
                    format!(
                        "unknown product {:?}; declare it under [products]",
                        route.product
                    ),
                ));
            }
            for meter in route.max_units.keys() {
                if Meter::parse(meter).is_none() {
                    return Err(invalid(
                        format!("{setting}.max_units.{meter}"),
                        "unknown meter",
                    ));
                }
            }
            routes.push(Route {
                pattern,
                methods,
                product: route.product.clone(),
                class: route.class,
                cost: route.cost,
                idempotency: route.idempotency.unwrap_or(match route.class {
                    RouteClass::Write => IdempotencyMode::Required,
                    RouteClass::Read => IdempotencyMode::Off,
                }),
            });
        }
        Ok(RouteTable::new(routes))
    }

    /// The products a plan opens, `None` if the plan opens all of them.
    pub fn plan_scope(&self, plan: &str) -> Option<ProductScope> {
        let plan = self.plans.get(plan)?;
        match ProductScope::from_list(&plan.products) {
            ProductScope::Only(list) if !plan.products.is_empty() => Some(ProductScope::Only(list)),
            _ => None,
        }
    }

    /// `ingress.header_read_timeout_ms` as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.ingress.header_read_timeout_ms)
    }
}

/// Splits a plan `costs` key, `"POST /v1/orders"` or `"/v1/orders"`, into
/// its upper-cased method (if any) and path pattern.
pub fn cost_target(target: &str) -> (Option<String>, &str) {
    match target.split_once(' ') {
        Some((method, pattern)) => (Some(method.to_ascii_uppercase()), pattern.trim()),
        None => (None, target),
    }
}

/// The upstream's authority and path prefix, ready to build request URIs.
#[derive(Debug, Clone)]
pub struct UpstreamBase {
    /// `host:port`
    pub authority: http::uri::Authority,
    /// Path prefix without a trailing slash; empty for none.
    pub prefix: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [upstream]
        url = "http://127.0.0.1:9000"
        [products.market-data]
        [[routes]]
        path = "/v1/ticker"
        methods = ["get"]
        product = "market-data"
        class = "read"
    "#;

    #[test]
    fn minimal_file_gets_defaults() {
        let config = Config::from_toml_str_without_env(MINIMAL).expect("valid");
        assert_eq!(config.ingress.listen.port(), 8080);
        assert_eq!(config.admin.listen.port(), 8081);
        let table = config.route_table().expect("routes");
        assert_eq!(table.routes()[0].methods, vec!["GET".to_owned()]);
    }

    #[test]
    fn unknown_keys_and_bad_references_are_named() {
        let typo = format!("{MINIMAL}\n[ingres]\nlisten = \"127.0.0.1:1\"\n");
        let err = Config::from_toml_str_without_env(&typo)
            .expect_err("typo")
            .to_string();
        assert!(err.contains("ingres"), "{err}");

        let bad_product = MINIMAL.replace("product = \"market-data\"", "product = \"nope\"");
        let err = Config::from_toml_str_without_env(&bad_product)
            .expect_err("product")
            .to_string();
        assert!(err.contains("routes[0].product"), "{err}");

        let https = MINIMAL.replace("http://127", "https://127");
        let err = Config::from_toml_str_without_env(&https)
            .expect_err("https")
            .to_string();
        assert!(err.contains("upstream.url"), "{err}");

        let bad_method = MINIMAL.replace("[\"get\"]", "[\"G T\"]");
        let err = Config::from_toml_str_without_env(&bad_method)
            .expect_err("method")
            .to_string();
        assert!(err.contains("routes[0].methods"), "{err}");
    }

    #[test]
    fn plan_limits_are_validated() {
        let with_plan = |plan: &str| format!("{MINIMAL}\n{plan}");
        let ok = with_plan(
            "[plans.p]\ndefault_rate_class = \"s\"\nrate_classes.s = { rate = 2, burst = 4 }\nquotas.request = 10\ncosts = { \"GET /v1/ticker\" = 3 }\n",
        );
        Config::from_toml_str_without_env(&ok).expect("valid plan");
        for (bad, setting) in [
            (
                "[plans.p]\nrate_classes.s = { rate = 2, burst = 4 }\n",
                "plans.p.default_rate_class",
            ),
            (
                "[plans.p]\ndefault_rate_class = \"x\"\nrate_classes.s = { rate = 2, burst = 4 }\n",
                "plans.p.default_rate_class",
            ),
            (
                "[plans.p]\ndefault_rate_class = \"s\"\nrate_classes.s = { rate = 0, burst = 4 }\n",
                "plans.p.rate_classes.s",
            ),
            (
                "[plans.p]\nquotas.requests = 10\n",
                "plans.p.quotas.requests",
            ),
            ("[plans.p]\ncosts = { \"/nope\" = 1 }\n", "plans.p.costs"),
            (
                "[plans.p]\ndefault_rate_class = \"s\"\nrate_classes.s = { rate = 1, burst = 2 }\ncosts = { \"/v1/ticker\" = 3 }\n",
                "plans.p.costs",
            ),
            ("[store]\nusage_flush_ms = 0\n", "store.usage_flush_ms"),
        ] {
            let err = Config::from_toml_str_without_env(&with_plan(bad))
                .expect_err(bad)
                .to_string();
            assert!(err.contains(setting), "{bad}: {err}");
        }
    }

    #[test]
    fn upstream_prefix_is_kept() {
        let mut config = Config::from_toml_str_without_env(MINIMAL).expect("valid");
        config.upstream.url = "http://10.0.0.1:81/api/".into();
        let base = config.upstream_base().expect("base");
        assert_eq!(base.authority.as_str(), "10.0.0.1:81");
        assert_eq!(base.prefix, "/api");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's own error type
    fn environment_overrides_files() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TOLLGATE_INGRESS__LISTEN", "127.0.0.1:0");
            jail.set_env("TOLLGATE_ADMIN_TOKEN", "from-the-environment-0123");
            jail.set_env("TOLLGATE_ADMIN_URL", "ignored: not a setting");
            let config = Config::from_toml_str(MINIMAL).expect("valid");
            assert_eq!(config.ingress.listen.port(), 0);
            assert_eq!(
                config.admin.token.as_deref(),
                Some("from-the-environment-0123")
            );
            Ok(())
        });
    }
}
