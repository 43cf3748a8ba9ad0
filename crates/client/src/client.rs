//! A small async client: signs every attempt afresh, keeps one
//! `Idempotency-Key` across retries, and retries 429 and 409 with backoff.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use crate::backoff::{RetryPolicy, random_fraction};
use crate::error::{Error, Result};
use crate::idempotency::is_valid_key;
use crate::ratelimit::{RETRY_AFTER_HEADER, RateLimitInfo, parse_retry_after};
use crate::signing::{AuthScheme, Credentials, signed_headers, unix_millis};

/// `Idempotency-Key`, sent with the same value on every attempt of a request.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// `Idempotent-Replayed: true` marks an answer the gateway replayed from its
/// idempotency store.
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";

/// A request body and its `Content-Type`.
#[derive(Debug, Clone)]
pub struct Body {
    content_type: Option<HeaderValue>,
    bytes: Bytes,
}

impl Body {
    /// A JSON body (`Content-Type: application/json`), already serialised.
    pub fn json(bytes: impl Into<Bytes>) -> Self {
        Body {
            content_type: Some(HeaderValue::from_static("application/json")),
            bytes: bytes.into(),
        }
    }

    /// A body with the given `Content-Type`.
    pub fn typed(content_type: HeaderValue, bytes: impl Into<Bytes>) -> Self {
        Body {
            content_type: Some(content_type),
            bytes: bytes.into(),
        }
    }

    /// A body sent without a `Content-Type`.
    pub fn raw(bytes: impl Into<Bytes>) -> Self {
        Body {
            content_type: None,
            bytes: bytes.into(),
        }
    }

    /// The bytes, exactly as sent and signed.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

/// A complete answer: status, headers and the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    attempts: u32,
}

impl Response {
    /// The status of the last attempt.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers of the last attempt.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body of the last attempt.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// How many attempts were made: 1 when the first answer was final.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The `RateLimit-Policy`, `RateLimit` and `Retry-After` fields of the
    /// last attempt, parsed; an error when one of them is malformed.
    pub fn rate_limit(&self) -> Result<RateLimitInfo> {
        RateLimitInfo::from_headers(&self.headers)
    }

    /// Whether the gateway replayed this answer from its idempotency store
    /// (`Idempotent-Replayed: true`).
    pub fn is_idempotent_replay(&self) -> bool {
        is_replay(&self.headers)
    }
}

