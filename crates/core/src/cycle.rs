//! Billing periods: monthly cycles from a subscription's anchor day, and UTC
//! days. Fixed windows are for billing periods only, never for request rates.

use crate::time::UnixMillis;
use time::{Date, Duration, Month, OffsetDateTime, Time};

/// A half-open period `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    /// First instant inside.
    pub start: UnixMillis,
    /// First instant after.
    pub end: UnixMillis,
}

impl Period {
    /// Seconds from `now` to the end, rounded up.
    pub fn seconds_until_end(&self, now: UnixMillis) -> u64 {
        let millis = self.end.0.saturating_sub(now.0).max(0);
        u64::try_from(millis).unwrap_or(0).div_ceil(1000)
    }

    /// Length in whole seconds.
    pub fn length_seconds(&self) -> u64 {
        u64::try_from((self.end.0 - self.start.0).max(0) / 1000).unwrap_or(0)
    }
}

fn to_datetime(t: UnixMillis) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn midnight_millis(date: Date) -> UnixMillis {
    let t = date.with_time(Time::MIDNIGHT).assume_utc();
    UnixMillis(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
}

/// The date `months` calendar months after `(year, month)` on `day`, clamped
/// to the month's last day (an anchor on the 31st bills on Feb 28/29).
fn nth_month(year: i32, month: Month, day: u8, months: i64) -> Option<Date> {
    let index = i64::from(year) * 12 + i64::from(u8::from(month)) - 1 + months;
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    let last = time::util::days_in_month(month, year);
    Date::from_calendar_date(year, month, day.min(last)).ok()
}

/// The monthly billing cycle containing `now`, for a subscription anchored at
/// `anchor`. Cycles start at 00:00 UTC on the anchor's day of the month.
pub fn monthly_cycle(anchor: UnixMillis, now: UnixMillis) -> Period {
    let a = to_datetime(anchor).date();
    let n = to_datetime(now).date();
    let (year, month, day) = (a.year(), a.month(), a.day());
    let mut offset = (i64::from(n.year()) - i64::from(year)) * 12 + i64::from(u8::from(n.month()))
        - i64::from(u8::from(month));
    let start_of = |k: i64| nth_month(year, month, day, k).map(midnight_millis);
    // Step back until the cycle start is not after now, forward until the
    // next start is after now; at most a step each way.
    while start_of(offset).is_some_and(|s| s > now) {
        offset -= 1;
    }
    while start_of(offset + 1).is_some_and(|s| s <= now) {
        offset += 1;
    }
    match (start_of(offset), start_of(offset + 1)) {
        (Some(start), Some(end)) => Period { start, end },
        _ => utc_day(now),
    }
}

/// The UTC day containing `now`.
pub fn utc_day(now: UnixMillis) -> Period {
    let date = to_datetime(now).date();
    let start = midnight_millis(date);
    let end = date
        .checked_add(Duration::days(1))
        .map_or(UnixMillis(i64::MAX), midnight_millis);
    Period { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> UnixMillis {
        UnixMillis::parse_rfc3339(text).expect("time")
    }

    #[test]
    fn cycles_run_from_the_anchor_day() {
        let anchor = at("2026-01-15T13:45:00Z");
        let p = monthly_cycle(anchor, at("2026-03-20T00:00:00Z"));
        assert_eq!(p.start, at("2026-03-15T00:00:00Z"));
        assert_eq!(p.end, at("2026-04-15T00:00:00Z"));
        let p = monthly_cycle(anchor, at("2026-03-14T23:59:59.999Z"));
        assert_eq!(p.start, at("2026-02-15T00:00:00Z"));
        assert_eq!(p.end, at("2026-03-15T00:00:00Z"));
        // The boundary instant belongs to the new cycle.
        let p = monthly_cycle(anchor, at("2026-03-15T00:00:00Z"));
        assert_eq!(p.start, at("2026-03-15T00:00:00Z"));
        // Across a year.
        let p = monthly_cycle(anchor, at("2027-01-02T00:00:00Z"));
        assert_eq!(p.start, at("2026-12-15T00:00:00Z"));
        assert_eq!(p.end, at("2027-01-15T00:00:00Z"));
        // The anchor's own day starts the first cycle.
        let p = monthly_cycle(anchor, anchor);
        assert_eq!(p.start, at("2026-01-15T00:00:00Z"));
    }

    #[test]
    fn month_end_anchors_clamp_without_drifting() {
        let anchor = at("2026-01-31T08:00:00Z");
        let feb = monthly_cycle(anchor, at("2026-03-10T00:00:00Z"));
        assert_eq!(feb.start, at("2026-02-28T00:00:00Z"));
        assert_eq!(feb.end, at("2026-03-31T00:00:00Z"));
        let leap = monthly_cycle(anchor, at("2028-02-29T12:00:00Z"));
        assert_eq!(leap.start, at("2028-02-29T00:00:00Z"));
        assert_eq!(leap.end, at("2028-03-31T00:00:00Z"));
    }

    #[test]
    fn utc_days_and_seconds_to_reset() {
        let d = utc_day(at("2026-11-22T21:39:22.500Z"));
        assert_eq!(d.start, at("2026-11-22T00:00:00Z"));
        assert_eq!(d.end, at("2026-11-23T00:00:00Z"));
        assert_eq!(d.seconds_until_end(at("2026-11-22T23:59:59.001Z")), 1);
        assert_eq!(d.length_seconds(), 86_400);
    }
}
