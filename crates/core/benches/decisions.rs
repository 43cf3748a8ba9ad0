//! Criterion benches of the pure decisions on the request path.
//! Run: `cargo bench -p tollgate-core`.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use tollgate_core::limit::{Bucket, BucketSpec};
use tollgate_core::throttle::{QuotaLine, Request, Scope, decide};

fn bucket(c: &mut Criterion) {
    let spec = BucketSpec::new(1_000, 1, 2_000).expect("spec");
    let mut state = Bucket::default();
    let mut now = 1_000_000_000_000u64;
    c.bench_function("bucket_check_and_commit", |b| {
        b.iter(|| {
            now += 1_000_000;
            let d = black_box(state).check(black_box(&spec), black_box(1), black_box(now));
            if d.allowed {
                state = d.next;
            }
            d.remaining
        })
    });
}

fn throttle(c: &mut Criterion) {
    let key_spec = BucketSpec::new(1_000, 1, 2_000).expect("spec");
    let org_spec = BucketSpec::new(5_000, 1, 10_000).expect("spec");
    let quotas = [
        QuotaLine {
            metric: 0usize,
            scope: Scope::Org,
            used: 10,
            limit: 1_000_000,
            charge: 1,
        },
        QuotaLine {
            metric: 4usize,
            scope: Scope::Org,
            used: 10,
            limit: 1_000_000_000,
            charge: 0,
        },
        QuotaLine {
            metric: 0usize,
            scope: Scope::Key,
            used: 10,
            limit: 100_000,
            charge: 1,
        },
    ];
    let mut now = 1_000_000_000_000u64;
    c.bench_function("throttle_decide_two_buckets_three_quotas", |b| {
        b.iter(|| {
            now += 1_000_000;
            decide(black_box(&Request {
                cost: 1,
                now_nanos: now,
                key_bucket: Some((&key_spec, Bucket::default())),
                org_bucket: Some((&org_spec, Bucket::default())),
                quotas: &quotas,
                overage_allowed: false,
            }))
        })
    });
}

criterion_group!(benches, bucket, throttle);
criterion_main!(benches);
