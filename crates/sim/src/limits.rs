//! The limiter shapes the venues publish, each a plain state machine that is
//! told the time: the host's monotonic clock, except for Binance's aligned
//! windows, which follow the venue's clock (see `clock`).
//!
//! Amounts (tokens, credits, counter points) are fixed-point integers in
//! pico-units (10⁻¹² of a unit) and rates are micro-units per second, so one
//! microsecond of refill or decay is an exact integer number of pico-units and
//! the venues' worked examples come out exact (1.3 tokens is 1.3 tokens, not
//! 1.2999999).

use crate::clock::{MICROS_PER_SEC, Micros};
use std::collections::VecDeque;

/// Pico-units in one unit.
pub(crate) const UNIT: i128 = 1_000_000_000_000;

/// A configured amount (tokens, credits, counter points) in pico-units.
pub(crate) fn units(amount: f64) -> i128 {
    (amount * 1e12).round() as i128
}

/// A configured rate per second in micro-units per second, which is also
/// pico-units per microsecond.
pub(crate) fn rate(per_second: f64) -> i128 {
    (per_second * 1e6).round() as i128
}

/// Microseconds needed to cover `missing` pico-units at `rate`, rounded up.
fn micros_to_cover(missing: i128, rate: i128) -> Micros {
    if missing <= 0 {
        return 0;
    }
    if rate <= 0 {
        return i64::MAX / 4;
    }
    i64::try_from((missing + rate - 1) / rate).unwrap_or(i64::MAX / 4)
}

// === TokenBucket ===

/// Lazy-fill token bucket as Coinbase Exchange describes it: capacity =
/// burst, starts full; on each request it is first topped up to
/// `min(burst, tokens + elapsed × rate)` and the timestamp moves to now, then
/// the cost is removed if it is there, otherwise the request is limited and
/// nothing is removed. Deribit's credit pools and the Kraken Futures bucket
/// mode are the same machine with other numbers.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    capacity: i128,
    rate: i128,
    tokens: i128,
    last: Micros,
}

impl TokenBucket {
    /// A full bucket of `capacity` units refilling at `rate` (see [`rate`]).
    pub(crate) fn new(capacity: i128, rate: i128, now: Micros) -> Self {
        TokenBucket {
            capacity,
            rate,
            tokens: capacity,
            last: now,
        }
    }

    fn top_up(&mut self, now: Micros) {
        let elapsed = i128::from(now.saturating_sub(self.last).max(0));
        self.tokens = self.capacity.min(
            self.tokens
                .saturating_add(elapsed.saturating_mul(self.rate)),
        );
        self.last = self.last.max(now);
    }

    /// Tops up, then takes `cost` pico-units if present.
    pub(crate) fn try_take(&mut self, cost: i128, now: Micros) -> bool {
        self.top_up(now);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Pico-units in the bucket as of the last top-up.
    pub(crate) fn tokens(&self) -> i128 {
        self.tokens
    }

    /// When the bucket will be full again if nothing more is taken.
    pub(crate) fn full_at(&self) -> Micros {
        self.last
            .saturating_add(micros_to_cover(self.capacity - self.tokens, self.rate))
    }

    /// When `cost` pico-units will be available if nothing more is taken.
    pub(crate) fn available_at(&self, cost: i128) -> Micros {
        self.last
            .saturating_add(micros_to_cover(cost - self.tokens, self.rate))
    }
}

// === DecayCounter ===

/// Kraken's decaying counter: starts at 0, each call adds its cost, the value
/// falls by `decay` per second down to 0. A call is refused when it would take
/// the counter above the maximum; some calls are added unconditionally (a
/// batch cancel is accepted even when it pushes the counter past the maximum).
#[derive(Debug, Clone)]
pub(crate) struct DecayCounter {
    value: i128,
    decay: i128,
    last: Micros,
}

impl DecayCounter {
    pub(crate) fn new(decay: i128, now: Micros) -> Self {
        DecayCounter {
            value: 0,
            decay,
            last: now,
        }
    }

    fn settle(&mut self, now: Micros) {
        let elapsed = i128::from(now.saturating_sub(self.last).max(0));
        self.value = (self.value - elapsed.saturating_mul(self.decay)).max(0);
        self.last = self.last.max(now);
    }

