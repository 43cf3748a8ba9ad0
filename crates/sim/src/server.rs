//! The HTTP side: one listener, every venue under its path prefix, the
//! `/_sim` admin endpoints, and what is common to every venue request
//! (latency, the backoff gate, storms, counters, unknown outcomes).

use crate::clock::{MICROS_PER_MS, Micros, monotonic_now, system_now};
use crate::config::SimConfig;
use crate::faults::{Effective, Faults, Rng};
use crate::limits::{Gate, Ladder, Offender, ms};
use crate::stats::{Counters, Outcome, Stats};
use crate::{Venue, binance, coinbase, deribit, kraken, kraken_futures};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::{IncomingStream, Listener};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

// === Shared ===

/// Everything the handlers share: the configuration, the faults, the
/// counters and each venue's state behind its own lock (never held across
/// an await).
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    faults: Mutex<FaultState>,
    counters: [Counters; 5],
    offenders: Mutex<HashMap<(Venue, IpAddr), Offender>>,
    pub(crate) coinbase: Mutex<coinbase::State>,
    pub(crate) binance: Mutex<binance::State>,
    pub(crate) deribit: Mutex<deribit::State>,
    pub(crate) kraken: Mutex<kraken::State>,
    pub(crate) kraken_futures: Mutex<kraken_futures::State>,
}

struct FaultState {
    faults: Faults,
    /// Monotonic-clock time each venue's storm ends.
    storm_until: [Micros; 5],
    rngs: [Rng; 5],
}

impl FaultState {
    fn new(faults: Faults, now: Micros) -> Self {
        let storm_until = Venue::ALL.map(|venue| {
            let storm = faults.effective(venue).storm_ms;
            if storm == 0 {
                0
            } else {
                now.saturating_add(ms(storm))
            }
        });
        // One stream per venue, so traffic on one venue does not change
        // which orders a fault hits on another.
        let rngs = Venue::ALL.map(|venue| {
            Rng::new(
                faults
                    .seed
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(venue.index() as u64 + 1),
            )
        });
        FaultState {
            faults,
            storm_until,
            rngs,
        }
    }
}

impl Shared {
    pub(crate) fn new(config: SimConfig) -> Self {
        let faults = FaultState::new(config.faults.clone(), monotonic_now());
        Shared {
            faults: Mutex::new(faults),
            counters: Default::default(),
            offenders: Mutex::new(HashMap::new()),
            coinbase: Mutex::new(coinbase::State::default()),
            binance: Mutex::new(binance::State::default()),
            deribit: Mutex::new(deribit::State::default()),
            kraken: Mutex::new(kraken::State::default()),
            kraken_futures: Mutex::new(kraken_futures::State::default()),
            config,
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            coinbase: self.counters[Venue::Coinbase.index()].snapshot(),
            binance: self.counters[Venue::Binance.index()].snapshot(),
            deribit: self.counters[Venue::Deribit.index()].snapshot(),
            kraken: self.counters[Venue::Kraken.index()].snapshot(),
            kraken_futures: self.counters[Venue::KrakenFutures.index()].snapshot(),
        }
    }

    pub(crate) fn faults(&self) -> Faults {
        self.faults.lock().faults.clone()
    }

    /// Replaces the faults; storms start now, random draws restart from the seed.
    pub(crate) fn set_faults(&self, faults: Faults) {
        *self.faults.lock() = FaultState::new(faults, monotonic_now());
    }

    /// Clears counters, limiter state, bans, backoffs and open orders.
    /// Faults (and a running storm), nonces and Deribit sessions stay.
    pub(crate) fn reset(&self) {
        for counters in &self.counters {
            counters.clear();
        }
        self.offenders.lock().clear();
        self.coinbase.lock().reset();
        self.binance.lock().reset();
        self.deribit.lock().reset();
        self.kraken.lock().reset();
        self.kraken_futures.lock().reset();
    }

    /// The venue's faults, and whether its storm runs at `mono`.
    fn effective(&self, venue: Venue, mono: Micros) -> (Effective, bool) {
        let state = self.faults.lock();
        let storm = mono < state.storm_until[venue.index()];
        (state.faults.effective(venue), storm)
    }

    /// Draws from the venue's fault stream.
    pub(crate) fn chance(&self, venue: Venue, p: f64) -> bool {
        self.faults.lock().rngs[venue.index()].chance(p)
    }

