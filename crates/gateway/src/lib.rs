//! The tollgate HTTP server.
//!
//! This crate owns everything that speaks HTTP: the ingress pipeline (one
//! module per step under [`pipeline`], in the order of `docs/pipeline.md`), the
//! admin API and its OpenAPI document, Prometheus metrics, the in-memory
//! [`directory::Directory`] the decision path reads, and the demo upstream.
//! Decisions themselves live in `tollgate-core`; durable state lives behind
//! `tollgate-store`'s `Store` trait.
//!
//! [`run`] starts a gateway on listeners the caller has already bound, so
//! tests start the real server in-process on port 0.
//!
//! # Layout
//! - [`config`]: `tollgate.toml` and `TOLLGATE_*` overrides.
//! - [`ingress`]: the per-request handler that runs the pipeline.
//! - [`admin`]: `/admin/v1/*`, `/healthz`, `/readyz`, `/metrics`.
//! - [`server`]: accept loops, timeouts, graceful shutdown.
//! - [`demo`]: the demo upstream and seed data behind `serve --demo`.

pub mod accounts;
pub mod admin;
pub mod autocharge;
pub mod clock;
pub mod config;
pub mod demo;
pub mod directory;
pub mod ingress;
pub mod jwt;
pub mod limiter;
pub mod metered_body;
pub mod metrics;
pub mod payments;
pub mod pipeline;
pub mod plans;
pub mod problem;
pub mod random;
pub mod request_id;
pub mod secrets;
pub mod server;
pub mod tls;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::Config;
pub use server::{Listeners, run, run_with};

use bytes::Bytes;
use http::HeaderName;

/// Boxed error for bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request sent upstream and every response sent back.
pub type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// `X-Request-Id`
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
