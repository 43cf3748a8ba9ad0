//! What the router adds to a venue call before it leaves: costing it
//! against the contract, taking the budgets, and signing it.
//!
//! `cargo bench -p tollgate-venues --bench router`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde::Deserialize;
use tollgate_core::venue::{Budget, BudgetKind, UNIT};
use tollgate_venues::VenueConfig;
use tollgate_venues::config::{CredentialsConfig, VenueKind};
use tollgate_venues::contract::{Call, Contract};
use tollgate_venues::sign::{Outgoing, Signer};

#[derive(Deserialize)]
struct File {
    venues: BTreeMap<String, VenueConfig>,
}

fn budgets(c: &mut Criterion) {
    let mut group = c.benchmark_group("venue_budget_take");
    let kinds = [
        (
            "token_bucket",
            BudgetKind::TokenBucket {
                capacity: 30 * UNIT,
                refill_per_second: 15 * UNIT,
            },
        ),
        (
            "fixed_window",
            BudgetKind::FixedWindow {
                limit: 6000 * UNIT,
                window_ms: 60_000,
                guard_ms: 250,
            },
        ),
        (
            "sliding_window",
            BudgetKind::SlidingWindow {
                limit: 500 * UNIT,
                window_ms: 10_000,
                guard_ms: 250,
            },
        ),
    ];
    for (name, kind) in kinds {
        group.bench_function(name, |b| {
            let mut budget = Budget::new(kind, 0);
            // One take every 100 ms of venue time: always room, so the
            // figure is the bookkeeping, not a refusal.
            let mut now = 0i64;
            b.iter(|| {
                now += 100;
                let ticket = budget.try_take(black_box(UNIT), now).unwrap();
                budget.answered(&ticket, now);
            })
        });
    }
    group.finish();
}

fn contract_and_signing(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../venues.example.toml");
    let file: File = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let binance = Contract::compile("binance", &file.venues["binance"]).unwrap();
    let post = http::Method::POST;
    let get = http::Method::GET;
    c.bench_function("contract_plan/binance_order", |b| {
        b.iter(|| {
            black_box(binance.plan(&Call {
                method: &post,
                path: black_box("/api/v3/order"),
                query: "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=60000",
                body: b"",
            }))
        })
    });
    c.bench_function("contract_plan/binance_depth_by_limit", |b| {
        b.iter(|| {
            black_box(binance.plan(&Call {
                method: &get,
                path: black_box("/api/v3/depth"),
                query: "symbol=BTCUSDT&limit=500",
                body: b"",
            }))
        })
    });
    let mut group = c.benchmark_group("sign");
    let b64 =
        "dG9sbGdhdGUtc2ltIGtyYWtlbiBzcG90IHRlc3Qgc2VjcmV0OyBuZXZlciB1c2UgaXQgd2l0aCBrcmFrZW4hIQ==";
    for (name, kind, query, body) in [
        (
            "coinbase",
            VenueKind::Coinbase,
            "",
            &br#"{"product_id":"BTC-USD","side":"buy","size":"0.01","price":"60000"}"#[..],
        ),
        (
            "binance",
            VenueKind::Binance,
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=60000",
            &b""[..],
        ),
        (
            "kraken",
            VenueKind::Kraken,
            "",
            &b"ordertype=limit&type=buy&volume=0.01&pair=XBTUSD&price=60000"[..],
        ),
        (
            "kraken_futures",
            VenueKind::KrakenFutures,
            "",
            &b"orderType=lmt&symbol=PI_XBTUSD&side=buy&size=1&limitPrice=60000"[..],
        ),
    ] {
        let signer = Signer::new(
            kind,
            &CredentialsConfig {
                key: Some("key".into()),
                secret: Some(b64.into()),
                passphrase: Some("pass".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let outgoing = Outgoing {
            method: post.clone(),
            path: "/0/private/AddOrder".into(),
            query: query.into(),
            body: body.to_vec(),
            headers: Vec::new(),
        };
        let mut now = 1_800_000_000_000i64;
        group.bench_function(name, |b| {
            b.iter(|| {
                now += 1;
                let mut out = outgoing.clone();
                signer.sign(&mut out, now, None);
                black_box(out)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, budgets, contract_and_signing);
criterion_main!(benches);
