//! Starting and stopping a gateway: bind, serve, drain.

use crate::accounts::{self, Accounts, LedgerWriter};
use crate::admin::{self, AdminState};
use crate::autocharge::Autocharger;
use crate::directory::Directory;
use crate::ingress::Ingress;
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::payments::{PaymentProvider, StripeProvider};
use crate::pipeline::credentials::Peer;
use crate::pipeline::forward::ForwardSettings;
use crate::plans::{self, Plans};
use crate::{Clock, Config, SystemClock};
use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tollgate_store::{SqliteStore, Store};

/// A TLS client that has not finished its handshake by then is cut off.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long in-flight requests get to finish after shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes hyper buffers for a request head. Requests up to this size are
/// measured by the limits step and refused with problem+json; beyond it hyper
/// answers a bare 431 itself.
fn hyper_head_buffer(max_header_bytes: usize) -> usize {
    max_header_bytes.saturating_add(64 * 1024).max(8192)
}

/// The listeners, bound by the caller (tests bind port 0).
#[derive(Debug)]
pub struct Listeners {
    /// Client-facing.
    pub ingress: TcpListener,
    /// Operator-facing.
    pub admin: TcpListener,
    /// Client-facing TLS (mTLS), when `[ingress.tls]` is set.
    pub tls: Option<TcpListener>,
    /// The venue router's egress listener, when venues are configured.
    pub egress: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses in `config`.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let ingress = TcpListener::bind(config.ingress.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on ingress.listen = {}",
                    config.ingress.listen
                )
            })?;
        let admin = TcpListener::bind(config.admin.listen)
            .await
            .with_context(|| format!("cannot listen on admin.listen = {}", config.admin.listen))?;
        let tls = match &config.ingress.tls {
            None => None,
            Some(tls) => Some(TcpListener::bind(tls.listen).await.with_context(|| {
                format!("cannot listen on ingress.tls.listen = {}", tls.listen)
            })?),
        };
        let egress = if config.venues.is_empty() {
            None
        } else {
            Some(
                TcpListener::bind(config.egress.listen)
                    .await
                    .with_context(|| {
                        format!("cannot listen on egress.listen = {}", config.egress.listen)
                    })?,
            )
        };
        Ok(Listeners {
            ingress,
            admin,
            tls,
            egress,
        })
    }

    /// Actual ingress address (useful with port 0).
    pub fn ingress_addr(&self) -> std::io::Result<SocketAddr> {
        self.ingress.local_addr()
    }

    /// Actual TLS ingress address.
    pub fn tls_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.tls.as_ref().map(TcpListener::local_addr)
    }

    /// Actual egress (venue router) address.
    pub fn egress_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.egress.as_ref().map(TcpListener::local_addr)
    }

    /// Actual admin address.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }
}

/// Runs a gateway on the system clock until `shutdown` completes.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_with(config, listeners, Arc::new(SystemClock), shutdown).await
}

