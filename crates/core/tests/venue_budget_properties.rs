//! Properties of the venue budgets, against independent models of how a
//! venue counts: whatever the router admits, the venue never refuses.
//!
//! 1. Fixed windows: the venue counts each request in the window of its own
//!    clock, which differs from the router's by up to the guard. Every
//!    window the venue sees stays within the limit.
//! 2. Token bucket: the venue's lazy-fill bucket sees each request up to
//!    `jitter` ms after the router sent it. With `reserve ≥ jitter × rate`
//!    withheld from the router's capacity, the venue's bucket never runs dry.
//! 3. Sliding window: no interval of the window's length holds more than the
//!    limit.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tollgate_core::venue::{Budget, BudgetKind, UNIT};

proptest! {
    #[test]
    fn fixed_window_never_overfills_a_venue_window(
        limit in 1u64..40,
        window_ms in 200i64..2_000,
        guard_ms in 0i64..90,
        // The venue's clock minus the router's, within the guard.
        error_frac in -1.0f64..1.0,
        gaps in proptest::collection::vec(0i64..120, 1..300),
        costs in proptest::collection::vec(1u64..4, 300),
    ) {
        let error = (error_frac * guard_ms as f64) as i64;
        let kind = BudgetKind::FixedWindow { limit: limit * UNIT, window_ms, guard_ms };
        let mut budget = Budget::new(kind, 0);
        let mut venue: BTreeMap<i64, u64> = BTreeMap::new();
        let mut now = 0i64;
        for (gap, cost) in gaps.iter().zip(&costs) {
            now += gap;
            if budget.try_take(cost * UNIT, now).is_ok() {
                let window = (now + error).div_euclid(window_ms);
                *venue.entry(window).or_default() += cost;
            }
        }
        for (window, used) in venue {
            prop_assert!(used <= limit, "window {window}: {used} > {limit}");
        }
    }

    #[test]
    fn token_bucket_with_reserve_absorbs_arrival_jitter(
        capacity in 2u64..30,
        rate in 1u64..20,
        jitter_ms in 0i64..100,
        gaps in proptest::collection::vec(0i64..150, 1..300),
        delays in proptest::collection::vec(0.0f64..1.0, 300),
    ) {
        // Reserve enough whole units for the jitter: ceil(jitter × rate).
        let reserve = ((jitter_ms as u64) * rate).div_ceil(1000);
        prop_assume!(reserve < capacity);
        let kind = BudgetKind::TokenBucket {
            capacity: (capacity - reserve) * UNIT,
            refill_per_second: rate * UNIT,
        };
        let mut budget = Budget::new(kind, 0);
        let mut arrivals = Vec::new();
        let mut now = 0i64;
        for (gap, delay) in gaps.iter().zip(&delays) {
            now += gap;
            if budget.try_take(UNIT, now).is_ok() {
                arrivals.push(now + (delay * jitter_ms as f64) as i64);
            }
        }
        arrivals.sort_unstable();
        // The venue's lazy-fill bucket, in micro-units, full at the start.
        let mut tokens = (capacity * UNIT) as i128;
        let mut last = 0i64;
        for at in arrivals {
            let refill = i128::from(at - last) * i128::from(rate * UNIT) / 1000;
            tokens = (tokens + refill).min((capacity * UNIT) as i128);
            last = at;
            prop_assert!(tokens >= UNIT as i128, "venue bucket empty at {at}");
            tokens -= UNIT as i128;
        }
    }

    #[test]
    fn sliding_window_caps_every_interval(
        limit in 1u64..50,
        window_ms in 100i64..5_000,
        gaps in proptest::collection::vec(0i64..200, 1..300),
        costs in proptest::collection::vec(1u64..10, 300),
    ) {
        let kind = BudgetKind::SlidingWindow { limit: limit * UNIT, window_ms, guard_ms: 0 };
        let mut budget = Budget::new(kind, 0);
        let mut admitted: Vec<(i64, u64)> = Vec::new();
        let mut now = 0i64;
        for (gap, cost) in gaps.iter().zip(&costs) {
            now += gap;
            if budget.try_take(cost * UNIT, now).is_ok() {
                admitted.push((now, *cost));
            }
        }
        for (start, _) in &admitted {
            let inside: u64 = admitted
                .iter()
                .filter(|(t, _)| *t >= *start && *t < start + window_ms)
                .map(|(_, c)| c)
                .sum();
            prop_assert!(inside <= limit);
        }
    }
}
