//! Fault injection: what a run asks the simulator to get wrong on purpose.
//!
//! Faults are set per venue, or for all venues under `all`; a venue's own
//! value wins over `all`, field by field. They come from the `[faults]`
//! section of the configuration, from `tollgate sim` flags, from
//! [`crate::SimHandle::set_faults`] or from `POST /_sim/faults` (which replaces
//! the whole set and restarts any storm).

use crate::Venue;
use crate::error::SimError;
use serde::{Deserialize, Serialize};

/// The faults of a run. JSON and TOML shape:
///
/// ```json
/// {"seed": 7, "all": {"latency_ms": 5},
///  "binance": {"storm_ms": 2000, "storm_retry_after_s": 1}}
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Seeds the random draws of the fractional faults, so a run repeats.
    pub seed: u64,
    /// Applies to every venue unless the venue sets the field itself.
    pub all: VenueFaults,
    pub coinbase: VenueFaults,
    pub binance: VenueFaults,
    pub deribit: VenueFaults,
    pub kraken: VenueFaults,
    pub kraken_futures: VenueFaults,
}

/// The faults of one venue; every field is optional.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VenueFaults {
    /// For this many ms from when the faults are set, every request gets the
    /// venue's rate-limit refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storm_ms: Option<u64>,
    /// `Retry-After` seconds on storm refusals, where the venue sends one
    /// (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storm_retry_after_s: Option<u64>,
    /// The venue's clock runs this many ms ahead (negative: behind).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skew_ms: Option<i64>,
    /// Added to every request before it is processed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Fraction (0..1) of the orders in a cancel-all left open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_cancel: Option<f64>,
    /// Fraction (0..1) of the new orders in a batch that fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_mixed: Option<f64>,
    /// Fraction (0..1) of order placements recorded as placed but answered
    /// as unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_outcome: Option<f64>,
    /// How long an unknown outcome holds the connection before answering
    /// 504 or dropping it (not Binance, which answers -1007 at once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_ms: Option<u64>,
    /// Drop the connection instead of answering 504.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_drop: Option<bool>,
}

impl Faults {
    /// The faults of `venue` (its own `VenueFaults`).
    pub fn venue(&self, venue: Venue) -> &VenueFaults {
        match venue {
            Venue::Coinbase => &self.coinbase,
            Venue::Binance => &self.binance,
            Venue::Deribit => &self.deribit,
            Venue::Kraken => &self.kraken,
            Venue::KrakenFutures => &self.kraken_futures,
        }
    }

    /// Mutable access to the faults of `venue`.
    pub fn venue_mut(&mut self, venue: Venue) -> &mut VenueFaults {
        match venue {
            Venue::Coinbase => &mut self.coinbase,
            Venue::Binance => &mut self.binance,
            Venue::Deribit => &mut self.deribit,
            Venue::Kraken => &mut self.kraken,
            Venue::KrakenFutures => &mut self.kraken_futures,
        }
    }

    /// The faults that apply to `venue`: its own fields, else `all`'s.
    pub(crate) fn effective(&self, venue: Venue) -> Effective {
        let own = self.venue(venue);
        let all = &self.all;
        Effective {
            storm_ms: own.storm_ms.or(all.storm_ms).unwrap_or(0),
            storm_retry_after_s: own
                .storm_retry_after_s
                .or(all.storm_retry_after_s)
                .unwrap_or(1)
                .max(1),
            skew_ms: own.skew_ms.or(all.skew_ms).unwrap_or(0),
            latency_ms: own.latency_ms.or(all.latency_ms).unwrap_or(0),
            partial_cancel: own.partial_cancel.or(all.partial_cancel).unwrap_or(0.0),
            batch_mixed: own.batch_mixed.or(all.batch_mixed).unwrap_or(0.0),
            unknown_outcome: own.unknown_outcome.or(all.unknown_outcome).unwrap_or(0.0),
            hold_ms: own.hold_ms.or(all.hold_ms).unwrap_or(0),
            unknown_drop: own.unknown_drop.or(all.unknown_drop).unwrap_or(false),
        }
    }

    /// Fractions must lie in 0..=1.
    pub fn validate(&self) -> Result<(), SimError> {
        let sets = [
            ("all", &self.all),
            ("coinbase", &self.coinbase),
            ("binance", &self.binance),
            ("deribit", &self.deribit),
            ("kraken", &self.kraken),
            ("kraken_futures", &self.kraken_futures),
        ];
        for (name, faults) in sets {
            for (field, value) in [
                ("partial_cancel", faults.partial_cancel),
                ("batch_mixed", faults.batch_mixed),
                ("unknown_outcome", faults.unknown_outcome),
            ] {
                if let Some(value) = value
                    && !(0.0..=1.0).contains(&value)
                {
                    return Err(SimError::Faults(format!(
                        "{name}.{field} must be between 0 and 1, got {value}"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Resolved faults of one venue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Effective {
    pub storm_ms: u64,
    pub storm_retry_after_s: u64,
    pub skew_ms: i64,
    pub latency_ms: u64,
    pub partial_cancel: f64,
    pub batch_mixed: f64,
    pub unknown_outcome: f64,
    pub hold_ms: u64,
    pub unknown_drop: bool,
}

/// SplitMix64: small, seedable, good enough to pick which orders a fault
/// hits. Not for anything secret.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p`. Draws nothing when `p` is 0 or 1, so a
    /// fault that is off does not shift the sequence of another.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn venue_fields_win_over_all() {
        let faults: Faults = serde_json::from_str(
            r#"{"seed":3,"all":{"latency_ms":5,"skew_ms":100},"binance":{"skew_ms":-2000,"storm_ms":50}}"#,
        )
        .unwrap();
        let binance = faults.effective(Venue::Binance);
        assert_eq!(binance.skew_ms, -2000);
        assert_eq!(binance.latency_ms, 5);
        assert_eq!(binance.storm_ms, 50);
        assert_eq!(binance.storm_retry_after_s, 1);
        let kraken = faults.effective(Venue::Kraken);
        assert_eq!(kraken.skew_ms, 100);
        assert_eq!(kraken.storm_ms, 0);
        assert!(serde_json::from_str::<Faults>(r#"{"binance":{"storm":1}}"#).is_err());
        let bad: Faults = serde_json::from_str(r#"{"kraken":{"partial_cancel":1.5}}"#).unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn rng_is_repeatable_and_roughly_fair() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let draws: Vec<bool> = (0..1_000).map(|_| a.chance(0.3)).collect();
        let again: Vec<bool> = (0..1_000).map(|_| b.chance(0.3)).collect();
        assert_eq!(draws, again);
        let hits = draws.iter().filter(|hit| **hit).count();
        assert!((200..400).contains(&hits), "{hits}");
        assert!(!a.chance(0.0));
        assert!(a.chance(1.0));
    }
}