    /// Whether `cost` more would stay within `max` (nothing is added).
    pub(crate) fn fits(&mut self, cost: i128, max: i128, now: Micros) -> bool {
        self.settle(now);
        self.value + cost <= max
    }

    /// Adds `cost` unless that would take the counter above `max`.
    pub(crate) fn try_add(&mut self, cost: i128, max: i128, now: Micros) -> bool {
        self.settle(now);
        if self.value + cost > max {
            false
        } else {
            self.value += cost;
            true
        }
    }

    /// Adds `cost` whatever the counter is.
    pub(crate) fn add(&mut self, cost: i128, now: Micros) {
        self.settle(now);
        self.value += cost;
    }

    /// The counter's value at `now`, in pico-units.
    #[cfg(test)]
    pub(crate) fn value(&mut self, now: Micros) -> i128 {
        self.settle(now);
        self.value
    }
}

// === AlignedWindow ===

/// A fixed window aligned to the clock, as Binance counts: with a one-minute
/// window, a request at 00:01:23.456 counts towards the 00:01:00 minute and
/// the count drops to 0 at 00:02:00.000 whatever happened before.
///
/// It is told the venue's clock, which the skew fault can set back. The
/// window only ever rolls forward: a clock set back keeps the current window
/// and its count until the clock passes that window's end again, so a skew
/// change never gives capacity back.
#[derive(Debug, Clone)]
pub(crate) struct AlignedWindow {
    length: Micros,
    index: i64,
    used: u64,
}

impl AlignedWindow {
    pub(crate) fn new(length: Micros) -> Self {
        AlignedWindow {
            length: length.max(1),
            index: i64::MIN,
            used: 0,
        }
    }

    fn roll(&mut self, now: Micros) {
        let index = now.div_euclid(self.length);
        if index > self.index {
            self.index = index;
            self.used = 0;
        }
    }

    /// Units counted in the window that contains `now`.
    pub(crate) fn used(&mut self, now: Micros) -> u64 {
        self.roll(now);
        self.used
    }

    /// Whether `cost` more fits under `limit` in the current window.
    pub(crate) fn fits(&mut self, cost: u64, limit: u64, now: Micros) -> bool {
        self.used(now).saturating_add(cost) <= limit
    }

    /// Counts `cost` in the current window; returns the new total.
    pub(crate) fn add(&mut self, cost: u64, now: Micros) -> u64 {
        self.roll(now);
        self.used = self.used.saturating_add(cost);
        self.used
    }

    /// When the window that counts a request at `now` ends (the current
    /// window when the clock was set back into an earlier one).
    pub(crate) fn end(&self, now: Micros) -> Micros {
        let index = now.div_euclid(self.length).max(self.index);
        index.saturating_add(1).saturating_mul(self.length)
    }
}

// === SlidingWindow ===

/// A sliding window: a request is admitted when the costs admitted during the
/// last `length` microseconds plus its own cost stay within the limit.
#[derive(Debug, Clone)]
pub(crate) struct SlidingWindow {
    length: Micros,
    entries: VecDeque<(Micros, u64)>,
    sum: u64,
}

impl SlidingWindow {
    pub(crate) fn new(length: Micros) -> Self {
        SlidingWindow {
            length: length.max(1),
            entries: VecDeque::new(),
            sum: 0,
        }
    }

    fn expire(&mut self, now: Micros) {
        while let Some(&(at, cost)) = self.entries.front() {
            if at.saturating_add(self.length) <= now {
                self.entries.pop_front();
                self.sum -= cost;
            } else {
                break;
            }
        }
    }

    /// Admits `cost` or returns when enough of the window will have slid
    /// past for it to fit.
    pub(crate) fn try_add(&mut self, cost: u64, limit: u64, now: Micros) -> Result<(), Micros> {
        self.expire(now);
        if self.sum.saturating_add(cost) <= limit {
            self.entries.push_back((now, cost));
            self.sum += cost;
            return Ok(());
        }
        let mut remaining = self.sum;
        for &(at, entry) in &self.entries {
            remaining -= entry;
            if remaining.saturating_add(cost) <= limit {
                return Err(at.saturating_add(self.length));
            }
        }
        // The cost alone exceeds the limit: it never fits.
        Err(now.saturating_add(self.length))
    }

