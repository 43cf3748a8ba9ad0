//! Time as the simulator sees it: microseconds since the Unix epoch, and the
//! few date formats the venues print.
//!
//! Two clocks are read once per request and passed down; the limiters never
//! read a clock themselves:
//!
//! - the venue's clock (the host's wall clock plus the venue's skew fault),
//!   for what the venue reports (`serverTime`, `usIn`, …), timestamp windows
//!   and the alignment of Binance's windows;
//! - the host's monotonic clock ([`monotonic_now`]), for limiter state and
//!   deadlines (buckets, counters, sliding windows, `Retry-After` waits, bans,
//!   token lifetimes, order ages), so that changing the skew fault neither
//!   refills a limiter nor shortens a wait.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (UTC).
pub(crate) type Micros = i64;

pub(crate) const MICROS_PER_MS: i64 = 1_000;
pub(crate) const MICROS_PER_SEC: i64 = 1_000_000;

/// The host's wall clock, in microseconds since the epoch.
pub(crate) fn system_now() -> Micros {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// The host's monotonic clock, in microseconds: the wall clock at its first
/// reading plus the monotonic time elapsed since. It never goes backwards and
/// ignores the skew fault and any step of the wall clock.
pub(crate) fn monotonic_now() -> Micros {
    static ANCHOR: OnceLock<(Instant, Micros)> = OnceLock::new();
    let (start, epoch) = *ANCHOR.get_or_init(|| (Instant::now(), system_now()));
    let elapsed = i64::try_from(start.elapsed().as_micros()).unwrap_or(i64::MAX / 4);
    epoch.saturating_add(elapsed)
}

/// Whole seconds from `now` until `until`, rounded up, never below 1: the
/// value of a `Retry-After` header.
pub(crate) fn retry_after_secs(now: Micros, until: Micros) -> u64 {
    let wait = until.saturating_sub(now).max(0);
    let secs = (wait + MICROS_PER_SEC - 1) / MICROS_PER_SEC;
    u64::try_from(secs.max(1)).unwrap_or(1)
}

/// A calendar date and time of day in UTC.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    micros: u32,
    /// 0 = Sunday.
    weekday: u32,
}

fn civil(t: Micros) -> Civil {
    let secs = t.div_euclid(MICROS_PER_SEC);
    let micros = u32::try_from(t.rem_euclid(MICROS_PER_SEC)).unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let sod = u32::try_from(secs.rem_euclid(86_400)).unwrap_or(0);
    // Days-to-civil conversion (proleptic Gregorian), after Howard Hinnant's
    // public-domain "chrono-compatible low-level date algorithms".
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month: u32::try_from(month).unwrap_or(1),
        day: u32::try_from(day).unwrap_or(1),
        hour: sod / 3_600,
        minute: (sod / 60) % 60,
        second: sod % 60,
        micros,
        // 1970-01-01 was a Thursday.
        weekday: u32::try_from((days + 4).rem_euclid(7)).unwrap_or(0),
    }
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// ISO 8601 with microseconds, as Coinbase prints times:
/// `2014-11-06T10:34:47.123456Z`.
pub(crate) fn iso8601_micros(t: Micros) -> String {
    let c = civil(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.micros
    )
}

/// RFC 3339 with milliseconds, as Kraken Futures prints `serverTime`:
/// `2026-05-27T10:34:47.123Z`.
pub(crate) fn rfc3339_millis(t: Micros) -> String {
    let c = civil(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        c.micros / 1_000
    )
}

/// Kraken's `rfc1123` field of `/0/public/Time`: `Sun, 21 Mar 21 14:23:14 +0000`
/// (two-digit year, numeric zone).
pub(crate) fn kraken_rfc1123(t: Micros) -> String {
    let c = civil(t);
    let weekday = WEEKDAYS.get(c.weekday as usize).copied().unwrap_or("Sun");
    let month = MONTHS
        .get(c.month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("Jan");
    format!(
        "{weekday}, {:02} {month} {:02} {:02}:{:02}:{:02} +0000",
        c.day,
        c.year.rem_euclid(100),
        c.hour,
        c.minute,
        c.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        // 2021-03-21T14:23:14.5Z was a Sunday.
        let t = 1_616_336_594_500_000;
        assert_eq!(iso8601_micros(t), "2021-03-21T14:23:14.500000Z");
        assert_eq!(rfc3339_millis(t), "2021-03-21T14:23:14.500Z");
        assert_eq!(kraken_rfc1123(t), "Sun, 21 Mar 21 14:23:14 +0000");
        assert_eq!(iso8601_micros(0), "1970-01-01T00:00:00.000000Z");
        // Leap day.
        assert_eq!(
            rfc3339_millis(1_709_164_800_000_000),
            "2024-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one() {
        assert_eq!(retry_after_secs(0, 0), 1);
        assert_eq!(retry_after_secs(0, 1), 1);
        assert_eq!(retry_after_secs(0, 1_000_000), 1);
        assert_eq!(retry_after_secs(0, 1_000_001), 2);
        assert_eq!(retry_after_secs(5_000_000, 1_000_000), 1);
    }
}
