//! Venue budget math: how the egress router counts what a venue allows.
//!
//! Venues count in three ways, and a [`Budget`] models each one:
//!
//! - **Token bucket** (Coinbase's lazy-fill bucket, Deribit's credits, and
//!   Kraken's decaying counters, which are the same thing seen from the other
//!   side: a counter that decays by `d` per second up to a maximum `m` is a
//!   bucket of capacity `m` refilling at `d`).
//! - **Fixed window** aligned to the venue's clock (Binance's per-minute weight
//!   and its 10-second and daily order counts). Near a boundary the router
//!   cannot know which window the venue will count a request in, so a request
//!   sent within `guard` of a boundary is charged to both windows.
//! - **Sliding window** (a cap on the cost sent in any interval of the window's
//!   length; the safe reading of Kraken Futures' "500 every 10 seconds", since a
//!   sequence a sliding window admits is also admitted by a bucket of the same
//!   capacity and rate).
//!
//! Costs are in micro-units ([`UNIT`] = one venue unit) so that fractional
//! costs and rates (Kraken's 0.33 per second, a batch of n orders costing n/2)
//! stay integer. Times are milliseconds on the venue's clock, passed in.
//!
//! Every take returns a [`Ticket`]. When the venue's answer reports its own
//! count (`X-MBX-USED-WEIGHT-1M`, `x-ratelimit-remaining`), [`Budget::resync`]
//! replaces the local estimate with the venue's figure plus everything whose
//! place in the venue's count is uncertain: what was sent after the reported
//! request, and what was sent before it but not yet answered when it left.
//! The estimate therefore never falls below what the venue can have counted.

use std::collections::VecDeque;

/// One venue unit (a request, a weight point, a credit) in micro-units.
pub const UNIT: u64 = 1_000_000;

/// The shape of a venue budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetKind {
    /// Starts full with `capacity`; refills continuously at `refill_per_second`.
    TokenBucket {
        capacity: u64,
        refill_per_second: u64,
    },
    /// At most `limit` per window of `window_ms`, windows aligned to the epoch
    /// of the venue's clock. Sends within `guard_ms` of a boundary count twice.
    FixedWindow {
        limit: u64,
        window_ms: i64,
        guard_ms: i64,
    },
    /// At most `limit` in any interval of `window_ms`. A send is remembered
    /// for `window_ms + guard_ms`, so sends the venue sees up to `guard_ms`
    /// closer together than they left still fit its window.
    SlidingWindow {
        limit: u64,
        window_ms: i64,
        guard_ms: i64,
    },
}

/// Why a take did not happen now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Capacity for this cost is expected at this time (venue clock, ms).
    Until(i64),
    /// The cost is larger than the budget can ever hold.
    Never,
}

/// What a take spent, kept until the venue's answer arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    cost: u64,
    /// For fixed windows, the window index the take was charged to.
    window: i64,
    /// Whether the take was charged in a guard zone (its window is uncertain).
    guarded: bool,
    /// Cost answered (in the same accounting period) when this take left.
    answered_before: u64,
}

impl Ticket {
    /// The cost this ticket took, in micro-units.
    pub fn cost(&self) -> u64 {
        self.cost
    }
}

#[derive(Debug, Clone)]
enum State {
    Bucket {
        /// Micro-units available; may go negative after a resync.
        tokens: i128,
        at: i64,
    },
    Fixed {
        index: i64,
        prev: u64,
        cur: u64,
        next: u64,
    },
    Sliding {
        entries: VecDeque<(i64, u64)>,
        sum: u64,
    },
}

/// One budget's state.
#[derive(Debug, Clone)]
pub struct Budget {
    kind: BudgetKind,
    state: State,
    /// Cost taken in the current accounting period (all time for buckets and
    /// sliding windows, the current window for fixed windows).
    departed: u64,
    /// Cost answered in the same period.
    answered: u64,
}

impl Budget {
    /// A fresh budget at `now`: buckets full, windows empty.
    pub fn new(kind: BudgetKind, now: i64) -> Self {
        let state = match kind {
            BudgetKind::TokenBucket { capacity, .. } => State::Bucket {
                tokens: i128::from(capacity),
                at: now,
            },
            BudgetKind::FixedWindow { window_ms, .. } => State::Fixed {
                index: now.div_euclid(window_ms.max(1)),
                prev: 0,
                cur: 0,
                next: 0,
            },
            BudgetKind::SlidingWindow { .. } => State::Sliding {
                entries: VecDeque::new(),
                sum: 0,
            },
        };
        Budget {
            kind,
            state,
            departed: 0,
            answered: 0,
        }
    }

