//! `tollgate-bench`: tollgate against a bare upstream and nginx, in one run.
//!
//! ```sh
//! cargo run --release -p tollgate-bench -- --duration 10s
//! ```
//!
//! One binary plays every part: it re-executes itself as the bare upstream
//! (a minimal hyper server answering a small JSON body) and as the gateway
//! (tollgate's `run` with a configurable number of worker threads), starts
//! nginx as a plain `proxy_pass` reverse proxy with upstream keep-alive and
//! the same number of workers, seeds thousands of keys across hundreds of
//! organizations, drives every target with wrk (closed loop, keep-alive
//! connections, requests spread over the keys) and with its own open-loop
//! generator at a fixed rate, and prints the table and a JSON file.
//!
//! The egress side is measured the same way: the venue simulator alone, and
//! the venue router in front of it (a Binance contract with limits too high
//! to bind), so the ratio is what routing itself costs.

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tollgate_core::access::OrgStatus;
use tollgate_core::api_key;
use tollgate_core::ids::{KeyId, OrgId};
use tollgate_gateway::{Clock, Config, Listeners, SystemClock};
use tollgate_store::{KeyRow, OrgRow, SqliteStore, Store as _};

const WRK_SCRIPT: &str = include_str!("wrk.lua");
const ADMIN_TOKEN: &str = "bench-admin-token-000000000000";

#[derive(Debug, Parser)]
#[command(
    name = "tollgate-bench",
    about = "tollgate against a bare upstream and nginx, in one run"
)]
struct Cli {
    #[command(subcommand)]
    part: Option<Part>,
    /// Length of each closed-loop run (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Keep-alive connections held by the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Worker threads of tollgate and worker processes of nginx.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Runs per target; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// API keys seeded for the throughput runs.
    #[arg(long, default_value_t = 5_000)]
    keys: usize,
    /// Organizations the keys are spread over.
    #[arg(long, default_value_t = 500)]
    orgs: usize,
    /// Keys loaded for the memory measurement.
    #[arg(long, default_value_t = 100_000)]
    large_keys: usize,
    /// Organizations loaded for the memory measurement.
    #[arg(long, default_value_t = 10_000)]
    large_orgs: usize,
    /// A few seconds per target and small key counts: checks that every
    /// target answers and the output parses (for CI), measures nothing.
    #[arg(long)]
    smoke: bool,
    /// A light fixed rate also measured open loop, where the two cores are
    /// not saturated, to separate the pipeline's own latency from queueing.
    #[arg(long, default_value_t = 1_000)]
    light_rate: u64,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/results.json")]
    json: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Part {
    /// (internal) the bare upstream.
    #[command(hide = true)]
    Upstream,
    /// (internal) the gateway.
    #[command(hide = true)]
    Gateway {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        workers: usize,
    },
    /// (internal) the venue simulator, with limits too high to bind.
    #[command(hide = true)]
    Sim,
    /// (internal) the venue router in front of the simulator.
    #[command(hide = true)]
    Router {
        #[arg(long)]
        sim: SocketAddr,
        #[arg(long)]
        workers: usize,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |i| text.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s or 500ms"))?;
    match unit {
        "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{text:?}: unit must be ms, s or m")),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.part {
        Some(Part::Upstream) => serve_upstream(),
        Some(Part::Gateway {
            ref config,
            workers,
        }) => serve_gateway(config, workers),
        Some(Part::Sim) => serve_sim(),
        Some(Part::Router { sim, workers }) => serve_router(sim, workers),
        None => bench(cli),
    }
}

// === the bare upstream ===

fn serve_upstream() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        let body = Bytes::from_static(
            br#"{"symbol":"BTC-USD","bid":"64010.50","ask":"64012.00","last":"64011.25"}"#,
        );
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_request| {
                    let body = body.clone();
                    async move {
                        let mut response = hyper::Response::new(Full::new(body));
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

// === the gateway ===

fn serve_gateway(config: &Path, workers: usize) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listeners = Listeners::bind(&config).await?;
        println!("listening {}", listeners.ingress_addr()?);
        std::io::stdout().flush()?;
        tollgate_gateway::run(config, listeners, std::future::pending()).await
    })
}

// === the egress side ===

fn serve_sim() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut config = tollgate_sim::SimConfig::default();
        config.binance.weight_limit = 1 << 40;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sim = tollgate_sim::start(listener, config).await?;
        println!("listening {}", sim.addr());
        std::io::stdout().flush()?;
        std::future::pending::<()>().await;
        Ok(())
    })
}

