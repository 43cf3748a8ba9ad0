//! The `tollgate` command: serve the gateway, manage organizations and keys
//! through a running server's admin API, check configuration.

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use tollgate_gateway::{Clock, Config, Listeners, SystemClock, demo};

/// Exit status for configuration errors (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "A payment-gated API gateway for trading APIs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage organizations through a running gateway's admin API.
    Org {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Manage API keys through a running gateway's admin API.
    Key {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Run the venue simulator: Coinbase, Binance, Deribit, Kraken and Kraken
    /// Futures with their published limits, plus fault injection.
    Sim(SimArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Configuration file.
    #[arg(long, env = "TOLLGATE_CONFIG", default_value = "tollgate.toml")]
    config: PathBuf,
    /// Run a self-contained demo: built-in trading API upstream, fresh SQLite
    /// file, a seeded org and key. Ignores --config.
    #[arg(long)]
    demo: bool,
}

#[derive(Debug, Args)]
struct SimArgs {
    /// Address to listen on; every venue is served under its own path prefix.
    #[arg(long, default_value = "127.0.0.1:9300")]
    listen: std::net::SocketAddr,
    /// Simulator configuration (TOML, see crates/sim/sim.example.toml);
    /// without it the venues' published limits apply.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Refuse every request to VENUE for MS ms from start, with Retry-After S
    /// (default 1) where the venue sends one. VENUE may be `all`. Repeatable.
    #[arg(long = "storm", value_name = "VENUE:MS[:S]", value_parser = parse_storm)]
    storms: Vec<(Option<tollgate_sim::Venue>, u64, Option<u64>)>,
    /// Offset a venue's clock by MS (negative: behind). Repeatable.
    #[arg(long = "skew-ms", value_name = "[VENUE:]MS", allow_hyphen_values = true, value_parser = parse_venue_value::<i64>)]
    skews: Vec<(Option<tollgate_sim::Venue>, i64)>,
    /// Add MS of latency before each request is processed. Repeatable.
    #[arg(long = "latency-ms", value_name = "[VENUE:]MS", value_parser = parse_venue_value::<u64>)]
    latency: Vec<(Option<tollgate_sim::Venue>, u64)>,
    /// Fraction (0-1) of the orders in a cancel-all left open. Repeatable.
    #[arg(long = "partial-cancel", value_name = "[VENUE:]FRACTION", value_parser = parse_venue_value::<f64>)]
    partial_cancel: Vec<(Option<tollgate_sim::Venue>, f64)>,
    /// Fraction (0-1) of the new orders in a batch that fail. Repeatable.
    #[arg(long = "batch-mixed", value_name = "[VENUE:]FRACTION", value_parser = parse_venue_value::<f64>)]
    batch_mixed: Vec<(Option<tollgate_sim::Venue>, f64)>,
    /// Fraction (0-1) of order placements recorded but answered as unknown.
    #[arg(long = "unknown-outcome", value_name = "[VENUE:]FRACTION", value_parser = parse_venue_value::<f64>)]
    unknown_outcome: Vec<(Option<tollgate_sim::Venue>, f64)>,
    /// How long an unknown outcome holds the connection before its 504.
    #[arg(long = "hold-ms", value_name = "[VENUE:]MS", value_parser = parse_venue_value::<u64>)]
    hold: Vec<(Option<tollgate_sim::Venue>, u64)>,
    /// Drop the connection of an unknown outcome instead of answering 504.
    #[arg(long)]
    unknown_drop: bool,
    /// Seed of the random draws of the fractional faults.
    #[arg(long)]
    seed: Option<u64>,
}

/// `VENUE:VALUE` or `VALUE` (all venues); VENUE may also be `all`.
fn parse_venue_value<T: std::str::FromStr>(
    text: &str,
) -> Result<(Option<tollgate_sim::Venue>, T), String> {
    let (venue, value) = match text.split_once(':') {
        Some((venue, value)) => (parse_sim_venue(venue)?, value),
        None => (None, text),
    };
    let value = value
        .parse::<T>()
        .map_err(|_| format!("{value:?} is not a valid value"))?;
    Ok((venue, value))
}

fn parse_sim_venue(text: &str) -> Result<Option<tollgate_sim::Venue>, String> {
    if text.eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    text.parse::<tollgate_sim::Venue>().map(Some).map_err(|_| {
        format!("unknown venue {text:?} (coinbase, binance, deribit, kraken, kraken_futures, all)")
    })
}

/// `VENUE:MS[:S]`.
fn parse_storm(text: &str) -> Result<(Option<tollgate_sim::Venue>, u64, Option<u64>), String> {
    let mut parts = text.split(':');
    let (Some(venue), Some(ms)) = (parts.next(), parts.next()) else {
        return Err("expected VENUE:MS[:S]".to_owned());
    };
    let venue = parse_sim_venue(venue)?;
    let ms = ms
        .parse::<u64>()
        .map_err(|_| format!("{ms:?} is not a number of ms"))?;
    let retry = match parts.next() {
        Some(secs) => Some(
            secs.parse::<u64>()
                .map_err(|_| format!("{secs:?} is not a number of seconds"))?,
        ),
        None => None,
    };
    if parts.next().is_some() {
        return Err("expected VENUE:MS[:S]".to_owned());
    }
    Ok((venue, ms, retry))
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load and validate a configuration file (and TOLLGATE_* overrides).
    Check {
        /// Configuration file.
        #[arg(long, env = "TOLLGATE_CONFIG", default_value = "tollgate.toml")]
        config: PathBuf,
    },
}

#[derive(Debug, Args)]
struct AdminArgs {
    /// Base URL of the gateway's admin listener.
    #[arg(
        long,
        global = true,
        env = "TOLLGATE_ADMIN_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    admin_url: String,
    /// Admin token.
    #[arg(
        long,
        global = true,
        env = "TOLLGATE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Create an organization.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Plan, as named in the gateway's configuration.
        #[arg(long)]
        plan: Option<String>,
    },
    /// List organizations.
    List {
        /// Page size (1-1000).
        #[arg(long)]
        limit: Option<u32>,
        /// Start after this org id.
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one organization.
    Get { id: String },
    /// Suspend: every key of the org is refused from the next request on.
    Suspend { id: String },
    /// Activate a suspended organization.
    Activate { id: String },
    /// Assign a plan (or remove it with --none).
    SetPlan {
        id: String,
        /// Plan name.
        plan: Option<String>,
        /// Remove the plan.
        #[arg(long, conflicts_with = "plan")]
        none: bool,
        /// Start a new billing-cycle anchor (RFC 3339); kept by default.
        #[arg(long)]
        cycle_anchor: Option<String>,
    },
    /// Turn pay-as-you-go on or off: with it, exhausted quotas continue as overage.
    PayAsYouGo {
        id: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// The current billing cycle's usage, limits and reset time.
    Usage { id: String },
    /// Add committed use: extra quota per cycle until --ends-at.
    Commit {
        id: String,
        /// Extra units per cycle, as meter=units (repeat for several meters).
        #[arg(long = "quota", required = true, value_parser = parse_quota)]
        quotas: Vec<(String, u64)>,
        /// End of the term, RFC 3339.
        #[arg(long)]
        ends_at: String,
        /// Start of the term, RFC 3339 (default now).
        #[arg(long)]
        starts_at: Option<String>,
    },
    /// List an organization's committed-use add-ons.
    Commitments { id: String },
    /// Balance, credit limit, holds, daily spend and budget.
    Balance { id: String },
    /// Change money settings; amounts are decimals (12.50), `none` clears a limit.
    Account {
        id: String,
        /// Post-paid credit limit.
        #[arg(long, value_parser = parse_amount)]
        credit_limit: Option<i64>,
        /// Spend allowed per UTC day, or `none`.
        #[arg(long, value_parser = parse_optional_amount)]
        daily_limit: Option<Limit>,
        /// Spend allowed per billing cycle, or `none`.
        #[arg(long, value_parser = parse_optional_amount)]
        budget: Option<Limit>,
        /// Budget alert thresholds in percent, comma-separated (70,85,95).
        #[arg(long, value_delimiter = ',')]
        thresholds: Option<Vec<u8>>,
    },
    /// Add money to the balance.
    TopUp {
        id: String,
        /// Amount, a decimal (25.00).
        #[arg(long, value_parser = parse_amount)]
        amount: i64,
        /// Makes the call idempotent: a second top-up with it writes nothing.
        #[arg(long)]
        reference: Option<String>,
    },
    /// Correct the balance, up or down, with a reason.
    Adjust {
        id: String,
        /// Amount, a decimal; negative takes money away (-1.50).
        #[arg(long, value_parser = parse_amount, allow_hyphen_values = true)]
        amount: i64,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Makes the call idempotent.
        #[arg(long)]
        reference: Option<String>,
    },
    /// Give back all or part of one request's charge (once per charge).
    Refund {
        id: String,
        /// The charge entry's reference, as the ledger shows it (charge:…).
        #[arg(long)]
        charge: String,
        /// Amount, a decimal; the whole charge when left out.
        #[arg(long, value_parser = parse_amount)]
        amount: Option<i64>,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Ledger entries, oldest first.
    Ledger {
        id: String,
        /// Page size (1-1000).
        #[arg(long)]
        limit: Option<u32>,
        /// Start after this entry id.
        #[arg(long)]
        after: Option<i64>,
    },
    /// Notifications (budget alerts), newest first.
    Notifications { id: String },
    /// Automatic top-ups through the payment provider (Stripe).
    Autocharge {
        id: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
        /// Top up when a charge leaves the balance below this (decimal).
        #[arg(long, value_parser = parse_amount)]
        threshold: Option<i64>,
        /// How much to add each time (decimal, whole cents).
        #[arg(long, value_parser = parse_amount)]
        amount: Option<i64>,
        /// At most this much per calendar month, or `none`.
        #[arg(long, value_parser = parse_optional_amount)]
        monthly_cap: Option<Limit>,
        /// The provider's customer id (cus_…).
        #[arg(long)]
        customer: Option<String>,
        /// The saved payment method (pm_…); a new one clears a pending authentication.
        #[arg(long)]
        payment_method: Option<String>,
    },
}

fn parse_amount(text: &str) -> Result<i64, String> {
    tollgate_core::money::Micros::parse_decimal(text)
        .map(|m| m.0)
        .ok_or_else(|| format!("{text:?} is not an amount like 12.50 (at most 6 decimal places)"))
}

/// An amount or `none` (which clears a limit).
#[derive(Debug, Clone, Copy)]
struct Limit(Option<i64>);

fn parse_optional_amount(text: &str) -> Result<Limit, String> {
    if text == "none" {
        return Ok(Limit(None));
    }
    parse_amount(text).map(|a| Limit(Some(a)))
}

fn parse_quota(text: &str) -> Result<(String, u64), String> {
    let (meter, units) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected meter=units, e.g. request=100000"))?;
    let units = units
        .parse()
        .map_err(|_| format!("{text:?}: units must be a whole number"))?;
    Ok((meter.to_owned(), units))
}

/// `?a=1&b=2` from the parameters that are set; empty when none is.
fn query_suffix(params: &[(&str, Option<String>)]) -> String {
    let set: Vec<String> = params
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={v}")))
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!("?{}", set.join("&"))
    }
}

fn quota_map(quotas: Vec<(String, u64)>) -> serde_json::Map<String, Value> {
    quotas
        .into_iter()
        .map(|(meter, units)| (meter, json!(units)))
        .collect()
}

/// `--signature`, `--jwt`, `--certificate`: each none, read, write or all.
#[derive(Debug, clap::Args)]
struct PolicyArgs {
    /// Route classes on which a request signature is demanded.
    #[arg(long, value_parser = ["none", "read", "write", "all"])]
    signature: Option<String>,
    /// Route classes on which a JWT is demanded.
    #[arg(long, value_parser = ["none", "read", "write", "all"])]
    jwt: Option<String>,
    /// Route classes on which a pinned client certificate is demanded.
    #[arg(long, value_parser = ["none", "read", "write", "all"])]
    certificate: Option<String>,
}

impl PolicyArgs {
    fn to_json(&self) -> Option<serde_json::Value> {
        if self.signature.is_none() && self.jwt.is_none() && self.certificate.is_none() {
            return None;
        }
        let mut policy = serde_json::Map::new();
        for (name, value) in [
            ("signature", &self.signature),
            ("jwt", &self.jwt),
            ("certificate", &self.certificate),
        ] {
            if let Some(value) = value {
                policy.insert(name.to_owned(), json!(value));
            }
        }
        Some(serde_json::Value::Object(policy))
    }
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create a key; the full key is printed once.
    Create {
        /// Owning organization id.
        #[arg(long)]
        org: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Allowed product (repeat for several; "*" for all, the default).
        #[arg(long = "product")]
        products: Vec<String>,
        /// Expiry, RFC 3339 (e.g. 2027-01-01T00:00:00Z).
        #[arg(long)]
        expires_at: Option<String>,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Make a signing secret (implied by --signature other than none);
        /// printed once with its passphrase.
        #[arg(long)]
        signing_secret: bool,
        /// The Coinbase-scheme passphrase (generated when absent).
        #[arg(long)]
        passphrase: Option<String>,
        /// Pin a client certificate: hex SHA-256 of its DER, or x5t#S256 (repeat for several).
        #[arg(long = "pin")]
        pins: Vec<String>,
    },
    /// Set what a key demands besides itself, per route class.
    Credentials {
        id: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Make a new signing secret (printed once); the old ones keep working for the overlap.
    SigningSecret {
        id: String,
        /// Seconds the replaced secrets stay valid (default from the gateway's config).
        #[arg(long)]
        overlap_seconds: Option<u64>,
        /// The Coinbase-scheme passphrase (generated when absent).
        #[arg(long)]
        passphrase: Option<String>,
    },
    /// Pin a key to a client certificate (hex SHA-256 of its DER, or x5t#S256).
    Pin {
        id: String,
        thumbprint: String,
        /// The existing pins stop working after the overlap.
        #[arg(long)]
        replace: bool,
        /// Seconds the replaced pins stay valid (with --replace).
        #[arg(long)]
        overlap_seconds: Option<u64>,
    },
    /// Remove a certificate pin.
    Unpin { id: String, thumbprint: String },
    /// List an organization's keys (never their secrets).
    List {
        /// Organization id.
        #[arg(long)]
        org: String,
    },
    /// Show one key.
    Get { id: String },
    /// Revoke a key: refused from the next request on.
    Revoke { id: String },
    /// Replace a key's own quotas per cycle (lower than the org's); none clears them.
    Quotas {
        id: String,
        /// A limit per cycle as meter=units (repeat for several meters).
        #[arg(long = "quota", value_parser = parse_quota)]
        quotas: Vec<(String, u64)>,
    },
    /// Give a key a new secret; the old one keeps working for the overlap.
    Rotate {
        id: String,
        /// Seconds the old secret stays valid (default from the gateway's config).
        #[arg(long)]
        overlap_seconds: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) if args.demo => serve_demo().await,
        Command::Serve(args) => serve(args.config).await,
        Command::Config {
            command: ConfigCommand::Check { config },
        } => Ok(check_config(&config)),
        Command::Org { admin, command } => org(&AdminClient::new(admin)?, command).await,
        Command::Key { admin, command } => key(&AdminClient::new(admin)?, command).await,
        Command::Sim(args) => sim(args).await,
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            println!(
                "ok: {} ({} routes, {} products, {} plans, {} venues)",
                path.display(),
                config.routes.len(),
                config.products.len(),
                config.plans.len(),
                config.venues.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {}: {error}", path.display());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn print_listening(listeners: &Listeners) -> anyhow::Result<()> {
    println!("ingress listening on http://{}", listeners.ingress_addr()?);
    println!("admin listening on http://{}", listeners.admin_addr()?);
    if let Some(egress) = listeners.egress_addr() {
        println!("egress listening on http://{}", egress?);
    }
    Ok(())
}

/// The shipped venue contracts (`venues.example.toml`), each pointed at the
/// simulator's copy of its venue with the simulator's test credentials.
fn demo_venues(
    sim: &tollgate_sim::SimHandle,
) -> anyhow::Result<std::collections::BTreeMap<String, tollgate_venues::VenueConfig>> {
    use tollgate_venues::config::{CredentialsConfig, VenueKind};
    #[derive(serde::Deserialize)]
    struct Shipped {
        venues: std::collections::BTreeMap<String, tollgate_venues::VenueConfig>,
    }
    let shipped: Shipped = toml::from_str(include_str!("../../../venues.example.toml"))
        .context("venues.example.toml")?;
    let mut venues = shipped.venues;
    for config in venues.values_mut() {
        let venue = match config.kind {
            VenueKind::Coinbase => tollgate_sim::Venue::Coinbase,
            VenueKind::Binance => tollgate_sim::Venue::Binance,
            VenueKind::Deribit => tollgate_sim::Venue::Deribit,
            VenueKind::Kraken => tollgate_sim::Venue::Kraken,
            VenueKind::KrakenFutures => tollgate_sim::Venue::KrakenFutures,
        };
        let test = venue.test_credentials();
        config.base_url = sim.base_url(venue);
        config.credentials = Some(CredentialsConfig {
            key: Some(test.key.into()),
            secret: Some(test.secret.into()),
            passphrase: test.passphrase.map(Into::into),
            ..Default::default()
        });
    }
    Ok(venues)
}

async fn serve(path: PathBuf) -> anyhow::Result<ExitCode> {
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {}: {error}", path.display());
            eprintln!("hint: `tollgate serve --demo` runs without a configuration file");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    if config.admin.token.is_none() {
        eprintln!(
            "error: admin.token is not set: set it in {} or TOLLGATE_ADMIN_TOKEN",
            path.display()
        );
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let listeners = Listeners::bind(&config).await?;
    print_listening(&listeners)?;
    tollgate_gateway::run(config, listeners, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn serve_demo() -> anyhow::Result<ExitCode> {
    let dir = std::env::temp_dir().join(format!("tollgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let sqlite = dir.join("tollgate.db");
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream.local_addr()?;
    tokio::spawn(demo::serve_upstream(upstream));
    let mut config = match demo::config(upstream_addr, &sqlite, demo::admin_token()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    // The egress side: the venue simulator in-process, and the router in
    // front of it with the shipped contracts and the simulator's test keys.
    let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = tollgate_sim::start(sim_listener, tollgate_sim::SimConfig::default()).await?;
    config.venues = demo_venues(&sim)?;
    let listeners = Listeners::bind(&config).await.context(
        "is another tollgate running? Pick other ports with TOLLGATE_INGRESS__LISTEN, TOLLGATE_ADMIN__LISTEN and TOLLGATE_EGRESS__LISTEN",
    )?;
    let master_key = config.credentials.master_key.clone().unwrap_or_default();
    let seeded = demo::seed(&sqlite, &master_key, SystemClock.now()).await?;
    let ingress = listeners.ingress_addr()?;
    let admin = listeners.admin_addr()?;
    let token = config.admin.token.clone().unwrap_or_default();
    print_listening(&listeners)?;
    println!("demo upstream: http://{upstream_addr} (built-in trading API)");
    println!("demo store: {}", sqlite.display());
    println!("demo org: {}", seeded.org_id);
    println!("demo key: {}", seeded.key);
    println!("admin token: {token}");
    println!(
        "demo signing key: {} (writes must be signed)",
        seeded.signed_key
    );
    println!("  signing secret: {}", seeded.signing_secret);
    println!("  passphrase: {}", seeded.passphrase);
    println!();
    println!("Try:");
    println!(
        "  curl -i 'http://{ingress}/v1/ticker?symbol=BTC-USD' -H 'Authorization: Bearer {}'",
        seeded.key
    );
    println!(
        "  curl -i -X POST http://{ingress}/v1/orders -H 'X-API-Key: {}' -H 'Idempotency-Key: demo-order-1' -H 'Content-Type: application/json' -d '{{\"symbol\":\"BTC-USD\",\"side\":\"buy\",\"qty\":\"0.01\",\"price\":\"64000\"}}'",
        seeded.key
    );
    println!(
        "  # the same order again: the stored answer, same order id, Idempotent-Replayed: true"
    );
    println!("  curl -i 'http://{ingress}/v1/ticker'   # no key: 401 problem+json");
    println!(
        "  curl -s http://{admin}/admin/v1/orgs/{}/balance -H 'Authorization: Bearer {token}'   # pay-as-you-go: every call moves it",
        seeded.org_id
    );
    if let Some(egress) = listeners.egress_addr() {
        let egress = egress?;
        println!(
            "Venue router (docs/venues.md), in front of simulated venues at http://{}:",
            sim.addr()
        );
        println!(
            "  curl -s 'http://{egress}/binance/api/v3/depth?symbol=BTCUSDT&limit=5' -D - -o /dev/null | grep -i x-mbx-used-weight"
        );
        println!(
            "  curl -s -X POST 'http://{egress}/binance/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=60000'   # signed by the router"
        );
        println!("  curl -s http://{egress}/_tollgate/venues   # budgets, breakers, clock offsets");
    }
    println!("A signed order with the client SDK (docs/signing.md):");
    println!(
        "  TOLLGATE_URL=http://{ingress} TOLLGATE_KEY={} TOLLGATE_SIGNING_SECRET={} cargo run -p tollgate-client --example place_order",
        seeded.signed_key, seeded.signing_secret
    );
    println!();
    println!("Press Ctrl-C to stop.");
    let result = tollgate_gateway::run(config, listeners, shutdown_signal()).await;
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    Ok(ExitCode::SUCCESS)
}

async fn sim(args: SimArgs) -> anyhow::Result<ExitCode> {
    use tollgate_sim::{Faults, SimConfig, Venue, VenueFaults};
    let mut config = match &args.config {
        Some(path) => match SimConfig::from_toml_file(path) {
            Ok(config) => config,
            Err(error) => {
                eprintln!("error: {error:#}");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        },
        None => SimConfig::default(),
    };
    fn target(faults: &mut Faults, venue: Option<Venue>) -> &mut VenueFaults {
        match venue {
            Some(venue) => faults.venue_mut(venue),
            None => &mut faults.all,
        }
    }
    let faults = &mut config.faults;
    for (venue, ms, retry) in args.storms {
        let set = target(faults, venue);
        set.storm_ms = Some(ms);
        set.storm_retry_after_s = retry.or(set.storm_retry_after_s);
    }
    for (venue, ms) in args.skews {
        target(faults, venue).skew_ms = Some(ms);
    }
    for (venue, ms) in args.latency {
        target(faults, venue).latency_ms = Some(ms);
    }
    for (venue, fraction) in args.partial_cancel {
        target(faults, venue).partial_cancel = Some(fraction);
    }
    for (venue, fraction) in args.batch_mixed {
        target(faults, venue).batch_mixed = Some(fraction);
    }
    for (venue, fraction) in args.unknown_outcome {
        target(faults, venue).unknown_outcome = Some(fraction);
    }
    for (venue, ms) in args.hold {
        target(faults, venue).hold_ms = Some(ms);
    }
    if args.unknown_drop {
        faults.all.unknown_drop = Some(true);
    }
    if let Some(seed) = args.seed {
        faults.seed = seed;
    }
    if let Err(error) = config.validate() {
        eprintln!("error: {error}");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let handle = tollgate_sim::start(listener, config).await?;
    let addr = handle.addr();
    println!("venue simulator listening on http://{addr}");
    for venue in Venue::ALL {
        println!("  {:<15}{}", venue.name(), handle.base_url(venue));
    }
    println!(
        "  {:<15}http://{addr}/_sim/stats (GET), /_sim/faults (GET, POST), /_sim/reset (POST)",
        "admin"
    );
    println!(
        "test credentials: docs/venues.md, section \"The simulator\" (defaults in crates/sim/sim.example.toml)"
    );
    println!("Press Ctrl-C to stop.");
    shutdown_signal().await;
    handle.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Talks to a running gateway's admin API.
struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    fn new(args: AdminArgs) -> anyhow::Result<Self> {
        let Some(token) = args.admin_token else {
            bail!("the admin token is required: pass --admin-token or set TOLLGATE_ADMIN_TOKEN");
        };
        Ok(AdminClient {
            base: args.admin_url.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::new(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/admin/v1{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        let status = response.status();
        let text = response.text().await?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let code = value.get("code").and_then(Value::as_str).unwrap_or("error");
            let detail = value.get("detail").and_then(Value::as_str).unwrap_or("");
            bail!("{status}: {code}: {detail}");
        }
        Ok(value)
    }
}

fn print_json(value: &Value) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::SUCCESS)
}

async fn org(client: &AdminClient, command: OrgCommand) -> anyhow::Result<ExitCode> {
    use reqwest::Method;
    let value = match command {
        OrgCommand::Create { name, plan } => {
            client
                .call(
                    Method::POST,
                    "/orgs",
                    Some(json!({ "name": name, "plan": plan })),
                )
                .await?
        }
        OrgCommand::List { limit, after } => {
            let suffix = query_suffix(&[("limit", limit.map(|l| l.to_string())), ("after", after)]);
            client
                .call(Method::GET, &format!("/orgs{suffix}"), None)
                .await?
        }
        OrgCommand::Get { id } => {
            client
                .call(Method::GET, &format!("/orgs/{id}"), None)
                .await?
        }
        OrgCommand::Suspend { id } => {
            client
                .call(Method::POST, &format!("/orgs/{id}/suspend"), None)
                .await?
        }
        OrgCommand::Activate { id } => {
            client
                .call(Method::POST, &format!("/orgs/{id}/activate"), None)
                .await?
        }
        OrgCommand::SetPlan {
            id,
            plan,
            none,
            cycle_anchor,
        } => {
            if plan.is_none() && !none {
                bail!("name a plan, or pass --none to remove it");
            }
            let body = json!({ "plan": plan, "cycle_anchor": cycle_anchor });
            client
                .call(Method::PUT, &format!("/orgs/{id}/plan"), Some(body))
                .await?
        }
        OrgCommand::PayAsYouGo { id, state } => {
            let body = json!({ "enabled": state == "on" });
            client
                .call(
                    Method::PUT,
                    &format!("/orgs/{id}/pay-as-you-go"),
                    Some(body),
                )
                .await?
        }
        OrgCommand::Usage { id } => {
            client
                .call(Method::GET, &format!("/orgs/{id}/usage"), None)
                .await?
        }
        OrgCommand::Commit {
            id,
            quotas,
            ends_at,
            starts_at,
        } => {
            let body =
                json!({ "quotas": quota_map(quotas), "ends_at": ends_at, "starts_at": starts_at });
            client
                .call(Method::POST, &format!("/orgs/{id}/commitments"), Some(body))
                .await?
        }
        OrgCommand::Commitments { id } => {
            client
                .call(Method::GET, &format!("/orgs/{id}/commitments"), None)
                .await?
        }
        OrgCommand::Balance { id } => {
            client
                .call(Method::GET, &format!("/orgs/{id}/balance"), None)
                .await?
        }
        OrgCommand::Account {
            id,
            credit_limit,
            daily_limit,
            budget,
            thresholds,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(limit) = credit_limit {
                body.insert("credit_limit_micros".into(), json!(limit));
            }
            if let Some(Limit(limit)) = daily_limit {
                body.insert("daily_spend_limit_micros".into(), json!(limit));
            }
            if let Some(Limit(budget)) = budget {
                body.insert("budget_micros".into(), json!(budget));
            }
            if let Some(thresholds) = thresholds {
                body.insert("budget_thresholds".into(), json!(thresholds));
            }
            client
                .call(
                    Method::PUT,
                    &format!("/orgs/{id}/account"),
                    Some(Value::Object(body)),
                )
                .await?
        }
        OrgCommand::TopUp {
            id,
            amount,
            reference,
        } => {
            let body = json!({ "amount_micros": amount, "reference": reference });
            client
                .call(Method::POST, &format!("/orgs/{id}/top-ups"), Some(body))
                .await?
        }
        OrgCommand::Adjust {
            id,
            amount,
            reason,
            reference,
        } => {
            let body = json!({ "amount_micros": amount, "reason": reason, "reference": reference });
            client
                .call(Method::POST, &format!("/orgs/{id}/adjustments"), Some(body))
                .await?
        }
        OrgCommand::Refund {
            id,
            charge,
            amount,
            reason,
        } => {
            let body =
                json!({ "charge_reference": charge, "amount_micros": amount, "reason": reason });
            client
                .call(Method::POST, &format!("/orgs/{id}/refunds"), Some(body))
                .await?
        }
        OrgCommand::Ledger { id, limit, after } => {
            let suffix = query_suffix(&[
                ("limit", limit.map(|l| l.to_string())),
                ("after", after.map(|a| a.to_string())),
            ]);
            client
                .call(Method::GET, &format!("/orgs/{id}/ledger{suffix}"), None)
                .await?
        }
        OrgCommand::Autocharge {
            id,
            state,
            threshold,
            amount,
            monthly_cap,
            customer,
            payment_method,
        } => {
            let mut body = serde_json::Map::new();
            body.insert("enabled".into(), json!(state == "on"));
            if let Some(threshold) = threshold {
                body.insert("threshold_micros".into(), json!(threshold));
            }
            if let Some(amount) = amount {
                body.insert("amount_micros".into(), json!(amount));
            }
            if let Some(Limit(cap)) = monthly_cap {
                body.insert("monthly_cap_micros".into(), json!(cap));
            }
            if let Some(customer) = customer {
                body.insert("customer".into(), json!(customer));
            }
            if let Some(method) = payment_method {
                body.insert("payment_method".into(), json!(method));
            }
            client
                .call(
                    Method::PUT,
                    &format!("/orgs/{id}/autocharge"),
                    Some(Value::Object(body)),
                )
                .await?
        }
        OrgCommand::Notifications { id } => {
            client
                .call(Method::GET, &format!("/orgs/{id}/notifications"), None)
                .await?
        }
    };
    print_json(&value)
}

async fn key(client: &AdminClient, command: KeyCommand) -> anyhow::Result<ExitCode> {
    use reqwest::Method;
    let value = match command {
        KeyCommand::Create {
            org,
            name,
            products,
            expires_at,
            policy,
            signing_secret,
            passphrase,
            pins,
        } => {
            let products = if products.is_empty() {
                None
            } else {
                Some(products)
            };
            let mut body = json!({ "name": name, "products": products, "expires_at": expires_at });
            if let Some(policy) = policy.to_json() {
                body["credentials"] = policy;
            }
            if signing_secret {
                body["signing_secret"] = json!(true);
            }
            if let Some(passphrase) = passphrase {
                body["passphrase"] = json!(passphrase);
            }
            if !pins.is_empty() {
                body["certificate_pins"] = json!(pins);
            }
            let value = client
                .call(Method::POST, &format!("/orgs/{org}/keys"), Some(body))
                .await?;
            eprintln!("Store the key now: it is not shown again.");
            value
        }
        KeyCommand::Credentials { id, policy } => {
            let body = policy.to_json().ok_or_else(|| {
                anyhow::anyhow!("give at least one of --signature, --jwt, --certificate")
            })?;
            client
                .call(Method::PUT, &format!("/keys/{id}/credentials"), Some(body))
                .await?
        }
        KeyCommand::SigningSecret {
            id,
            overlap_seconds,
            passphrase,
        } => {
            let value = client
                .call(
                    Method::POST,
                    &format!("/keys/{id}/signing-secrets"),
                    Some(json!({ "overlap_seconds": overlap_seconds, "passphrase": passphrase })),
                )
                .await?;
            eprintln!("Store the signing secret and passphrase now: they are not shown again.");
            value
        }
        KeyCommand::Pin {
            id,
            thumbprint,
            replace,
            overlap_seconds,
        } => {
            client
                .call(
                    Method::POST,
                    &format!("/keys/{id}/certificate-pins"),
                    Some(json!({ "thumbprint": thumbprint, "replace": replace, "overlap_seconds": overlap_seconds })),
                )
                .await?
        }
        KeyCommand::Unpin { id, thumbprint } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/keys/{id}/certificate-pins/{thumbprint}"),
                    None,
                )
                .await?
        }
        KeyCommand::List { org } => {
            client
                .call(Method::GET, &format!("/orgs/{org}/keys"), None)
                .await?
        }
        KeyCommand::Get { id } => {
            client
                .call(Method::GET, &format!("/keys/{id}"), None)
                .await?
        }
        KeyCommand::Quotas { id, quotas } => {
            let body = json!({ "quotas": quota_map(quotas) });
            client
                .call(Method::PUT, &format!("/keys/{id}/quotas"), Some(body))
                .await?
        }
        KeyCommand::Revoke { id } => {
            client
                .call(Method::POST, &format!("/keys/{id}/revoke"), None)
                .await?
        }
        KeyCommand::Rotate {
            id,
            overlap_seconds,
        } => {
            let value = client
                .call(
                    Method::POST,
                    &format!("/keys/{id}/rotate"),
                    Some(json!({ "overlap_seconds": overlap_seconds })),
                )
                .await?;
            eprintln!("Store the new key now: it is not shown again.");
            value
        }
    };
    print_json(&value)
}
