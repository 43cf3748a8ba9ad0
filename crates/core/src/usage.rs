//! The upstream's usage report: the `Tollgate-Usage` response header, a
//! Structured Field Dictionary (RFC 9651) of non-negative integers by meter,
//! e.g. `order_sent=1, order_filled=2, compute_ms=13`.
//!
//! Only the meters the upstream reports are read from it (`order_sent`,
//! `order_filled`, `compute_ms`); `request` and `bytes_out` are tollgate's own
//! counts and are ignored if the upstream sends them. Unknown members are
//! ignored so that an upstream can report more than this version knows. A
//! header that is not a valid dictionary is ignored whole, as RFC 9651 asks.

use crate::meter::{METERS, Meter, MeterCounts};
use sfv::{BareItem, Dictionary, ListEntry, Parser};

/// What was read from one header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsageReport {
    /// Units per meter; zero where not reported.
    pub counts: MeterCounts,
    /// Members that were present but ignored (unknown, tollgate's own, not a
    /// non-negative integer), for the log.
    pub ignored: Vec<String>,
}

/// Why a header was ignored whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Tollgate-Usage is not a structured-field dictionary: {0}")]
pub struct UsageSyntaxError(String);

/// Parses a `Tollgate-Usage` value.
pub fn parse(value: &[u8]) -> Result<UsageReport, UsageSyntaxError> {
    let dictionary: Dictionary = Parser::new(value)
        .parse()
        .map_err(|e| UsageSyntaxError(e.to_string()))?;
    let mut report = UsageReport {
        counts: [0; METERS],
        ignored: Vec::new(),
    };
    for (key, entry) in &dictionary {
        let meter = Meter::parse(key.as_str()).filter(|m| m.reported_by_upstream());
        let value = match entry {
            ListEntry::Item(item) => match &item.bare_item {
                BareItem::Integer(n) => u64::try_from(i64::from(*n)).ok(),
                _ => None,
            },
            ListEntry::InnerList(_) => None,
        };
        match (meter, value) {
            (Some(meter), Some(n)) => report.counts[meter.index()] = n,
            _ => report.ignored.push(key.as_str().to_owned()),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_reported_meters() {
        let r = parse(b"order_sent=1, order_filled=2, compute_ms=13").expect("valid");
        assert_eq!(r.counts[Meter::OrderSent.index()], 1);
        assert_eq!(r.counts[Meter::OrderFilled.index()], 2);
        assert_eq!(r.counts[Meter::ComputeMs.index()], 13);
        assert!(r.ignored.is_empty());
    }

    #[test]
    fn ignores_what_it_must_not_trust_or_does_not_know() {
        let r = parse(b"request=5, bytes_out=99, order_sent=-1, compute_ms=1.5, gpu_s=3, order_filled=(1 2), order_sent=4")
            .expect("valid");
        // Last value of a repeated key wins (RFC 9651 4.2.2).
        assert_eq!(r.counts[Meter::OrderSent.index()], 4);
        assert_eq!(r.counts[Meter::Request.index()], 0);
        assert_eq!(r.counts[Meter::BytesOut.index()], 0);
        assert_eq!(r.counts[Meter::ComputeMs.index()], 0);
        assert!(r.ignored.contains(&"gpu_s".to_owned()));
        assert!(r.ignored.contains(&"request".to_owned()));
    }

    #[test]
    fn malformed_headers_are_refused_whole() {
        assert!(parse(b"order_sent=1,,").is_err());
        assert!(parse(b"Order_Sent=1").is_err());
        assert!(parse(b"order_sent=1;").is_err());
        assert_eq!(parse(b"").expect("empty dictionary").counts, [0; METERS]);
    }
}
