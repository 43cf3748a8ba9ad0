//! The router's queue, local 429s, breaker and resync, over real HTTP
//! against a scripted venue whose answers each test controls exactly.

mod common;

use common::problem;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use tollgate_venues::{Router, VenueConfig};

/// One scripted answer: status, headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);

/// What the scripted venue answers, in order; the last answer repeats.
#[derive(Clone)]
struct Script {
    answers: Arc<Mutex<Vec<Answer>>>,
    seen: Arc<Mutex<Vec<(Instant, String, HeaderMap)>>>,
}

impl Script {
    fn new(answers: Vec<Answer>) -> Self {
        Script {
            answers: Arc::new(Mutex::new(answers)),
            seen: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn seen(&self) -> Vec<(Instant, String, HeaderMap)> {
        self.seen.lock().clone()
    }
}

async fn scripted_venue(script: Script) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap| {
        let script = script.clone();
        async move {
            script
                .seen
                .lock()
                .push((Instant::now(), uri.to_string(), headers));
            let (status, headers, body) = {
                let mut answers = script.answers.lock();
                if answers.len() > 1 {
                    answers.remove(0)
                } else {
                    answers[0].clone()
                }
            };
            // A scripted slow answer: `x-delay-ms` holds it back.
            if let Some((_, ms)) = headers.iter().find(|(n, _)| *n == "x-delay-ms") {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
            }
            let mut response = axum::response::Response::new(axum::body::Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn start_router(venues: &str) -> (SocketAddr, Arc<Router>) {
    let venues: BTreeMap<String, VenueConfig> = toml::from_str(venues).unwrap();
    let router = Arc::new(Router::new(&venues).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tollgate_venues::server::serve(
        listener,
        Arc::clone(&router),
        1 << 20,
        std::future::pending(),
    ));
    (addr, router)
}

fn ok() -> Answer {
    (200, vec![], "{}".into())
}

async fn get(client: &reqwest::Client, url: String) -> reqwest::Response {
    client.get(url).send().await.unwrap()
}

#[tokio::test]
async fn capacity_beyond_the_queue_bound_is_refused_locally() {
    let script = Script::new(vec![ok()]);
    let venue = scripted_venue(script.clone()).await;
    let (router, _) = start_router(&format!(
        r#"
[v]
kind = "coinbase"
base_url = "http://{venue}"
max_wait_ms = 300
[[v.buckets]]
name = "b"
kind = "token_bucket"
capacity = 2
refill_per_second = 1
[v.default_cost]
b = 1
"#
    ))
    .await;
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(get(&client, format!("http://{router}/v/x")).await);
    }
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 429, 429]);
    let refused = answers.pop().unwrap();
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "venue_capacity");
    // The venue never saw the refused calls.
    assert_eq!(script.seen().len(), 2);

    // Within the bound, a call waits instead: a token comes back after 1 s;
    // with a 300 ms bound, 700 ms from now it fits.
    tokio::time::sleep(Duration::from_millis(750)).await;
    let started = Instant::now();
    let waited = get(&client, format!("http://{router}/v/x")).await;
    assert_eq!(waited.status(), 200);
    let ms: u64 = waited.headers()["tollgate-venue-wait-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        ms >= 100 && started.elapsed() >= Duration::from_millis(100),
        "waited {ms} ms"
    );
    assert_eq!(script.seen().len(), 3);
}

#[tokio::test]
async fn a_venue_429_opens_the_breaker_until_retry_after_then_one_probe() {
    let script = Script::new(vec![
        (
            429,
            vec![("retry-after", "1".into())],
            "{\"code\":-1003}".into(),
        ),
        ok(),
    ]);
    let venue = scripted_venue(script.clone()).await;
    let (router, _) = start_router(&format!(
        r#"
[v]
kind = "binance"
base_url = "http://{venue}"
max_wait_ms = 3000
[[v.buckets]]
name = "weight"
kind = "fixed_window"
limit = 1000
window_ms = 60000
scope = "ip"
[v.default_cost]
weight = 1
[[v.errors]]
status = 429
action = "backoff"
scope = "ip"
"#
    ))
    .await;
    let client = reqwest::Client::new();
    // The venue's own 429 is passed on as it is.
    let first = get(&client, format!("http://{router}/v/api/v3/ping")).await;
    assert_eq!(first.status(), 429);
    assert_eq!(first.text().await.unwrap(), "{\"code\":-1003}");
    // Three more at once: they wait for Retry-After, then one probe goes
    // alone; when it succeeds, the others follow.
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                get(&client, format!("http://{router}/v/api/v3/ping"))
                    .await
                    .status()
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    let seen = script.seen();
    assert_eq!(seen.len(), 4);
    let gap = seen[1].0 - seen[0].0;
    assert!(
        gap >= Duration::from_millis(950),
        "sent again after {gap:?}"
    );
}

#[tokio::test]
async fn a_ban_longer_than_the_bound_is_refused_locally_for_the_whole_scope() {
    let script = Script::new(vec![(
        418,
        vec![("retry-after", "120".into())],
        "{\"code\":-1003,\"msg\":\"Way too much request weight used; IP banned until 1.\"}".into(),
    )]);
    let venue = scripted_venue(script.clone()).await;
    let (router, _) = start_router(&format!(
        r#"
[v]
kind = "binance"
base_url = "http://{venue}"
max_wait_ms = 500
[[v.buckets]]
name = "weight"
kind = "fixed_window"
limit = 1000
window_ms = 60000
scope = "ip"
[[v.buckets]]
name = "orders"
kind = "fixed_window"
limit = 50
window_ms = 10000
scope = "account"
[v.default_cost]
weight = 1
[[v.endpoints]]
path = "/api/v3/order"
cost = {{ orders = 1 }}
[[v.errors]]
status = 418
action = "ban"
scope = "ip"
"#
    ))
    .await;
    let client = reqwest::Client::new();
    assert_eq!(
        get(&client, format!("http://{router}/v/api/v3/depth"))
            .await
            .status(),
        418
    );
    for path in ["api/v3/depth", "api/v3/order"] {
        let r = get(&client, format!("http://{router}/v/{path}")).await;
        assert_eq!(r.status(), 429);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((118..=120).contains(&retry), "retry-after {retry}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], "venue_banned");
    }
    assert_eq!(script.seen().len(), 1, "nothing sent while banned");
}

#[tokio::test]
async fn the_venues_count_header_resyncs_the_window() {
    // Another process on the same IP has spent 95 of 100: the venue says so.
    let script = Script::new(vec![(200, vec![("x-used", "95".into())], "{}".into())]);
    let venue = scripted_venue(script.clone()).await;
    let (router, state) = start_router(&format!(
        r#"
[v]
kind = "binance"
base_url = "http://{venue}"
max_wait_ms = 200
[[v.buckets]]
name = "weight"
kind = "fixed_window"
limit = 100
window_ms = 600000
guard_ms = 0
scope = "ip"
header = "X-Used"
[v.default_cost]
weight = 1
"#
    ))
    .await;
    let client = reqwest::Client::new();
    assert_eq!(
        get(&client, format!("http://{router}/v/a")).await.status(),
        200
    );
    let snapshot = state.snapshot();
    assert_eq!(snapshot["v"]["budgets"][0]["available"], 5.0);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            get(&client, format!("http://{router}/v/a"))
                .await
                .status()
                .as_u16(),
        );
    }
    // Each answer says 95 again (the venue is the judge): the estimate
    // follows it back to 95 after every call.
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // Now the venue reports the window full: the next call is held locally.
    script.answers.lock()[0] = (200, vec![("x-used", "100".into())], "{}".into());
    assert_eq!(
        get(&client, format!("http://{router}/v/a")).await.status(),
        200
    );
    let r = get(&client, format!("http://{router}/v/a")).await;
    assert_eq!(r.status(), 429);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "venue_capacity");
}

