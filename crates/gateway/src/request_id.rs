//! `X-Request-Id`: kept when the client sent a valid one, made otherwise.

use http::HeaderMap;

/// Longest client-supplied id kept.
pub const MAX_LEN: usize = 128;

/// Is `id` safe to keep: 1 to 128 characters of `[A-Za-z0-9._:-]`?
pub fn is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The client's id if valid, else a new UUIDv7 (time-ordered, so logs sort).
pub fn take_or_make(headers: &HeaderMap) -> String {
    match headers
        .get(&crate::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
    {
        Some(id) if is_valid(id) => id.to_owned(),
        _ => uuid::Uuid::now_v7().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity() {
        assert!(is_valid("abc-123_x.y:z"));
        assert!(!is_valid(""));
        assert!(!is_valid("has space"));
        assert!(!is_valid("<script>"));
        assert!(!is_valid(&"a".repeat(129)));
        assert!(is_valid(&"a".repeat(128)));
    }
}
