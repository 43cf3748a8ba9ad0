//! The client against a scripted HTTP/1.1 server on loopback: what goes on
//! the wire on each attempt, and when it retries.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tollgate_client::{AuthScheme, Body, Client, Credentials, Method, StatusCode};
use tollgate_core::signing::{self, Scheme, SignedParts};

const KEY: &str = "tg_abcdefghijklmnop_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const SECRET: &str = "c2lnbmluZy1zZWNyZXQtZm9yLWRvY3MtdmVjdG9ycyE=";
const ORDER: &str = r#"{"symbol":"BTC-USD","side":"buy","qty":"0.01","price":"64000"}"#;

/// One request as the server received it.
#[derive(Debug)]
struct Received {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn path_and_query(&self) -> (&str, &str) {
        self.target.split_once('?').unwrap_or((&self.target, ""))
    }

    /// Whether the request carries a valid signature in `scheme`, checked
    /// with core the way the gateway checks it.
    fn signature_verifies(&self, scheme: Scheme) -> bool {
        let (ts_header, sig_header) = match scheme {
            Scheme::Tollgate => ("tollgate-timestamp", "tollgate-signature"),
            Scheme::Coinbase => ("cb-access-timestamp", "cb-access-sign"),
        };
        let (path, query) = self.path_and_query();
        let parts = SignedParts {
            timestamp: self.header(ts_header).expect("timestamp header"),
            method: &self.method,
            path,
            query,
            body: &self.body,
        };
        let secret = signing::decode_secret(SECRET).unwrap();
        let signature = signing::decode_signature(self.header(sig_header).expect("signature"))
            .expect("base64 of 32 bytes");
        signing::verify(
            &secret,
            &signing::message(scheme, &parts, "abcdefghijklmnop"),
            &signature,
        )
    }
}

/// Answers one connection per scripted response, in order, then returns
/// what it received.
async fn scripted_server(responses: Vec<String>) -> (SocketAddr, JoinHandle<Vec<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let mut received = Vec::new();
        for response in responses {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let header_end = loop {
                let mut chunk = [0u8; 4096];
                let n = socket.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed mid-request");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i;
                }
            };
            let head = String::from_utf8(buf[..header_end].to_vec()).unwrap();
            let mut lines = head.split("\r\n");
            let mut request_line = lines.next().unwrap().split(' ');
            let method = request_line.next().unwrap().to_owned();
            let target = request_line.next().unwrap().to_owned();
            let headers: Vec<(String, String)> = lines
                .map(|l| {
                    let (n, v) = l.split_once(':').unwrap();
                    (n.trim().to_ascii_lowercase(), v.trim().to_owned())
                })
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = buf[header_end + 4..].to_vec();
            while body.len() < length {
                let mut chunk = [0u8; 4096];
                let n = socket.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed mid-body");
                body.extend_from_slice(&chunk[..n]);
            }
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            received.push(Received {
                method,
                target,
                headers,
                body,
            });
        }
        received
    });
    (addr, handle)
}

fn answer(status: &str, extra_headers: &[&str], body: &str) -> String {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in extra_headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    out
}

/// A timestamp the SDK sent, `<seconds>.<3 digits>`, in milliseconds; panics
/// on any other form.
fn millis(text: &str) -> u64 {
    let (seconds, fraction) = text
        .split_once('.')
        .unwrap_or_else(|| panic!("no fraction in {text:?}"));
    assert!(
        !seconds.is_empty()
            && fraction.len() == 3
            && text
                .bytes()
                .filter(|&b| b != b'.')
                .all(|b| b.is_ascii_digit()),
        "not <seconds>.<3 digits>: {text:?}"
    );
    seconds.parse::<u64>().unwrap() * 1000 + fraction.parse::<u64>().unwrap()
}