fn is_replay(headers: &HeaderMap) -> bool {
    headers
        .get(IDEMPOTENT_REPLAYED_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Whether an answer is worth retrying: 429 (throttled) or 409 (the same
/// idempotency key still in flight), unless the answer is itself a replay
/// of a stored 409 or 429, which a retry would only replay again.
pub fn is_retryable(status: StatusCode, headers: &HeaderMap) -> bool {
    matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::CONFLICT) && !is_replay(headers)
}

/// The timestamp, in milliseconds since the Unix epoch, for the next signed
/// request of a client whose last request carried `previous` (`None` for its
/// first). Pure: `now_unix_millis` is an argument. Never waits.
///
/// The gateway accepts a signature once, so two identical requests (two GETs
/// of the same ticker, a retry, an idempotent order re-sent to get its
/// replay) must carry different timestamps. The result is `now_unix_millis`
/// when the clock has moved past `previous`, and `previous + 1` otherwise
/// (same millisecond, or a clock stepped back): strictly increasing, and
/// ahead of the clock only by as much as the client sends more than one
/// request per millisecond, far inside the gateway's window.
pub fn next_timestamp(previous: Option<u64>, now_unix_millis: u64) -> u64 {
    match previous {
        Some(prev) if now_unix_millis <= prev => prev.saturating_add(1),
        _ => now_unix_millis,
    }
}

/// The `Idempotency-Key` header value for `key`: the bare key, or the
/// structured-field string form when the key itself starts with `"` (which
/// the gateway would otherwise read as a quoted string).
fn idempotency_header(key: &str) -> Result<HeaderValue> {
    if !is_valid_key(key) {
        return Err(Error::InvalidIdempotencyKey);
    }
    let text = if key.starts_with('"') {
        let mut quoted = String::with_capacity(key.len() + 8);
        quoted.push('"');
        for c in key.chars() {
            if c == '"' || c == '\\' {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('"');
        quoted
    } else {
        key.to_owned()
    };
    HeaderValue::from_str(&text).map_err(|_| Error::InvalidIdempotencyKey)
}

/// Options for a [`Client`]; start with [`Client::builder`].
#[derive(Debug)]
pub struct ClientBuilder {
    base_url: String,
    credentials: Credentials,
    scheme: Option<AuthScheme>,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    http: Option<reqwest::Client>,
}

impl ClientBuilder {
    /// How requests authenticate. The default is [`AuthScheme::Tollgate`]
    /// when the credentials hold a signing secret, [`AuthScheme::None`]
    /// otherwise.
    pub fn scheme(mut self, scheme: AuthScheme) -> Self {
        self.scheme = Some(scheme);
        self
    }

    /// Retries after the first attempt (default 5; 0 disables retrying).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.retry.max_retries = retries;
        self
    }

    /// The first retry's wait without `Retry-After`, doubled each retry (default 250 ms).
    pub fn base_backoff(mut self, backoff: Duration) -> Self {
        self.retry.base_backoff = backoff;
        self
    }

    /// The longest wait (default 30 s). A `Retry-After` beyond it is not
    /// waited for: the answer is returned.
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.retry.max_backoff = backoff;
        self
    }

    /// The largest random extra as a fraction of each wait (default 0.2).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.retry.jitter = fraction;
        self
    }

    /// All retry settings at once.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The timeout of each attempt (default 30 s). Ignored with
    /// [`http_client`](Self::http_client).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Uses a prepared `reqwest` client (proxies, TLS roots, timeouts).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The client. Fails on a base URL that is not `http`/`https` or that
    /// has a query or fragment, on a signing scheme without a signing
    /// secret, and on the Coinbase scheme without a passphrase.
    pub fn build(self) -> Result<Client> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: self.base_url.clone(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(self.base_url.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if base.cannot_be_a_base() || base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("a base URL has no query or fragment"));
        }
        let scheme = self
            .scheme
            .unwrap_or(if self.credentials.has_signing_secret() {
                AuthScheme::Tollgate
            } else {
                AuthScheme::None
            });
        if scheme != AuthScheme::None && !self.credentials.has_signing_secret() {
            return Err(Error::MissingSigningSecret);
        }
        if scheme == AuthScheme::Coinbase && !self.credentials.has_passphrase() {
            return Err(Error::MissingPassphrase);
        }
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .user_agent(concat!("tollgate-client/", env!("CARGO_PKG_VERSION")))
                .timeout(self.timeout.unwrap_or(Duration::from_secs(30)))
                .build()?,
        };
        Ok(Client {
            base: base.as_str().trim_end_matches('/').to_owned(),
            credentials: self.credentials,
            scheme,
            retry: self.retry,
            http,
            last_timestamp: Arc::new(AtomicU64::new(NO_TIMESTAMP)),
        })
    }
}

/// `last_timestamp` before the first signed request.
const NO_TIMESTAMP: u64 = 0;

/// An async tollgate client.
///
/// Each call to [`send`](Self::send) signs every attempt with a fresh
/// millisecond timestamp (`<seconds>.<3 digits>`), strictly increasing
/// across all the requests of this client, concurrent ones included (see
/// [`next_timestamp`]), so two identical requests never share a signature
/// and the gateway never refuses one as `replayed_request`. Clones share the
/// sequence; separate `Client`s signing with the same key do not, so use
/// one client per key (cloning it is cheap). It sends the same
/// `Idempotency-Key` on every attempt, and retries 429 and 409 answers after
/// `max(Retry-After, exponential backoff)` plus jitter (see
/// [`RetryPolicy::delay`]). Connection failures are returned at once, not
/// retried.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    credentials: Credentials,
    scheme: AuthScheme,
    retry: RetryPolicy,
    http: reqwest::Client,
    /// The last timestamp signed, in Unix milliseconds ([`NO_TIMESTAMP`]
    /// before the first); shared by clones.
    last_timestamp: Arc<AtomicU64>,
}

impl Client {
    /// A client with the default options (see [`ClientBuilder`]).
    pub fn new(base_url: &str, credentials: Credentials) -> Result<Self> {
        Self::builder(base_url, credentials).build()
    }

