//! Money as integer micro-units (10⁻⁶ of the currency). Never floats.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount in micro-units; negative amounts are debits or debts.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Micros(pub i64);

/// Micro-units per whole unit of currency.
pub const MICROS_PER_UNIT: i64 = 1_000_000;

impl Micros {
    /// Zero.
    pub const ZERO: Micros = Micros(0);

    /// Sum, or `None` on overflow.
    pub fn checked_add(self, other: Micros) -> Option<Micros> {
        self.0.checked_add(other.0).map(Micros)
    }

    /// Difference, or `None` on overflow.
    pub fn checked_sub(self, other: Micros) -> Option<Micros> {
        self.0.checked_sub(other.0).map(Micros)
    }

    /// Parses a decimal amount such as `12.5`, `-0.000001` or `100` exactly;
    /// more than six decimal places is refused rather than rounded.
    pub fn parse_decimal(text: &str) -> Option<Micros> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty()
            || fraction.len() > 6
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let whole: i64 = whole.parse().ok()?;
        let mut fraction_micros: i64 = 0;
        for (i, b) in fraction.bytes().enumerate() {
            fraction_micros += i64::from(b - b'0') * 10_i64.pow(5 - i as u32);
        }
        let value = whole
            .checked_mul(MICROS_PER_UNIT)?
            .checked_add(fraction_micros)?;
        Some(Micros(if negative { -value } else { value }))
    }
}

impl fmt::Display for Micros {
    /// Six decimal places, e.g. `-12.500000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let unit = MICROS_PER_UNIT.unsigned_abs();
        write!(f, "{sign}{}.{:06}", abs / unit, abs % unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_round_trips_exactly() {
        for (text, micros) in [
            ("0", 0),
            ("1", 1_000_000),
            ("12.5", 12_500_000),
            ("0.000001", 1),
            ("-3.25", -3_250_000),
            ("9223372036854.775807", i64::MAX),
        ] {
            assert_eq!(Micros::parse_decimal(text), Some(Micros(micros)), "{text}");
        }
        for bad in [
            "",
            ".5",
            "1.0000001",
            "1e3",
            "abc",
            "--1",
            "1.2.3",
            "9223372036855",
        ] {
            assert_eq!(Micros::parse_decimal(bad), None, "{bad}");
        }
        assert_eq!(Micros(-3_250_000).to_string(), "-3.250000");
        assert_eq!(Micros(1).to_string(), "0.000001");
        assert_eq!(Micros(i64::MIN).to_string(), "-9223372036854.775808");
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Micros(i64::MAX).checked_add(Micros(1)), None);
        assert_eq!(Micros(5).checked_sub(Micros(7)), Some(Micros(-2)));
    }
}
