//! Crash test: concurrent charged requests against the real binary, killed
//! with SIGKILL at random moments, restarted, twenty times. Then, from the
//! ledger: every request the client saw answered 2xx is charged exactly
//! once, nothing is charged twice, and the balance equals the sum of the
//! ledger's entries.

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
const TOKEN: &str = "crash-test-admin-token-000000";
const ROUNDS: u64 = 20;
const CLIENTS: usize = 8;
const PRICE: i64 = 1_000;

struct Server {
    child: Child,
    ingress: String,
    admin: String,
}

fn start(config: &std::path::Path) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tollgate");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut field = |prefix: &str| -> String {
        let line = lines.next().expect("a line").expect("utf-8");
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"))
            .to_owned()
    };
    let ingress = field("ingress listening on ");
    let admin = field("admin listening on ");
    Server {
        child,
        ingress,
        admin,
    }
}

/// Small deterministic generator, so a failure names its seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

async fn admin(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut request = http
        .request(method, format!("{base}/admin/v1{path}"))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("admin call");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.expect("json")
}

#[test]
fn charges_survive_sigkill_exactly_once() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_nanos() as u64;
    eprintln!("crash test seed {seed}");
    let mut random = Lcg(seed);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("dir");

    // An upstream that answers every request.
    let upstream = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = serve_upstream(listener).await;
        });
        addr
    });
    let config = dir.path().join("tollgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [ingress]
            listen = "127.0.0.1:0"
            [admin]
            listen = "127.0.0.1:0"
            token = "{TOKEN}"
            [upstream]
            url = "http://{upstream}"
            [store]
            sqlite_path = "{db}"
            [products.p]
            [plans.payg]
            prices.request = {{ tiers = [{{ micros = {PRICE} }}] }}
            [[routes]]
            path = "/v1/ticker"
            methods = ["GET"]
            product = "p"
            class = "read"
            "#,
            db = dir.path().join("tollgate.db").display()
        ),
    )
    .expect("config");

    // Seed an org on pay-as-you-go with a large balance, and a key.
    let http = reqwest::Client::new();
    let server = start(&config);
    let (org, key) = runtime.block_on(async {
        let org = admin(
            &http,
            &server.admin,
            reqwest::Method::POST,
            "/orgs",
            Some(json!({"name": "crash", "plan": "payg"})),
        )
        .await;
        let org = org["id"].as_str().expect("id").to_owned();
        admin(
            &http,
            &server.admin,
            reqwest::Method::PUT,
            &format!("/orgs/{org}/pay-as-you-go"),
            Some(json!({"enabled": true})),
        )
        .await;
        admin(
            &http,
            &server.admin,
            reqwest::Method::POST,
            &format!("/orgs/{org}/top-ups"),
            Some(json!({"amount_micros": 1_000_000_000_000i64})),
        )
        .await;
        let key = admin(
            &http,
            &server.admin,
            reqwest::Method::POST,
            &format!("/orgs/{org}/keys"),
            Some(json!({"name": "k"})),
        )
        .await;
        (org, key["key"].as_str().expect("key").to_owned())
    });
    let mut server = server;

    let answered: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut sent = 0u64;
    for round in 0..ROUNDS {
        if round > 0 {
            server = start(&config);
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = Vec::new();
        for client in 0..CLIENTS {
            let url = format!("{}/v1/ticker", server.ingress);
            let key = key.clone();
            let answered = Arc::clone(&answered);
            let stop = Arc::clone(&stop);
            clients.push(runtime.spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .expect("client");
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let id = format!("crash-{round}-{client}-{n}");
                    n += 1;
                    match http
                        .get(&url)
                        .bearer_auth(&key)
                        .header("X-Request-Id", &id)
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_success() => {
                            answered.lock().expect("lock").insert(id);
                        }
                        Ok(_) | Err(_) => {}
                    }
                }
                n
            }));
        }
        // Kill at a random moment, mid-traffic.
        std::thread::sleep(Duration::from_millis(50 + random.next(300)));
        let _ = Command::new("kill")
            .args(["-KILL", &server.child.id().to_string()])
            .status();
        let _ = server.child.wait();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for client in clients {
            sent += runtime.block_on(client).expect("join");
        }
    }

    // Restart once more and read the whole ledger.
    let server = start(&config);
    let started = Instant::now();
    let (entries, balance) = runtime.block_on(async {
        let mut entries = Vec::new();
        let mut after = 0i64;
        loop {
            let page = admin(
                &http,
                &server.admin,
                reqwest::Method::GET,
                &format!("/orgs/{org}/ledger?limit=1000&after={after}"),
                None,
            )
            .await;
            let data = page["data"].as_array().expect("data").clone();
            entries.extend(data);
            match page["next_after"].as_i64() {
                Some(next) => after = next,
                None => break,
            }
        }
        let balance = admin(
            &http,
            &server.admin,
            reqwest::Method::GET,
            &format!("/orgs/{org}/balance"),
            None,
        )
        .await;
        (
            entries,
            balance["balance_micros"].as_i64().expect("balance"),
        )
    });
    let mut server = server;
    let _ = server.child.kill();
    let _ = server.child.wait();

    let mut charged: HashMap<String, usize> = HashMap::new();
    for entry in &entries {
        if entry["kind"] == "charge" {
            let id = entry["detail"]["request_id"]
                .as_str()
                .expect("request id")
                .to_owned();
            assert_eq!(entry["amount_micros"], -PRICE);
            *charged.entry(id).or_default() += 1;
        }
    }
    let answered = answered.lock().expect("lock");
    eprintln!(
        "{ROUNDS} SIGKILLs, {sent} requests sent, {} answered 2xx, {} charged, ledger read in {:?}",
        answered.len(),
        charged.len(),
        started.elapsed()
    );
    assert!(
        answered.len() > 100,
        "traffic actually flowed (seed {seed})"
    );
    for id in answered.iter() {
        assert_eq!(
            charged.get(id),
            Some(&1),
            "{id} was answered 2xx and must be charged exactly once (seed {seed})"
        );
    }
    for (id, times) in &charged {
        assert_eq!(*times, 1, "{id} charged {times} times (seed {seed})");
    }
    let sum: i64 = entries
        .iter()
        .map(|e| e["amount_micros"].as_i64().expect("amount"))
        .sum();
    assert_eq!(
        balance, sum,
        "balance = sum of ledger entries (seed {seed})"
    );
}

/// A minimal upstream: every request gets a small JSON body.
async fn serve_upstream(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = service_fn(|_request| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"{\"ok\":true}"),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