#[tokio::test]
async fn unknown_venues_and_unreachable_venues_are_clear_errors() {
    let (router, _) = start_router(
        r#"
[down]
kind = "kraken"
base_url = "http://127.0.0.1:9"
"#,
    )
    .await;
    let client = reqwest::Client::new();
    let r = get(&client, format!("http://{router}/nope/x")).await;
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "unknown_venue");
    let r = get(&client, format!("http://{router}/down/0/public/Time")).await;
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "venue_unreachable");
}

#[tokio::test]
async fn ip_budgets_are_shared_by_entries_of_one_venue_api_on_one_host() {
    let script = Script::new(vec![ok()]);
    let venue = scripted_venue(script.clone()).await;
    let entry = |kind: &str| {
        format!(
            r#"
kind = "{kind}"
base_url = "http://{venue}"
max_wait_ms = 100
[[buckets]]
name = "weight"
kind = "fixed_window"
limit = 2
window_ms = 600000
guard_ms = 0
scope = "ip"
[[buckets]]
name = "orders"
kind = "token_bucket"
capacity = 5
refill_per_second = 1
scope = "account"
[default_cost]
weight = 1
orders = 1
"#
        )
    };
    let config = format!(
        "[main]\n{}\n[alt]\n{}\n[other]\n{}",
        entry("binance")
            .replace("[[buckets]]", "[[main.buckets]]")
            .replace("[default_cost]", "[main.default_cost]"),
        entry("binance")
            .replace("[[buckets]]", "[[alt.buckets]]")
            .replace("[default_cost]", "[alt.default_cost]"),
        entry("kraken")
            .replace("[[buckets]]", "[[other.buckets]]")
            .replace("[default_cost]", "[other.default_cost]"),
    );
    let (router, _) = start_router(&config).await;
    let client = reqwest::Client::new();
    // Two Binance accounts from one IP: one weight budget between them.
    assert_eq!(
        get(&client, format!("http://{router}/main/x"))
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&client, format!("http://{router}/alt/x"))
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&client, format!("http://{router}/main/x"))
            .await
            .status(),
        429
    );
    assert_eq!(
        get(&client, format!("http://{router}/alt/x"))
            .await
            .status(),
        429
    );
    // Another venue API on the same host keeps its own.
    assert_eq!(
        get(&client, format!("http://{router}/other/x"))
            .await
            .status(),
        200
    );
    assert_eq!(script.seen().len(), 3);
}

