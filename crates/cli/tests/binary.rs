//! The built `tollgate` binary, run as a user would: the demo, the CLI against
//! a running server's admin API, and `config check`.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// A `tollgate serve --demo` child on system-chosen ports.
struct Demo {
    child: Child,
    ingress: String,
    egress: String,
    admin: String,
    key: String,
    token: String,
    org: String,
    store: std::path::PathBuf,
}

/// The lines a started `tollgate serve --demo` or `tollgate sim` prints, up
/// to its "Press Ctrl-C" line.
fn banner(child: &mut Child) -> Vec<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the banner was printed in time");
        let done = line.starts_with("Press Ctrl-C");
        lines.push(line);
        if done {
            return lines;
        }
    }
}

impl Demo {
    fn start() -> Demo {
        let mut child = Command::new(BIN)
            .args(["serve", "--demo"])
            .env("TOLLGATE_INGRESS__LISTEN", "127.0.0.1:0")
            .env("TOLLGATE_ADMIN__LISTEN", "127.0.0.1:0")
            .env("TOLLGATE_EGRESS__LISTEN", "127.0.0.1:0")
            .env_remove("TOLLGATE_ADMIN_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tollgate");
        let lines = banner(&mut child);
        let field = |prefix: &str| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no line starting {prefix:?} in {lines:#?}"))
                .trim()
                .to_owned()
        };
        let banner = lines.join("\n");
        let demo = Demo {
            ingress: field("ingress listening on "),
            egress: field("egress listening on "),
            admin: field("admin listening on "),
            key: field("demo key: "),
            token: field("admin token: "),
            org: field("demo org: "),
            store: field("demo store: ").into(),
            child,
        };
        assert!(
            banner.contains("curl"),
            "ready-to-paste curl commands: {banner}"
        );
        demo
    }

    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(BIN)
            .args(args)
            .env("TOLLGATE_ADMIN_URL", &self.admin)
            .env("TOLLGATE_ADMIN_TOKEN", &self.token)
            .output()
            .expect("run cli");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Demo {
    /// SIGTERM, as a service manager would send: the demo drains, removes its
    /// temporary store and exits 0.
    fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "demo did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{status:?}");
        assert!(!self.store.exists(), "temporary store removed");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET with the status, the RateLimit and Retry-After headers and the body.
fn get_with_headers(url: &str, key: &str) -> (u16, Option<String>, Option<String>, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .get(url)
            .bearer_auth(key)
            .send()
            .await
            .expect("request");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (ratelimit, retry_after) = (header("ratelimit"), header("retry-after"));
        let status = response.status().as_u16();
        (
            status,
            ratelimit,
            retry_after,
            response.json().await.unwrap_or(Value::Null),
        )
    })
}

/// POST an order with an Idempotency-Key: (status, replayed?, body).
fn place_order(url: &str, key: &str, idempotency_key: &str) -> (u16, bool, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(url)
            .header("X-API-Key", key)
            .header("Idempotency-Key", idempotency_key)
            .json(&serde_json::json!({"symbol": "BTC-USD", "side": "buy", "qty": "0.01"}))
            .send()
            .await
            .expect("request");
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        (
            response.status().as_u16(),
            replayed,
            response.json().await.unwrap_or(Value::Null),
        )
    })
}

fn post_empty(url: &str) -> (u16, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(url)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    })
}

fn get(url: &str, key: Option<&str>) -> (u16, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    runtime.block_on(async {
        let mut request = reqwest::Client::new().get(url);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    })
}

