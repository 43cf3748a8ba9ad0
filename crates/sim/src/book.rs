//! A synthetic, deterministic order book: the same symbol and depth always
//! give the same levels. Only its shape matters to the router.

/// A mid price by base asset, so books look plausible.
fn mid(symbol: &str) -> f64 {
    let upper = symbol.to_ascii_uppercase();
    if upper.starts_with("BTC") || upper.starts_with("XBT") || upper.contains("_XBT") {
        65_000.0
    } else if upper.starts_with("ETH") || upper.contains("_ETH") {
        3_200.0
    } else if upper.starts_with("SOL") {
        150.0
    } else if upper.starts_with("LTC") {
        0.0012
    } else {
        100.0
    }
}

/// One side of the book: (price, size) from the best level outwards.
pub(crate) struct Level {
    pub(crate) price: f64,
    pub(crate) size: f64,
}

/// `depth` bids (descending) and `depth` asks (ascending) around the mid.
pub(crate) fn levels(symbol: &str, depth: usize) -> (Vec<Level>, Vec<Level>) {
    let mid = mid(symbol);
    let tick = (mid / 100_000.0).max(0.000_000_01);
    let size = |n: usize| 0.25 + (n % 7) as f64 * 0.125;
    let bids = (0..depth)
        .map(|n| Level {
            price: mid - tick * (n as f64 + 1.0),
            size: size(n),
        })
        .collect();
    let asks = (0..depth)
        .map(|n| Level {
            price: mid + tick * (n as f64 + 1.0),
            size: size(n + 3),
        })
        .collect();
    (bids, asks)
}

/// A price as venues print it in strings: fixed decimals.
pub(crate) fn fmt(value: f64, decimals: usize) -> String {
    format!("{value:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn books_are_ordered_and_repeatable() {
        let (bids, asks) = levels("BTCUSDT", 5);
        assert_eq!(bids.len(), 5);
        assert!(bids.windows(2).all(|w| w[0].price > w[1].price));
        assert!(asks.windows(2).all(|w| w[0].price < w[1].price));
        assert!(bids[0].price < asks[0].price);
        let (again, _) = levels("BTCUSDT", 5);
        assert_eq!(fmt(again[0].price, 2), fmt(bids[0].price, 2));
    }
}
