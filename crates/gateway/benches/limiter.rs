//! The whole in-memory throttle-and-quota decision of one request, as the
//! ingress path makes it: find the org's counters, lock them, check the cycle,
//! decide key bucket + org bucket + quotas, commit. Run:
//! `cargo bench -p tollgate-gateway --bench limiter`.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use std::sync::Arc;
use tollgate_core::access::{KeyFacts, KeyStatus, OrgStatus, ProductScope};
use tollgate_core::api_key::SecretHash;
use tollgate_core::ids::{KeyId, OrgId};
use tollgate_core::meter::METERS;
use tollgate_core::time::UnixMillis;
use tollgate_gateway::Config;
use tollgate_gateway::directory::{KeyEntry, OrgEntry};
use tollgate_gateway::limiter::{Admission, Limiter};
use tollgate_gateway::pipeline::throttle;
use tollgate_gateway::plans;

const CONFIG: &str = r#"
[upstream]
url = "http://127.0.0.1:9"
[products.p]
[[routes]]
path = "/v1/ticker"
product = "p"
class = "read"
[plans.pro]
default_rate_class = "standard"
org_rate = { rate = 1000000, burst = 2000000 }
[plans.pro.rate_classes]
standard = { rate = 1000000, burst = 2000000 }
[plans.pro.quotas]
request = 1000000000000
bytes_out = 1000000000000
order_sent = 1000000000
"#;

type Orgs = Vec<(OrgId, OrgEntry, Vec<KeyEntry>)>;

fn setup(orgs: usize, keys_per_org: usize) -> (Orgs, Arc<plans::Plan>) {
    let config = Config::from_toml_str_without_env(CONFIG).expect("config");
    let routes = config.route_table().expect("routes");
    let plan = Arc::clone(&plans::compile(&config, &routes)["pro"]);
    let mut all = Vec::new();
    for o in 0..orgs {
        let mut seed = [0u8; 10];
        seed[..8].copy_from_slice(&(o as u64).to_le_bytes());
        let org_id = OrgId::from_random(seed);
        let org = OrgEntry {
            status: OrgStatus::Active,
            plan: Some("pro".into()),
            cycle_anchor: UnixMillis(1_790_000_000_000),
            pay_as_you_go: false,
            commitments: Vec::new(),
        };
        let keys = (0..keys_per_org)
            .map(|k| {
                let mut seed = [1u8; 10];
                seed[..8].copy_from_slice(&((o * 1000 + k) as u64).to_le_bytes());
                KeyEntry {
                    id: KeyId::from_random(seed),
                    org_id: org_id.clone(),
                    facts: KeyFacts {
                        status: KeyStatus::Active,
                        expires_at: None,
                        products: ProductScope::Any,
                        secret: SecretHash([0; 32]),
                        previous_secret: None,
                    },
                    quotas: [None; METERS],
                    credentials: Default::default(),
                }
            })
            .collect();
        all.push((org_id, org, keys));
    }
    (all, plan)
}

fn admit(c: &mut Criterion) {
    let (orgs, plan) = setup(1_000, 10);
    let limiter = Limiter::default();
    let now = UnixMillis(1_795_000_000_000);
    let mut nanos = 1_795_000_000_000_000_000u64;
    let mut i = 0usize;
    c.bench_function("limiter_admit_1000_orgs_10_keys", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            let (org_id, org, keys) = &orgs[i % orgs.len()];
            let key = &keys[(i / orgs.len()) % keys.len()];
            nanos += 1_000;
            let outcome = limiter.admit(black_box(&Admission {
                org_id,
                org,
                key,
                plan: &plan,
                cost: 1,
                class: None,
                now,
                now_nanos: nanos,
            }));
            black_box(outcome.verdict)
        })
    });
    c.bench_function("limiter_admit_and_ratelimit_headers", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            let (org_id, org, keys) = &orgs[i % orgs.len()];
            let key = &keys[(i / orgs.len()) % keys.len()];
            nanos += 1_000;
            let outcome = limiter.admit(&Admission {
                org_id,
                org,
                key,
                plan: &plan,
                cost: 1,
                class: None,
                now,
                now_nanos: nanos,
            });
            black_box(throttle::headers(&outcome, now))
        })
    });
}

/// One org and one key: the decision's own cost, with every line in cache.
fn admit_hot(c: &mut Criterion) {
    let (orgs, plan) = setup(1, 1);
    let limiter = Limiter::default();
    let now = UnixMillis(1_795_000_000_000);
    let mut nanos = 1_795_000_000_000_000_000u64;
    let (org_id, org, keys) = &orgs[0];
    let key = &keys[0];
    c.bench_function("limiter_admit_hot_single_key", |b| {
        b.iter(|| {
            nanos += 1_000;
            let outcome = limiter.admit(black_box(&Admission {
                org_id,
                org,
                key,
                plan: &plan,
                cost: 1,
                class: None,
                now,
                now_nanos: nanos,
            }));
            black_box(outcome.verdict)
        })
    });
    let outcome = limiter.admit(&Admission {
        org_id,
        org,
        key,
        plan: &plan,
        cost: 1,
        class: None,
        now,
        now_nanos: nanos,
    });
    c.bench_function("ratelimit_headers_only", |b| {
        b.iter(|| black_box(throttle::headers(black_box(&outcome), now)))
    });
}

criterion_group!(benches, admit, admit_hot);
criterion_main!(benches);
