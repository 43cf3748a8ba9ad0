//! Steps 6 and 7 as one pure decision: the key's bucket, the organization's
//! aggregate bucket, then the quotas of the billing cycle.
//!
//! Nothing here mutates state. The caller holds whatever lock makes the
//! decision atomic, calls [`decide`], and stores the new bucket states and
//! counts only when the verdict is [`Verdict::Admit`]; a refused request
//! therefore consumes nothing, neither tokens nor quota.

use crate::limit::{Bucket, BucketDecision, BucketSpec};

/// Whose limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The API key's own limit.
    Key,
    /// The organization's limit, shared by all its keys.
    Org,
}

impl Scope {
    /// `key` or `org`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::Org => "org",
        }
    }
}

/// One quota that applies to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLine<M> {
    /// What it counts (requests, bytes, a meter), as the caller names it.
    pub metric: M,
    /// Key or organization.
    pub scope: Scope,
    /// Counted so far in this cycle.
    pub used: u64,
    /// Allowed in this cycle.
    pub limit: u64,
    /// What this request adds when admitted: 1 for a request quota; 0 for
    /// quotas counted after the response (bytes, meters), which only refuse
    /// once already exhausted.
    pub charge: u64,
}

impl<M> QuotaLine<M> {
    /// Units left, never negative.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    fn admits(&self) -> bool {
        if self.charge == 0 {
            self.used < self.limit
        } else {
            self.used.saturating_add(self.charge) <= self.limit
        }
    }
}

/// The facts of one throttling decision.
#[derive(Debug, Clone)]
pub struct Request<'a, M> {
    /// Cost of the request in bucket units.
    pub cost: u64,
    /// Now, in nanoseconds on the buckets' monotonic scale.
    pub now_nanos: u64,
    /// The key's bucket and its state.
    pub key_bucket: Option<(&'a BucketSpec, Bucket)>,
    /// The organization's bucket and its state.
    pub org_bucket: Option<(&'a BucketSpec, Bucket)>,
    /// Every quota that applies.
    pub quotas: &'a [QuotaLine<M>],
    /// Pay-as-you-go: an exhausted quota lets the request through as overage.
    pub overage_allowed: bool,
}

/// The outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted: store these states and add the quota charges.
    Admit {
        /// New key bucket state.
        key_next: Option<Bucket>,
        /// New org bucket state.
        org_next: Option<Bucket>,
        /// True when an exhausted quota was passed as pay-as-you-go overage.
        overage: bool,
    },
    /// A bucket refused.
    RateLimited {
        /// Whose bucket.
        scope: Scope,
        /// When the request would conform; `u64::MAX` if never (cost > burst).
        retry_after_nanos: u64,
    },
    /// A quota is exhausted and overage is not allowed.
    QuotaExhausted {
        /// Index into [`Request::quotas`].
        quota: usize,
    },
}

/// The decision plus what the RateLimit headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Admit or refuse.
    pub verdict: Verdict,
    /// The key bucket after the decision (as stored on admission).
    pub key_bucket: Option<BucketDecision>,
    /// The org bucket after the decision.
    pub org_bucket: Option<BucketDecision>,
    /// Index of the quota nearest exhaustion (smallest remaining share).
    pub nearest_quota: Option<usize>,
}

/// Index of the quota with the smallest remaining share of its limit.
pub fn nearest_exhaustion<M>(quotas: &[QuotaLine<M>]) -> Option<usize> {
    quotas
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| {
            // a.remaining / a.limit  vs  b.remaining / b.limit, without division.
            let left = u128::from(a.remaining()) * u128::from(b.limit.max(1));
            let right = u128::from(b.remaining()) * u128::from(a.limit.max(1));
            left.cmp(&right)
        })
        .map(|(i, _)| i)
}