    /// Costs admitted during the window ending at `now`.
    #[cfg(test)]
    pub(crate) fn used(&mut self, now: Micros) -> u64 {
        self.expire(now);
        self.sum
    }
}

// === Offender ===

/// Binance's ban ladder: bans start at `first` and double for repeat
/// offenders up to `max`. Two roads lead onto it: requests sent during a
/// running `Retry-After` (`after` of them), and rate-limit refusals earned
/// in quick succession (`after_refusals` within `refusal_period`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ladder {
    /// Violations (requests during a running `Retry-After`) that trigger a ban.
    pub(crate) after: u32,
    /// 429s (storms included) within `refusal_period` that trigger a ban.
    pub(crate) after_refusals: u32,
    pub(crate) refusal_period: Micros,
    pub(crate) first: Micros,
    pub(crate) max: Micros,
}

impl Ladder {
    /// Length of the ban given to a client already banned `previous` times.
    pub(crate) fn duration(&self, previous: u32) -> Micros {
        let mut length = self.first.max(0);
        for _ in 0..previous {
            if length >= self.max {
                break;
            }
            length = length.saturating_mul(2);
        }
        length.min(self.max)
    }
}

/// What the backoff gate says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// No `Retry-After` running.
    Clear,
    /// The client was told to wait and has not: counted, then served.
    Violation,
    /// Banned until then; the request is refused.
    Banned { until: Micros },
    /// This violation crossed the threshold: banned from now until then.
    NewBan { until: Micros },
}

/// Per-client memory of the `Retry-After` it was given, its violations, its
/// recent rate-limit refusals and its bans. All times are on the host's
/// monotonic clock.
#[derive(Debug, Clone, Default)]
pub(crate) struct Offender {
    wait_until: Micros,
    violations: u32,
    /// When the recent 429s were answered (only kept with a ladder).
    refusals: VecDeque<Micros>,
    bans: u32,
    banned_until: Micros,
}

impl Offender {
    /// The client was answered with `Retry-After` running until `until`.
    pub(crate) fn told_to_wait(&mut self, until: Micros) {
        self.wait_until = self.wait_until.max(until);
    }

    /// Looks at one incoming request. Violations accumulate until a ban
    /// (they are not forgiven when a wait ends), and with a ladder the
    /// `after`-th violation starts a ban.
    pub(crate) fn check(&mut self, now: Micros, ladder: Option<&Ladder>) -> Gate {
        if now < self.banned_until {
            return Gate::Banned {
                until: self.banned_until,
            };
        }
        if now >= self.wait_until {
            return Gate::Clear;
        }
        self.violations += 1;
        if let Some(ladder) = ladder
            && self.violations >= ladder.after.max(1)
        {
            let until = self.ban(now, ladder);
            return Gate::NewBan { until };
        }
        Gate::Violation
    }

    /// The client was just answered with a rate-limit refusal (a 429 it
    /// earned, or a storm's). With a ladder, the `after_refusals`-th refusal
    /// within `refusal_period` starts a ban from `now`: the refusal itself
    /// goes out as it is, and the client's next request meets the ban.
    /// Returns the ban's end when one starts.
    pub(crate) fn refused(&mut self, now: Micros, ladder: Option<&Ladder>) -> Option<Micros> {
        let ladder = ladder?;
        while self
            .refusals
            .front()
            .is_some_and(|at| at.saturating_add(ladder.refusal_period) <= now)
        {
            self.refusals.pop_front();
        }
        self.refusals.push_back(now);
        if self.refusals.len() < ladder.after_refusals.max(1) as usize {
            return None;
        }
        // The refusal's own Retry-After was the last word the client heard:
        // it keeps running if it outlasts the ban.
        let told = self.wait_until;
        let until = self.ban(now, ladder);
        self.wait_until = told.max(until);
        Some(until)
    }

    /// Starts the next ban of the ladder at `now`; violations and recent
    /// refusals start again from zero, and the wait becomes the ban (the
    /// 418 that announces it carries that `Retry-After`).
    fn ban(&mut self, now: Micros, ladder: &Ladder) -> Micros {
        let until = now.saturating_add(ladder.duration(self.bans));
        self.bans += 1;
        self.violations = 0;
        self.refusals.clear();
        self.banned_until = until;
        self.wait_until = until;
        until
    }
}

