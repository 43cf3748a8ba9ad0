//! `tollgate serve` with venues configured: the egress listener comes up
//! beside ingress and admin, routes a bot's call to the venue (here the
//! simulator) signed, and reports it in the gateway's Prometheus metrics.

mod common;

use common::TestGateway;

#[tokio::test]
async fn the_gateway_serves_the_venue_router_and_its_metrics() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = tollgate_sim::start(listener, tollgate_sim::SimConfig::default())
        .await
        .unwrap();
    let keys = tollgate_sim::SimConfig::default().binance.keys[0].clone();
    let venues = format!(
        r#"
[binance]
kind = "binance"
base_url = "{base}"
credentials = {{ key = "{key}", secret = "{secret}" }}
clock = {{ path = "/api/v3/time", pointer = "/serverTime" }}
[[binance.buckets]]
name = "weight"
kind = "fixed_window"
limit = 6000
window_ms = 60000
scope = "ip"
header = "X-MBX-USED-WEIGHT-1M"
[binance.default_cost]
weight = 1
[[binance.endpoints]]
method = "POST"
path = "/api/v3/order"
signed = true
"#,
        base = sim.base_url(tollgate_sim::Venue::Binance),
        key = keys.api_key,
        secret = keys.secret,
    );
    let gw = TestGateway::start_with(|config| {
        config.venues = toml::from_str(&venues).unwrap();
    })
    .await;
    let egress = gw
        .egress
        .expect("an egress listener when venues are configured");
    let client = reqwest::Client::new();
    let r = client
        .post(format!(
            "http://{egress}/binance/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=1000"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(sim.stats().binance.auth_failures, 0);
    assert_eq!(sim.stats().binance.orders_placed, 1);

    let metrics = client
        .get(format!("http://{}/metrics", gw.admin))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tollgate_venue_cost_spent_total{venue=\"binance\",bucket=\"weight\"} 2"),
        "clock reading and order each spend 1 weight:\n{metrics}"
    );
    assert!(metrics.contains("tollgate_venue_clock_offset_ms{venue=\"binance\"}"));
    gw.stop().await;
}
