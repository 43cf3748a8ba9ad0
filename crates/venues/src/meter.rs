//! Where the router's metrics go: the recorder its host hands it (the
//! gateway's per-instance Prometheus recorder), or nowhere.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// A recorder shared with the router.
pub type Sink = Arc<dyn Recorder + Send + Sync>;

/// The router's handle on its metrics.
#[derive(Clone, Default)]
pub struct Meter {
    sink: Option<Sink>,
}

fn key(name: &'static str, labels: &[(&'static str, String)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, v.clone()))
        .collect();
    Key::from_parts(name, labels)
}

impl Meter {
    pub fn new(sink: Option<Sink>) -> Self {
        Meter { sink }
    }

    pub fn counter(&self, name: &'static str, labels: &[(&'static str, String)]) -> Counter {
        match &self.sink {
            Some(sink) => sink.register_counter(&key(name, labels), &METADATA),
            None => Counter::noop(),
        }
    }

    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, String)]) -> Gauge {
        match &self.sink {
            Some(sink) => sink.register_gauge(&key(name, labels), &METADATA),
            None => Gauge::noop(),
        }
    }

    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, String)]) -> Histogram {
        match &self.sink {
            Some(sink) => sink.register_histogram(&key(name, labels), &METADATA),
            None => Histogram::noop(),
        }
    }
}