#[tokio::test]
async fn a_lost_deribit_session_is_signed_into_again_without_a_breaker() {
    let token = |t: &str| {
        (
            200,
            vec![],
            format!(r#"{{"jsonrpc":"2.0","result":{{"access_token":"{t}","expires_in":900}}}}"#),
        )
    };
    let script = Script::new(vec![
        token("first"),
        (
            400,
            vec![],
            r#"{"jsonrpc":"2.0","error":{"code":13009,"message":"unauthorized"}}"#.into(),
        ),
        token("second"),
        ok(),
    ]);
    let venue = scripted_venue(script.clone()).await;
    let (router, _) = start_router(&format!(
        r#"
[deribit]
kind = "deribit"
base_url = "http://{venue}"
max_wait_ms = 100
credentials = {{ key = "id", secret = "s" }}
[[deribit.endpoints]]
path = "/api/v2/private/*"
signed = true
[[deribit.errors]]
pointer = "/error/code"
equals = 13009
action = "reauthenticate"
"#
    ))
    .await;
    let client = reqwest::Client::new();
    let url = format!("http://{router}/deribit/api/v2/private/get_positions");
    assert_eq!(get(&client, url.clone()).await.status(), 400);
    assert_eq!(get(&client, url).await.status(), 200);
    let seen = script.seen();
    let paths: Vec<&str> = seen
        .iter()
        .map(|(_, p, _)| p.split('?').next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/api/v2/public/auth",
            "/api/v2/private/get_positions",
            "/api/v2/public/auth",
            "/api/v2/private/get_positions"
        ]
    );
    assert_eq!(seen[1].2["authorization"], "Bearer first");
    assert_eq!(seen[3].2["authorization"], "Bearer second");
}

const BINANCE_IP_429: &str = r#"
kind = "binance"
max_wait_ms = 3000
timeout_ms = 300
[[buckets]]
name = "weight"
kind = "fixed_window"
limit = 1000
window_ms = 60000
scope = "ip"
[default_cost]
weight = 1
[[errors]]
status = 429
action = "backoff"
scope = "ip"
"#;

fn venue_toml(name: &str, venue: SocketAddr, body: &str) -> String {
    format!("[{name}]\nbase_url = \"http://{venue}\"\n")
        + &body
            .replace("[[buckets]]", &format!("[[{name}.buckets]]"))
            .replace("[default_cost]", &format!("[{name}.default_cost]"))
            .replace("[[errors]]", &format!("[[{name}.errors]]"))
            .replace("[[endpoints]]", &format!("[[{name}.endpoints]]"))
}

#[tokio::test]
async fn a_probe_that_gets_no_answer_leaves_the_breaker_half_open() {
    let script = Script::new(vec![
        (429, vec![("retry-after", "1".into())], "{}".into()),
        (200, vec![("x-delay-ms", "800".into())], "{}".into()),
        (429, vec![("retry-after", "1".into())], "{}".into()),
        ok(),
    ]);
    let venue = scripted_venue(script.clone()).await;
    let (router, _) = start_router(&venue_toml("v", venue, BINANCE_IP_429)).await;
    let client = reqwest::Client::new();
    let url = format!("http://{router}/v/api/v3/ping");
    assert_eq!(get(&client, url.clone()).await.status(), 429);
    // After Retry-After the probe goes, and the venue does not answer in time.
    let (status, _, _) = problem(get(&client, url.clone()).await).await;
    assert_eq!(status, 504);
    // Two calls at once: one probes again (and is refused), the other waits
    // for the breaker instead of going out with it.
    let a = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { get(&client, url).await.status().as_u16() }
    });
    let b = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { get(&client, url).await.status().as_u16() }
    });
    let mut statuses = [a.await.unwrap(), b.await.unwrap()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 429]);
    let seen = script.seen();
    assert_eq!(seen.len(), 4);
    let gap = seen[3].0 - seen[2].0;
    assert!(
        gap >= Duration::from_millis(900),
        "second call went {gap:?} after the probe"
    );
}

