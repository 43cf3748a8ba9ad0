//! The venue simulator behind `tollgate sim`.
//!
//! It serves a small REST subset of Coinbase Exchange, Binance spot, Deribit,
//! Kraken spot and Kraken Futures on one listener, each under its own path
//! prefix (`/coinbase`, `/binance`, `/deribit`, `/kraken`, `/krakenfutures`),
//! and enforces each venue's published limits with the venue's own headers,
//! error bodies and signature schemes. On top it injects faults on demand:
//! rate-limit storms, Binance 418 bans, clock skew, latency, partial cancels,
//! mixed batch results and orders whose outcome is unknown.
//!
//! This crate owns its limit and signing code and shares none with
//! `tollgate-venues` or `tollgate-core`: it is written from the venues'
//! documentation so that a mistake on the router's side shows up as a
//! refusal here instead of being copied. `docs/venues.md`, section "The
//! simulator", describes what it serves and every assumption it makes.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let sim = tollgate_sim::start(listener, tollgate_sim::SimConfig::default()).await?;
//! let url = sim.base_url(tollgate_sim::Venue::Binance); // http://127.0.0.1:PORT/binance
//! # let _ = url;
//! assert_eq!(sim.stats().binance.rate_limited, 0);
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod binance;
mod book;
mod clock;
mod coinbase;
pub mod config;
mod deribit;
mod error;
pub mod faults;
mod kraken;
mod kraken_futures;
mod limits;
mod server;
mod sign;
pub mod stats;

pub use config::{
    BinanceConfig, BinanceKey, CoinbaseConfig, CoinbaseKey, DeribitClient, DeribitConfig,
    FuturesWindow, KrakenConfig, KrakenFuturesConfig, KrakenFuturesKey, KrakenKey,
    MatchingEngineTier, SimConfig,
};
pub use error::SimError;
pub use faults::{Faults, VenueFaults};
pub use stats::{Stats, VenueStats};

use serde::{Deserialize, Serialize};
use server::{Conn, Shared, SimListener};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A simulated venue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Venue {
    Coinbase,
    Binance,
    Deribit,
    Kraken,
    KrakenFutures,
}

/// The simulator's default test credentials for one venue (documented in
/// docs/venues.md; never real keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCredentials {
    /// API key, or Deribit's client id.
    pub key: &'static str,
    /// Secret as the venue issues it (base64 for Coinbase and Kraken).
    pub secret: &'static str,
    /// Coinbase's passphrase.
    pub passphrase: Option<&'static str>,
}

impl Venue {
    /// The credentials `SimConfig::default()` accepts for this venue.
    pub fn test_credentials(self) -> TestCredentials {
        use config::*;
        let (key, secret, passphrase) = match self {
            Venue::Coinbase => (
                COINBASE_TEST_KEY,
                COINBASE_TEST_SECRET,
                Some(COINBASE_TEST_PASSPHRASE),
            ),
            Venue::Binance => (BINANCE_TEST_KEY, BINANCE_TEST_SECRET, None),
            Venue::Deribit => (DERIBIT_TEST_CLIENT_ID, DERIBIT_TEST_CLIENT_SECRET, None),
            Venue::Kraken => (KRAKEN_TEST_KEY, KRAKEN_TEST_SECRET, None),
            Venue::KrakenFutures => (KRAKEN_FUTURES_TEST_KEY, KRAKEN_FUTURES_TEST_SECRET, None),
        };
        TestCredentials {
            key,
            secret,
            passphrase,
        }
    }

    /// Every venue, in a fixed order.
    pub const ALL: [Venue; 5] = [
        Venue::Coinbase,
        Venue::Binance,
        Venue::Deribit,
        Venue::Kraken,
        Venue::KrakenFutures,
    ];

    /// The path prefix the venue is served under, without slashes.
    pub fn prefix(self) -> &'static str {
        match self {
            Venue::Coinbase => "coinbase",
            Venue::Binance => "binance",
            Venue::Deribit => "deribit",
            Venue::Kraken => "kraken",
            Venue::KrakenFutures => "krakenfutures",
        }
    }

    /// The venue's name in configuration, faults and stats (`kraken_futures`).
    pub fn name(self) -> &'static str {
        match self {
            Venue::KrakenFutures => "kraken_futures",
            other => other.prefix(),
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Venue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Venue {
    type Err = SimError;

    /// Accepts the name or the prefix: `kraken_futures`, `krakenfutures`,
    /// `kraken-futures`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.trim().to_ascii_lowercase().replace(['-', '_'], "");
        Venue::ALL
            .into_iter()
            .find(|venue| venue.prefix() == wanted)
            .ok_or_else(|| {
                SimError::Config(format!(
                    "unknown venue {text:?} (coinbase, binance, deribit, kraken, kraken_futures)"
                ))
            })
    }
}

/// Starts serving every venue on `listener`. The server runs until
/// [`SimHandle::shutdown`] or until the handle is dropped.
pub async fn start(listener: TcpListener, config: SimConfig) -> anyhow::Result<SimHandle> {
    config.validate()?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(config));
    let app = server::router(shared.clone()).into_make_service_with_connect_info::<Conn>();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(SimListener(listener), app).with_graceful_shutdown(async move {
            // Resolves on shutdown() and when the handle is dropped.
            let _ = stopped.await;
        });
        if let Err(error) = serve.await {
            tracing::error!(%error, "venue simulator stopped");
        }
    });
    Ok(SimHandle {
        addr,
        shared,
        stop,
        task,
    })
}

/// A running simulator.
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of one venue, e.g. `http://127.0.0.1:9300/binance`; append
    /// the venue's real path. An unspecified listen address (0.0.0.0, ::)
    /// is given as loopback.
    pub fn base_url(&self, venue: Venue) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!(
            "http://{}/{}",
            SocketAddr::new(ip, self.addr.port()),
            venue.prefix()
        )
    }

    /// A snapshot of every venue's counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Replaces the faults (storms start now; the random draws restart from
    /// `faults.seed`). Fractions outside 0..=1 act as 0 or 1.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    /// Clears counters, limiter state, bans, backoffs, stats and open orders.
    /// Faults, nonces and Deribit sessions are kept.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Stops accepting, lets requests in flight finish (at most 5 s), stops.
    pub async fn shutdown(self) {
        let SimHandle { stop, mut task, .. } = self;
        let _ = stop.send(());
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn venue_names_parse_both_ways() {
        for venue in Venue::ALL {
            assert_eq!(venue.name().parse::<Venue>().unwrap(), venue);
            assert_eq!(venue.prefix().parse::<Venue>().unwrap(), venue);
        }
        assert_eq!(
            "Kraken-Futures".parse::<Venue>().unwrap(),
            Venue::KrakenFutures
        );
        assert!("bitmex".parse::<Venue>().is_err());
        assert_eq!(
            serde_json::to_string(&Venue::KrakenFutures).unwrap(),
            "\"kraken_futures\""
        );
    }
}
