//! Reading the `RateLimit-Policy`, `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10)
//! and `Retry-After` (RFC 9110) response fields.
//!
//! ```text
//! RateLimit-Policy: "key";q=40;w=2, "cycle-requests";q=100000;w=2678400
//! RateLimit: "key";r=39;t=1, "cycle-requests";r=99000;t=604800
//! Retry-After: 2
//! ```
//!
//! Both RateLimit fields are Structured Field Lists (RFC 9651) whose members
//! are items: the policy name as an sf-string, with parameters. Unknown
//! parameters are ignored, as the draft asks. Anything malformed is an
//! [`Error::MalformedHeader`], never a panic.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use sfv::{BareItem, ListEntry, Parameters, Parser};

use crate::error::{Error, Result};

/// Header name `RateLimit-Policy`.
pub const POLICY_HEADER: &str = "ratelimit-policy";
/// Header name `RateLimit`.
pub const LIMIT_HEADER: &str = "ratelimit";
/// Header name `Retry-After`.
pub const RETRY_AFTER_HEADER: &str = "retry-after";

/// One member of `RateLimit-Policy`: `"name";q=<quota>;w=<window>[;qu=..][;pk=..]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaPolicy {
    /// The policy's name (the sf-string item).
    pub name: String,
    /// `q`: quota units allowed per window (required).
    pub quota: u64,
    /// `w`: the window in seconds, when given.
    pub window_seconds: Option<u64>,
    /// `qu`: the quota unit (`request`, `content-bytes`, `concurrency`), when given.
    pub unit: Option<String>,
    /// `pk`: the partition key (an sf byte sequence), when given.
    pub partition_key: Option<Vec<u8>>,
}

/// One member of `RateLimit`: `"name";r=<remaining>;t=<seconds>[;pk=..]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLimit {
    /// The name of the policy it reports on.
    pub name: String,
    /// `r`: quota units left (required).
    pub remaining: u64,
    /// `t`: seconds until the quota is restored, when given.
    pub reset_seconds: Option<u64>,
    /// `pk`: the partition key, when given.
    pub partition_key: Option<Vec<u8>>,
}

/// A `Retry-After` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `delta-seconds`: wait this long.
    Delay(Duration),
    /// An HTTP-date: wait until then.
    At(SystemTime),
}

impl RetryAfter {
    /// How long to wait from `now`; zero for a date already past.
    pub fn delay_from(&self, now: SystemTime) -> Duration {
        match *self {
            RetryAfter::Delay(d) => d,
            RetryAfter::At(at) => at.duration_since(now).unwrap_or(Duration::ZERO),
        }
    }
}

/// Everything the rate-limit fields of one response say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimitInfo {
    /// The members of `RateLimit-Policy`, in order; empty when absent.
    pub policies: Vec<QuotaPolicy>,
    /// The members of `RateLimit`, in order; empty when absent.
    pub limits: Vec<ServiceLimit>,
    /// `Retry-After`, when present.
    pub retry_after: Option<RetryAfter>,
}

impl RateLimitInfo {
    /// Reads the three fields from response headers. A field sent on several
    /// lines is joined with `,` first, as RFC 9110 allows for lists. Absent
    /// fields are empty; malformed ones are an error.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self> {
        let policies = match joined(headers, POLICY_HEADER)? {
            Some(v) => parse_ratelimit_policy(&v)?,
            None => Vec::new(),
        };
        let limits = match joined(headers, LIMIT_HEADER)? {
            Some(v) => parse_ratelimit(&v)?,
            None => Vec::new(),
        };
        let retry_after = match headers.get(RETRY_AFTER_HEADER) {
            Some(v) => {
                Some(parse_retry_after(v.to_str().map_err(|_| {
                    malformed(RETRY_AFTER_HEADER, "not visible ASCII")
                })?)?)
            }
            None => None,
        };
        Ok(RateLimitInfo {
            policies,
            limits,
            retry_after,
        })
    }

    /// The policy named `name`, if listed.
    pub fn policy(&self, name: &str) -> Option<&QuotaPolicy> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// The service limit named `name`, if listed.
    pub fn limit(&self, name: &str) -> Option<&ServiceLimit> {
        self.limits.iter().find(|l| l.name == name)
    }

    /// Whether none of the three fields was present.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.limits.is_empty() && self.retry_after.is_none()
    }
}

fn malformed(header: &'static str, reason: impl Into<String>) -> Error {
    Error::MalformedHeader {
        header,
        reason: reason.into(),
    }
}

fn joined(headers: &HeaderMap, name: &'static str) -> Result<Option<String>> {
    let mut out: Option<String> = None;
    for value in headers.get_all(name) {
        let text = value
            .to_str()
            .map_err(|_| malformed(name, "not visible ASCII"))?;
        match out.as_mut() {
            Some(s) => {
                s.push_str(", ");
                s.push_str(text);
            }
            None => out = Some(text.to_owned()),
        }
    }
    Ok(out)
}