    /// The budget's shape.
    pub fn kind(&self) -> BudgetKind {
        self.kind
    }

    /// Takes `cost` at `now` if it fits, else says when it will.
    pub fn try_take(&mut self, cost: u64, now: i64) -> Result<Ticket, Wait> {
        self.advance(now);
        let limit = match self.kind {
            BudgetKind::TokenBucket { capacity, .. } => capacity,
            BudgetKind::FixedWindow { limit, .. } | BudgetKind::SlidingWindow { limit, .. } => {
                limit
            }
        };
        if cost > limit {
            return Err(Wait::Never);
        }
        let (window, guarded) = match (&mut self.state, self.kind) {
            (
                State::Bucket { tokens, .. },
                BudgetKind::TokenBucket {
                    refill_per_second, ..
                },
            ) => {
                let missing = i128::from(cost) - *tokens;
                if missing > 0 {
                    return Err(wait_for_refill(missing, refill_per_second, now));
                }
                *tokens -= i128::from(cost);
                (0, false)
            }
            (
                State::Fixed {
                    index,
                    prev,
                    cur,
                    next,
                },
                BudgetKind::FixedWindow {
                    window_ms,
                    guard_ms,
                    ..
                },
            ) => {
                let start = *index * window_ms;
                let in_start_guard = now < start + guard_ms;
                let in_end_guard = now >= start + window_ms - guard_ms;
                if !fixed_fits((*index, *prev, *cur, *next), self.kind, cost, now) {
                    let at = fixed_wait((*index, *prev, *cur, *next), self.kind, cost, now);
                    return Err(Wait::Until(at));
                }
                *cur += cost;
                if in_start_guard {
                    *prev += cost;
                }
                if in_end_guard {
                    *next += cost;
                }
                (*index, in_start_guard || in_end_guard)
            }
            (
                State::Sliding { entries, sum },
                BudgetKind::SlidingWindow {
                    window_ms,
                    guard_ms,
                    ..
                },
            ) => {
                if *sum + cost > limit {
                    let mut freed = 0u64;
                    for (at, spent) in entries.iter() {
                        freed += spent;
                        if *sum - freed + cost <= limit {
                            return Err(Wait::Until(at + window_ms + guard_ms));
                        }
                    }
                    return Err(Wait::Never);
                }
                if cost > 0 {
                    entries.push_back((now, cost));
                    *sum += cost;
                }
                (0, false)
            }
            _ => unreachable!("state always matches kind"),
        };
        let ticket = Ticket {
            cost,
            window,
            guarded,
            answered_before: self.answered,
        };
        self.departed += cost;
        Ok(ticket)
    }

    /// Records that the request behind `ticket` was answered.
    pub fn answered(&mut self, ticket: &Ticket, now: i64) {
        self.advance(now);
        if self.same_period(ticket) {
            self.answered = (self.answered + ticket.cost).min(self.departed);
        }
    }

    /// Records that the request behind `ticket` got no answer (timeout,
    /// broken connection, caller gone): the venue may or may not have
    /// counted it, now or later. In a fixed window it stays uncertain until
    /// the window ends, so no report of the venue's can hide it; a bucket or
    /// sliding window has already charged it locally and only ever lowers
    /// its estimate on a report, so there it is simply closed.
    pub fn abandoned(&mut self, ticket: &Ticket, now: i64) {
        self.advance(now);
        if !matches!(self.state, State::Fixed { .. }) {
            self.answered(ticket, now);
        }
    }

    /// Replaces the estimate with the venue's own count, reported on the
    /// answer to `ticket`: `used` for windows, `remaining` for buckets (both
    /// in micro-units). A report whose window is uncertain is ignored.
    pub fn resync(&mut self, ticket: &Ticket, report: Report, now: i64) {
        self.advance(now);
        if !self.same_period(ticket) {
            return;
        }
        let uncertain = self
            .departed
            .saturating_sub(ticket.answered_before)
            .saturating_sub(ticket.cost);
        match (&mut self.state, report, self.kind) {
            (State::Bucket { tokens, .. }, Report::Remaining(remaining), _) => {
                let venue = i128::from(remaining) - i128::from(uncertain);
                // Lower only: refill timing on the venue's side is unknown,
                // so a fuller venue bucket is not trusted.
                *tokens = (*tokens).min(venue);
            }
            (
                State::Fixed { index, cur, .. },
                Report::Used(used),
                BudgetKind::FixedWindow {
                    window_ms,
                    guard_ms,
                    ..
                },
            ) => {
                let end = (*index + 1) * window_ms;
                if ticket.guarded || now >= end - guard_ms {
                    return;
                }
                *cur = used.saturating_add(uncertain);
            }
            _ => {}
        }
    }

