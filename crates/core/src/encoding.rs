//! Lower-case base32 (RFC 4648 alphabet, no padding) for identifiers and secrets.
//!
//! The alphabet has no `_`, so a key id can never contain the separator of the
//! `tg_<key id>_<secret>` format, and every character is safe in URLs and headers.

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Encodes bytes as unpadded lower-case base32. Five bits per character.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// True when every character belongs to the lower-case base32 alphabet.
pub fn is_base32(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors_lower_case_unpadded() {
        // RFC 4648 section 10, lower-cased and without padding.
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "my");
        assert_eq!(base32(b"fo"), "mzxq");
        assert_eq!(base32(b"foo"), "mzxw6");
        assert_eq!(base32(b"foob"), "mzxw6yq");
        assert_eq!(base32(b"fooba"), "mzxw6ytb");
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
    }

    #[test]
    fn alphabet_check() {
        assert!(is_base32("mzxw6ytboi234567"));
        assert!(!is_base32("mzx_w6"));
        assert!(!is_base32("MZXW"));
        assert!(!is_base32("abc1"));
    }
}
