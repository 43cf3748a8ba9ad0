//! Test harness: a recording upstream and a real gateway started in-process
//! on port 0 with a real SQLite file and a manual clock.

#![allow(dead_code)]

pub mod stripe;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tollgate_gateway::{Clock, Config, Listeners, ManualClock, SystemClock};

/// What the upstream saw of one completed request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// An upstream that records every request whose body it read completely.
#[derive(Clone, Default)]
pub struct Upstream {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub fn count(&self) -> usize {
        self.seen.lock().len()
    }

    pub fn last(&self) -> Option<Seen> {
        self.seen.lock().last().cloned()
    }
}

async fn record(State(upstream): State<Upstream>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let path = parts.uri.path().to_owned();
    let execution = {
        let seen = upstream.seen.lock();
        seen.len() + 1
    };
    upstream.seen.lock().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    if path.contains("slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    // `/chunked?bytes=N`: N bytes in four chunks, with no Content-Length.
    if path.contains("chunked") {
        let n: usize = parts
            .uri
            .query()
            .and_then(|q| q.strip_prefix("bytes="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(1000);
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..4)
            .map(|i| {
                Ok(bytes::Bytes::from(vec![
                    b'x';
                    n / 4 + usize::from(i < n % 4)
                ]))
            })
            .collect();
        let body = axum::body::Body::from_stream(futures_util::stream::iter(chunks));
        let mut response = Response::new(body);
        response
            .headers_mut()
            .insert("tollgate-usage", "order_sent=1".parse().expect("value"));
        return response;
    }
    // Test hooks in a JSON body: {"delay_ms": n}, {"fail": true} -> 500,
    // {"reject": true} -> 400.
    let hooks: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(delay) = hooks["delay_ms"].as_u64() {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if hooks["fail"] == true {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": "boom", "execution": execution})),
        )
            .into_response();
    }
    if hooks["reject"] == true {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "insufficient margin", "execution": execution})),
        )
            .into_response();
    }
    let mut response =
        axum::Json(json!({ "ok": true, "path": path, "execution": execution })).into_response();
    let headers = response.headers_mut();
    headers.insert("tollgate-usage", "order_sent=1".parse().expect("value"));
    headers.insert("x-upstream", "yes".parse().expect("value"));
    headers.insert("keep-alive", "timeout=5".parse().expect("value"));
    response
}

/// Starts the recording upstream on a free loopback port.
pub async fn start_upstream() -> (Upstream, SocketAddr) {
    let upstream = Upstream::default();
    let app = axum::Router::new()
        .fallback(record)
        .with_state(upstream.clone());
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (upstream, addr)
}

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub fn test_config(upstream: SocketAddr, sqlite: &std::path::Path) -> Config {
    let text = format!(
        r#"
        [ingress]
        max_header_bytes = 4096
        max_body_bytes = 1024
        header_read_timeout_ms = 500
        [admin]
        token = "{ADMIN_TOKEN}"
        [upstream]
        url = "http://{upstream}"
        connect_timeout_ms = 500
        request_timeout_ms = 1000
        [store]
        sqlite_path = "{sqlite}"
        [keys]
        rotation_overlap_seconds = 60
        [products.market-data]
        [products.trading]
        [products.research]
        [plans.basic]
        products = ["market-data"]
        [plans.full]
        products = ["*"]
        [[routes]]
        path = "/v1/ticker"
        methods = ["GET"]
        product = "market-data"
        class = "read"
        [[routes]]
        path = "/v1/orders"
        methods = ["POST"]
        product = "trading"
        class = "write"
        [[routes]]
        path = "/v1/orders/{{id}}"
        methods = ["DELETE"]
        product = "trading"
        class = "write"
        [[routes]]
        path = "/v1/research/{{*rest}}"
        product = "research"
        class = "read"
        [[routes]]
        path = "/slow"
        product = "market-data"
        class = "read"
        [[routes]]
        path = "/v1/upload"
        methods = ["POST"]
        product = "market-data"
        class = "write"
        idempotency = "optional"
        [[routes]]
        path = "/v1/slow-orders"
        methods = ["POST"]
        product = "trading"
        class = "write"
        "#,
        sqlite = sqlite.display()
    );
    Config::from_toml_str_without_env(&text).expect("test config")
}

/// A running gateway with its upstream.
pub struct TestGateway {
    pub ingress: SocketAddr,
    /// The TLS ingress, when the config has `[ingress.tls]`.
    pub tls: Option<SocketAddr>,
    /// The venue router, when the config names venues.
    #[allow(dead_code)]
    pub egress: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub upstream: Upstream,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub dir: Arc<tempfile::TempDir>,
}