#[tokio::test]
async fn a_probe_whose_caller_went_away_does_not_hold_the_venue() {
    let script = Script::new(vec![
        (429, vec![("retry-after", "1".into())], "{}".into()),
        (200, vec![("x-delay-ms", "2000".into())], "{}".into()),
        ok(),
    ]);
    let venue = scripted_venue(script.clone()).await;
    let config = BINANCE_IP_429.replace("timeout_ms = 300", "timeout_ms = 5000");
    let (router, _) = start_router(&venue_toml("v", venue, &config)).await;
    let client = reqwest::Client::new();
    let url = format!("http://{router}/v/api/v3/ping");
    assert_eq!(get(&client, url.clone()).await.status(), 429);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // The probe's caller gives up after 200 ms and closes its connection.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert!(impatient.get(url.clone()).send().await.is_err());
    // The next call is not stuck behind a probe nobody waits for.
    let started = Instant::now();
    assert_eq!(get(&client, url).await.status(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_key_breaker_holds_calls_that_spend_no_key_budget() {
    let script = Script::new(vec![
        (
            200,
            vec![],
            r#"{"error":["EService: Throttled: 1800000000"]}"#.into(),
        ),
        ok(),
    ]);
    let venue = scripted_venue(script.clone()).await;
    let config = r#"
kind = "kraken"
max_wait_ms = 200
[[buckets]]
name = "trading"
kind = "decaying"
max = 60
decay_per_second = 1
scope = "pair"
scope_param = "pair"
[[endpoints]]
path = "/0/private/AddOrder"
cost = { trading = 1 }
[[errors]]
body_contains = "EService: Throttled"
action = "backoff"
scope = "key"
backoff_ms = 5000
"#;
    let (router, _) = start_router(&venue_toml("k", venue, config)).await;
    let client = reqwest::Client::new();
    let add = || {
        client
            .post(format!("http://{router}/k/0/private/AddOrder"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("pair=XBTUSD&type=buy")
    };
    let first = add().send().await.unwrap();
    assert!(first.text().await.unwrap().contains("Throttled"));
    let (status, _, code) = problem(add().send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (429, "venue_backoff"));
    assert_eq!(script.seen().len(), 1);
}

#[tokio::test]
async fn redirects_are_passed_on_never_followed_and_encodings_not_asked_for() {
    let elsewhere = Script::new(vec![ok()]);
    let other = scripted_venue(elsewhere.clone()).await;
    let script = Script::new(vec![(
        307,
        vec![("location", format!("http://{other}/steal"))],
        String::new(),
    )]);
    let venue = scripted_venue(script.clone()).await;
    let config = r#"
kind = "binance"
credentials = { key = "k", secret = "s" }
[[endpoints]]
path = "/api/v3/order"
signed = true
"#;
    let (router, _) = start_router(&venue_toml("b", venue, config)).await;
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("http://{router}/b/api/v3/order?symbol=X"))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    assert!(
        elsewhere.seen().is_empty(),
        "the signed order went nowhere else"
    );
    let seen = script.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].2.get("accept-encoding").is_none());
    assert!(seen[0].1.contains("signature="));
}

#[tokio::test]
async fn a_venue_that_keeps_refusing_is_probed_less_and_less_often() {
    let refused = (429, vec![], "{}".to_owned());
    let script = Script::new(vec![refused.clone(), refused.clone(), refused, ok()]);
    let venue = scripted_venue(script.clone()).await;
    let config = BINANCE_IP_429.replace(
        "[[errors]]\nstatus = 429",
        "[[errors]]\nbackoff_ms = 200\nstatus = 429",
    );
    let (router, _) = start_router(&venue_toml("v", venue, &config)).await;
    let client = reqwest::Client::new();
    let url = format!("http://{router}/v/api/v3/ping");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get(&client, url.clone()).await.status().as_u16());
    }
    assert_eq!(statuses, [429, 429, 429, 200]);
    let seen = script.seen();
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].0 - w[0].0).collect();
    // No Retry-After: 200 ms, then doubled for each refusal in a row.
    for (gap, floor) in gaps.iter().zip([190, 390, 790]) {
        assert!(*gap >= Duration::from_millis(floor), "gaps {gaps:?}");
    }
    assert!(gaps[2] < Duration::from_millis(1500), "gaps {gaps:?}");
}