    /// What is left now (micro-units): tokens for a bucket, `limit − used`
    /// for windows. Never negative.
    pub fn available(&mut self, now: i64) -> u64 {
        self.advance(now);
        match (&self.state, self.kind) {
            (State::Bucket { tokens, .. }, _) => u64::try_from((*tokens).max(0)).unwrap_or(0),
            (State::Fixed { cur, .. }, BudgetKind::FixedWindow { limit, .. }) => {
                limit.saturating_sub(*cur)
            }
            (State::Sliding { sum, .. }, BudgetKind::SlidingWindow { limit, .. }) => {
                limit.saturating_sub(*sum)
            }
            _ => 0,
        }
    }

    fn same_period(&self, ticket: &Ticket) -> bool {
        match self.state {
            State::Fixed { index, .. } => index == ticket.window,
            _ => true,
        }
    }

    /// Brings the state to `now`: refill, window roll, expiry.
    fn advance(&mut self, now: i64) {
        match (&mut self.state, self.kind) {
            (
                State::Bucket { tokens, at },
                BudgetKind::TokenBucket {
                    capacity,
                    refill_per_second,
                },
            ) if now > *at => {
                // Exact for rates in whole thousandths of a unit per second.
                let refill = i128::from(now - *at) * i128::from(refill_per_second) / 1000;
                *tokens = (*tokens + refill).min(i128::from(capacity));
                *at = now;
            }
            (
                State::Fixed {
                    index,
                    prev,
                    cur,
                    next,
                },
                BudgetKind::FixedWindow { window_ms, .. },
            ) => {
                let now_index = now.div_euclid(window_ms.max(1));
                if now_index > *index {
                    if now_index == *index + 1 {
                        *prev = *cur;
                        *cur = *next;
                    } else if now_index == *index + 2 {
                        // The skipped window held only what the old one's end
                        // guard charged to it.
                        *prev = *next;
                        *cur = 0;
                    } else {
                        *prev = 0;
                        *cur = 0;
                    }
                    *next = 0;
                    *index = now_index;
                    self.departed = *cur;
                    self.answered = 0;
                }
            }
            (
                State::Sliding { entries, sum },
                BudgetKind::SlidingWindow {
                    window_ms,
                    guard_ms,
                    ..
                },
            ) => {
                while let Some(&(at, spent)) = entries.front() {
                    if at + window_ms + guard_ms > now {
                        break;
                    }
                    entries.pop_front();
                    *sum -= spent;
                }
            }
            _ => {}
        }
    }
}

/// A venue's report of its own count, in micro-units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Used in the current window (`X-MBX-USED-WEIGHT-1M`).
    Used(u64),
    /// Left in the bucket (`x-ratelimit-remaining`).
    Remaining(u64),
}

/// A fixed window's counts: (window index, previous, current, next).
type Windows = (i64, u64, u64, u64);

/// The counts as they will stand at `at` if nothing else is taken.
fn roll(w: Windows, window_ms: i64, at: i64) -> Windows {
    let (index, _, cur, next) = w;
    let at_index = at.div_euclid(window_ms.max(1));
    if at_index == index {
        w
    } else if at_index == index + 1 {
        (at_index, cur, next, 0)
    } else if at_index == index + 2 {
        (at_index, next, 0, 0)
    } else if at_index > index {
        (at_index, 0, 0, 0)
    } else {
        w
    }
}

/// Whether `cost` fits the window counts at `at`: in the current window, and
/// also in the neighbour the venue might count it in when `at` is near a boundary.
fn fixed_fits(w: Windows, kind: BudgetKind, cost: u64, at: i64) -> bool {
    let BudgetKind::FixedWindow {
        limit,
        window_ms,
        guard_ms,
    } = kind
    else {
        return false;
    };
    let (index, prev, cur, next) = roll(w, window_ms, at);
    let start = index * window_ms;
    let fits = |used: u64| used.saturating_add(cost) <= limit;
    fits(cur)
        && (at >= start + guard_ms || fits(prev))
        && (at < start + window_ms - guard_ms || fits(next))
}

