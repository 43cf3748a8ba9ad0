//! When to retry: exponential backoff with jitter that never undercuts the
//! server's `Retry-After`.
//!
//! The computation is pure ([`RetryPolicy::delay`] takes the random number as
//! an argument), so it is tested without sleeping or seeding.

use std::time::Duration;

/// How many times, and how patiently, to retry a 429 or 409.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: u32,
    /// The wait before the first retry when the server gives no
    /// `Retry-After`; doubled for every further retry.
    pub base_backoff: Duration,
    /// The longest wait. A `Retry-After` longer than this ends the retries:
    /// retrying earlier than the server asked would only be refused again.
    pub max_backoff: Duration,
    /// The largest random extra, as a fraction of the wait (0.2 adds up to
    /// 20 %). Jitter only ever lengthens a wait. Clamped to `0.0..=1.0`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 5 retries, 250 ms doubling, at most 30 s, up to 20 % jitter.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0 for the first retry), or
    /// `None` when no retry should be made.
    ///
    /// - `retry_after`: the server's `Retry-After`, already turned into a
    ///   duration.
    /// - `random_fraction`: a uniformly random number in `[0, 1)`; values
    ///   outside are clamped, NaN counts as 0.
    ///
    /// The wait is `w = max(retry_after, base_backoff · 2^retry)`, plus
    /// `w · jitter · random_fraction`, capped at `max_backoff`. It is never
    /// shorter than `retry_after`. `None` when `retry >= max_retries`, or
    /// when `retry_after` exceeds `max_backoff`.
    pub fn delay(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        random_fraction: f64,
    ) -> Option<Duration> {
        if retry >= self.max_retries {
            return None;
        }
        let floor = retry_after.unwrap_or(Duration::ZERO);
        if floor > self.max_backoff {
            return None;
        }
        let exponential = self
            .base_backoff
            .checked_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
            .unwrap_or(Duration::MAX)
            .min(self.max_backoff);
        let wait = exponential.max(floor);
        let fraction = if random_fraction.is_nan() {
            0.0
        } else {
            random_fraction.clamp(0.0, 1.0)
        };
        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        // In parts per million, so the arithmetic on the wait is exact.
        let ppm = (jitter * fraction * 1_000_000.0).round() as u128;
        let extra_nanos = wait.as_nanos() * ppm / 1_000_000;
        let extra = Duration::from_nanos(u64::try_from(extra_nanos).unwrap_or(u64::MAX));
        Some(wait.saturating_add(extra).min(self.max_backoff).max(floor))
    }
}

/// A uniformly random number in `[0, 1)` from the operating system; 0 if
/// the system cannot provide one (the wait then has no jitter).
pub fn random_fraction() -> f64 {
    match getrandom::u64() {
        // 53 random bits: every value is exactly representable.
        Ok(bits) => (bits >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 5,
            base_backoff: ms(100),
            max_backoff: ms(2_000),
            jitter: 0.2,
        }
    }

    #[test]
    fn doubles_without_jitter() {
        let p = policy();
        let waits: Vec<_> = (0..5).map(|r| p.delay(r, None, 0.0).unwrap()).collect();
        assert_eq!(waits, vec![ms(100), ms(200), ms(400), ms(800), ms(1_600)]);
    }

    #[test]
    fn stops_after_max_retries() {
        let p = policy();
        assert!(p.delay(4, None, 0.0).is_some());
        assert_eq!(p.delay(5, None, 0.0), None);
        let none = RetryPolicy {
            max_retries: 0,
            ..p
        };
        assert_eq!(none.delay(0, None, 0.0), None);
    }

    #[test]
    fn jitter_only_lengthens_and_is_bounded() {
        let p = policy();
        assert_eq!(p.delay(0, None, 0.5), Some(ms(110)));
        assert_eq!(p.delay(1, None, 0.25), Some(ms(210)));
        assert_eq!(p.delay(1, None, 0.999_999_9), Some(ms(240)));
        for i in 0..=100 {
            let f = f64::from(i) / 100.0;
            let d = p.delay(2, None, f).unwrap();
            assert!(d >= ms(400) && d <= ms(480), "{f}: {d:?}");
        }
    }

    #[test]
    fn never_earlier_than_retry_after() {
        let p = policy();
        for retry in 0..5 {
            for ra in [0, 1, 150, 999, 1_000, 1_999, 2_000] {
                for f in [0.0, 0.3, 0.99] {
                    let d = p.delay(retry, Some(ms(ra)), f).unwrap();
                    assert!(
                        d >= ms(ra),
                        "retry {retry}, Retry-After {ra} ms, f {f}: {d:?}"
                    );
                    assert!(d <= p.max_backoff, "{d:?}");
                }
            }
        }
        // Retry-After dominates a short backoff, jitter on top of it.
        assert_eq!(p.delay(0, Some(ms(1_000)), 0.0), Some(ms(1_000)));
        assert_eq!(p.delay(0, Some(ms(1_000)), 0.5), Some(ms(1_100)));
        // Exactly max_backoff: waits max_backoff, the jitter is cut off.
        assert_eq!(p.delay(0, Some(ms(2_000)), 0.9), Some(ms(2_000)));
    }

    #[test]
    fn retry_after_beyond_max_backoff_gives_up() {
        let p = policy();
        assert_eq!(p.delay(0, Some(ms(2_001)), 0.0), None);
        assert_eq!(p.delay(0, Some(Duration::from_secs(86_400)), 0.0), None);
    }

    #[test]
    fn capped_at_max_backoff() {
        let p = policy();
        assert_eq!(p.delay(4, None, 0.5), Some(ms(1_760)));
        assert_eq!(
            p.delay(4, None, 0.99),
            Some(Duration::from_micros(1_916_800))
        );
        let many = RetryPolicy {
            max_retries: 100,
            ..p
        };
        assert_eq!(many.delay(40, None, 0.9), Some(ms(2_000)));
        assert_eq!(many.delay(99, None, 0.0), Some(ms(2_000)));
        let huge = RetryPolicy {
            max_retries: 100,
            base_backoff: Duration::MAX,
            max_backoff: Duration::MAX,
            jitter: 1.0,
        };
        assert_eq!(huge.delay(99, None, 0.99), Some(Duration::MAX));
    }

    #[test]
    fn odd_random_inputs_are_clamped() {
        let p = policy();
        assert_eq!(p.delay(0, None, f64::NAN), Some(ms(100)));
        assert_eq!(p.delay(0, None, -3.0), Some(ms(100)));
        assert_eq!(p.delay(0, None, 7.0), Some(ms(120)));
        let wild = RetryPolicy {
            jitter: f64::INFINITY,
            ..p
        };
        assert_eq!(wild.delay(0, None, 1.0), Some(ms(200)));
    }

    #[test]
    fn random_fraction_is_in_range() {
        for _ in 0..1_000 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f), "{f}");
        }
    }
}