    /// Options for a client of the gateway at `base_url` (for example
    /// `http://127.0.0.1:8080`; a path prefix is kept).
    pub fn builder(base_url: &str, credentials: Credentials) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.to_owned(),
            credentials,
            scheme: None,
            retry: RetryPolicy::default(),
            timeout: None,
            http: None,
        }
    }

    /// The scheme requests are authenticated with.
    pub fn scheme(&self) -> AuthScheme {
        self.scheme
    }

    /// The retry settings.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The timestamp for the next signed request, in Unix milliseconds:
    /// [`next_timestamp`] applied atomically to the last one this client
    /// (or a clone) used.
    fn take_timestamp(&self) -> u64 {
        let now = unix_millis(SystemTime::now());
        let step = |last: u64| next_timestamp((last != NO_TIMESTAMP).then_some(last), now);
        match self
            .last_timestamp
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| Some(step(last)))
        {
            Ok(last) | Err(last) => step(last),
        }
    }

    /// The full URL for `path_and_query` (which must start with `/`).
    fn url(&self, path_and_query: &str) -> Result<Url> {
        let text = format!("{}{}", self.base, path_and_query);
        let invalid = |reason: String| Error::InvalidUrl {
            url: text.clone(),
            reason,
        };
        if !path_and_query.starts_with('/') {
            return Err(invalid("the path must start with '/'".to_owned()));
        }
        let mut url = Url::parse(&text).map_err(|e| invalid(e.to_string()))?;
        url.set_fragment(None);
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }

    /// Sends one request and returns the final answer.
    ///
    /// - `path_and_query`: appended to the base URL, e.g. `/v1/orders?limit=5`.
    ///   The signature covers the path and query as the URL parser normalised
    ///   them, which is what goes on the wire.
    /// - `body`: `None` for no body.
    /// - `idempotency_key`: sent as `Idempotency-Key` on every attempt; must
    ///   be 1 to 255 printable ASCII characters (see
    ///   [`idempotency_key`](crate::idempotency_key) for a deterministic one).
    ///
    /// 429 and 409 answers are retried as [`RetryPolicy::delay`] decides;
    /// when it declines, the last answer is returned as `Ok`. Every other
    /// status is returned as is.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Body>,
        idempotency_key: Option<&str>,
    ) -> Result<Response> {
        let url = self.url(path_and_query)?;
        let idempotency = idempotency_key.map(idempotency_header).transpose()?;
        let body_bytes = body.as_ref().map(|b| b.bytes.clone()).unwrap_or_default();
        let mut retry = 0u32;
        loop {
            let timestamp = if self.scheme == AuthScheme::None {
                0
            } else {
                self.take_timestamp()
            };
            let auth = signed_headers(
                self.scheme,
                &self.credentials,
                method.as_str(),
                url.path(),
                url.query().unwrap_or(""),
                &body_bytes,
                timestamp,
            )?;

            let mut request = self.http.request(method.clone(), url.clone());
            for (name, value) in auth {
                request = request.header(name, value);
            }
            if let Some(key) = &idempotency {
                request = request.header(IDEMPOTENCY_KEY_HEADER, key.clone());
            }
            if let Some(body) = &body {
                if let Some(content_type) = &body.content_type {
                    request = request.header(CONTENT_TYPE, content_type.clone());
                }
                request = request.body(body.bytes.clone());
            }
            let answer = request.send().await?;
            let status = answer.status();
            let headers = answer.headers().clone();
            let body = answer.bytes().await?;
            let response = Response {
                status,
                headers,
                body,
                attempts: retry + 1,
            };
            if !is_retryable(status, &response.headers) {
                return Ok(response);
            }
            let retry_after = response
                .headers
                .get(RETRY_AFTER_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v).ok())
                .map(|r| r.delay_from(SystemTime::now()));
            match self.retry.delay(retry, retry_after, random_fraction()) {
                Some(wait) => {
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
                None => return Ok(response),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_never_repeat() {
        // First request: the clock, in milliseconds.
        assert_eq!(next_timestamp(None, 1_700_000_000_400), 1_700_000_000_400);
        // The clock has moved on: no lead, no wait.
        assert_eq!(
            next_timestamp(Some(1_700_000_000_400), 1_700_000_000_401),
            1_700_000_000_401
        );
        assert_eq!(
            next_timestamp(Some(1_700_000_000_400), 1_700_000_002_000),
            1_700_000_002_000
        );
        // Same millisecond as the last request: one millisecond later.
        assert_eq!(
            next_timestamp(Some(1_700_000_000_400), 1_700_000_000_400),
            1_700_000_000_401
        );
        // Clock stepped back: still one millisecond after the last.
        assert_eq!(
            next_timestamp(Some(1_700_000_000_400), 1_699_999_999_000),
            1_700_000_000_401
        );
        // A burst within one millisecond leads the clock by one per request.
        let mut last = None;
        for i in 0..5 {
            let t = next_timestamp(last, 1_700_000_000_999);
            assert_eq!(t, 1_700_000_000_999 + i);
            last = Some(t);
        }
        assert_eq!(next_timestamp(Some(u64::MAX), 0), u64::MAX);
    }

    fn signing_client() -> Client {
        let credentials = Credentials::new("tg_abcdefghijklmnop_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
            .unwrap()
            .with_signing_secret("c2lnbmluZy1zZWNyZXQtZm9yLWRvY3MtdmVjdG9ycyE=")
            .unwrap();
        Client::new("http://127.0.0.1:1", credentials).unwrap()
    }

    #[test]
    fn a_client_takes_strictly_increasing_timestamps_even_concurrently() {
        let client = signing_client();
        let before = unix_millis(SystemTime::now());
        let first = client.take_timestamp();
        assert!(first >= before, "{first} < {before}");
        // Clones share the sequence; threads race on it.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = client.clone();
                std::thread::spawn(move || (0..500).map(|_| c.take_timestamp()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| {
                let taken = t.join().unwrap();
                assert!(taken.windows(2).all(|w| w[0] < w[1]), "per thread");
                taken
            })
            .collect();
        all.push(first);
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "a timestamp was handed out twice");
        assert_eq!(all[0], first);
        // A separate client starts from the clock again.
        let other = signing_client().take_timestamp();
        assert!(other <= unix_millis(SystemTime::now()));
    }

    #[test]
    fn retryable_statuses() {
        let mut h = HeaderMap::new();
        assert!(is_retryable(StatusCode::TOO_MANY_REQUESTS, &h));
        assert!(is_retryable(StatusCode::CONFLICT, &h));
        for s in [200, 201, 400, 401, 402, 403, 422, 500, 503] {
            assert!(!is_retryable(StatusCode::from_u16(s).unwrap(), &h), "{s}");
        }
        h.insert(IDEMPOTENT_REPLAYED_HEADER, HeaderValue::from_static("true"));
        assert!(!is_retryable(StatusCode::CONFLICT, &h));
    }

    #[test]
    fn idempotency_header_forms() {
        assert_eq!(idempotency_header("abc-1").unwrap(), "abc-1");
        assert_eq!(idempotency_header(r#""x\y"#).unwrap(), r#""\"x\\y""#);
        assert!(idempotency_header("").is_err());
        assert!(idempotency_header("é").is_err());
        assert!(idempotency_header(&"k".repeat(256)).is_err());
    }

    fn client(base: &str) -> Result<Client> {
        let credentials = Credentials::new("tg_abcdefghijklmnop_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")?;
        Client::new(base, credentials)
    }

    #[test]
    fn urls() {
        let c = client("http://127.0.0.1:8080").unwrap();
        assert_eq!(c.scheme(), AuthScheme::None);
        assert_eq!(
            c.url("/v1/orders?b=2&a=1").unwrap().as_str(),
            "http://127.0.0.1:8080/v1/orders?b=2&a=1"
        );
        assert_eq!(c.url("/x?").unwrap().query(), None);
        assert!(c.url("v1/orders").is_err());
        let prefixed = client("https://api.example/gw/").unwrap();
        assert_eq!(prefixed.url("/v1/x").unwrap().path(), "/gw/v1/x");
        for bad in ["ftp://h/", "not a url", "http://h/?q=1", "http://h/#f"] {
            assert!(
                matches!(client(bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn signing_schemes_need_their_secrets() {
        let credentials =
            Credentials::new("tg_abcdefghijklmnop_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb").unwrap();
        assert!(matches!(
            Client::builder("http://h", credentials.clone())
                .scheme(AuthScheme::Coinbase)
                .build(),
            Err(Error::MissingSigningSecret)
        ));
        let signing = credentials
            .with_signing_secret("c2lnbmluZy1zZWNyZXQtZm9yLWRvY3MtdmVjdG9ycyE=")
            .unwrap();
        let default = Client::new("http://h", signing.clone()).unwrap();
        assert_eq!(default.scheme(), AuthScheme::Tollgate);
        assert!(matches!(
            Client::builder("http://h", signing.clone())
                .scheme(AuthScheme::Coinbase)
                .build(),
            Err(Error::MissingPassphrase)
        ));
        let with_passphrase = signing.with_passphrase("p").unwrap();
        assert!(
            Client::builder("http://h", with_passphrase)
                .scheme(AuthScheme::Coinbase)
                .build()
                .is_ok()
        );
    }
}