/// Runs a gateway with an injected clock until `shutdown` completes, then
/// drains in-flight requests for up to ten seconds.
pub async fn run_with(
    config: Config,
    listeners: Listeners,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate()?;
    let token = config
        .admin
        .token
        .clone()
        .context("admin.token is not set: set it in tollgate.toml or TOLLGATE_ADMIN_TOKEN")?;
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&config.store.sqlite_path)
            .await
            .with_context(|| {
                format!(
                    "cannot open store.sqlite_path = {}",
                    config.store.sqlite_path.display()
                )
            })?,
    );
    let now = clock.now();
    let directory = Arc::new(
        Directory::load(store.as_ref(), key_provider(&config)?, now)
            .await
            .context("cannot load keys and orgs")?,
    );
    let limiter = Arc::new(Limiter::default());
    // Cycles last at most 31 days: older counters cannot be current.
    limiter.restore(
        store
            .load_usage(now.plus_seconds(-32 * 86_400))
            .await
            .context("cannot load usage counters")?,
    );
    let accounts = Arc::new(
        Accounts::load(
            store.as_ref(),
            |org| directory.org(org).map(|o| o.cycle_anchor),
            now,
        )
        .await
        .context("cannot load accounts")?,
    );
    let metrics = Arc::new(Metrics::new());
    let config = Arc::new(config);
    let routes = config.route_table()?;
    let plans = Arc::new(plans::compile(&config, &routes));

    let jwt = crate::jwt::JwtVerifier::start(&config.jwt, config.credentials.token_cache_entries)
        .await
        .context("cannot start the JWT verifier")?;
    let credentials = crate::pipeline::credentials::Credentials {
        windows: config.route_windows(),
        replays: crate::pipeline::credentials::ReplayCache::new(
            config.credentials.replay_cache_entries,
        ),
        jwt,
    };
    let tls_acceptor = match &config.ingress.tls {
        None => None,
        Some(tls) => Some(crate::tls::acceptor(tls).context("ingress.tls")?),
    };
    if tls_acceptor.is_some() != listeners.tls.is_some() {
        anyhow::bail!("ingress.tls is set but no TLS listener was bound, or the reverse");
    }
    let ingress = Arc::new(build_ingress(
        &config,
        routes,
        &plans,
        &directory,
        &limiter,
        &clock,
        &metrics,
        &store,
        &accounts,
        credentials,
    )?);
    let admin_state = AdminState::new(
        Arc::clone(&config),
        Arc::clone(&store),
        Arc::clone(&directory),
        Arc::clone(&clock),
        Arc::clone(&metrics),
        token,
        Arc::clone(&limiter),
        Arc::clone(&plans),
        Arc::clone(&accounts),
    );
    tracing::info!(
        ingress = %listeners.ingress_addr()?,
        admin = %listeners.admin_addr()?,
        upstream = %config.upstream.url,
        keys = directory.key_count(),
        "tollgate serving"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let admin_task = tokio::spawn(admin::serve(listeners.admin, admin_state, stop_rx.clone()));
    let tls_task = match (listeners.tls, tls_acceptor) {
        (Some(listener), Some(acceptor)) => Some(tokio::spawn(serve_ingress(
            listener,
            Some(acceptor),
            Arc::clone(&ingress),
            Arc::clone(&config),
            stop_rx.clone(),
        ))),
        _ => None,
    };
    let ingress_task = tokio::spawn(serve_ingress(
        listeners.ingress,
        None,
        ingress,
        Arc::clone(&config),
        stop_rx.clone(),
    ));
    let egress_task = match listeners.egress {
        Some(listener) => Some(
            start_egress(
                &config,
                listener,
                metrics.shared_recorder(),
                stop_rx.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let flush_every = Duration::from_millis(config.store.usage_flush_ms);
    let flush_task = tokio::spawn(flush_usage(
        Arc::clone(&limiter),
        Arc::clone(&store),
        flush_every,
        stop_rx.clone(),
    ));
    let purge_every = Duration::from_secs(config.idempotency.purge_interval_seconds);
    let purge_task = tokio::spawn(purge_idempotency(
        Arc::clone(&store),
        Arc::clone(&clock),
        purge_every,
        stop_rx.clone(),
    ));
    let upkeep_task = tokio::spawn(keep_metrics(Arc::clone(&metrics), METRICS_UPKEEP, stop_rx));
    shutdown.await;
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop_tx.send(true);
    let _ = ingress_task.await;
    if let Some(task) = tls_task {
        let _ = task.await;
    }
    let _ = admin_task.await;
    if let Some((serve, clocks)) = egress_task {
        clocks.abort();
        let _ = serve.await;
    }
    let _ = flush_task.await;
    let _ = purge_task.await;
    let _ = upkeep_task.await;
    // Counts of requests that finished while draining.
    flush_once(&limiter, store.as_ref()).await;
    Ok(())
}

/// Starts the venue router on its listener: measures each venue's clock
/// once, keeps measuring in the background, and serves until `stop`.
async fn start_egress(
    config: &Config,
    listener: TcpListener,
    recorder: tollgate_venues::meter::Sink,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(
    tokio::task::JoinHandle<std::io::Result<()>>,
    tokio::task::JoinHandle<()>,
)> {
    let router = Arc::new(tollgate_venues::Router::new(&config.venues)?.with_metrics(recorder));
    if tokio::time::timeout(Duration::from_secs(10), router.sync_clocks())
        .await
        .is_err()
    {
        tracing::warn!(
            "venue clocks not measured within 10 s; signing on the local clock until they are"
        );
    }
    tracing::info!(
        egress = %listener.local_addr()?,
        venues = ?router.venue_names().collect::<Vec<_>>(),
        "venue router serving"
    );
    let clocks = tokio::spawn(Arc::clone(&router).keep_clocks());
    let serve = tokio::spawn(tollgate_venues::server::serve(
        listener,
        router,
        config.egress.max_body_bytes,
        async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        },
    ));
    Ok((serve, clocks))
}

async fn flush_once(limiter: &Limiter, store: &dyn Store) {
    let rows = limiter.take_dirty();
    if rows.is_empty() {
        return;
    }
    if let Err(error) = store.save_usage(&rows).await {
        tracing::warn!(%error, rows = rows.len(), "could not save usage counters; retrying on the next flush");
        limiter.unsaved(rows);
    }
}

/// How often recorded histogram samples are folded into their buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// Runs the metrics recorder's upkeep every `every`, until stopped.
async fn keep_metrics(metrics: Arc<Metrics>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => metrics.upkeep(),
            _ = stop.changed() => break,
        }
    }
}

/// Deletes expired idempotency records every `every`, until stopped.
async fn purge_idempotency(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => match store.idempotency_purge(clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(records = n, "expired idempotency records purged"),
                Err(error) => tracing::warn!(%error, "idempotency purge failed"),
            },
            _ = stop.changed() => break,
        }
    }
}

