//! The shipped `venues.example.toml` stays a valid set of contracts, with the
//! documented costs.

use std::collections::BTreeMap;

use serde::Deserialize;
use tollgate_venues::VenueConfig;
use tollgate_venues::config::{EgressConfig, VenueKind};
use tollgate_venues::contract::{Call, Contract};

#[derive(Deserialize)]
struct File {
    egress: EgressConfig,
    venues: BTreeMap<String, VenueConfig>,
}

fn example() -> File {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../venues.example.toml");
    toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn cost(
    c: &Contract,
    method: http::Method,
    path: &str,
    query: &str,
    body: &[u8],
) -> BTreeMap<String, f64> {
    let plan = c.plan(&Call {
        method: &method,
        path,
        query,
        body,
    });
    plan.costs
        .iter()
        .map(|(i, units, _)| (c.buckets[*i].name.clone(), *units as f64 / 1e6))
        .collect()
}

#[test]
fn every_shipped_contract_compiles() {
    let file = example();
    assert!(file.egress.listen.ip().is_loopback());
    let kinds: Vec<VenueKind> = file.venues.values().map(|v| v.kind).collect();
    for kind in [
        VenueKind::Coinbase,
        VenueKind::Binance,
        VenueKind::Deribit,
        VenueKind::Kraken,
        VenueKind::KrakenFutures,
    ] {
        assert!(kinds.contains(&kind), "{kind:?} missing");
    }
    for (name, venue) in &file.venues {
        Contract::compile(name, venue).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn shipped_costs_match_the_documented_figures() {
    let file = example();
    let contract = |name: &str| Contract::compile(name, &file.venues[name]).unwrap();
    let binance = contract("binance");
    let order = cost(
        &binance,
        http::Method::POST,
        "/api/v3/order",
        "symbol=BTCUSDT",
        b"",
    );
    assert_eq!(order["weight"], 1.0);
    assert_eq!(order["orders_10s"], 1.0);
    assert_eq!(order["raw_requests"], 1.0);
    let depth = cost(
        &binance,
        http::Method::GET,
        "/api/v3/depth",
        "symbol=BTCUSDT&limit=1000",
        b"",
    );
    assert_eq!(depth["weight"], 50.0);
    assert!(!depth.contains_key("orders_10s"));

    let futures = contract("kraken-futures");
    let batch = r#"{"batchOrder":[{"order":"send"},{"order":"cancel"}]}"#;
    let body = format!(
        "json={}",
        url::form_urlencoded::byte_serialize(batch.as_bytes()).collect::<String>()
    );
    let b = cost(
        &futures,
        http::Method::POST,
        "/derivatives/api/v3/batchorder",
        "",
        body.as_bytes(),
    );
    assert_eq!(b["derivatives"], 11.0);

    let deribit = contract("deribit");
    let buy = cost(
        &deribit,
        http::Method::GET,
        "/api/v2/private/buy",
        "instrument_name=BTC-PERPETUAL",
        b"",
    );
    assert_eq!(buy.get("matching"), Some(&1.0));
    assert_eq!(buy.get("non_matching"), None);
    let summary = cost(
        &deribit,
        http::Method::GET,
        "/api/v2/private/get_account_summary",
        "",
        b"",
    );
    assert_eq!(summary["non_matching"], 500.0);

    let kraken = contract("kraken");
    let ledgers = cost(&kraken, http::Method::POST, "/0/private/Ledgers", "", b"");
    assert_eq!(ledgers["rest_counter"], 2.0);
    let add = cost(
        &kraken,
        http::Method::POST,
        "/0/private/AddOrder",
        "",
        b"pair=XBTUSD&type=buy",
    );
    assert_eq!(add["trading"], 1.0);
    assert!(!add.contains_key("rest_counter"));
    let amend = cost(
        &kraken,
        http::Method::POST,
        "/0/private/AmendOrder",
        "",
        b"pair=XBTUSD",
    );
    assert_eq!((amend["trading"], amend["rest_counter"]), (4.0, 1.0));
    // Every other call adds 1 to the REST counter, trading calls included
    // (only AddOrder and CancelOrder are exempt).
    let batch = cost(
        &kraken,
        http::Method::POST,
        "/0/private/AddOrderBatch",
        "",
        br#"{"pair":"XBTUSD","orders":[{},{},{}]}"#,
    );
    assert_eq!(batch["trading"], 1.5);
    assert_eq!(batch["rest_counter"], 1.0);
    let edit = cost(
        &kraken,
        http::Method::POST,
        "/0/private/EditOrder",
        "",
        b"pair=XBTUSD&txid=O1",
    );
    assert_eq!(edit["trading"], 7.0);
    assert_eq!(edit["rest_counter"], 1.0);
    let cancel = cost(
        &kraken,
        http::Method::POST,
        "/0/private/CancelOrder",
        "",
        b"pair=XBTUSD&txid=O1",
    );
    assert_eq!(cancel["trading"], 8.0);
    assert!(!cancel.contains_key("rest_counter"));
}
