//! Counters per venue, and their serializable snapshot.

use crate::Venue;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of every venue's counters (`GET /_sim/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub coinbase: VenueStats,
    pub binance: VenueStats,
    pub deribit: VenueStats,
    pub kraken: VenueStats,
    pub kraken_futures: VenueStats,
}

impl Stats {
    /// The counters of one venue.
    pub fn venue(&self, venue: Venue) -> &VenueStats {
        match venue {
            Venue::Coinbase => &self.coinbase,
            Venue::Binance => &self.binance,
            Venue::Deribit => &self.deribit,
            Venue::Kraken => &self.kraken,
            Venue::KrakenFutures => &self.kraken_futures,
        }
    }
}

/// What one venue answered since start or the last reset. A request is
/// counted when the venue answers it (after the latency fault), in
/// `requests` and in exactly one of `accepted`, `rate_limited`,
/// `storm_refusals`, `banned`, `auth_failures`, `rejected` and
/// `unknown_outcomes`; a client that gives up before then leaves no trace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VenueStats {
    /// Requests answered (each also counted in one outcome below).
    pub requests: u64,
    /// Answered with success.
    pub accepted: u64,
    /// The venue's rate-limit refusal the client earned (429, Deribit 10028,
    /// Kraken `EAPI:`/`EOrder:Rate limit exceeded`, `apiLimitExceeded`).
    /// Storm answers are not counted here.
    pub rate_limited: u64,
    /// Binance 418 answers.
    pub banned: u64,
    /// Bad signature, expired timestamp, bad nonce, bad key or token.
    pub auth_failures: u64,
    /// Any other refusal (bad parameters, unknown order, unknown path).
    pub rejected: u64,
    /// Orders the venue holds as placed (unknown outcomes included).
    pub orders_placed: u64,
    /// Orders cancelled.
    pub orders_cancelled: u64,
    /// Rate-limit refusals caused by an injected storm.
    pub storm_refusals: u64,
    /// Requests received while a `Retry-After` given to that client was
    /// still running (Binance: including during a ban).
    pub violations_during_backoff: u64,
    /// Placements answered as unknown (Binance -1007, 504, dropped).
    pub unknown_outcomes: u64,
}

/// How one request ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Accepted,
    RateLimited,
    Storm,
    Banned,
    AuthFailure,
    Rejected,
    Unknown,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    accepted: AtomicU64,
    rate_limited: AtomicU64,
    banned: AtomicU64,
    auth_failures: AtomicU64,
    rejected: AtomicU64,
    orders_placed: AtomicU64,
    orders_cancelled: AtomicU64,
    storm_refusals: AtomicU64,
    violations_during_backoff: AtomicU64,
    unknown_outcomes: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    if by > 0 {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

impl Counters {
    pub(crate) fn violation(&self) {
        bump(&self.violations_during_backoff, 1);
    }

    /// Counts one answered request and its outcome.
    pub(crate) fn record(&self, outcome: Outcome, placed: u64, cancelled: u64) {
        let counter = match outcome {
            Outcome::Accepted => &self.accepted,
            Outcome::RateLimited => &self.rate_limited,
            Outcome::Storm => &self.storm_refusals,
            Outcome::Banned => &self.banned,
            Outcome::AuthFailure => &self.auth_failures,
            Outcome::Rejected => &self.rejected,
            Outcome::Unknown => &self.unknown_outcomes,
        };
        // The outcome first: a snapshot never shows more requests than
        // outcomes.
        bump(counter, 1);
        bump(&self.requests, 1);
        bump(&self.orders_placed, placed);
        bump(&self.orders_cancelled, cancelled);
    }

    pub(crate) fn snapshot(&self) -> VenueStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        VenueStats {
            requests: get(&self.requests),
            accepted: get(&self.accepted),
            rate_limited: get(&self.rate_limited),
            banned: get(&self.banned),
            auth_failures: get(&self.auth_failures),
            rejected: get(&self.rejected),
            orders_placed: get(&self.orders_placed),
            orders_cancelled: get(&self.orders_cancelled),
            storm_refusals: get(&self.storm_refusals),
            violations_during_backoff: get(&self.violations_during_backoff),
            unknown_outcomes: get(&self.unknown_outcomes),
        }
    }

    pub(crate) fn clear(&self) {
        for counter in [
            &self.requests,
            &self.accepted,
            &self.rate_limited,
            &self.banned,
            &self.auth_failures,
            &self.rejected,
            &self.orders_placed,
            &self.orders_cancelled,
            &self.storm_refusals,
            &self.violations_during_backoff,
            &self.unknown_outcomes,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }
}
