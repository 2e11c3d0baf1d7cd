//! Prometheus metrics for the server and the workers (encoded and served by
//! `multivac_contract`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use multivac_contract::DEAD_LETTER;

/// Labels of one HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) route: String,
    pub(crate) method: String,
    pub(crate) status: u16,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub(crate) route: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The server's metrics.
pub(crate) struct ServerMetrics {
    pub(crate) registry: Registry,
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub(crate) backlog: Gauge,
    pub(crate) pending: Gauge,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("multivac");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let backlog = Gauge::default();
        let pending = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "backlog",
            "Data queued and not yet learned (undelivered + pending)",
            backlog.clone(),
        );
        registry.register(
            "pending",
            "Data delivered to workers and not yet acknowledged",
            pending.clone(),
        );
        ServerMetrics {
            registry,
            requests,
            latency,
            backlog,
            pending,
        }
    }
}

/// A worker's metrics.
pub(crate) struct WorkerMetrics {
    pub(crate) registry: Registry,
    pub(crate) processed: Counter,
    pub(crate) batches: Counter,
    pub(crate) batch_duration: Histogram,
    pub(crate) reclaimed: Counter,
    pub(crate) dead_lettered: Counter,
    pub(crate) store_errors: Counter,
    pub(crate) queue_errors: Counter,
    pub(crate) backlog: Gauge,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("multivac_worker");
        let processed = Counter::default();
        let batches = Counter::default();
        let batch_duration = latency_histogram();
        let reclaimed = Counter::default();
        let dead_lettered = Counter::default();
        let store_errors = Counter::default();
        let queue_errors = Counter::default();
        let backlog = Gauge::default();
        registry.register(
            "processed",
            "Data learned and acknowledged",
            processed.clone(),
        );
        registry.register("batches", "Batches written to MongoDB", batches.clone());
        registry.register(
            "batch_duration_seconds",
            "Time to learn and store one batch",
            batch_duration.clone(),
        );
        registry.register(
            "reclaimed",
            "Entries taken over from consumers that left them idle",
            reclaimed.clone(),
        );
        registry.register(
            "dead_lettered",
            format!("Entries moved to {DEAD_LETTER}"),
            dead_lettered.clone(),
        );
        registry.register(
            "store_errors",
            "Failed MongoDB writes (retried with backoff)",
            store_errors.clone(),
        );
        registry.register(
            "queue_errors",
            "Failed Redis calls (retried with backoff)",
            queue_errors.clone(),
        );
        registry.register(
            "backlog",
            "Data queued and not yet learned (undelivered + pending)",
            backlog.clone(),
        );
        WorkerMetrics {
            registry,
            processed,
            batches,
            batch_duration,
            reclaimed,
            dead_lettered,
            store_errors,
            queue_errors,
            backlog,
        }
    }
}