    /// The ban ladder of `venue`: Binance only.
    fn ladder(&self, venue: Venue) -> Option<Ladder> {
        (venue == Venue::Binance).then(|| {
            let cfg = &self.config.binance;
            Ladder {
                after: cfg.ban_after_violations,
                after_refusals: cfg.ban_after_refusals,
                refusal_period: ms(cfg.ban_refusal_period_ms),
                first: ms(cfg.ban_first_ms),
                max: ms(cfg.ban_max_ms),
            }
        })
    }

    /// The backoff gate at `mono` (the host's monotonic clock).
    fn gate(&self, venue: Venue, ip: IpAddr, mono: Micros) -> Gate {
        let ladder = self.ladder(venue);
        self.offenders
            .lock()
            .entry((venue, ip))
            .or_default()
            .check(mono, ladder.as_ref())
    }

    /// Remembers what the client was just answered: the `Retry-After` it was
    /// given (until `wait_until`, monotonic) and, on a venue with a ladder,
    /// a 429 that counts towards a ban.
    fn answered(
        &self,
        venue: Venue,
        ip: IpAddr,
        mono: Micros,
        wait_until: Option<Micros>,
        rate_refusal: bool,
    ) {
        if wait_until.is_none() && !rate_refusal {
            return;
        }
        let ladder = self.ladder(venue);
        let mut offenders = self.offenders.lock();
        let offender = offenders.entry((venue, ip)).or_default();
        if let Some(until) = wait_until {
            offender.told_to_wait(until);
        }
        if rate_refusal && let Some(until) = offender.refused(mono, ladder.as_ref()) {
            tracing::info!(%venue, %ip, until, "simulated ban after repeated 429s");
        }
    }
}

// === Request, Ctx, Reply ===

/// One venue request, with the venue prefix removed from the path.
pub(crate) struct Request {
    pub(crate) method: Method,
    /// The venue's real path, e.g. `/api/v3/order`.
    pub(crate) path: String,
    /// The raw query string, as sent (without `?`).
    pub(crate) query: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) ip: IpAddr,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub(crate) fn query_params(&self) -> Params {
        Params::parse(&self.query)
    }

    pub(crate) fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("")
    }
}

/// Decoded `key=value&…` parameters, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params(pub(crate) Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(raw: &str) -> Self {
        Params(serde_urlencoded::from_str::<Vec<(String, String)>>(raw).unwrap_or_default())
    }

    /// The first value of `name`, if present and not empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| value.as_str())
    }

    /// Appends `other`'s parameters after these (first value wins in `get`).
    pub(crate) fn extend(&mut self, other: Params) {
        self.0.extend(other.0);
    }
}

/// What a handler knows about the moment: the venue's clock, the host's
/// monotonic clock, its faults.
pub(crate) struct Ctx<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) venue: Venue,
    /// The venue's clock when the request is processed (skew applied): for
    /// what the venue reports, timestamp windows and window alignment.
    pub(crate) now: Micros,
    /// The host's monotonic clock at the same moment: for limiter state and
    /// deadlines, which a change of the skew fault must not move.
    pub(crate) mono: Micros,
    pub(crate) faults: Effective,
}

impl Ctx<'_> {
    pub(crate) fn chance(&self, p: f64) -> bool {
        self.shared.chance(self.venue, p)
    }

    /// The venue's clock read again (for Deribit's `usOut`).
    pub(crate) fn clock(&self) -> Micros {
        system_now().saturating_add(self.faults.skew_ms.saturating_mul(MICROS_PER_MS))
    }
}

/// An unknown outcome that holds the connection, then answers 504 or drops.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hold {
    pub(crate) ms: u64,
    pub(crate) drop: bool,
}

/// A venue's answer and what it means for the counters.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) content_type: &'static str,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
    pub(crate) outcome: Outcome,
    /// The client was told to wait until then (`Retry-After`), on the
    /// monotonic clock.
    pub(crate) wait_until: Option<Micros>,
    pub(crate) placed: u64,
    pub(crate) cancelled: u64,
    pub(crate) hold: Option<Hold>,
}