/// Writes changed cycle counters to the store every `every`, until stopped.
async fn flush_usage(
    limiter: Arc<Limiter>,
    store: Arc<dyn Store>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => flush_once(&limiter, store.as_ref()).await,
            _ = stop.changed() => break,
        }
    }
}

/// The provider sealing signing secrets: the configured master key, if any.
fn key_provider(config: &Config) -> anyhow::Result<Option<Arc<dyn crate::secrets::KeyProvider>>> {
    let Some(key) = &config.credentials.master_key else {
        return Ok(None);
    };
    let provider = crate::secrets::LocalKeyProvider::from_base64(key)
        .map_err(|e| anyhow::anyhow!("credentials.master_key: {e}"))?;
    Ok(Some(Arc::new(provider)))
}

fn provider(config: &Config) -> anyhow::Result<Option<Arc<dyn PaymentProvider>>> {
    let Some(key) = &config.payments.stripe_secret_key else {
        return Ok(None);
    };
    let timeout = Duration::from_millis(config.payments.timeout_ms);
    let stripe = StripeProvider::new(&config.payments.stripe_api_base, key, timeout)
        .map_err(|e| anyhow::anyhow!("payments: {e}"))?;
    Ok(Some(Arc::new(stripe)))
}

#[allow(clippy::too_many_arguments)]
fn build_ingress(
    config: &Config,
    routes: tollgate_core::route::RouteTable,
    plans: &Plans,
    directory: &Arc<Directory>,
    limiter: &Arc<Limiter>,
    clock: &Arc<dyn Clock>,
    metrics: &Arc<Metrics>,
    store: &Arc<dyn Store>,
    accounts: &Arc<Accounts>,
    credentials: crate::pipeline::credentials::Credentials,
) -> anyhow::Result<Ingress> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_millis(
        config.upstream.connect_timeout_ms,
    )));
    connector.set_nodelay(true);
    connector.enforce_http(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_millis(config.upstream.pool_idle_timeout_ms))
        .pool_max_idle_per_host(config.upstream.pool_max_idle_per_host)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector);
    Ok(Ingress {
        routes,
        plans: plans.clone(),
        directory: Arc::clone(directory),
        limiter: Arc::clone(limiter),
        store: Arc::clone(store),
        idempotency: config.idempotency.clone(),
        accounts: Arc::clone(accounts),
        credentials,
        ledger: LedgerWriter::start(Arc::clone(store)),
        route_max_units: accounts::route_max_units(config),
        autocharger: Arc::new(Autocharger::new(
            provider(config)?,
            Arc::clone(store),
            Arc::clone(accounts),
            Arc::clone(clock),
            config.payments.currency.clone(),
            config.payments.max_consecutive_failures,
        )),
        durability: config.store.durability,
        clock: Arc::clone(clock),
        client,
        forward: ForwardSettings {
            base: config.upstream_base()?,
            request_timeout: Duration::from_millis(config.upstream.request_timeout_ms),
            max_body_bytes: config.ingress.max_body_bytes,
        },
        metrics: Arc::clone(metrics),
        max_header_bytes: config.ingress.max_header_bytes,
        max_body_bytes: config.ingress.max_body_bytes,
    })
}

async fn serve_ingress(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ingress: Arc<Ingress>,
    config: Arc<Config>,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout())
        .max_buf_size(hyper_head_buffer(config.ingress.max_header_bytes))
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Out of file descriptors and the like: back off briefly.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let ingress = Arc::clone(&ingress);
                match &tls {
                    None => {
                        let peer = Peer::plain(remote);
                        let service = service_fn(move |request| Arc::clone(&ingress).handle(request, peer));
                        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                        let connection = graceful.watch(connection);
                        tokio::spawn(async move {
                            if let Err(error) = connection.await {
                                tracing::debug!(%error, %remote, "connection ended with an error");
                            }
                        });
                    }
                    Some(acceptor) => {
                        // The handshake runs in the connection's task, so a
                        // slow client cannot hold up the accept loop.
                        let acceptor = acceptor.clone();
                        let builder = builder.clone();
                        let watcher = graceful.watcher();
                        tokio::spawn(async move {
                            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                            let stream = match handshake {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(error)) => {
                                    tracing::debug!(%error, %remote, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%remote, "TLS handshake timed out");
                                    return;
                                }
                            };
                            let peer = Peer {
                                remote,
                                certificate: crate::tls::client_thumbprint(stream.get_ref().1),
                                tls: true,
                            };
                            let service = service_fn(move |request| Arc::clone(&ingress).handle(request, peer));
                            let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                            if let Err(error) = watcher.watch(connection).await {
                                tracing::debug!(%error, %remote, "connection ended with an error");
                            }
                        });
                    }
                }
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after the drain timeout");
    }
}
