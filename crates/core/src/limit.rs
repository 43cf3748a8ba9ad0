//! The cost-weighted token bucket, as GCRA (generic cell rate algorithm).
//!
//! A bucket holds at most `burst` cost units and refills at `rate` units per
//! `per_seconds`. GCRA stores one number, the theoretical arrival time (TAT):
//! the instant at which the bucket would be full again. A request of cost `c`
//! conforms when `max(TAT, now) + c·T − burst·T ≤ now`, where `T` is the time
//! one unit takes to refill. This is exactly a token bucket, expressed so that
//! state is a single integer and every backend (in process, Redis) can share
//! this code.
//!
//! Decisions are pure: [`Bucket::check`] returns the new state to store on
//! admission and never changes anything itself, so a request refused by a
//! later limit consumes nothing here either. Time is an argument, in
//! nanoseconds on any monotonic scale.

/// Nanoseconds per second.
pub const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Largest bucket tolerance (burst × refill time of one unit) accepted:
/// 2^62 ns, about 146 years. With it, every sum in [`Bucket::check`] fits in
/// a `u64` for any `now` before the year 2500, so no wide arithmetic is needed.
pub const MAX_TOLERANCE_NANOS: u64 = 1 << 62;

/// A bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BucketSpec {
    /// Time one cost unit takes to refill, rounded up so the bucket is never
    /// more generous than configured.
    emission_nanos: u64,
    /// Capacity in cost units.
    burst: u64,
    /// The configured refill rate, kept for headers.
    rate: u64,
    /// The configured refill period.
    per_seconds: u64,
    /// `emission_nanos × burst`: how far ahead of now the TAT may run.
    tolerance: u64,
    /// Seconds to refill an empty bucket, at least one.
    window_seconds: u64,
}

impl BucketSpec {
    /// `rate` units per `per_seconds`, holding at most `burst`. `None` when any
    /// is zero or the refill of one unit would not fit in a `u64` of nanoseconds.
    pub fn new(rate: u64, per_seconds: u64, burst: u64) -> Option<Self> {
        if rate == 0 || per_seconds == 0 || burst == 0 {
            return None;
        }
        let period = per_seconds.checked_mul(NANOS_PER_SECOND)?;
        let emission_nanos = period.div_ceil(rate);
        let tolerance = emission_nanos.checked_mul(burst)?;
        if tolerance > MAX_TOLERANCE_NANOS {
            return None;
        }
        Some(BucketSpec {
            emission_nanos,
            burst,
            rate,
            per_seconds,
            tolerance,
            window_seconds: ceil_seconds(u128::from(tolerance)).max(1),
        })
    }

    /// Capacity in cost units.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Refill rate as configured: `rate` units per `per_seconds`.
    pub fn rate(&self) -> (u64, u64) {
        (self.rate, self.per_seconds)
    }

    /// Time to refill one unit.
    pub fn emission_nanos(&self) -> u64 {
        self.emission_nanos
    }

    /// Time to refill an empty bucket, the policy window of the RateLimit
    /// headers; at least one second.
    pub fn window_seconds(&self) -> u64 {
        self.window_seconds
    }
}

/// Whole seconds, rounded up: a client told to wait this long is never early.
pub fn ceil_seconds(nanos: u128) -> u64 {
    match u64::try_from(nanos) {
        Ok(small) => small.div_ceil(NANOS_PER_SECOND),
        Err(_) => u64::try_from(nanos.div_ceil(u128::from(NANOS_PER_SECOND))).unwrap_or(u64::MAX),
    }
}

/// A bucket's state: the theoretical arrival time in nanoseconds. The default
/// (zero) is a full bucket for any `now` ≥ 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    tat: u64,
}

/// What a bucket says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketDecision {
    /// Admitted?
    pub allowed: bool,
    /// The state to store if the request is admitted (by every limit).
    pub next: Bucket,
    /// Whole units available after this decision.
    pub remaining: u64,
    /// Nanoseconds until the request would conform; zero when allowed,
    /// `u64::MAX` when its cost exceeds the burst and it never will.
    pub retry_after_nanos: u64,
    /// Nanoseconds until the bucket is full again.
    pub full_in_nanos: u64,
}

impl Bucket {
    /// A bucket whose state was stored as a raw TAT (e.g. by Redis).
    pub fn from_tat(tat: u64) -> Self {
        Bucket { tat }
    }