impl TestGateway {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let (upstream, addr) = start_upstream().await;
        let mut config = test_config(addr, &dir.path().join("tollgate.db"));
        tweak(&mut config);
        Self::start_on(config, upstream, dir, ManualClock::new(SystemClock.now())).await
    }

    pub async fn start_on(
        config: Config,
        upstream: Upstream,
        dir: Arc<tempfile::TempDir>,
        clock: ManualClock,
    ) -> Self {
        let ingress = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind ingress");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let tls = match &config.ingress.tls {
            Some(_) => Some(TcpListener::bind("127.0.0.1:0").await.expect("bind tls")),
            None => None,
        };
        let egress = if config.venues.is_empty() {
            None
        } else {
            Some(TcpListener::bind("127.0.0.1:0").await.expect("bind egress"))
        };
        let listeners = Listeners {
            ingress,
            admin,
            tls,
            egress,
        };
        let egress = listeners.egress_addr().map(|a| a.expect("addr"));
        let tls = listeners.tls_addr().map(|a| a.expect("addr"));
        let ingress = listeners.ingress_addr().expect("addr");
        let admin = listeners.admin_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let task = tokio::spawn(tollgate_gateway::run_with(
            config,
            listeners,
            run_clock,
            async move {
                let _ = stopped.await;
            },
        ));
        let http = reqwest::Client::builder().build().expect("client");
        let gateway = TestGateway {
            tls,
            egress,
            ingress,
            admin,
            upstream,
            clock,
            http,
            stop: Some(stop),
            task: Some(task),
            dir,
        };
        gateway.wait_ready().await;
        gateway
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            if let Ok(r) = self
                .http
                .get(format!("http://{}/readyz", self.admin))
                .send()
                .await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("gateway did not become ready");
    }

    /// Stops the gateway and waits for it to drain.
    /// Stops this gateway and starts a new one on the same store and clock,
    /// with the test configuration changed by `tweak`, and a new upstream.
    pub async fn restart(self, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = self.dir.clone();
        let clock = self.clock.clone();
        let sqlite = dir.path().join("tollgate.db");
        self.stop().await;
        let (upstream, addr) = start_upstream().await;
        let mut config = test_config(addr, &sqlite);
        tweak(&mut config);
        TestGateway::start_on(config, upstream, dir, clock).await
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("run returned an error");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ingress)
    }

    pub async fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("http://{}/admin/v1{path}", self.admin))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin call");
        let status = response.status().as_u16();
        let value = response.json().await.unwrap_or(Value::Null);
        (status, value)
    }

    pub async fn create_org(&self, plan: Option<&str>) -> String {
        let (status, org) = self
            .admin_call(
                reqwest::Method::POST,
                "/orgs",
                Some(json!({ "name": "Test Desk", "plan": plan })),
            )
            .await;
        assert_eq!(status, 201, "{org}");
        org["id"].as_str().expect("id").to_owned()
    }

    /// Returns (key id, full key).
    pub async fn create_key(&self, org: &str, body: Value) -> (String, String) {
        let (status, key) = self
            .admin_call(
                reqwest::Method::POST,
                &format!("/orgs/{org}/keys"),
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "{key}");
        (
            key["id"].as_str().expect("id").to_owned(),
            key["key"].as_str().expect("key").to_owned(),
        )
    }

    /// An org on plan `full` with a key for all products.
    pub async fn org_and_key(&self) -> (String, String, String) {
        let org = self.create_org(Some("full")).await;
        let (id, key) = self.create_key(&org, json!({ "name": "k" })).await;
        (org, id, key)
    }

    /// POSTs a JSON body as `key` with an `Idempotency-Key` (a write route).
    pub async fn post_write(
        &self,
        path: &str,
        key: &str,
        idempotency_key: &str,
        body: Value,
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(key)
            .header("Idempotency-Key", idempotency_key)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    /// An organization's ledger entries (up to 1,000), oldest first.
    pub async fn ledger(&self, org: &str) -> Vec<Value> {
        self.admin_list(&format!("/orgs/{org}/ledger?limit=1000"))
            .await
    }

    /// An organization's notifications, newest first.
    pub async fn notifications(&self, org: &str) -> Vec<Value> {
        self.admin_list(&format!("/orgs/{org}/notifications")).await
    }

    async fn admin_list(&self, path: &str) -> Vec<Value> {
        let (status, body) = self.admin_call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        body["data"].as_array().expect("data").clone()
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.expect("request")
    }
}

/// The entries or notifications of one kind.
pub fn of_kind<'a>(items: &'a [Value], kind: &str) -> Vec<&'a Value> {
    items.iter().filter(|item| item["kind"] == kind).collect()
}

/// The org's usage report for the current cycle.
pub async fn usage(gw: &TestGateway, org: &str) -> Value {
    let (status, body) = gw
        .admin_call(reqwest::Method::GET, &format!("/orgs/{org}/usage"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// One meter's count in a usage report.
pub fn used(usage: &Value, meter: &str) -> u64 {
    usage["quotas"]
        .as_array()
        .expect("quotas")
        .iter()
        .find(|q| q["meter"] == meter)
        .expect("meter")["used"]
        .as_u64()
        .expect("used")
}

/// Asserts a problem+json answer and returns its body.
pub async fn expect_problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status for {code}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id on problems")
        .to_owned();
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], format!("urn:tollgate:problem:{code}"));
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(body["request_id"], request_id.as_str());
    body
}

/// Sends raw bytes and reads until the server closes or 3 s pass.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
