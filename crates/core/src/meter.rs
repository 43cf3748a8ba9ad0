//! What a request can be metered and limited by.

use serde::{Deserialize, Serialize};

/// A billable dimension. Quotas and (later) prices are set per meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Meter {
    /// One per admitted request; counted by tollgate.
    Request,
    /// Orders the upstream sent to a venue, from `Tollgate-Usage`.
    OrderSent,
    /// Orders filled, from `Tollgate-Usage`.
    OrderFilled,
    /// Upstream compute time in milliseconds, from `Tollgate-Usage`.
    ComputeMs,
    /// Response body bytes sent to the client; counted by tollgate.
    BytesOut,
}

/// Number of meters.
pub const METERS: usize = 5;

/// A count per meter, indexed by [`Meter::index`].
pub type MeterCounts = [u64; METERS];

impl Meter {
    /// Every meter, in index order.
    pub const ALL: [Meter; METERS] = [
        Meter::Request,
        Meter::OrderSent,
        Meter::OrderFilled,
        Meter::ComputeMs,
        Meter::BytesOut,
    ];

    /// Position in a [`MeterCounts`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in configuration, headers and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Meter::Request => "request",
            Meter::OrderSent => "order_sent",
            Meter::OrderFilled => "order_filled",
            Meter::ComputeMs => "compute_ms",
            Meter::BytesOut => "bytes_out",
        }
    }

    /// The meter with this name.
    pub fn parse(name: &str) -> Option<Meter> {
        Meter::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Reported by the upstream in `Tollgate-Usage` (the others tollgate counts).
    pub fn reported_by_upstream(self) -> bool {
        matches!(
            self,
            Meter::OrderSent | Meter::OrderFilled | Meter::ComputeMs
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_indexes_round_trip() {
        for (i, m) in Meter::ALL.into_iter().enumerate() {
            assert_eq!(m.index(), i);
            assert_eq!(Meter::parse(m.as_str()), Some(m));
        }
        assert_eq!(Meter::parse("requests"), None);
    }
}