/// The members of an sf-list whose items are named by sf-strings.
fn named_items(header: &'static str, value: &str) -> Result<Vec<(String, Parameters)>> {
    let list: sfv::List = Parser::new(value)
        .parse()
        .map_err(|e| malformed(header, format!("not a structured-field list: {e}")))?;
    list.into_iter()
        .map(|entry| match entry {
            ListEntry::Item(item) => match item.bare_item {
                BareItem::String(name) => Ok((name.as_str().to_owned(), item.params)),
                other => Err(malformed(
                    header,
                    format!("a member is {other:?}, not a quoted policy name"),
                )),
            },
            ListEntry::InnerList(_) => Err(malformed(header, "a member is an inner list")),
        })
        .collect()
}

/// A non-negative integer parameter; `None` when absent.
fn uint_param(header: &'static str, params: &Parameters, key: &str) -> Result<Option<u64>> {
    match params.get(key) {
        None => Ok(None),
        Some(BareItem::Integer(i)) => u64::try_from(i64::from(*i))
            .map(Some)
            .map_err(|_| malformed(header, format!("{key} is negative"))),
        Some(other) => Err(malformed(
            header,
            format!("{key} is {other:?}, not an integer"),
        )),
    }
}

fn required(header: &'static str, name: &str, key: &str, value: Option<u64>) -> Result<u64> {
    value.ok_or_else(|| malformed(header, format!("policy {name:?} has no {key} parameter")))
}

fn string_param(header: &'static str, params: &Parameters, key: &str) -> Result<Option<String>> {
    match params.get(key) {
        None => Ok(None),
        Some(BareItem::String(s)) => Ok(Some(s.as_str().to_owned())),
        Some(other) => Err(malformed(
            header,
            format!("{key} is {other:?}, not a string"),
        )),
    }
}

fn bytes_param(header: &'static str, params: &Parameters, key: &str) -> Result<Option<Vec<u8>>> {
    match params.get(key) {
        None => Ok(None),
        Some(BareItem::ByteSequence(b)) => Ok(Some(b.clone())),
        Some(other) => Err(malformed(
            header,
            format!("{key} is {other:?}, not a byte sequence"),
        )),
    }
}

/// Parses a `RateLimit-Policy` value. `q` is required; `w`, `qu` and `pk`
/// are optional; other parameters are ignored.
pub fn parse_ratelimit_policy(value: &str) -> Result<Vec<QuotaPolicy>> {
    const H: &str = POLICY_HEADER;
    named_items(H, value)?
        .into_iter()
        .map(|(name, params)| {
            let quota = required(H, &name, "q", uint_param(H, &params, "q")?)?;
            Ok(QuotaPolicy {
                quota,
                window_seconds: uint_param(H, &params, "w")?,
                unit: string_param(H, &params, "qu")?,
                partition_key: bytes_param(H, &params, "pk")?,
                name,
            })
        })
        .collect()
}

/// Parses a `RateLimit` value. `r` is required; `t` and `pk` are optional;
/// other parameters are ignored.
pub fn parse_ratelimit(value: &str) -> Result<Vec<ServiceLimit>> {
    const H: &str = LIMIT_HEADER;
    named_items(H, value)?
        .into_iter()
        .map(|(name, params)| {
            let remaining = required(H, &name, "r", uint_param(H, &params, "r")?)?;
            Ok(ServiceLimit {
                remaining,
                reset_seconds: uint_param(H, &params, "t")?,
                partition_key: bytes_param(H, &params, "pk")?,
                name,
            })
        })
        .collect()
}