fn credentials() -> Credentials {
    Credentials::new(KEY)
        .unwrap()
        .with_signing_secret(SECRET)
        .unwrap()
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after_with_a_new_signature_and_the_same_key() {
    let (addr, server) = scripted_server(vec![
        answer(
            "429 Too Many Requests",
            &[
                "Retry-After: 1",
                r#"RateLimit-Policy: "key";q=40;w=2"#,
                r#"RateLimit: "key";r=0;t=1"#,
            ],
            r#"{"code":"rate_limited"}"#,
        ),
        answer(
            "201 Created",
            &[
                r#"RateLimit-Policy: "key";q=40;w=2, "org";q=100;w=1"#,
                r#"RateLimit: "key";r=39;t=1, "org";r=99;t=1"#,
            ],
            r#"{"id":"ord_1"}"#,
        ),
    ])
    .await;
    let client = Client::builder(&format!("http://{addr}"), credentials())
        .base_backoff(Duration::from_millis(10))
        .max_backoff(Duration::from_secs(5))
        .build()
        .unwrap();
    assert_eq!(client.scheme(), AuthScheme::Tollgate);
    let started = Instant::now();
    let response = client
        .send(
            Method::POST,
            "/v1/orders?b=2&a=1",
            Some(Body::json(ORDER)),
            Some("idem-v1-abc"),
        )
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.attempts(), 2);
    assert_eq!(response.text(), r#"{"id":"ord_1"}"#);
    let info = response.rate_limit().unwrap();
    assert_eq!(info.limit("org").map(|l| l.remaining), Some(99));
    assert_eq!(info.policy("key").map(|p| p.quota), Some(40));
    assert_eq!(info.retry_after, None);

    let received = server.await.unwrap();
    assert_eq!(received.len(), 2);
    for r in &received {
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, "/v1/orders?b=2&a=1");
        assert_eq!(r.body, ORDER.as_bytes());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-api-key"), Some(KEY));
        assert_eq!(r.header("idempotency-key"), Some("idem-v1-abc"));
        assert!(r.signature_verifies(Scheme::Tollgate), "{r:?}");
    }
    let ts = |i: usize| millis(received[i].header("tollgate-timestamp").unwrap());
    assert!(
        ts(1) > ts(0),
        "each attempt is signed at a later millisecond"
    );
    assert_ne!(
        received[0].header("tollgate-signature"),
        received[1].header("tollgate-signature")
    );
}