fn serve_router(sim: SocketAddr, workers: usize) -> anyhow::Result<()> {
    let venues: std::collections::BTreeMap<String, tollgate_venues::VenueConfig> =
        toml::from_str(&format!(
            r#"
[binance]
kind = "binance"
base_url = "http://{sim}/binance"
[[binance.buckets]]
name = "weight"
kind = "fixed_window"
limit = 1e12
window_ms = 60000
scope = "ip"
header = "X-MBX-USED-WEIGHT-1M"
[binance.default_cost]
weight = 1
"#
        ))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let router = Arc::new(tollgate_venues::Router::new(&venues)?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        tollgate_venues::server::serve(listener, router, 1 << 20, std::future::pending()).await?;
        Ok(())
    })
}

// === the harness ===

/// A child process killed when dropped.
struct Proc {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Peak resident set size in MB, from /proc.
    fn peak_rss_mb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }
}

fn spawn_part(args: &[&str]) -> anyhow::Result<Proc> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .with_context(|| format!("{args:?} did not start: {line:?}"))?
        .parse()?;
    Ok(Proc { child, addr })
}

fn ensure_tools() -> anyhow::Result<()> {
    let missing: Vec<&str> = ["wrk", "nginx"]
        .into_iter()
        .filter(|tool| which(tool).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing {missing:?} from Debian's packages (apt-get)...");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let sudo: &[&str] = if root { &[] } else { &["sudo"] };
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let mut all: Vec<&str> = sudo.to_vec();
        all.extend_from_slice(args);
        let status = Command::new(all[0])
            .args(&all[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?;
        if !status.success() {
            bail!(
                "{} failed; install wrk and nginx yourself (apt-get install wrk nginx-light)",
                all.join(" ")
            );
        }
        Ok(())
    };
    run(&["apt-get", "update", "-qq"])?;
    run(&["apt-get", "install", "-y", "-qq", "wrk", "nginx-light"])?;
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    for dir in [
        "/usr/bin",
        "/usr/sbin",
        "/usr/local/bin",
        "/usr/local/sbin",
        "/bin",
        "/sbin",
    ] {
        let path = Path::new(dir).join(tool);
        if path.exists() {
            return Some(path);
        }
    }
    None
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_nginx(dir: &Path, upstream: SocketAddr, workers: usize) -> anyhow::Result<Proc> {
    let port = free_port()?;
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs"))?;
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes {workers};\n\
             pid {pid};\n\
             error_log {err} warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
               access_log off;\n\
               upstream up {{ server {upstream}; keepalive 128; }}\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 location / {{\n\
                   proxy_pass http://up;\n\
                   proxy_http_version 1.1;\n\
                   proxy_set_header Connection \"\";\n\
                 }}\n\
               }}\n\
             }}\n",
            pid = prefix.join("nginx.pid").display(),
            err = prefix.join("logs/error.log").display(),
        ),
    )?;
    let nginx = which("nginx").context("nginx")?;
    let child = Command::new(nginx)
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    wait_listening(addr)?;
    Ok(Proc { child, addr })
}

fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!("nothing listens on {addr}")
}

/// Seeds `orgs` organizations and `keys` keys; returns the full keys.
fn seed(db: &Path, orgs: usize, keys: usize) -> anyhow::Result<Vec<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = SqliteStore::open(db).await?;
        let now = SystemClock.now();
        let mut org_rows = Vec::with_capacity(orgs);
        for o in 0..orgs {
            let mut seed = [7u8; 10];
            seed[..8].copy_from_slice(&(o as u64).to_le_bytes());
            org_rows.push(OrgRow {
                id: OrgId::from_random(seed),
                name: format!("bench org {o}"),
                status: OrgStatus::Active,
                plan: Some("bench".into()),
                cycle_anchor: Some(now),
                pay_as_you_go: true,
                created_at: now,
                updated_at: now,
            });
        }
        let mut key_rows = Vec::with_capacity(keys);
        let mut full = Vec::with_capacity(keys);
        for k in 0..keys {
            let mut seed = [9u8; 10];
            seed[..8].copy_from_slice(&(k as u64).to_le_bytes());
            let id = KeyId::from_random(seed);
            let mut secret_seed = [3u8; 20];
            secret_seed[..8].copy_from_slice(&(k as u64).to_le_bytes());
            let secret = api_key::secret_from_random(secret_seed);
            full.push(api_key::format(&id, &secret));
            key_rows.push(KeyRow::new_active(
                id,
                &secret,
                org_rows[k % orgs].id.clone(),
                format!("bench key {k}"),
                vec!["*".into()],
                now,
            ));
        }
        store.insert_many(&org_rows, &key_rows).await?;
        // Pay-as-you-go accounts with money to spend.
        let top_ups: Vec<tollgate_store::NewEntry> = org_rows
            .iter()
            .map(|org| tollgate_store::NewEntry {
                org_id: org.id.clone(),
                kind: tollgate_store::EntryKind::TopUp,
                amount: 1_000_000_000_000,
                reference: "top_up:bench".into(),
                detail: "{}".into(),
                created_at: now,
            })
            .collect();
        store.post_entries(&top_ups).await?;
        Ok(full)
    })
}