#[test]
fn demo_serves_the_trading_api_and_the_cli_manages_it() {
    let demo = Demo::start();
    assert!(demo.key.starts_with("tg_"));
    // The egress side: the router in front of the built-in venue simulator.
    let (status, depth) = get(
        &format!(
            "{}/binance/api/v3/depth?symbol=BTCUSDT&limit=5",
            demo.egress
        ),
        None,
    );
    assert_eq!(status, 200, "{depth}");
    assert!(depth["bids"].is_array(), "{depth}");
    let (status, order) = post_empty(&format!(
        "{}/binance/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=60000",
        demo.egress
    ));
    assert_eq!(status, 200, "the router signed it: {order}");
    assert_eq!(order["symbol"], "BTCUSDT");
    let (status, venues) = get(&format!("{}/_tollgate/venues", demo.egress), None);
    assert_eq!(status, 200);
    for venue in ["binance", "coinbase", "deribit", "kraken", "kraken-futures"] {
        assert!(venues[venue].is_object(), "{venue} in {venues}");
    }
    let (status, ticker) = get(
        &format!("{}/v1/ticker?symbol=ETH-USD", demo.ingress),
        Some(&demo.key),
    );
    assert_eq!(status, 200, "{ticker}");
    assert_eq!(ticker["symbol"], "ETH-USD");
    let (status, problem) = get(&format!("{}/v1/ticker", demo.ingress), None);
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("missing_api_key"))
    );

    // An order, then the same order again: one execution, the same order id.
    let orders = format!("{}/v1/orders", demo.ingress);
    // An order costs 5 of the demo key's burst of 10 (5 per second), so
    // space them out as a person would.
    let pause = || std::thread::sleep(Duration::from_millis(1_100));
    let (status, replayed, first) = place_order(&orders, &demo.key, "newcomer-1");
    assert_eq!((status, replayed), (201, false), "{first}");
    pause();
    let (status, replayed, again) = place_order(&orders, &demo.key, "newcomer-1");
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(first["order_id"], again["order_id"]);
    pause();
    let (_, _, other) = place_order(&orders, &demo.key, "newcomer-2");
    assert_ne!(
        first["order_id"], other["order_id"],
        "a new key is a new order"
    );
    // The demo org is pay-as-you-go: the two executed orders (0.10 + 0.001
    // each) and the earlier ticker calls moved its opening 25.00; the replay did not.
    let (ok, out, err) = demo.cli(&["org", "balance", &demo.org]);
    assert!(ok, "{err}");
    let balance: Value = serde_json::from_str(&out).expect("json");
    let spent = 25_000_000 - balance["balance_micros"].as_i64().expect("balance");
    assert_eq!(
        spent,
        2 * 101_000 + 1_000,
        "two orders and one ticker call: {balance}"
    );
    let (ok, out, _) = demo.cli(&["org", "ledger", &demo.org]);
    assert!(ok && out.contains("\"order_sent\": 1"), "{out}");
    // Money from the CLI, in decimals.
    for _ in 0..2 {
        let (ok, _, err) = demo.cli(&[
            "org",
            "top-up",
            &demo.org,
            "--amount",
            "5.00",
            "--reference",
            "invoice-1",
        ]);
        assert!(ok, "{err}");
    }
    let (ok, _, err) = demo.cli(&[
        "org",
        "adjust",
        &demo.org,
        "--amount",
        "-0.5",
        "--reason",
        "test correction",
    ]);
    assert!(ok, "{err}");
    let (_, out, _) = demo.cli(&["org", "balance", &demo.org]);
    let after: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        after["balance_micros"].as_i64(),
        balance["balance_micros"]
            .as_i64()
            .map(|b| b + 5_000_000 - 500_000),
        "the repeated top-up was written once"
    );
    let (ok, out, err) = demo.cli(&[
        "org",
        "autocharge",
        &demo.org,
        "on",
        "--threshold",
        "5.00",
        "--amount",
        "20.00",
        "--customer",
        "cus_demo",
        "--payment-method",
        "pm_card_visa",
        "--monthly-cap",
        "100.00",
    ]);
    assert!(ok, "{err}");
    let settings: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(settings["autocharge"]["amount_micros"], 20_000_000);
    assert_eq!(settings["autocharge"]["enabled"], true);
    let (ok, out, err) = demo.cli(&[
        "org",
        "account",
        &demo.org,
        "--daily-limit",
        "50.00",
        "--budget",
        "500",
    ]);
    assert!(ok, "{err}");
    let account: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (
            account["daily_spend_limit_micros"].as_i64(),
            account["budget_micros"].as_i64()
        ),
        (Some(50_000_000), Some(500_000_000))
    );
    let (ok, out, err) = demo.cli(&["org", "account", &demo.org, "--daily-limit", "none"]);
    assert!(ok, "{err}");
    let account: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        account["daily_spend_limit_micros"],
        Value::Null,
        "none clears"
    );
    assert_eq!(account["budget_micros"], 500_000_000, "absent keeps");
    let (ok, _, err) = demo.cli(&["org", "autocharge", &demo.org, "on", "--amount", "0.001"]);
    assert!(!ok && err.contains("cents"), "{err}");
    let (ok, _, err) = demo.cli(&["org", "top-up", &demo.org, "--amount", "1.2345678"]);
    assert!(!ok && err.contains("6 decimal places"), "{err}");

    // Let the bucket fill up again before counting it down.
    std::thread::sleep(Duration::from_millis(2_200));

    // The demo plan is small on purpose: a quick loop sees the count go down, then a 429.
    let mut seen_remaining = Vec::new();
    let mut limited = None;
    for _ in 0..15 {
        let (status, ratelimit, retry_after, body) =
            get_with_headers(&format!("{}/v1/ticker", demo.ingress), &demo.key);
        let ratelimit = ratelimit.expect("RateLimit on every demo answer");
        assert!(ratelimit.contains("\"key\";r="), "{ratelimit}");
        seen_remaining.push(ratelimit);
        if status == 429 {
            assert_eq!(body["code"], "rate_limited");
            limited = retry_after;
            break;
        }
    }
    let retry_after: u64 = limited
        .expect("a 429 within 15 quick requests")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert!(
        seen_remaining.len() >= 9,
        "the burst of 10 passed first: {seen_remaining:?}"
    );

    // The CLI against the running admin API.
    let (ok, out, err) = demo.cli(&["org", "create", "--name", "CLI Desk", "--plan", "demo"]);
    assert!(ok, "{err}");
    let org: Value = serde_json::from_str(&out).expect("json");
    let org_id = org["id"].as_str().expect("id");
    let (ok, out, err) = demo.cli(&[
        "key",
        "create",
        "--org",
        org_id,
        "--name",
        "cli key",
        "--product",
        "market-data",
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("not shown again"));
    let key: Value = serde_json::from_str(&out).expect("json");
    let full = key["key"].as_str().expect("key");
    let key_id = key["id"].as_str().expect("id");
    assert_eq!(
        get(&format!("{}/v1/ticker", demo.ingress), Some(full)).0,
        200
    );

    // Limits from the CLI: pay-as-you-go, committed use, key quotas, usage.
    let (ok, out, err) = demo.cli(&["org", "pay-as-you-go", org_id, "on"]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["pay_as_you_go"],
        true
    );
    let (ok, out, err) = demo.cli(&[
        "org",
        "commit",
        org_id,
        "--quota",
        "request=500",
        "--ends-at",
        "2099-01-01T00:00:00Z",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["quotas"]["request"],
        500
    );
    let (ok, out, _) = demo.cli(&["org", "commitments", org_id]);
    assert!(ok && out.contains("\"request\": 500"), "{out}");
    let (ok, out, err) = demo.cli(&["key", "quotas", key_id, "--quota", "request=3"]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["quotas"]["request"],
        3
    );
    let (ok, out, err) = demo.cli(&["org", "usage", org_id]);
    assert!(ok, "{err}");
    let usage: Value = serde_json::from_str(&out).expect("json");
    let request = usage["quotas"]
        .as_array()
        .expect("quotas")
        .iter()
        .find(|q| q["meter"] == "request")
        .cloned()
        .expect("request");
    assert_eq!(request["used"], 1, "the one ticker call above");
    assert_eq!(request["limit"], 10_500, "plan 10,000 plus 500 committed");
    let (ok, _, err) = demo.cli(&["key", "quotas", key_id, "--quota", "requests"]);
    assert!(!ok && err.contains("meter=units"), "{err}");

    let (ok, out, _) = demo.cli(&["key", "list", "--org", org_id]);
    assert!(ok);
    assert!(
        out.contains(key_id) && !out.contains(&full[20..]),
        "listing never shows secrets"
    );

    let (ok, _, err) = demo.cli(&["key", "revoke", key_id]);
    assert!(ok, "{err}");
    let (status, problem) = get(&format!("{}/v1/ticker", demo.ingress), Some(full));
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("api_key_revoked"))
    );

    let (ok, _, err) = demo.cli(&["org", "suspend", &demo.org]);
    assert!(ok, "{err}");
    let (status, problem) = get(&format!("{}/v1/ticker", demo.ingress), Some(&demo.key));
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("org_suspended"))
    );

    let (ok, _, err) = demo.cli(&["org", "get", "org_aaaaaaaaaaaaaaaa"]);
    assert!(!ok);
    assert!(err.contains("org_not_found"), "{err}");
    assert!(demo.store.exists());
    demo.terminate();
}

