//! Signature checks, one per venue, written from each venue's published
//! recipe. Comparisons are constant-time (`Mac::verify_slice`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

type HmacSha256 = Hmac<Sha256>;
type HmacSha512 = Hmac<Sha512>;

/// Decodes a standard-base64 secret; `None` if it is not base64.
pub(crate) fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.trim()).ok()
}

fn sha256_mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for part in parts {
        mac.update(part);
    }
    mac
}

fn sha512_mac(key: &[u8], parts: &[&[u8]]) -> HmacSha512 {
    let mut mac = <HmacSha512 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Coinbase Exchange: `CB-ACCESS-SIGN` = base64(HMAC-SHA256(base64-decoded
/// secret, timestamp + METHOD + requestPath + body)).
pub(crate) fn coinbase_ok(
    secret: &[u8],
    timestamp: &str,
    method: &str,
    request_path: &str,
    body: &[u8],
    signature_b64: &str,
) -> bool {
    let Ok(given) = STANDARD.decode(signature_b64.trim()) else {
        return false;
    };
    sha256_mac(
        secret,
        &[
            timestamp.as_bytes(),
            method.as_bytes(),
            request_path.as_bytes(),
            body,
        ],
    )
    .verify_slice(&given)
    .is_ok()
}

/// Binance HMAC: `signature` = hex(HMAC-SHA256(secret bytes, query string +
/// body)), case-insensitive.
pub(crate) fn binance_ok(secret: &[u8], payload: &[u8], signature_hex: &str) -> bool {
    let Ok(given) = hex::decode(signature_hex.trim().to_ascii_lowercase()) else {
        return false;
    };
    sha256_mac(secret, &[payload]).verify_slice(&given).is_ok()
}

/// Deribit `client_signature` grant: hex(HMAC-SHA256(client secret,
/// timestamp + "\n" + nonce + "\n" + data)).
pub(crate) fn deribit_ok(
    secret: &[u8],
    timestamp: &str,
    nonce: &str,
    data: &str,
    signature_hex: &str,
) -> bool {
    let Ok(given) = hex::decode(signature_hex.trim().to_ascii_lowercase()) else {
        return false;
    };
    sha256_mac(
        secret,
        &[
            timestamp.as_bytes(),
            b"\n",
            nonce.as_bytes(),
            b"\n",
            data.as_bytes(),
        ],
    )
    .verify_slice(&given)
    .is_ok()
}

/// Kraken spot: `API-Sign` = base64(HMAC-SHA512(base64-decoded secret,
/// URI path + SHA-256(nonce + POST body))).
pub(crate) fn kraken_ok(
    secret: &[u8],
    path: &str,
    nonce: &str,
    body: &[u8],
    signature_b64: &str,
) -> bool {
    let Ok(given) = STANDARD.decode(signature_b64.trim()) else {
        return false;
    };
    let mut inner = Sha256::new();
    inner.update(nonce.as_bytes());
    inner.update(body);
    let digest = inner.finalize();
    sha512_mac(secret, &[path.as_bytes(), digest.as_slice()])
        .verify_slice(&given)
        .is_ok()
}

/// Kraken Futures: `Authent` = base64(HMAC-SHA512(base64-decoded secret,
/// SHA-256(postData + nonce + endpointPath))), the path without
/// `/derivatives`.
pub(crate) fn kraken_futures_ok(
    secret: &[u8],
    post_data: &[u8],
    nonce: &str,
    endpoint_path: &str,
    authent_b64: &str,
) -> bool {
    let Ok(given) = STANDARD.decode(authent_b64.trim()) else {
        return false;
    };
    let mut inner = Sha256::new();
    inner.update(post_data);
    inner.update(nonce.as_bytes());
    inner.update(endpoint_path.as_bytes());
    let digest = inner.finalize();
    sha512_mac(secret, &[digest.as_slice()])
        .verify_slice(&given)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binance's published HMAC example (rest-api.md).
    #[test]
    fn binance_published_vector() {
        let secret = b"NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
        let payload = b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        let good = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";
        assert!(binance_ok(secret, payload, good));
        // HMAC signatures are case-insensitive.
        assert!(binance_ok(secret, payload, &good.to_ascii_uppercase()));
        assert!(!binance_ok(
            secret,
            payload,
            "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b70"
        ));
        assert!(!binance_ok(secret, b"symbol=LTCBTC", good));
        assert!(!binance_ok(secret, payload, "not hex"));
    }

    /// Kraken's published spot example (spot-rest-auth guide).
    #[test]
    fn kraken_published_vector() {
        let secret = decode_secret(
            "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==",
        )
        .unwrap();
        let body =
            b"nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25";
        let good = "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ==";
        assert!(kraken_ok(
            &secret,
            "/0/private/AddOrder",
            "1616492376594",
            body,
            good
        ));
        assert!(!kraken_ok(
            &secret,
            "/0/private/AddOrder",
            "1616492376595",
            body,
            good
        ));
        assert!(!kraken_ok(
            &secret,
            "/0/private/CancelOrder",
            "1616492376594",
            body,
            good
        ));
    }

    /// Coinbase publishes the recipe but no vector; this one was computed
    /// independently with `openssl dgst -sha256 -mac HMAC -macopt hexkey:…`
    /// over the documented prehash and base64-encoded.
    #[test]
    fn coinbase_independent_vector() {
        let secret = decode_secret(
            "dG9sbGdhdGUtc2ltIGNvaW5iYXNlIGV4Y2hhbmdlIHRlc3Qgc2VjcmV0OyBuZXZlciBhIHJlYWwga2V5LiAwMQ==",
        )
        .unwrap();
        let body = br#"{"price":"1.0","size":"1.0","side":"buy","product_id":"BTC-USD"}"#;
        let good = "PNcQD7FyycbMhlIGxkjmhrRQ60a2YZciKzJdz1UYLgQ=";
        assert!(coinbase_ok(
            &secret,
            "1712345678.123",
            "POST",
            "/orders",
            body,
            good
        ));
        assert!(!coinbase_ok(
            &secret,
            "1712345678.124",
            "POST",
            "/orders",
            body,
            good
        ));
        assert!(!coinbase_ok(
            &secret,
            "1712345678.123",
            "POST",
            "/orders",
            b"{}",
            good
        ));
    }

    /// Kraken Futures: no published vector; computed independently with
    /// openssl (SHA-256 of postData + nonce + path, then HMAC-SHA512).
    #[test]
    fn kraken_futures_independent_vector() {
        let secret = decode_secret(
            "dG9sbGdhdGUtc2ltIGtyYWtlbiBmdXR1cmVzIHRlc3Qgc2VjcmV0OyBuZXZlciB1c2UgaXQgYW55d2hlcmUhIQ==",
        )
        .unwrap();
        let post = b"orderType=lmt&symbol=PF_XBTUSD&side=buy&size=1&limitPrice=50000";
        let good = "Hbv2AvSDS8BcPZO2RHlbw1ls8SvnYulRdmk5+x3A81RQxRLqA1ya6hlstOGiFNJ3A2VI4sgusieyIrY6ExP/7g==";
        assert!(kraken_futures_ok(
            &secret,
            post,
            "1700000000000",
            "/api/v3/sendorder",
            good
        ));
        // Signing the path with the /derivatives prefix is wrong.
        assert!(!kraken_futures_ok(
            &secret,
            post,
            "1700000000000",
            "/derivatives/api/v3/sendorder",
            good
        ));
    }

    /// Deribit client_signature: computed independently with openssl.
    #[test]
    fn deribit_independent_vector() {
        let good = "036c5acc86c628720eedb6266da91e2f67ae2502fe0b6fc5ac8e5c2e91195681";
        assert!(deribit_ok(
            b"sim-deribit-secret-not-real",
            "1700000000000",
            "abcd1234",
            "",
            good
        ));
        assert!(!deribit_ok(
            b"sim-deribit-secret-not-real",
            "1700000000001",
            "abcd1234",
            "",
            good
        ));
    }
}