/// Milliseconds → microseconds for configured durations.
pub(crate) fn ms(millis: u64) -> Micros {
    i64::try_from(millis)
        .unwrap_or(i64::MAX / 1_000)
        .saturating_mul(1_000)
}

/// A whole number of seconds in microseconds.
pub(crate) fn secs(seconds: u64) -> Micros {
    i64::try_from(seconds)
        .unwrap_or(i64::MAX / MICROS_PER_SEC)
        .saturating_mul(MICROS_PER_SEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Micros = MICROS_PER_SEC;

    fn at(seconds: f64) -> Micros {
        (seconds * 1e6).round() as Micros
    }

    /// The default Binance ladder: 3 violations, or 10 refusals in 60 s.
    fn ladder() -> Ladder {
        Ladder {
            after: 3,
            after_refusals: 10,
            refusal_period: 60 * S,
            first: 120 * S,
            max: 259_200 * S,
        }
    }

    /// Coinbase's published TokenBucket example: burst 3, refresh rate 1/s,
    /// the state after each request, exactly.
    #[test]
    fn coinbase_worked_example() {
        let mut bucket = TokenBucket::new(units(3.0), rate(1.0), 0);
        assert_eq!(bucket.tokens(), units(3.0));
        let steps = [
            (0.5, true, 2.0),
            (0.8, true, 1.3),
            (0.9, true, 0.4),
            (1.0, false, 0.5),
            (1.4, false, 0.9),
            (1.8, true, 0.3),
            (5.0, true, 2.0),
        ];
        for (n, (time, admitted, tokens)) in steps.into_iter().enumerate() {
            assert_eq!(
                bucket.try_take(UNIT, at(time)),
                admitted,
                "request {}",
                n + 1
            );
            assert_eq!(
                bucket.tokens(),
                units(tokens),
                "tokens after request {}",
                n + 1
            );
        }
    }

    #[test]
    fn bucket_reports_when_full_and_when_a_token_is_back() {
        let mut bucket = TokenBucket::new(units(30.0), rate(15.0), 0);
        for _ in 0..30 {
            assert!(bucket.try_take(UNIT, 0));
        }
        assert!(!bucket.try_take(UNIT, 0));
        assert_eq!(bucket.full_at(), 2 * S);
        assert_eq!(bucket.available_at(UNIT), S / 15 + 1);
        assert!(!bucket.try_take(UNIT, S / 15));
        assert!(bucket.try_take(UNIT, S / 15 + 1));
    }

    /// Deribit's default non-matching-engine pool: cost 500, max 50 000,
    /// refill 10 000 per second, i.e. 20 requests per second, burst 100.
    #[test]
    fn deribit_credit_refill() {
        let cost = units(500.0);
        let mut pool = TokenBucket::new(units(50_000.0), rate(10_000.0), 0);
        for n in 0..100 {
            assert!(pool.try_take(cost, 0), "request {n}");
        }
        assert!(!pool.try_take(cost, 0));
        // 500 credits come back in 50 ms.
        assert!(!pool.try_take(cost, 49_999));
        assert!(pool.try_take(cost, 50_000));
        assert!(!pool.try_take(cost, 50_000));
        // Sustained: one request every 50 ms is always admitted.
        for k in 2..200 {
            assert!(pool.try_take(cost, k * 50_000), "paced request {k}");
        }
        // Five idle seconds refill the whole pool, no more.
        let later = 200 * 50_000 + 5 * S;
        for n in 0..100 {
            assert!(pool.try_take(cost, later), "burst request {n}");
        }
        assert!(!pool.try_take(cost, later));
    }

    #[test]
    fn kraken_intermediate_decay_example() {
        // Intermediate tier: 50 adds in a burst, 10 s idle, decay 2.34/s.
        let mut counter = DecayCounter::new(rate(2.34), 0);
        for _ in 0..50 {
            assert!(counter.try_add(UNIT, units(125.0), 0));
        }
        assert_eq!(counter.value(10 * S), units(26.6));
        // It never goes below zero.
        assert_eq!(counter.value(100 * S), 0);
    }

    #[test]
    fn kraken_starter_rest_counter() {
        // Starter: maximum 15, decay 0.33/s.
        let max = units(15.0);
        let mut counter = DecayCounter::new(rate(0.33), 0);
        for n in 0..15 {
            assert!(counter.try_add(UNIT, max, 0), "call {n}");
        }
        assert!(!counter.try_add(UNIT, max, 0));
        // A refused call adds nothing; one point decays in 1/0.33 s.
        assert!(!counter.try_add(UNIT, max, at(3.0)));
        assert!(counter.try_add(UNIT, max, at(3.031)));
        // A ledger call costs 2: needs another 2/0.33 s.
        assert!(!counter.try_add(2 * UNIT, max, at(6.0)));
        assert!(counter.try_add(2 * UNIT, max, at(9.1)));
        // Forced additions may go past the maximum.
        counter.add(10 * UNIT, at(9.1));
        assert!(counter.value(at(9.1)) > max);
    }

    #[test]
    fn binance_window_is_aligned_to_the_clock() {
        let minute = 60 * S;
        let mut window = AlignedWindow::new(minute);
        // 00:01:23.456 counts towards the 00:01:00 minute.
        let t = 60 * S + 23 * S + 456_000;
        assert_eq!(window.end(t), 120 * S);
        assert!(window.fits(6_000, 6_000, t));
        assert_eq!(window.add(5_999, t), 5_999);
        assert!(window.fits(1, 6_000, t));
        assert_eq!(window.add(1, t), 6_000);
        assert!(!window.fits(1, 6_000, 119 * S + 999_999));
        // The count drops at the minute, not 60 s after the first request.
        assert_eq!(window.used(120 * S), 0);
        assert!(window.fits(6_000, 6_000, 120 * S));
        assert_eq!(window.end(120 * S), 180 * S);
        // A scaled one-second window works the same way.
        let mut second = AlignedWindow::new(S);
        second.add(10, 1_500_000);
        assert_eq!(second.used(1_999_999), 10);
        assert_eq!(second.used(2_000_000), 0);
    }

    /// The skew fault moves the venue's clock back 40 s in the middle of a
    /// full minute: the window does not roll back into the previous minute
    /// (which would empty it), it stays full until its own end.
    #[test]
    fn aligned_window_never_rolls_backwards() {
        let minute = 60 * S;
        let mut window = AlignedWindow::new(minute);
        let t = 60 * S + 30 * S;
        assert_eq!(window.add(6_000, t), 6_000);
        let set_back = t - 40 * S; // 00:00:50, the previous minute
        assert_eq!(window.used(set_back), 6_000);
        assert!(!window.fits(1, 6_000, set_back));
        // The Retry-After runs to the end of the window that is counting.
        assert_eq!(window.end(set_back), 120 * S);
        // Back across its own end (and only then) the window rolls.
        assert_eq!(window.used(119 * S + 999_999), 6_000);
        assert_eq!(window.used(120 * S), 0);
        // Forward jumps roll as the venue's minute does.
        window.add(100, 120 * S);
        assert_eq!(window.used(185 * S), 0);
    }

    #[test]
    fn binance_ban_ladder_doubles_up_to_three_days() {
        let ladder = ladder();
        let expected = [
            120, 240, 480, 960, 1_920, 3_840, 7_680, 15_360, 30_720, 61_440, 122_880, 245_760,
            259_200, 259_200,
        ];
        for (n, secs) in expected.into_iter().enumerate() {
            assert_eq!(ladder.duration(n as u32), secs * S, "ban {}", n + 1);
        }
    }

    #[test]
    fn violations_during_retry_after_escalate_to_a_ban() {
        let ladder = ladder();
        let mut client = Offender::default();
        assert_eq!(client.check(0, Some(&ladder)), Gate::Clear);
        client.told_to_wait(2 * S);
        assert_eq!(client.check(S, Some(&ladder)), Gate::Violation);
        assert_eq!(client.check(S, Some(&ladder)), Gate::Violation);
        assert_eq!(
            client.check(S, Some(&ladder)),
            Gate::NewBan { until: 121 * S }
        );
        assert_eq!(
            client.check(100 * S, Some(&ladder)),
            Gate::Banned { until: 121 * S }
        );
        assert_eq!(client.check(121 * S, Some(&ladder)), Gate::Clear);
        // Repeat offender: the next ban is twice as long.
        client.told_to_wait(123 * S);
        for _ in 0..2 {
            assert_eq!(client.check(122 * S, Some(&ladder)), Gate::Violation);
        }
        assert_eq!(
            client.check(122 * S, Some(&ladder)),
            Gate::NewBan { until: 362 * S }
        );
        // Without a ladder violations are only counted.
        let mut other = Offender::default();
        other.told_to_wait(S);
        for _ in 0..10 {
            assert_eq!(other.check(0, None), Gate::Violation);
        }
        assert_eq!(other.check(S, None), Gate::Clear);
    }

    /// Binance bans for repeatedly breaking limits, not only for ignoring
    /// Retry-After: the 10th 429 within 60 s starts a ban even when the
    /// client waited out every Retry-After.
    #[test]
    fn repeated_refusals_escalate_to_a_ban() {
        let ladder = ladder();
        let mut client = Offender::default();
        // Nine 429s, each waited out (no violation), within a minute.
        for n in 0..9 {
            let t = n * 5 * S;
            assert_eq!(client.check(t, Some(&ladder)), Gate::Clear, "request {n}");
            client.told_to_wait(t + S);
            assert_eq!(client.refused(t, Some(&ladder)), None, "refusal {n}");
        }
        // The tenth, 45 s after the first: banned from now for 120 s.
        assert_eq!(client.check(45 * S, Some(&ladder)), Gate::Clear);
        client.told_to_wait(46 * S);
        assert_eq!(client.refused(45 * S, Some(&ladder)), Some(165 * S));
        // The next request meets the ban, whenever it comes.
        assert_eq!(
            client.check(50 * S, Some(&ladder)),
            Gate::Banned { until: 165 * S }
        );
        assert_eq!(client.check(165 * S, Some(&ladder)), Gate::Clear);
        // The count started again with the ban; refusals older than the
        // period fall out of it.
        let mut spaced = Offender::default();
        for n in 0..30 {
            assert_eq!(spaced.refused(n * 7 * S, Some(&ladder)), None, "{n}");
        }
        // Ten within the period: the second ban is twice as long.
        for n in 0..9 {
            assert_eq!(client.refused(200 * S + n, Some(&ladder)), None);
        }
        assert_eq!(client.refused(210 * S, Some(&ladder)), Some(450 * S));
        // Violations and refusals add up on the same ladder; without one,
        // refusals are not tracked at all.
        let mut other = Offender::default();
        for _ in 0..100 {
            assert_eq!(other.refused(0, None), None);
        }
        assert_eq!(other.check(0, None), Gate::Clear);
    }

    /// Kraken Futures: 500 cost units per 10 s. The sliding window is stricter
    /// than a bucket refilling 50 per second.
    #[test]
    fn kraken_futures_sliding_window_versus_bucket() {
        let ten = 10 * S;
        let mut window = SlidingWindow::new(ten);
        let mut bucket = TokenBucket::new(units(500.0), rate(50.0), 0);
        for _ in 0..50 {
            assert_eq!(window.try_add(10, 500, 0), Ok(()));
            assert!(bucket.try_take(units(10.0), 0));
        }
        assert_eq!(window.try_add(10, 500, 0), Err(ten));
        assert!(!bucket.try_take(units(10.0), 0));
        // Five seconds later the bucket has 250 back, the window nothing.
        let five = 5 * S;
        assert_eq!(window.try_add(10, 500, five), Err(ten));
        for n in 0..25 {
            assert!(bucket.try_take(units(10.0), five), "bucket request {n}");
        }
        assert!(!bucket.try_take(units(10.0), five));
        // At 10 s the whole first burst leaves the window.
        assert_eq!(window.used(ten - 1), 500);
        assert_eq!(window.used(ten), 0);
        assert_eq!(window.try_add(500, 500, ten), Ok(()));
        // Partial expiry: the retry time is when enough has slid out.
        let mut staggered = SlidingWindow::new(ten);
        assert_eq!(staggered.try_add(200, 500, 0), Ok(()));
        assert_eq!(staggered.try_add(300, 500, S), Ok(()));
        assert_eq!(staggered.try_add(250, 500, 2 * S), Err(ten + S));
        assert_eq!(staggered.try_add(150, 500, 2 * S), Err(ten));
        assert_eq!(staggered.try_add(600, 500, 2 * S), Err(2 * S + ten));
    }
}
