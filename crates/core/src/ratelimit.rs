//! The `RateLimit-Policy` and `RateLimit` response fields in the syntax of
//! draft-ietf-httpapi-ratelimit-headers (-08 onwards): Structured Field Lists
//! whose items are policy names as sf-strings with parameters.
//!
//! ```text
//! RateLimit-Policy: "key";q=40;w=2, "org";q=100;w=1, "cycle-requests";q=100000;w=2678400
//! RateLimit: "key";r=39;t=1, "org";r=99;t=1, "cycle-requests";r=99000;t=604800
//! ```

/// One quota policy: `"name";q=<quota>;w=<window seconds>[;qu="<unit>"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy<'a> {
    /// Policy name; printable ASCII.
    pub name: &'a str,
    /// Quota units the policy allows per window.
    pub quota: u64,
    /// Window in seconds.
    pub window_seconds: u64,
    /// Quota unit, when not `requests`: `content-bytes` is registered.
    pub unit: Option<&'a str>,
}

/// One service limit: `"name";r=<remaining>;t=<seconds>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remaining<'a> {
    /// The policy it reports on.
    pub name: &'a str,
    /// Units left.
    pub remaining: u64,
    /// Seconds until the quota is restored.
    pub reset_seconds: u64,
}

fn sf_string(out: &mut String, text: &str) {
    out.push('"');
    let plain = text
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\');
    if plain {
        // Policy names are ours and plain ASCII: copy them whole.
        out.push_str(text);
    } else {
        for c in text.chars().filter(|c| (' '..='~').contains(c)) {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push('"');
}

/// The `RateLimit-Policy` field value.
pub fn policy_field(policies: &[Policy<'_>]) -> String {
    let mut out = String::with_capacity(policies.len() * 72);
    for (i, p) in policies.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        sf_string(&mut out, p.name);
        push_param(&mut out, ";q=", p.quota);
        push_param(&mut out, ";w=", p.window_seconds);
        if let Some(unit) = p.unit {
            out.push_str(";qu=");
            sf_string(&mut out, unit);
        }
    }
    out
}

/// The `RateLimit` field value.
pub fn limit_field(limits: &[Remaining<'_>]) -> String {
    let mut out = String::with_capacity(limits.len() * 48);
    for (i, l) in limits.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        sf_string(&mut out, l.name);
        push_param(&mut out, ";r=", l.remaining);
        push_param(&mut out, ";t=", l.reset_seconds);
    }
    out
}

fn push_param(out: &mut String, prefix: &str, value: u64) {
    out.push_str(prefix);
    out.push_str(itoa::Buffer::new().format(value.min(MAX_SF_INTEGER)));
}

/// Structured-field integers have at most 15 digits.
pub const MAX_SF_INTEGER: u64 = 999_999_999_999_999;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_the_draft_syntax() {
        let policy = policy_field(&[
            Policy {
                name: "key",
                quota: 40,
                window_seconds: 2,
                unit: None,
            },
            Policy {
                name: "cycle-bytes_out",
                quota: 1_000,
                window_seconds: 2_678_400,
                unit: Some("content-bytes"),
            },
        ]);
        assert_eq!(
            policy,
            r#""key";q=40;w=2, "cycle-bytes_out";q=1000;w=2678400;qu="content-bytes""#
        );
        let limit = limit_field(&[
            Remaining {
                name: "key",
                remaining: 0,
                reset_seconds: 1,
            },
            Remaining {
                name: "a\"b",
                remaining: u64::MAX,
                reset_seconds: 3,
            },
        ]);
        assert_eq!(limit, r#""key";r=0;t=1, "a\"b";r=999999999999999;t=3"#);
    }
}
