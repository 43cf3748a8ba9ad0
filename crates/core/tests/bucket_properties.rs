//! Properties of the GCRA bucket, against an independent token-bucket model.
//!
//! 1. Over any interval `[t_i, t_j]`, the admitted cost never exceeds
//!    `burst + (t_j - t_i) / T` (T: refill time of one unit).
//! 2. Every decision equals the classic token bucket's: a request that fits
//!    in the tokens available is always admitted, one that does not is not.
//! 3. A refused request leaves the state unchanged, and the reported wait is
//!    exact: at `now + retry_after` it conforms, one nanosecond earlier not.

use proptest::prelude::*;
use tollgate_core::limit::{Bucket, BucketSpec};

/// Token bucket measured in "nano-units" (units × T), so it is exact in integers.
struct TokenBucket {
    tokens: u128,
    capacity: u128,
    last: u64,
}

impl TokenBucket {
    fn offer(&mut self, now: u64, cost: u128, emission: u128) -> bool {
        let elapsed = u128::from(now - self.last);
        self.tokens = (self.tokens + elapsed).min(self.capacity);
        self.last = now;
        if self.tokens >= cost * emission {
            self.tokens -= cost * emission;
            true
        } else {
            false
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn gcra_is_a_token_bucket_and_never_exceeds_its_envelope(
        rate in 1u64..1_000,
        per_seconds in 1u64..5,
        burst in 1u64..50,
        steps in proptest::collection::vec((0u64..400_000_000, 1u64..8), 1..200),
    ) {
        let spec = BucketSpec::new(rate, per_seconds, burst).expect("valid spec");
        let emission = spec.emission_nanos();
        let start = 1_000_000_000_000u64;
        let mut model = TokenBucket { tokens: u128::from(burst) * u128::from(emission), capacity: u128::from(burst) * u128::from(emission), last: start };
        let mut bucket = Bucket::default();
        let mut now = start;
        let mut admitted: Vec<(u64, u64)> = Vec::new();
        for (dt, cost) in steps {
            now += dt;
            let decision = bucket.check(&spec, cost, now);
            let expected = model.offer(now, u128::from(cost), u128::from(emission));
            prop_assert_eq!(decision.allowed, expected, "at {} cost {}", now, cost);
            if decision.allowed {
                bucket = decision.next;
                admitted.push((now, cost));
            } else {
                prop_assert_eq!(decision.next, bucket);
                if decision.retry_after_nanos != u64::MAX {
                    let at = now + decision.retry_after_nanos;
                    prop_assert!(bucket.check(&spec, cost, at).allowed);
                    prop_assert!(!bucket.check(&spec, cost, at - 1).allowed);
                } else {
                    prop_assert!(cost > burst);
                }
            }
        }
        for i in 0..admitted.len() {
            let mut total: u128 = 0;
            for j in i..admitted.len() {
                total += u128::from(admitted[j].1);
                let elapsed = u128::from(admitted[j].0 - admitted[i].0);
                let envelope = u128::from(burst) + elapsed / u128::from(emission);
                prop_assert!(total <= envelope, "admitted {} in {} ns, envelope {}", total, elapsed, envelope);
            }
        }
    }
}