/// The first time after `now` at which `cost` fits, if nothing else is taken.
fn fixed_wait(w: Windows, kind: BudgetKind, cost: u64, now: i64) -> i64 {
    let BudgetKind::FixedWindow {
        window_ms,
        guard_ms,
        ..
    } = kind
    else {
        return now;
    };
    let start = w.0 * window_ms;
    (0..3)
        .map(|k| start + k * window_ms + guard_ms)
        .find(|&at| at > now && fixed_fits(w, kind, cost, at))
        .unwrap_or(start + 3 * window_ms + guard_ms)
}

fn wait_for_refill(missing: i128, refill_per_second: u64, now: i64) -> Wait {
    if refill_per_second == 0 {
        return Wait::Never;
    }
    let rate = i128::from(refill_per_second);
    // Ceiling division: the first whole millisecond at which enough has refilled.
    let ms = (missing * 1000 + rate - 1) / rate;
    Wait::Until(now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(n: u64) -> u64 {
        n * UNIT
    }

    #[test]
    fn bucket_follows_coinbases_worked_example() {
        // Burst 3, 1 per second: three at once pass, the fourth waits a second.
        let kind = BudgetKind::TokenBucket {
            capacity: units(3),
            refill_per_second: units(1),
        };
        let mut b = Budget::new(kind, 0);
        for _ in 0..3 {
            assert!(b.try_take(units(1), 0).is_ok());
        }
        assert_eq!(b.try_take(units(1), 0), Err(Wait::Until(1000)));
        assert_eq!(b.try_take(units(1), 999), Err(Wait::Until(1000)));
        assert!(b.try_take(units(1), 1000).is_ok());
        // Idle for a long time: back to full, never above.
        assert_eq!(b.available(100_000), units(3));
        assert_eq!(b.try_take(units(4), 100_000), Err(Wait::Never));
    }

    #[test]
    fn decaying_counter_is_a_bucket_with_fractional_rate() {
        // Kraken Starter: max 15, decays 0.33 per second.
        let kind = BudgetKind::TokenBucket {
            capacity: units(15),
            refill_per_second: 330_000,
        };
        let mut b = Budget::new(kind, 0);
        for _ in 0..15 {
            b.try_take(units(1), 0).unwrap();
        }
        // One unit needs 1/0.33 s = 3031 ms (rounded up).
        assert_eq!(b.try_take(units(1), 0), Err(Wait::Until(3031)));
        assert!(b.try_take(units(1), 3030).is_err());
        assert!(b.try_take(units(1), 3031).is_ok());
        // Ledger calls cost 2.
        // 230 micro-units are left over, so two units need 6060 ms more.
        assert_eq!(b.try_take(units(2), 3031), Err(Wait::Until(3031 + 6060)));
    }

    #[test]
    fn bucket_refill_is_exact_over_many_small_steps() {
        let kind = BudgetKind::TokenBucket {
            capacity: units(10),
            refill_per_second: 330_000,
        };
        let mut b = Budget::new(kind, 0);
        b.try_take(units(10), 0).unwrap();
        // Asking every millisecond must not lose the partial refills.
        for t in 1..=10_000 {
            let _ = b.available(t);
        }
        assert_eq!(b.available(10_000), 3_300_000);
    }

    #[test]
    fn fixed_window_resets_on_the_clock() {
        let kind = BudgetKind::FixedWindow {
            limit: units(10),
            window_ms: 60_000,
            guard_ms: 0,
        };
        // 00:01:23.456 counts towards the 00:01:00 minute.
        let mut b = Budget::new(kind, 83_456);
        b.try_take(units(10), 83_456).unwrap();
        assert_eq!(b.try_take(units(1), 83_457), Err(Wait::Until(120_000)));
        assert!(b.try_take(units(1), 119_999).is_err());
        assert!(b.try_take(units(10), 120_000).is_ok());
    }

    #[test]
    fn fixed_window_charges_both_sides_near_a_boundary() {
        let kind = BudgetKind::FixedWindow {
            limit: units(10),
            window_ms: 1000,
            guard_ms: 50,
        };
        let mut b = Budget::new(kind, 0);
        // Sent 20 ms before the boundary: counts in this window and the next.
        b.try_take(units(6), 980).unwrap();
        // After the boundary only 4 are left, and inside the start guard the
        // previous window (which has 6) must fit too.
        assert!(b.try_take(units(5), 1010).is_err());
        assert!(b.try_take(units(4), 1010).is_ok());
        // Out of the guard the previous window no longer matters.
        let mut c = Budget::new(kind, 0);
        c.try_take(units(10), 500).unwrap();
        assert_eq!(c.try_take(units(1), 1000), Err(Wait::Until(1050)));
        assert!(c.try_take(units(10), 1050).is_ok());
    }

    #[test]
    fn skipping_one_window_keeps_what_the_end_guard_charged_to_it() {
        let kind = BudgetKind::FixedWindow {
            limit: units(10),
            window_ms: 1000,
            guard_ms: 50,
        };
        let mut b = Budget::new(kind, 0);
        // Sent 10 ms before the end of window 0: charged to windows 0 and 1.
        b.try_take(units(8), 990).unwrap();
        // Next seen in window 2's start guard: window 1 (which the venue may
        // have counted the 8 in) must still have room.
        assert!(b.try_take(units(3), 2010).is_err());
        assert!(b.try_take(units(2), 2010).is_ok());
    }

    #[test]
    fn an_unanswered_take_stays_uncertain_in_a_window() {
        let kind = BudgetKind::FixedWindow {
            limit: units(100),
            window_ms: 60_000,
            guard_ms: 0,
        };
        let mut b = Budget::new(kind, 0);
        let lost = b.try_take(units(10), 1000).unwrap();
        b.abandoned(&lost, 1500);
        // A later report that does not include it yet cannot hide it.
        let next = b.try_take(units(1), 2000).unwrap();
        b.resync(&next, Report::Used(units(1)), 2100);
        assert_eq!(b.available(2100), units(89));
    }

    #[test]
    fn sliding_window_waits_for_the_oldest_to_leave() {
        let kind = BudgetKind::SlidingWindow {
            limit: units(500),
            window_ms: 10_000,
            guard_ms: 0,
        };
        let mut b = Budget::new(kind, 0);
        b.try_take(units(300), 0).unwrap();
        b.try_take(units(200), 4000).unwrap();
        assert_eq!(b.try_take(units(100), 5000), Err(Wait::Until(10_000)));
        assert_eq!(b.try_take(units(400), 5000), Err(Wait::Until(14_000)));
        assert!(b.try_take(units(300), 10_000).is_ok());
        assert!(b.try_take(units(1), 10_000).is_err());
    }

    #[test]
    fn resync_takes_the_venues_count_plus_what_is_uncertain() {
        let kind = BudgetKind::FixedWindow {
            limit: units(100),
            window_ms: 60_000,
            guard_ms: 100,
        };
        let mut b = Budget::new(kind, 1000);
        let first = b.try_take(units(5), 1000).unwrap();
        let second = b.try_take(units(5), 1001).unwrap();
        // The venue answers the first: it counted 40 (another process on the
        // same IP spent 35). The second is still in flight: it stays counted.
        b.resync(&first, Report::Used(units(40)), 1100);
        b.answered(&first, 1100);
        assert_eq!(b.available(1100), units(55));
        // The second comes back. The first was in flight when it left, so the
        // venue may have counted the first after it: the first stays counted.
        b.resync(&second, Report::Used(units(40)), 1200);
        b.answered(&second, 1200);
        assert_eq!(b.available(1200), units(55));
        // A third, sent with nothing in flight: the venue charged 0 for the
        // second (a successful order), and its count is now taken as it is.
        let third = b.try_take(units(1), 1300).unwrap();
        b.resync(&third, Report::Used(units(41)), 1400);
        b.answered(&third, 1400);
        assert_eq!(b.available(1400), units(59));
        // A report from the previous window is ignored.
        let late = b.try_take(units(1), 59_000).unwrap();
        let _ = b.available(61_000);
        b.resync(&late, Report::Used(units(99)), 61_000);
        assert_eq!(b.available(61_000), units(100));
    }

    #[test]
    fn bucket_resync_only_lowers() {
        let kind = BudgetKind::TokenBucket {
            capacity: units(30),
            refill_per_second: units(15),
        };
        let mut b = Budget::new(kind, 0);
        let t = b.try_take(units(1), 0).unwrap();
        b.resync(&t, Report::Remaining(units(10)), 0);
        assert_eq!(b.available(0), units(10));
        let t = b.try_take(units(1), 0).unwrap();
        b.resync(&t, Report::Remaining(units(29)), 0);
        assert_eq!(b.available(0), units(9));
    }
}
