//! Graduated prices per meter per billing cycle.
//!
//! A schedule gives away `included` units, then prices the following units
//! tier by tier: the first tier's units at its price, the next tier's at
//! its own, and so on (graduated, not volume pricing). Prices are
//! `price_micros` per `per_units`, so a price below one micro-unit per unit
//! (0.1 µ per byte) is exact.
//!
//! Charges are computed as differences of the cycle's cumulative cost:
//! `cost(before + added) − cost(before)`. Rounding happens once, on the
//! cumulative total, so the charges of a cycle always add up to exactly
//! the price of its total usage, whatever the order and size of requests.

use crate::money::Micros;

/// One tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    /// Billable units (after the included ones) up to which this tier
    /// applies, cumulative and inclusive; `None` for the last, unbounded tier.
    pub up_to: Option<u64>,
    /// Price of `per_units` units in this tier.
    pub price_micros: u64,
    /// Units the price is for (1 for a per-unit price).
    pub per_units: u64,
}

/// A meter's price schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    included: u64,
    tiers: Vec<Tier>,
}

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// No tiers.
    #[error("a price needs at least one tier")]
    NoTiers,
    /// `up_to` must grow strictly, and only the last tier may be unbounded.
    #[error(
        "tier {0}: up_to must be larger than the previous tier's, and only the last tier may omit it"
    )]
    BadBounds(usize),
    /// The last tier must be unbounded, or usage past it has no price.
    #[error("the last tier must have no up_to")]
    LastBounded,
    /// `per_units` of zero.
    #[error("tier {0}: per_units must be positive")]
    ZeroPer(usize),
}

impl Schedule {
    /// Validates a schedule.
    pub fn new(included: u64, tiers: Vec<Tier>) -> Result<Self, ScheduleError> {
        if tiers.is_empty() {
            return Err(ScheduleError::NoTiers);
        }
        let mut previous = 0u64;
        for (i, tier) in tiers.iter().enumerate() {
            if tier.per_units == 0 {
                return Err(ScheduleError::ZeroPer(i));
            }
            match tier.up_to {
                Some(bound) if bound > previous && i + 1 < tiers.len() => previous = bound,
                Some(_) if i + 1 == tiers.len() => return Err(ScheduleError::LastBounded),
                None if i + 1 == tiers.len() => {}
                _ => return Err(ScheduleError::BadBounds(i)),
            }
        }
        Ok(Schedule { included, tiers })
    }

    /// Price of a cycle's first `units` units, rounded down to a micro-unit.
    pub fn cost_of_total(&self, units: u64) -> Micros {
        let billable = u128::from(units.saturating_sub(self.included));
        let mut start = 0u128;
        let mut total = 0u128;
        for tier in &self.tiers {
            if billable <= start {
                break;
            }
            let end = tier.up_to.map_or(billable, |b| u128::from(b).min(billable));
            let in_tier = end - start;
            total += in_tier * u128::from(tier.price_micros) / u128::from(tier.per_units);
            start = end;
        }
        Micros(i64::try_from(total).unwrap_or(i64::MAX))
    }

    /// An upper bound of [`Schedule::charge`] for `units` units, whatever the
    /// cycle's usage so far: every unit at the highest tier price, rounded up.
    /// Holds are sized with it.
    pub fn max_charge(&self, units: u64) -> Micros {
        let highest = self
            .tiers
            .iter()
            .max_by(|a, b| {
                (u128::from(a.price_micros) * u128::from(b.per_units))
                    .cmp(&(u128::from(b.price_micros) * u128::from(a.per_units)))
            })
            .copied();
        let Some(tier) = highest else {
            return Micros::ZERO;
        };
        let total = (u128::from(units) * u128::from(tier.price_micros))
            .div_ceil(u128::from(tier.per_units));
        Micros(i64::try_from(total).unwrap_or(i64::MAX))
    }

    /// The charge for `added` units when `before` units were already used
    /// in the cycle.
    pub fn charge(&self, before: u64, added: u64) -> Micros {
        let after = self.cost_of_total(before.saturating_add(added));
        Micros(after.0 - self.cost_of_total(before).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        // 1,000 free; then 100 µ per unit up to 10,000 billable; then 0.5 µ per unit.
        Schedule::new(
            1_000,
            vec![
                Tier {
                    up_to: Some(10_000),
                    price_micros: 100,
                    per_units: 1,
                },
                Tier {
                    up_to: None,
                    price_micros: 1,
                    per_units: 2,
                },
            ],
        )
        .expect("valid")
    }

    #[test]
    fn tier_boundaries_are_exact() {
        let s = schedule();
        assert_eq!(s.cost_of_total(0), Micros(0));
        assert_eq!(s.cost_of_total(1_000), Micros(0), "included");
        assert_eq!(s.cost_of_total(1_001), Micros(100), "first billable unit");
        assert_eq!(s.cost_of_total(11_000), Micros(1_000_000), "end of tier 1");
        assert_eq!(
            s.cost_of_total(11_001),
            Micros(1_000_000),
            "half a micro rounds down"
        );
        assert_eq!(s.cost_of_total(11_002), Micros(1_000_001));
        // A request straddling the boundary pays each side at its own price.
        assert_eq!(s.charge(10_999, 4), Micros(100 + 1));
        assert_eq!(s.max_charge(3), Micros(300));
    }

    #[test]
    fn invalid_schedules_are_refused() {
        let t = |up_to, price| Tier {
            up_to,
            price_micros: price,
            per_units: 1,
        };
        assert_eq!(Schedule::new(0, vec![]), Err(ScheduleError::NoTiers));
        assert_eq!(
            Schedule::new(0, vec![t(Some(5), 1)]),
            Err(ScheduleError::LastBounded)
        );
        assert_eq!(
            Schedule::new(0, vec![t(Some(5), 1), t(Some(5), 1), t(None, 1)]),
            Err(ScheduleError::BadBounds(1))
        );
        assert_eq!(
            Schedule::new(0, vec![t(None, 1), t(None, 1)]),
            Err(ScheduleError::BadBounds(0))
        );
        assert_eq!(
            Schedule::new(
                0,
                vec![Tier {
                    up_to: None,
                    price_micros: 1,
                    per_units: 0
                }]
            ),
            Err(ScheduleError::ZeroPer(0))
        );
    }
}