/// Which pipeline stages a gateway runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stages {
    /// Buckets, quotas, and pay-as-you-go charges in the ledger (strict).
    Full,
    /// The same with the ledger in relaxed durability.
    Relaxed,
    /// Neither limits nor prices: key and org checks only.
    AuthOnly,
}

fn gateway_config(
    dir: &Path,
    name: &str,
    db: &Path,
    upstream: SocketAddr,
    stages: Stages,
) -> anyhow::Result<PathBuf> {
    let limits = match stages {
        Stages::AuthOnly => "",
        Stages::Full | Stages::Relaxed => {
            "default_rate_class = \"standard\"\n\
             org_rate = { rate = 10000000, burst = 20000000 }\n\
             rate_classes.standard = { rate = 10000000, burst = 20000000 }\n\
             quotas = { request = 1000000000000, bytes_out = 1000000000000000 }\n\
             prices.request = { tiers = [{ micros = 100 }] }\n"
        }
    };
    let durability = if stages == Stages::Relaxed {
        "relaxed"
    } else {
        "strict"
    };
    let text = format!(
        "[ingress]\nlisten = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n\
         [upstream]\nurl = \"http://{upstream}\"\n\
         [store]\nsqlite_path = \"{db}\"\ndurability = \"{durability}\"\n\
         [products.market-data]\n\
         [plans.bench]\n{limits}\
         [[routes]]\npath = \"/v1/ticker\"\nmethods = [\"GET\"]\nproduct = \"market-data\"\nclass = \"read\"\n",
        db = db.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

#[derive(Debug, Clone, Copy, Serialize, Default)]
struct Sample {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    non_2xx: u64,
    socket_errors: u64,
}

fn wrk(
    addr: SocketAddr,
    path: &str,
    keys_file: &Path,
    script: &Path,
    duration: Duration,
    connections: usize,
) -> anyhow::Result<Sample> {
    let output = Command::new(which("wrk").context("wrk")?)
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{}s", duration.as_secs().max(1)),
        ])
        .arg("-s")
        .arg(script)
        .arg(format!("http://{addr}{path}"))
        .arg("--")
        .arg(keys_file)
        .arg(path)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("WRK_JSON "))
        .with_context(|| {
            format!(
                "wrk printed no summary: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let num = |k: &str| v[k].as_f64().unwrap_or(0.0);
    Ok(Sample {
        rps: num("requests") / (num("duration_us") / 1e6).max(1e-9),
        p50_us: num("p50_us"),
        p99_us: num("p99_us"),
        p999_us: num("p999_us"),
        non_2xx: v["non_2xx"].as_u64().unwrap_or(0),
        socket_errors: v["socket_errors"].as_u64().unwrap_or(0),
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn median_sample(samples: &[Sample]) -> Sample {
    let pick = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    Sample {
        rps: pick(|s| s.rps),
        p50_us: pick(|s| s.p50_us),
        p99_us: pick(|s| s.p99_us),
        p999_us: pick(|s| s.p999_us),
        non_2xx: samples.iter().map(|s| s.non_2xx).sum(),
        socket_errors: samples.iter().map(|s| s.socket_errors).sum(),
    }
}

#[derive(Debug, Serialize)]
struct TargetResult {
    name: String,
    closed_loop: Sample,
    runs: Vec<Sample>,
    peak_rss_mb: Option<f64>,
    ratio_vs_nginx: f64,
    ratio_vs_direct: f64,
}

#[derive(Debug, Serialize)]
struct OpenLoops {
    half_of_max: OpenLoop,
    light: OpenLoop,
}

#[derive(Debug, Serialize)]
struct OpenLoop {
    rate_rps: u64,
    seconds: f64,
    direct: LatencyStats,
    tollgate: LatencyStats,
    added_p99_us: f64,
}

#[derive(Debug, Serialize, Clone, Copy)]
struct LatencyStats {
    sent: u64,
    ok: u64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
}

/// Sends `rate` requests per second for `duration` over `connections`
/// keep-alive connections. Latency counts from each request's scheduled send
/// time, so a slow server cannot hide its queueing (no coordinated omission).
async fn open_loop(
    addr: SocketAddr,
    keys: Arc<Vec<String>>,
    rate: u64,
    duration: Duration,
    connections: usize,
) -> anyhow::Result<LatencyStats> {
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let interval_ns = 1e9 / rate.max(1) as f64;
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..connections {
        let next = Arc::clone(&next);
        let keys = Arc::clone(&keys);
        workers.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let mut latencies = Vec::new();
            let mut ok = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let intended = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
                tokio::time::sleep_until(intended).await;
                let key = &keys[(i as usize).wrapping_mul(2_654_435_761) % keys.len()];
                let request = hyper::Request::get("/v1/ticker")
                    .header(http::header::HOST, addr.to_string())
                    .header(http::header::AUTHORIZATION, format!("Bearer {key}"))
                    .body(Empty::<Bytes>::new())?;
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                response.into_body().collect().await?;
                latencies.push(intended.elapsed().as_micros() as f64);
                if status.is_success() {
                    ok += 1;
                }
            }
            Ok::<_, anyhow::Error>((latencies, ok))
        }));
    }
    let mut all = Vec::new();
    let mut ok = 0;
    for worker in workers {
        let (latencies, n) = worker.await??;
        all.extend(latencies);
        ok += n;
    }
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        all.get(((all.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok(LatencyStats {
        sent: all.len() as u64,
        ok,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
    })
}

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .map(str::trim)
        .unwrap_or("unknown");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    serde_json::json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "kernel": kernel.trim(),
        "nginx": Command::new(which("nginx").unwrap_or_default()).arg("-v").output().map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned()).unwrap_or_default(),
    })
}