#[test]
fn cli_without_a_token_says_how_to_give_one() {
    let output = Command::new(BIN)
        .args(["org", "list"])
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("TOLLGATE_ADMIN_TOKEN"));
}

#[test]
fn config_check_accepts_the_example_and_names_the_bad_setting() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tollgate.example.toml");
    let output = Command::new(BIN)
        .args(["config", "check", "--config", example])
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("ok: "));

    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[upstream]\nurl = \"ftp://x\"\n").expect("write");
    let output = Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("upstream.url"));

    // The shipped venue contracts added to the example: they compile once
    // the credentials they name are in the environment, and a missing one
    // is named.
    let venues = concat!(env!("CARGO_MANIFEST_DIR"), "/../../venues.example.toml");
    let full = dir.path().join("full.toml");
    std::fs::write(
        &full,
        std::fs::read_to_string(example).expect("example")
            + &std::fs::read_to_string(venues).expect("venues"),
    )
    .expect("write");
    let output = Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(&full)
        .env_remove("BINANCE_API_KEY")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("BINANCE_API_KEY"));
    let mut check = Command::new(BIN);
    check.args(["config", "check", "--config"]).arg(&full);
    for (name, value) in [
        ("BINANCE_API_KEY", "k"),
        ("BINANCE_API_SECRET", "s"),
        ("COINBASE_API_KEY", "k"),
        ("COINBASE_API_SECRET", "c2VjcmV0"),
        ("COINBASE_API_PASSPHRASE", "p"),
        ("DERIBIT_CLIENT_ID", "k"),
        ("DERIBIT_CLIENT_SECRET", "s"),
        ("KRAKEN_API_KEY", "k"),
        ("KRAKEN_API_SECRET", "c2VjcmV0"),
        ("KRAKEN_FUTURES_API_KEY", "k"),
        ("KRAKEN_FUTURES_API_SECRET", "c2VjcmV0"),
    ] {
        check.env(name, value);
    }
    let output = check.output().expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("5 venues"));

    let output = Command::new(BIN)
        .args(["serve", "--config", "/nonexistent/tollgate.toml"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("does not exist") && stderr.contains("--demo"),
        "{stderr}"
    );
}

#[test]
fn sim_serves_every_venue_and_takes_fault_flags() {
    let mut child = Command::new(BIN)
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--skew-ms",
            "binance:20000",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tollgate sim");
    let lines = banner(&mut child);
    let base = |venue: &str| {
        lines
            .iter()
            .find_map(|l| l.trim().strip_prefix(venue))
            .unwrap_or_else(|| panic!("no {venue} line in {lines:#?}"))
            .trim()
            .to_owned()
    };
    // The Binance clock is 20 s ahead, as the flag asked.
    let (status, time) = get(&format!("{}/api/v3/time", base("binance")), None);
    assert_eq!(status, 200);
    let server = time["serverTime"].as_i64().expect("serverTime");
    let local = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (server - local - 20_000).abs() < 2_000,
        "skew {}",
        server - local
    );
    let (status, time) = get(&format!("{}/0/public/Time", base("kraken ")), None);
    assert_eq!(status, 200, "{time}");
    assert!(time["result"]["unixtime"].is_i64());
    let (status, stats) = get(
        &format!(
            "{}/_sim/stats",
            base("binance").trim_end_matches("/binance")
        ),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(stats["binance"]["requests"], 1);
    let _ = child.kill();
    let _ = child.wait();
}