/// Parses `Retry-After`: `delta-seconds` (digits only; too many to fit in a
/// `u64` saturate) or an HTTP-date (IMF-fixdate, or the obsolete RFC 850 and
/// asctime forms RFC 9110 requires recipients to accept).
pub fn parse_retry_after(value: &str) -> Result<RetryAfter> {
    let value = value.trim_matches([' ', '\t']);
    if value.is_empty() {
        return Err(malformed(RETRY_AFTER_HEADER, "empty"));
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Ok(RetryAfter::Delay(Duration::from_secs(seconds)));
    }
    httpdate::parse_http_date(value)
        .map(RetryAfter::At)
        .map_err(|_| {
            malformed(
                RETRY_AFTER_HEADER,
                format!("{value:?} is neither seconds nor an HTTP-date"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::time::UNIX_EPOCH;

    #[test]
    fn policy_as_the_gateway_sends_it() {
        let policies = parse_ratelimit_policy(
            r#""key";q=40;w=2, "cycle-bytes_out";q=1000;w=2678400;qu="content-bytes""#,
        )
        .unwrap();
        assert_eq!(
            policies,
            vec![
                QuotaPolicy {
                    name: "key".into(),
                    quota: 40,
                    window_seconds: Some(2),
                    unit: None,
                    partition_key: None,
                },
                QuotaPolicy {
                    name: "cycle-bytes_out".into(),
                    quota: 1000,
                    window_seconds: Some(2_678_400),
                    unit: Some("content-bytes".into()),
                    partition_key: None,
                },
            ]
        );
    }

    #[test]
    fn policy_with_partition_key_and_unknown_params() {
        let p =
            parse_ratelimit_policy(r#""peruser";q=100;w=60;pk=:cHJvamVjdC0xMjM=:;x-vendor=?1;zz"#)
                .unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].quota, 100);
        assert_eq!(p[0].partition_key.as_deref(), Some(&b"project-123"[..]));
        // Without w: allowed, the window is unknown.
        let p = parse_ratelimit_policy(r#""burst";q=5"#).unwrap();
        assert_eq!(p[0].window_seconds, None);
        assert_eq!(parse_ratelimit_policy("").unwrap(), vec![]);
    }

    #[test]
    fn limits_as_the_gateway_sends_them() {
        let limits = parse_ratelimit(r#""key";r=0;t=1, "a\"b";r=999999999999999;t=3"#).unwrap();
        assert_eq!(
            limits,
            vec![
                ServiceLimit {
                    name: "key".into(),
                    remaining: 0,
                    reset_seconds: Some(1),
                    partition_key: None,
                },
                ServiceLimit {
                    name: "a\"b".into(),
                    remaining: 999_999_999_999_999,
                    reset_seconds: Some(3),
                    partition_key: None,
                },
            ]
        );
        let l = parse_ratelimit(r#""day";r=5;future=1"#).unwrap();
        assert_eq!(l[0].reset_seconds, None);
    }

    #[test]
    fn malformed_fields_are_errors() {
        for bad in [
            r#""key";w=2"#,                // no q
            r#""key";q=-1"#,               // negative
            r#""key";q=1.5"#,              // decimal
            r#""key";q="40""#,             // string
            r#"key;q=40"#,                 // token name
            r#"("key");q=40"#,             // inner list
            r#""key";q=40;qu=req"#,        // unit as token
            r#""key";q=40,"#,              // trailing comma
            r#""key;q=40"#,                // unterminated string
            r#""key";q=1234567890123456"#, // 16 digits
            "\u{e9}",
        ] {
            assert!(
                matches!(
                    parse_ratelimit_policy(bad),
                    Err(Error::MalformedHeader { .. })
                ),
                "{bad:?}"
            );
        }
        for bad in [
            r#""key";t=1"#,
            r#""key";r=?1"#,
            r#""key";r=1;t=-3"#,
            r#"1;r=1"#,
        ] {
            assert!(
                matches!(parse_ratelimit(bad), Err(Error::MalformedHeader { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            parse_retry_after("120").unwrap(),
            RetryAfter::Delay(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after(" 0 ").unwrap(),
            RetryAfter::Delay(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999").unwrap(),
            RetryAfter::Delay(Duration::from_secs(u64::MAX))
        );
        // 1994-11-06T08:49:37Z = 784111777, in all three forms of RFC 9110.
        let at = UNIX_EPOCH + Duration::from_secs(784_111_777);
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(form).unwrap(),
                RetryAfter::At(at),
                "{form}"
            );
        }
        for bad in [
            "",
            "-1",
            "1.5",
            "soon",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "+3",
        ] {
            assert!(parse_retry_after(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn retry_after_date_is_relative_to_now() {
        let at = UNIX_EPOCH + Duration::from_secs(1_000);
        let r = RetryAfter::At(at);
        assert_eq!(
            r.delay_from(UNIX_EPOCH + Duration::from_secs(990)),
            Duration::from_secs(10)
        );
        assert_eq!(
            r.delay_from(UNIX_EPOCH + Duration::from_secs(2_000)),
            Duration::ZERO
        );
        assert_eq!(
            RetryAfter::Delay(Duration::from_secs(3)).delay_from(UNIX_EPOCH),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn from_headers_joins_lines_and_tolerates_absence() {
        let mut headers = HeaderMap::new();
        assert!(RateLimitInfo::from_headers(&headers).unwrap().is_empty());
        headers.append(POLICY_HEADER, HeaderValue::from_static(r#""key";q=40;w=2"#));
        headers.append(
            POLICY_HEADER,
            HeaderValue::from_static(r#""org";q=100;w=1"#),
        );
        headers.insert(LIMIT_HEADER, HeaderValue::from_static(r#""key";r=39;t=1"#));
        headers.insert(RETRY_AFTER_HEADER, HeaderValue::from_static("1"));
        let info = RateLimitInfo::from_headers(&headers).unwrap();
        assert_eq!(info.policies.len(), 2);
        assert_eq!(info.policy("org").map(|p| p.quota), Some(100));
        assert_eq!(info.limit("key").map(|l| l.remaining), Some(39));
        assert_eq!(info.limit("org"), None);
        assert_eq!(
            info.retry_after,
            Some(RetryAfter::Delay(Duration::from_secs(1)))
        );

        headers.insert(LIMIT_HEADER, HeaderValue::from_static("nonsense;;"));
        assert!(RateLimitInfo::from_headers(&headers).is_err());
    }
}