fn bench(mut cli: Cli) -> anyhow::Result<()> {
    if cli.smoke {
        cli.duration = Duration::from_secs(2);
        cli.runs = 1;
        cli.keys = cli.keys.min(200);
        cli.orgs = cli.orgs.min(20);
        cli.large_keys = cli.large_keys.min(2_000);
        cli.large_orgs = cli.large_orgs.min(200);
    }
    ensure_tools()?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("bench.lua");
    std::fs::write(&script, WRK_SCRIPT)?;

    eprintln!("seeding {} keys across {} orgs...", cli.keys, cli.orgs);
    let db = dir.path().join("bench.db");
    let keys = seed(&db, cli.orgs, cli.keys)?;
    let keys_file = dir.path().join("keys.txt");
    std::fs::write(&keys_file, keys.join("\n") + "\n")?;

    let upstream = spawn_part(&["upstream"])?;
    let nginx = start_nginx(dir.path(), upstream.addr, cli.workers)?;
    let workers = cli.workers.to_string();
    let full_config = gateway_config(dir.path(), "full", &db, upstream.addr, Stages::Full)?;
    let bare_config = gateway_config(
        dir.path(),
        "auth-only",
        &db,
        upstream.addr,
        Stages::AuthOnly,
    )?;
    let relaxed_config =
        gateway_config(dir.path(), "relaxed", &db, upstream.addr, Stages::Relaxed)?;

    let mut results: Vec<TargetResult> = Vec::new();
    let mut measure =
        |name: &str, addr: SocketAddr, process: Option<&Proc>| -> anyhow::Result<Sample> {
            let mut runs = Vec::new();
            for run in 0..cli.runs {
                eprintln!(
                    "{name}: run {}/{} ({} s, {} connections)...",
                    run + 1,
                    cli.runs,
                    cli.duration.as_secs_f64(),
                    cli.connections
                );
                runs.push(wrk(
                    addr,
                    "/v1/ticker",
                    &keys_file,
                    &script,
                    cli.duration,
                    cli.connections,
                )?);
            }
            let closed_loop = median_sample(&runs);
            results.push(TargetResult {
                name: name.to_owned(),
                closed_loop,
                runs,
                peak_rss_mb: process.and_then(Proc::peak_rss_mb),
                ratio_vs_nginx: 0.0,
                ratio_vs_direct: 0.0,
            });
            Ok(closed_loop)
        };
    measure("direct", upstream.addr, Some(&upstream))?;
    measure("nginx", nginx.addr, None)?;
    let full = spawn_part(&[
        "gateway",
        "--config",
        full_config.to_str().context("path")?,
        "--workers",
        &workers,
    ])?;
    let full_sample = measure("tollgate", full.addr, Some(&full))?;
    {
        let relaxed = spawn_part(&[
            "gateway",
            "--config",
            relaxed_config.to_str().context("path")?,
            "--workers",
            &workers,
        ])?;
        measure(
            "tollgate-ledger-relaxed-durability",
            relaxed.addr,
            Some(&relaxed),
        )?;
    }
    {
        let bare = spawn_part(&[
            "gateway",
            "--config",
            bare_config.to_str().context("path")?,
            "--workers",
            &workers,
        ])?;
        measure("tollgate-auth-only", bare.addr, Some(&bare))?;
    }
    let direct_rps = results[0].closed_loop.rps;
    let nginx_rps = results[1].closed_loop.rps;
    for r in &mut results {
        r.ratio_vs_nginx = r.closed_loop.rps / nginx_rps.max(1e-9);
        r.ratio_vs_direct = r.closed_loop.rps / direct_rps.max(1e-9);
    }

    // Open loop at half of tollgate's closed-loop maximum.
    let rate = ((full_sample.rps / 2.0) as u64).max(100);
    let open_seconds = cli.duration;
    eprintln!(
        "open loop: {rate} requests/s for {} s against direct and tollgate...",
        open_seconds.as_secs_f64()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let keys_arc = Arc::new(keys);
    let measure_open = |rate: u64| -> anyhow::Result<OpenLoop> {
        let direct = runtime.block_on(open_loop(
            upstream.addr,
            Arc::clone(&keys_arc),
            rate,
            open_seconds,
            cli.connections,
        ))?;
        let tollgate = runtime.block_on(open_loop(
            full.addr,
            Arc::clone(&keys_arc),
            rate,
            open_seconds,
            cli.connections,
        ))?;
        Ok(OpenLoop {
            rate_rps: rate,
            seconds: open_seconds.as_secs_f64(),
            direct,
            tollgate,
            added_p99_us: tollgate.p99_us - direct.p99_us,
        })
    };
    let half_of_max = measure_open(rate)?;
    eprintln!("open loop: {} requests/s (light load)...", cli.light_rate);
    let light = measure_open(cli.light_rate)?;
    drop(full);
    let open = OpenLoops { half_of_max, light };

    // Memory with many keys and orgs loaded.
    eprintln!(
        "memory: seeding {} keys across {} orgs...",
        cli.large_keys, cli.large_orgs
    );
    let large_db = dir.path().join("large.db");
    let large_keys = seed(&large_db, cli.large_orgs, cli.large_keys)?;
    let large_keys_file = dir.path().join("large-keys.txt");
    std::fs::write(&large_keys_file, large_keys.join("\n") + "\n")?;
    let large_config = gateway_config(dir.path(), "large", &large_db, upstream.addr, Stages::Full)?;
    let large = spawn_part(&[
        "gateway",
        "--config",
        large_config.to_str().context("path")?,
        "--workers",
        &workers,
    ])?;
    let large_sample = wrk(
        large.addr,
        "/v1/ticker",
        &large_keys_file,
        &script,
        Duration::from_secs(if cli.smoke { 1 } else { 3 }),
        cli.connections,
    )?;
    let large_rss = large.peak_rss_mb();
    drop(large);

    // Egress: the simulator alone, then the router in front of it.
    let sim = spawn_part(&["sim"])?;
    let router = spawn_part(&[
        "router",
        "--sim",
        &sim.addr.to_string(),
        "--workers",
        &workers,
    ])?;
    let venue_path = "/binance/api/v3/ping";
    let mut egress = Vec::new();
    for (name, addr, path) in [
        ("venue-direct", sim.addr, venue_path.to_owned()),
        ("venue-via-router", router.addr, venue_path.to_owned()),
    ] {
        let mut runs = Vec::new();
        for run in 0..cli.runs {
            eprintln!("{name}: run {}/{}...", run + 1, cli.runs);
            runs.push(wrk(
                addr,
                &path,
                &keys_file,
                &script,
                cli.duration,
                cli.connections,
            )?);
        }
        egress.push((name, median_sample(&runs)));
    }
    drop(router);
    drop(sim);

    print_table(&cli, &results, &open, large_rss, large_sample.rps);
    let (direct, routed) = (&egress[0].1, &egress[1].1);
    println!();
    println!(
        "egress: the venue simulator alone vs the venue router in front of it (GET {venue_path})"
    );
    for (name, s) in &egress {
        println!(
            "  {name:<18} {:>9.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs",
            s.rps, s.p50_us, s.p99_us
        );
    }
    println!(
        "  router / direct: {:.2}x throughput, +{:.0} µs p50",
        routed.rps / direct.rps.max(1e-9),
        routed.p50_us - direct.p50_us
    );
    let json = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "machine": machine(),
        "settings": {
            "duration_s": cli.duration.as_secs_f64(),
            "connections": cli.connections,
            "workers": cli.workers,
            "runs": cli.runs,
            "keys": cli.keys,
            "orgs": cli.orgs,
            "load_generator": "wrk -t1 (closed loop), tollgate-bench open loop (fixed rate)",
            "smoke": cli.smoke,
        },
        "targets": results,
        "open_loop": open,
        "memory": {"keys": cli.large_keys, "orgs": cli.large_orgs, "peak_rss_mb": large_rss, "rps_during": large_sample.rps},
        "egress": {
            "path": venue_path,
            "direct": direct,
            "via_router": routed,
            "ratio": routed.rps / direct.rps.max(1e-9),
        },
    });
    if let Some(parent) = cli.json.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&cli.json, serde_json::to_string_pretty(&json)?)?;
    eprintln!("wrote {}", cli.json.display());

    if cli.smoke {
        for r in &results {
            if r.closed_loop.rps <= 0.0
                || r.closed_loop.non_2xx > 0
                || r.closed_loop.socket_errors > 0
            {
                bail!("smoke: {} answered badly: {:?}", r.name, r.closed_loop);
            }
        }
        for (name, s) in &egress {
            if s.rps <= 0.0 || s.non_2xx > 0 || s.socket_errors > 0 {
                bail!("smoke: {name} answered badly: {s:?}");
            }
        }
        let answered = |o: &OpenLoop| o.tollgate.ok > 0 && o.direct.ok > 0;
        if !answered(&open.half_of_max) || !answered(&open.light) || large_sample.rps <= 0.0 {
            bail!("smoke: the open-loop or memory run got no answers");
        }
        println!("smoke: every target answered and the output parses");
    }
    Ok(())
}