/// Decides one request.
pub fn decide<M>(request: &Request<'_, M>) -> Decision {
    let key = request
        .key_bucket
        .map(|(spec, state)| state.check(spec, request.cost, request.now_nanos));
    let org = request
        .org_bucket
        .map(|(spec, state)| state.check(spec, request.cost, request.now_nanos));
    let nearest_quota = nearest_exhaustion(request.quotas);
    let refused = |scope, d: Option<BucketDecision>| {
        d.filter(|d| !d.allowed).map(|d| Verdict::RateLimited {
            scope,
            retry_after_nanos: d.retry_after_nanos,
        })
    };
    // When both buckets refuse, report the longer wait: retrying earlier
    // would only be refused again.
    let verdict = match (refused(Scope::Key, key), refused(Scope::Org, org)) {
        (
            Some(Verdict::RateLimited {
                retry_after_nanos: k,
                ..
            }),
            Some(Verdict::RateLimited {
                retry_after_nanos: o,
                ..
            }),
        ) => {
            if o > k {
                Verdict::RateLimited {
                    scope: Scope::Org,
                    retry_after_nanos: o,
                }
            } else {
                Verdict::RateLimited {
                    scope: Scope::Key,
                    retry_after_nanos: k,
                }
            }
        }
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => {
            let exhausted = request.quotas.iter().position(|q| !q.admits());
            match exhausted {
                Some(quota) if !request.overage_allowed => Verdict::QuotaExhausted { quota },
                other => Verdict::Admit {
                    key_next: key.map(|d| d.next),
                    org_next: org.map(|d| d.next),
                    overage: other.is_some(),
                },
            }
        }
    };
    // A refused request consumes nothing, so report each bucket as it stands,
    // not as it would be had this request been admitted.
    let as_is = |bucket: Option<(&BucketSpec, Bucket)>, d: Option<BucketDecision>| match (bucket, d)
    {
        (Some((spec, state)), Some(d)) if d.allowed => {
            Some(state.check(spec, 0, request.now_nanos))
        }
        (_, d) => d,
    };
    let admitted = matches!(verdict, Verdict::Admit { .. });
    Decision {
        verdict,
        key_bucket: if admitted {
            key
        } else {
            as_is(request.key_bucket, key)
        },
        org_bucket: if admitted {
            org
        } else {
            as_is(request.org_bucket, org)
        },
        nearest_quota,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = crate::limit::NANOS_PER_SECOND;

    fn line(used: u64, limit: u64, charge: u64, scope: Scope) -> QuotaLine<&'static str> {
        QuotaLine {
            metric: "requests",
            scope,
            used,
            limit,
            charge,
        }
    }

    #[test]
    fn key_then_org_then_quota() {
        let key_spec = BucketSpec::new(1, 1, 2).expect("spec");
        let org_spec = BucketSpec::new(1, 1, 3).expect("spec");
        let quotas = [line(0, 10, 1, Scope::Org)];
        let mut key = Bucket::default();
        let mut org = Bucket::default();
        let mut admitted = 0;
        for _ in 0..3 {
            let d = decide(&Request {
                cost: 1,
                now_nanos: 10 * S,
                key_bucket: Some((&key_spec, key)),
                org_bucket: Some((&org_spec, org)),
                quotas: &quotas,
                overage_allowed: false,
            });
            if let Verdict::Admit {
                key_next, org_next, ..
            } = d.verdict
            {
                key = key_next.expect("key");
                org = org_next.expect("org");
                admitted += 1;
            } else {
                assert_eq!(
                    d.verdict,
                    Verdict::RateLimited {
                        scope: Scope::Key,
                        retry_after_nanos: S
                    }
                );
            }
        }
        assert_eq!(admitted, 2);
    }

    #[test]
    fn org_refusal_consumes_nothing_from_the_key() {
        let key_spec = BucketSpec::new(10, 1, 10).expect("spec");
        let org_spec = BucketSpec::new(1, 1, 1).expect("spec");
        let empty_org = Bucket::default().check(&org_spec, 1, 5 * S).next;
        let key = Bucket::default();
        let d = decide::<&str>(&Request {
            cost: 1,
            now_nanos: 5 * S,
            key_bucket: Some((&key_spec, key)),
            org_bucket: Some((&org_spec, empty_org)),
            quotas: &[],
            overage_allowed: false,
        });
        assert_eq!(
            d.verdict,
            Verdict::RateLimited {
                scope: Scope::Org,
                retry_after_nanos: S
            }
        );
        // The caller stores nothing, so the key bucket is untouched: still 10
        // units, and that is what the decision reports.
        assert_eq!(key.available(&key_spec, 5 * S), 10);
        assert_eq!(d.key_bucket.map(|b| b.remaining), Some(10));
    }

    #[test]
    fn exhausted_quota_refuses_unless_overage_is_allowed() {
        let quotas = [
            line(5, 100, 1, Scope::Org),
            line(10, 10, 1, Scope::Key),
            line(99, 100, 0, Scope::Org),
        ];
        let mut request = Request {
            cost: 1,
            now_nanos: 0,
            key_bucket: None,
            org_bucket: None,
            quotas: &quotas,
            overage_allowed: false,
        };
        let d = decide(&request);
        assert_eq!(d.verdict, Verdict::QuotaExhausted { quota: 1 });
        assert_eq!(d.nearest_quota, Some(1));
        request.overage_allowed = true;
        assert_eq!(
            decide(&request).verdict,
            Verdict::Admit {
                key_next: None,
                org_next: None,
                overage: true
            }
        );
    }

    #[test]
    fn post_counted_quotas_refuse_only_when_reached() {
        assert!(line(99, 100, 0, Scope::Org).admits());
        assert!(!line(100, 100, 0, Scope::Org).admits());
        assert!(line(99, 100, 1, Scope::Org).admits());
        assert!(!line(100, 100, 1, Scope::Org).admits());
    }
}