impl Reply {
    pub(crate) fn json(status: StatusCode, body: impl Into<String>, outcome: Outcome) -> Self {
        Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.into(),
            outcome,
            wait_until: None,
            placed: 0,
            cancelled: 0,
            hold: None,
        }
    }

    pub(crate) fn ok(body: impl Into<String>) -> Self {
        Reply::json(StatusCode::OK, body, Outcome::Accepted)
    }

    pub(crate) fn header(mut self, name: &str, value: impl ToString) -> Self {
        self.headers.push((name.to_owned(), value.to_string()));
        self
    }

    /// Sends `Retry-After: <secs>` and remembers that the client was told
    /// to wait that long from `mono` (the monotonic clock).
    pub(crate) fn retry_after(mut self, mono: Micros, secs: u64) -> Self {
        self.wait_until = Some(mono.saturating_add(crate::limits::secs(secs)));
        self.header("Retry-After", secs)
    }

    pub(crate) fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub(crate) fn placed(mut self, n: u64) -> Self {
        self.placed = n;
        self
    }

    pub(crate) fn cancelled(mut self, n: u64) -> Self {
        self.cancelled = n;
        self
    }

    /// An order recorded as placed whose answer is lost: hold the
    /// connection, then 504 or drop it.
    pub(crate) fn unknown(faults: &Effective) -> Self {
        Reply {
            status: StatusCode::GATEWAY_TIMEOUT,
            content_type: "text/html",
            headers: Vec::new(),
            body: "<html><head><title>504 Gateway Time-out</title></head><body><center><h1>504 Gateway Time-out</h1></center></body></html>\n".to_owned(),
            outcome: Outcome::Unknown,
            wait_until: None,
            placed: 1,
            cancelled: 0,
            hold: Some(Hold {
                ms: faults.hold_ms,
                drop: faults.unknown_drop,
            }),
        }
    }

    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                headers.append(name, value);
            }
        }
        response
    }
}

// === Router ===

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sim/stats", get(admin_stats))
        .route("/_sim/faults", post(admin_set_faults).get(admin_get_faults))
        .route("/_sim/reset", post(admin_reset))
        .fallback(dispatch)
        .with_state(shared)
}

async fn admin_stats(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.stats()).into_response()
}

async fn admin_get_faults(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.faults()).into_response()
}

async fn admin_set_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let faults = match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => faults,
        Err(error) => return admin_error(&error.to_string()),
    };
    if let Err(error) = faults.validate() {
        return admin_error(&error.to_string());
    }
    shared.set_faults(faults.clone());
    tracing::info!("simulator faults replaced");
    axum::Json(faults).into_response()
}

