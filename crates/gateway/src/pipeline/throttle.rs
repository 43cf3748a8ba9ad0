//! Steps 6 and 7, throttling and quotas: the key's token bucket (its plan's
//! rate class), the organization's aggregate bucket, then the billing-cycle
//! quotas of the org and the key. Decided atomically by the
//! [`Limiter`](crate::limiter::Limiter); a refused request consumes nothing.
//!
//! Every response of a metered plan carries `RateLimit-Policy` and
//! `RateLimit` (draft-ietf-httpapi-ratelimit-headers): one policy for the key
//! bucket (`"key"`), one for the org bucket (`"org"`) and one for the quota
//! nearest exhaustion (`"cycle-<meter>"` for the org's, `"key-cycle-<meter>"`
//! for a key's own). A 429 carries `Retry-After` in whole seconds, rounded up,
//! so a client that waits exactly that long is admitted.

use super::Refusal;
use crate::limiter::{Outcome, QuotaReport};
use http::{HeaderName, HeaderValue};
use tollgate_core::Rejection;
use tollgate_core::limit::ceil_seconds;
use tollgate_core::meter::Meter;
use tollgate_core::ratelimit::{self, Policy, Remaining};
use tollgate_core::throttle::{Scope, Verdict};
use tollgate_core::time::UnixMillis;

/// `RateLimit-Policy`
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `Retry-After`
pub static RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");

/// The policy name of a quota: `cycle-<meter>` for the org's,
/// `key-cycle-<meter>` for a key's own.
pub fn quota_policy_name(quota: &QuotaReport) -> &'static str {
    match (quota.scope, quota.meter) {
        (Scope::Org, Meter::Request) => "cycle-request",
        (Scope::Org, Meter::OrderSent) => "cycle-order_sent",
        (Scope::Org, Meter::OrderFilled) => "cycle-order_filled",
        (Scope::Org, Meter::ComputeMs) => "cycle-compute_ms",
        (Scope::Org, Meter::BytesOut) => "cycle-bytes_out",
        (Scope::Key, Meter::Request) => "key-cycle-request",
        (Scope::Key, Meter::OrderSent) => "key-cycle-order_sent",
        (Scope::Key, Meter::OrderFilled) => "key-cycle-order_filled",
        (Scope::Key, Meter::ComputeMs) => "key-cycle-compute_ms",
        (Scope::Key, Meter::BytesOut) => "key-cycle-bytes_out",
    }
}

fn header_value(text: String) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).ok()
}

/// The RateLimit header pair for an outcome.
pub fn headers(outcome: &Outcome, now: UnixMillis) -> Vec<(HeaderName, HeaderValue)> {
    let empty_policy = Policy {
        name: "",
        quota: 0,
        window_seconds: 0,
        unit: None,
    };
    let empty_limit = Remaining {
        name: "",
        remaining: 0,
        reset_seconds: 0,
    };
    let mut policies = [empty_policy; 3];
    let mut limits = [empty_limit; 3];
    let mut n = 0;
    for (name, bucket) in [("key", &outcome.key), ("org", &outcome.org)] {
        if let Some(b) = bucket {
            policies[n] = Policy {
                name,
                quota: b.spec.burst(),
                window_seconds: b.spec.window_seconds(),
                unit: None,
            };
            limits[n] = Remaining {
                name,
                remaining: b.decision.remaining,
                reset_seconds: ceil_seconds(u128::from(b.decision.full_in_nanos)),
            };
            n += 1;
        }
    }
    if let Some(q) = &outcome.quota {
        let name = quota_policy_name(q);
        policies[n] = Policy {
            name,
            quota: q.limit,
            window_seconds: q.cycle.length_seconds(),
            unit: (q.meter == Meter::BytesOut).then_some("content-bytes"),
        };
        limits[n] = Remaining {
            name,
            remaining: q.remaining,
            reset_seconds: q.cycle.seconds_until_end(now),
        };
        n += 1;
    }
    if n == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(2);
    if let Some(v) = header_value(ratelimit::policy_field(&policies[..n])) {
        out.push((RATELIMIT_POLICY.clone(), v));
    }
    if let Some(v) = header_value(ratelimit::limit_field(&limits[..n])) {
        out.push((RATELIMIT.clone(), v));
    }
    out
}

/// The refusal for a non-admitted outcome, with `Retry-After` and the
/// RateLimit headers; `None` when admitted.
pub fn refusal(
    outcome: &Outcome,
    now: UnixMillis,
    rate_headers: &[(HeaderName, HeaderValue)],
) -> Option<Refusal> {
    let (mut refusal, retry_after) = match outcome.verdict {
        Verdict::Admit { .. } => return None,
        Verdict::RateLimited {
            scope,
            retry_after_nanos,
        } => {
            let bucket = match scope {
                Scope::Key => outcome.key.as_ref(),
                Scope::Org => outcome.org.as_ref(),
            };
            let seconds = ceil_seconds(u128::from(retry_after_nanos)).max(1);
            let shape = bucket.map_or_else(String::new, |b| {
                let (rate, per) = b.spec.rate();
                let class = b
                    .class
                    .as_deref()
                    .map_or_else(String::new, |c| format!("rate class {c:?}, "));
                format!(" ({class}{rate} per {per} s, burst {})", b.spec.burst())
            });
            let whose = match scope {
                Scope::Key => "this API key's rate limit",
                Scope::Org => "the organization's aggregate rate limit",
            };
            let mut refusal = Refusal::new(
                Rejection::RateLimited,
                format!("{whose}{shape} is exhausted; retry after {seconds} s"),
            );
            refusal.violated = vec![scope.as_str().to_owned()];
            (refusal, seconds)
        }
        Verdict::QuotaExhausted { .. } => {
            let q = outcome.quota?;
            let seconds = q.cycle.seconds_until_end(now).max(1);
            let whose = match q.scope {
                Scope::Org => "the organization's",
                Scope::Key => "this API key's",
            };
            let mut refusal = Refusal::new(
                Rejection::QuotaExhausted,
                format!(
                    "{whose} quota of {} {} per billing cycle is exhausted; it resets at {}",
                    q.limit,
                    q.meter.as_str(),
                    q.cycle.end.to_rfc3339()
                ),
            );
            refusal.violated = vec![quota_policy_name(&q).to_owned()];
            (refusal, seconds)
        }
    };
    refusal.headers.extend(rate_headers.iter().cloned());
    refusal
        .headers
        .push((RETRY_AFTER.clone(), HeaderValue::from(retry_after)));
    Some(refusal)
}