#[tokio::test]
async fn a_409_in_flight_is_retried_in_the_coinbase_scheme() {
    let (addr, server) = scripted_server(vec![
        answer(
            "409 Conflict",
            &["Retry-After: 0"],
            r#"{"code":"idempotency_in_flight"}"#,
        ),
        answer("200 OK", &[], "{}"),
    ])
    .await;
    let client = Client::builder(
        &format!("http://{addr}"),
        credentials().with_passphrase("hunter2").unwrap(),
    )
    .scheme(AuthScheme::Coinbase)
    .base_backoff(Duration::from_millis(10))
    .build()
    .unwrap();
    let response = client
        .send(Method::GET, "/orders?status=open", None, Some("k-1"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.attempts(), 2);
    let received = server.await.unwrap();
    for r in &received {
        assert_eq!(r.header("cb-access-key"), Some(KEY));
        assert_eq!(r.header("cb-access-passphrase"), Some("hunter2"));
        assert_eq!(r.header("x-api-key"), None);
        assert_eq!(r.header("idempotency-key"), Some("k-1"));
        assert!(r.body.is_empty());
        assert!(r.signature_verifies(Scheme::Coinbase), "{r:?}");
    }
    let ts = |i: usize| millis(received[i].header("cb-access-timestamp").unwrap());
    assert!(ts(1) > ts(0));
}

/// Two identical requests sent back to back (well within one second, and
/// often within one millisecond) must not share a signature, or the gateway
/// refuses the second as `replayed_request`; concurrent ones neither.
#[tokio::test]
async fn identical_requests_in_the_same_second_get_distinct_signatures() {
    for scheme in [AuthScheme::Tollgate, AuthScheme::Coinbase] {
        let (ts_header, sig_header, core_scheme) = match scheme {
            AuthScheme::Coinbase => ("cb-access-timestamp", "cb-access-sign", Scheme::Coinbase),
            _ => ("tollgate-timestamp", "tollgate-signature", Scheme::Tollgate),
        };
        let n = 6;
        let (addr, server) = scripted_server(vec![answer("200 OK", &[], "{}"); n]).await;
        let client = Client::builder(
            &format!("http://{addr}"),
            credentials().with_passphrase("p").unwrap(),
        )
        .scheme(scheme)
        .build()
        .unwrap();
        // Sequential: the same GET twice, the same POST twice.
        for _ in 0..2 {
            let r = client
                .send(Method::GET, "/v1/tickers/BTC-USD", None, None)
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        for _ in 0..2 {
            let r = client
                .send(
                    Method::POST,
                    "/v1/orders",
                    Some(Body::json(ORDER)),
                    Some("same-order"),
                )
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        // Concurrent, from a clone.
        let clone = client.clone();
        let (a, b) = tokio::join!(
            client.send(Method::GET, "/v1/tickers/BTC-USD", None, None),
            clone.send(Method::GET, "/v1/tickers/BTC-USD", None, None),
        );
        assert_eq!(a.unwrap().status(), StatusCode::OK);
        assert_eq!(b.unwrap().status(), StatusCode::OK);

        let received = server.await.unwrap();
        assert_eq!(received.len(), n);
        let mut stamps: Vec<u64> = received
            .iter()
            .map(|r| {
                assert!(r.signature_verifies(core_scheme), "{r:?}");
                millis(r.header(ts_header).unwrap())
            })
            .collect();
        // The server accepts connections in order, so the sequential ones
        // arrive in the order they were signed.
        assert!(stamps[..4].windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
        let mut signatures: Vec<&str> = received
            .iter()
            .map(|r| r.header(sig_header).unwrap())
            .collect();
        stamps.sort_unstable();
        stamps.dedup();
        signatures.sort_unstable();
        signatures.dedup();
        assert_eq!(stamps.len(), n, "{scheme:?}: a timestamp was repeated");
        assert_eq!(signatures.len(), n, "{scheme:?}: a signature was repeated");
    }
}

#[tokio::test]
async fn a_retry_after_longer_than_max_backoff_is_returned_not_waited_for() {
    let (addr, server) = scripted_server(vec![answer(
        "429 Too Many Requests",
        &[
            "Retry-After: 3600",
            r#"RateLimit: "cycle-requests";r=0;t=3600"#,
        ],
        r#"{"code":"quota_exhausted"}"#,
    )])
    .await;
    let client = Client::builder(&format!("http://{addr}"), credentials())
        .max_backoff(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let response = client
        .send(Method::GET, "/v1/orders", None, None)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.attempts(), 1);
    let info = response.rate_limit().unwrap();
    assert_eq!(
        info.retry_after,
        Some(tollgate_client::RetryAfter::Delay(Duration::from_secs(
            3600
        )))
    );
    assert_eq!(
        info.limit("cycle-requests").and_then(|l| l.reset_seconds),
        Some(3600)
    );
    let received = server.await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].header("idempotency-key"), None);
}

#[tokio::test]
async fn retries_stop_at_max_retries_and_replays_are_not_retried() {
    let throttled = || answer("429 Too Many Requests", &["Retry-After: 0"], "");
    let (addr, server) = scripted_server(vec![throttled(), throttled(), throttled()]).await;
    let unsigned = Credentials::new(KEY).unwrap();
    let client = Client::builder(&format!("http://{addr}"), unsigned.clone())
        .max_retries(2)
        .base_backoff(Duration::from_millis(5))
        .build()
        .unwrap();
    assert_eq!(client.scheme(), AuthScheme::None);
    let response = client
        .send(Method::GET, "/v1/quotes", None, None)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.attempts(), 3);
    let received = server.await.unwrap();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|r| r.header("x-api-key") == Some(KEY)
        && r.header("tollgate-signature").is_none()));

    // A stored 409 replayed by the gateway would only be replayed again.
    let (addr, server) = scripted_server(vec![answer(
        "409 Conflict",
        &["Idempotent-Replayed: true"],
        r#"{"error":"upstream conflict"}"#,
    )])
    .await;
    let client = Client::new(&format!("http://{addr}"), unsigned).unwrap();
    let response = client
        .send(
            Method::POST,
            "/v1/orders",
            Some(Body::json("{}")),
            Some("k"),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(response.is_idempotent_replay());
    assert_eq!(response.attempts(), 1);
    assert_eq!(server.await.unwrap().len(), 1);
}