fn admin_error(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

async fn admin_reset(State(shared): State<Arc<Shared>>) -> Response {
    shared.reset();
    StatusCode::NO_CONTENT.into_response()
}

/// Splits `/binance/api/v3/order` into the venue and `/api/v3/order`.
fn split_venue(path: &str) -> Option<(Venue, String)> {
    let trimmed = path.strip_prefix('/')?;
    let (first, rest) = match trimmed.find('/') {
        Some(at) => (&trimmed[..at], &trimmed[at..]),
        None => (trimmed, "/"),
    };
    let venue = Venue::ALL
        .into_iter()
        .find(|venue| venue.prefix() == first)?;
    Some((venue, rest.to_owned()))
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((venue, path)) = split_venue(uri.path()) else {
        return (StatusCode::NOT_FOUND, "no such venue\n").into_response();
    };
    let counters = &shared.counters[venue.index()];
    let (faults, _) = shared.effective(venue, monotonic_now());
    if faults.latency_ms > 0 {
        // A client that gives up here leaves no trace in the stats: the
        // request is counted below, together with its outcome.
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let mono = monotonic_now();
    let (faults, storm) = shared.effective(venue, mono);
    let now = system_now().saturating_add(faults.skew_ms.saturating_mul(MICROS_PER_MS));
    let request = Request {
        method,
        path,
        query: uri.query().unwrap_or("").to_owned(),
        headers,
        body,
        ip: conn.addr.ip(),
    };
    let ctx = Ctx {
        shared: &shared,
        venue,
        now,
        mono,
        faults,
    };
    let reply = answer(&ctx, &request, storm, counters);
    counters.record(reply.outcome, reply.placed, reply.cancelled);
    shared.answered(
        venue,
        request.ip,
        mono,
        reply.wait_until,
        reply.status == StatusCode::TOO_MANY_REQUESTS,
    );
    if let Some(hold) = reply.hold {
        if hold.ms > 0 {
            tokio::time::sleep(Duration::from_millis(hold.ms)).await;
        }
        if hold.drop {
            // The next write on this connection fails and hyper closes it:
            // the client sees the connection end without an answer.
            conn.kill.store(true, Ordering::SeqCst);
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
    }
    reply.into_response()
}

fn answer(ctx: &Ctx<'_>, request: &Request, storm: bool, counters: &Counters) -> Reply {
    match ctx.shared.gate(ctx.venue, request.ip, ctx.mono) {
        Gate::Clear => {}
        Gate::Violation => counters.violation(),
        Gate::Banned { until } | Gate::NewBan { until } => {
            counters.violation();
            if ctx.venue == Venue::Binance {
                return binance::banned(ctx, request, until);
            }
        }
    }
    if storm {
        let reply = match ctx.venue {
            Venue::Coinbase => coinbase::storm(ctx, request),
            Venue::Binance => binance::storm(ctx, request),
            Venue::Deribit => deribit::storm(ctx, request),
            Venue::Kraken => kraken::storm(request),
            Venue::KrakenFutures => kraken_futures::storm(ctx),
        };
        return reply.outcome(Outcome::Storm);
    }
    match ctx.venue {
        Venue::Coinbase => coinbase::handle(ctx, request),
        Venue::Binance => binance::handle(ctx, request),
        Venue::Deribit => deribit::handle(ctx, request),
        Venue::Kraken => kraken::handle(ctx, request),
        Venue::KrakenFutures => kraken_futures::handle(ctx, request),
    }
}

// === SimListener ===

/// A TCP listener whose connections can be cut from a handler (the
/// `unknown_drop` fault).
pub(crate) struct SimListener(pub(crate) TcpListener);

impl Listener for SimListener {
    type Io = SimStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let stream = SimStream {
                        inner: stream,
                        kill: Arc::new(AtomicBool::new(false)),
                    };
                    return (stream, addr);
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait, retry.
                    tracing::warn!(%error, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A TCP stream that fails every operation once killed.
pub(crate) struct SimStream {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

fn killed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "dropped by the simulator")
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Per-connection facts a handler can see.
#[derive(Clone)]
pub(crate) struct Conn {
    addr: SocketAddr,
    kill: Arc<AtomicBool>,
}

impl Connected<IncomingStream<'_, SimListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        Conn {
            addr: *stream.remote_addr(),
            kill: stream.io().kill.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MICROS_PER_SEC;
    use std::net::Ipv4Addr;

    const S: Micros = MICROS_PER_SEC;

    /// The moment `mono` on the host's monotonic clock, with the venue's
    /// clock `skew_ms` off it.
    fn ctx(shared: &Shared, venue: Venue, mono: Micros, skew_ms: i64) -> Ctx<'_> {
        let mut faults = Faults::default();
        faults.venue_mut(venue).skew_ms = Some(skew_ms);
        Ctx {
            shared,
            venue,
            now: mono + skew_ms * MICROS_PER_MS,
            mono,
            faults: faults.effective(venue),
        }
    }

    fn get(path: &str, query: &str) -> Request {
        Request {
            method: Method::GET,
            path: path.to_owned(),
            query: query.to_owned(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// The skew fault changes in the middle of a window, in both directions:
    /// no limiter gives capacity back. (Before limiter state moved to the
    /// monotonic clock, setting Binance's clock back into the previous
    /// minute emptied the weight window, and setting a clock forward refilled
    /// the buckets.)
    #[test]
    fn a_skew_change_mid_window_gives_no_free_capacity() {
        let mut config = SimConfig::default();
        config.binance.weight_limit = 3;
        config.coinbase.public_burst = 2.0;
        config.coinbase.public_rate = 0.001;
        config.deribit.non_matching_max = 1_000;
        config.deribit.non_matching_refill_per_s = 1;
        let shared = Shared::new(config);
        // 30 s into a minute.
        let t = 28_333_333 * 60 * S + 30 * S;

        let ping = get("/api/v3/ping", "");
        for n in 0..3 {
            let reply = binance::handle(&ctx(&shared, Venue::Binance, t + n, 0), &ping);
            assert_eq!(reply.status, StatusCode::OK, "ping {n}");
        }
        for (skew_ms, what) in [
            (0, "no skew"),
            (-40_000, "clock set back into the previous minute"),
            (20_000, "clock set forward within the minute"),
            (-29_000, "clock set back within the minute"),
        ] {
            let reply = binance::handle(&ctx(&shared, Venue::Binance, t + 10, skew_ms), &ping);
            assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{what}");
            let used = reply
                .headers
                .iter()
                .find(|(name, _)| name == "X-MBX-USED-WEIGHT-1M")
                .map(|(_, value)| value.as_str());
            assert_eq!(used, Some("3"), "{what}");
        }

        let time = get("/time", "");
        for n in 0..2 {
            let reply = coinbase::handle(&ctx(&shared, Venue::Coinbase, t + n, 0), &time);
            assert_eq!(reply.status, StatusCode::OK, "time {n}");
        }
        for skew_ms in [0, 3_600_000, -3_600_000, 7_200_000] {
            let reply = coinbase::handle(&ctx(&shared, Venue::Coinbase, t + 10, skew_ms), &time);
            assert_eq!(
                reply.status,
                StatusCode::TOO_MANY_REQUESTS,
                "skew {skew_ms}"
            );
        }

        let get_time = get("/api/v2/public/get_time", "");
        for n in 0..2 {
            let reply = deribit::handle(&ctx(&shared, Venue::Deribit, t + n, 0), &get_time);
            assert_eq!(reply.status, StatusCode::OK, "get_time {n}");
        }
        for skew_ms in [0, 3_600_000, -3_600_000] {
            let reply = deribit::handle(&ctx(&shared, Venue::Deribit, t + 10, skew_ms), &get_time);
            assert_eq!(reply.outcome, Outcome::RateLimited, "skew {skew_ms}");
        }
    }

    /// A `Retry-After` wait and a ban run on the monotonic clock: moving the
    /// venue's clock (either way) neither shortens nor lengthens them.
    #[test]
    fn waits_and_bans_ignore_the_skew() {
        let mut config = SimConfig::default();
        config.binance.ban_after_violations = 2;
        config.binance.ban_first_ms = 120_000;
        let shared = Shared::new(config);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let t = 1_000 * S;
        shared.answered(Venue::Binance, ip, t, Some(t + 2 * S), true);
        assert_eq!(shared.gate(Venue::Binance, ip, t + S), Gate::Violation);
        assert_eq!(
            shared.gate(Venue::Binance, ip, t + S),
            Gate::NewBan {
                until: t + S + 120 * S
            }
        );
        // Whatever the skew, the 418 says the same thing at the same moment.
        let ping = get("/api/v3/ping", "");
        for skew_ms in [0, 300_000, -300_000] {
            let ctx = ctx(&shared, Venue::Binance, t + 60 * S, skew_ms);
            let reply = binance::banned(&ctx, &ping, t + S + 120 * S);
            assert_eq!(reply.status, StatusCode::IM_A_TEAPOT);
            let retry = reply
                .headers
                .iter()
                .find(|(name, _)| name == "Retry-After")
                .map(|(_, value)| value.as_str());
            assert_eq!(retry, Some("61"), "skew {skew_ms}");
            // The body names the end on the venue's clock.
            let until_ms = (t + 121 * S + skew_ms * MICROS_PER_MS) / MICROS_PER_MS;
            assert!(reply.body.contains(&format!("IP banned until {until_ms}.")));
        }
    }

    #[test]
    fn venue_prefixes_are_stripped() {
        assert_eq!(
            split_venue("/binance/api/v3/order"),
            Some((Venue::Binance, "/api/v3/order".to_owned()))
        );
        assert_eq!(
            split_venue("/krakenfutures/derivatives/api/v3/sendorder"),
            Some((
                Venue::KrakenFutures,
                "/derivatives/api/v3/sendorder".to_owned()
            ))
        );
        assert_eq!(
            split_venue("/coinbase"),
            Some((Venue::Coinbase, "/".to_owned()))
        );
        assert_eq!(split_venue("/krakenx/0/public/Time"), None);
        assert_eq!(split_venue("/"), None);
    }

    #[test]
    fn params_decode_and_skip_empty_values() {
        let params = Params::parse("symbol=BTC%2DUSD&limit=&limit=5&a=b+c");
        assert_eq!(params.get("symbol"), Some("BTC-USD"));
        assert_eq!(params.get("limit"), Some("5"));
        assert_eq!(params.get("a"), Some("b c"));
        assert_eq!(params.get("missing"), None);
    }
}
