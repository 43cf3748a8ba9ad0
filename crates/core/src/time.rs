//! Time as a value: milliseconds since the Unix epoch, passed in by callers.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A point in time, in whole milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// Adds whole seconds, saturating instead of overflowing.
    pub fn plus_seconds(self, seconds: i64) -> Self {
        UnixMillis(self.0.saturating_add(seconds.saturating_mul(1000)))
    }

    /// RFC 3339 text in UTC with millisecond precision, e.g. `2026-11-22T21:39:22.123Z`.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => t.format(&Rfc3339).unwrap_or_else(|_| self.0.to_string()),
            Err(_) => self.0.to_string(),
        }
    }

    /// Parses RFC 3339 text (any offset) into milliseconds.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        let millis = t.unix_timestamp_nanos() / 1_000_000;
        i64::try_from(millis).ok().map(UnixMillis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = UnixMillis(1_795_000_000_123);
        let text = t.to_rfc3339();
        assert_eq!(text, "2026-11-18T11:06:40.123Z");
        assert_eq!(UnixMillis::parse_rfc3339(&text), Some(t));
        assert_eq!(
            UnixMillis::parse_rfc3339("2026-11-18T12:06:40.123+01:00"),
            Some(t)
        );
        assert_eq!(UnixMillis::parse_rfc3339("yesterday"), None);
    }
}