    /// The raw TAT, for storage.
    pub fn tat(&self) -> u64 {
        self.tat
    }

    /// Decides a request of `cost` units at `now`. Pure: store
    /// [`BucketDecision::next`] only if the request is admitted.
    pub fn check(&self, spec: &BucketSpec, cost: u64, now: u64) -> BucketDecision {
        // Invariant: a stored TAT is at most now + tolerance at the time it was
        // stored, so with tolerance <= 2^62 and now < 2^63 (year 2262 in unix
        // nanoseconds), every sum below fits in a u64; saturating ops keep even
        // a corrupt state from wrapping.
        let tat = self.tat.max(now);
        let tolerance = spec.tolerance;
        let emission = spec.emission_nanos;
        let remaining_at = |tat: u64| -> u64 { tolerance.saturating_sub(tat - now) / emission };
        if cost > spec.burst {
            return BucketDecision {
                allowed: false,
                next: *self,
                remaining: remaining_at(tat),
                retry_after_nanos: u64::MAX,
                full_in_nanos: tat - now,
            };
        }
        let new_tat = tat.saturating_add(cost * emission);
        // Conforms when new_tat - tolerance <= now.
        let allow_at = new_tat.saturating_sub(tolerance);
        if allow_at <= now {
            BucketDecision {
                allowed: true,
                next: Bucket { tat: new_tat },
                remaining: remaining_at(new_tat),
                retry_after_nanos: 0,
                full_in_nanos: new_tat - now,
            }
        } else {
            BucketDecision {
                allowed: false,
                next: *self,
                remaining: remaining_at(tat),
                retry_after_nanos: allow_at - now,
                full_in_nanos: tat - now,
            }
        }
    }

    /// Units available at `now`, without deciding anything.
    pub fn available(&self, spec: &BucketSpec, now: u64) -> u64 {
        self.check(spec, 0, now).remaining
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NANOS_PER_SECOND;

    #[test]
    fn burst_then_refill_at_the_rate() {
        // 2 units per second, burst 4.
        let spec = BucketSpec::new(2, 1, 4).expect("spec");
        let mut bucket = Bucket::default();
        let now = 100 * S;
        for expected_remaining in [3, 2, 1, 0] {
            let d = bucket.check(&spec, 1, now);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
            bucket = d.next;
        }
        let refused = bucket.check(&spec, 1, now);
        assert!(!refused.allowed);
        assert_eq!(refused.next, bucket, "a refusal changes nothing");
        assert_eq!(refused.retry_after_nanos, S / 2);
        assert_eq!(refused.full_in_nanos, 2 * S);
        // Exactly at the retry time it conforms.
        assert!(bucket.check(&spec, 1, now + S / 2).allowed);
        assert!(!bucket.check(&spec, 1, now + S / 2 - 1).allowed);
    }

    #[test]
    fn costs_weigh_and_oversized_costs_never_pass() {
        let spec = BucketSpec::new(10, 1, 10).expect("spec");
        let d = Bucket::default().check(&spec, 5, 50 * S);
        assert!(d.allowed);
        assert_eq!(d.remaining, 5);
        let d2 = d.next.check(&spec, 6, 50 * S);
        assert!(!d2.allowed);
        assert_eq!(d2.retry_after_nanos, S / 10);
        let never = Bucket::default().check(&spec, 11, 50 * S);
        assert!(!never.allowed);
        assert_eq!(never.retry_after_nanos, u64::MAX);
    }

    #[test]
    fn slow_rates_and_rounding_are_conservative() {
        // 1 unit per minute.
        let spec = BucketSpec::new(1, 60, 1).expect("spec");
        assert_eq!(spec.window_seconds(), 60);
        // 3 per second: 333_333_334 ns each, never faster than configured.
        let spec = BucketSpec::new(3, 1, 3).expect("spec");
        assert_eq!(spec.emission_nanos(), 333_333_334);
        assert!(BucketSpec::new(0, 1, 1).is_none());
        assert!(BucketSpec::new(1, 0, 1).is_none());
        assert!(BucketSpec::new(1, 1, 0).is_none());
        // A bucket that takes longer than 2^62 ns to refill is refused.
        assert!(BucketSpec::new(1, 1 << 40, 10).is_none());
        assert_eq!(ceil_seconds(1), 1);
        assert_eq!(ceil_seconds(u128::from(S)), 1);
        assert_eq!(ceil_seconds(u128::from(S) + 1), 2);
    }
}