fn print_table(
    cli: &Cli,
    results: &[TargetResult],
    open: &OpenLoops,
    large_rss: Option<f64>,
    large_rps: f64,
) {
    println!();
    println!(
        "closed loop: wrk -t1 -c{} -d{}s, median of {} run(s); {} worker(s) for tollgate and nginx; {} keys in {} orgs",
        cli.connections,
        cli.duration.as_secs_f64(),
        cli.runs,
        cli.workers,
        cli.keys,
        cli.orgs
    );
    println!(
        "{:<38} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "target", "req/s", "p50 µs", "p99 µs", "p99.9 µs", "/nginx", "/direct", "RSS MB"
    );
    for r in results {
        let s = &r.closed_loop;
        println!(
            "{:<38} {:>10.0} {:>9.0} {:>9.0} {:>9.0} {:>9.2} {:>9.2} {:>9}",
            r.name,
            s.rps,
            s.p50_us,
            s.p99_us,
            s.p999_us,
            r.ratio_vs_nginx,
            r.ratio_vs_direct,
            r.peak_rss_mb.map_or("-".to_owned(), |m| format!("{m:.1}"))
        );
    }
    println!();
    for (what, o) in [
        ("half of tollgate's maximum", &open.half_of_max),
        ("light load", &open.light),
    ] {
        println!(
            "open loop at {} req/s for {} s ({what}): direct p50/p99/p99.9 {:.0}/{:.0}/{:.0} µs, tollgate {:.0}/{:.0}/{:.0} µs; added p99 {:.0} µs",
            o.rate_rps,
            o.seconds,
            o.direct.p50_us,
            o.direct.p99_us,
            o.direct.p999_us,
            o.tollgate.p50_us,
            o.tollgate.p99_us,
            o.tollgate.p999_us,
            o.added_p99_us
        );
    }
    println!(
        "memory: {} keys in {} orgs loaded, peak RSS {} MB ({:.0} req/s during a short load)",
        cli.large_keys,
        cli.large_orgs,
        large_rss.map_or("-".to_owned(), |m| format!("{m:.1}")),
        large_rps
    );
}
