//! Prometheus metrics, served at the admin listener's `/metrics`.
//!
//! Each gateway owns its recorder rather than installing a process-global one,
//! so several gateways (as in the tests) can run in one process without
//! mixing their counts.
//!
//! - `tollgate_requests_total{route, code}`: every ingress request, by route
//!   pattern (`unmatched` when none matched) and decision code (`ok` when the
//!   upstream answered, else the rejection code).
//! - `tollgate_request_duration_seconds{route}`: histogram of the time from
//!   receiving the request head to sending the response head.

use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

const REQUESTS: &str = "tollgate_requests_total";
const DURATION: &str = "tollgate_request_duration_seconds";
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Latency buckets, in seconds: from 50 µs (a rejection) to 30 s (a slow upstream).
const BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The gateway's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh recorder.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DURATION.to_owned()), BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        recorder.describe_counter(
            REQUESTS.into(),
            None,
            "Ingress requests by route and decision code".into(),
        );
        recorder.describe_histogram(
            DURATION.into(),
            Some(metrics::Unit::Seconds),
            "Ingress request latency to the response head".into(),
        );
        Metrics { recorder, handle }
    }

    /// Counts one request.
    pub fn request(&self, route: &str, code: &'static str, seconds: f64) {
        let labels = vec![
            Label::new("route", route.to_owned()),
            Label::new("code", code),
        ];
        self.recorder
            .register_counter(&Key::from_parts(REQUESTS, labels), &METADATA)
            .increment(1);
        let labels = vec![Label::new("route", route.to_owned())];
        self.recorder
            .register_histogram(&Key::from_parts(DURATION, labels), &METADATA)
            .record(seconds);
    }

    /// A recorder that writes into this gateway's registry, for parts that
    /// record their own metrics (the venue router).
    pub fn shared_recorder(
        self: &std::sync::Arc<Self>,
    ) -> std::sync::Arc<dyn Recorder + Send + Sync> {
        std::sync::Arc::new(SharedRecorder(std::sync::Arc::clone(self)))
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds recorded histogram samples into their buckets. A recorder
    /// built without the exporter's own HTTP listener keeps every sample
    /// until this runs, so it must run periodically or memory grows with
    /// every request.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// This gateway's recorder, shared.
struct SharedRecorder(std::sync::Arc<Metrics>);

impl Recorder for SharedRecorder {
    fn describe_counter(
        &self,
        key: metrics::KeyName,
        unit: Option<metrics::Unit>,
        description: metrics::SharedString,
    ) {
        self.0.recorder.describe_counter(key, unit, description);
    }

    fn describe_gauge(
        &self,
        key: metrics::KeyName,
        unit: Option<metrics::Unit>,
        description: metrics::SharedString,
    ) {
        self.0.recorder.describe_gauge(key, unit, description);
    }

    fn describe_histogram(
        &self,
        key: metrics::KeyName,
        unit: Option<metrics::Unit>,
        description: metrics::SharedString,
    ) {
        self.0.recorder.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> metrics::Counter {
        self.0.recorder.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> metrics::Gauge {
        self.0.recorder.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> metrics::Histogram {
        self.0.recorder.register_histogram(key, metadata)
    }
}
