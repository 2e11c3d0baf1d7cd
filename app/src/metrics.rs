//! Prometheus metrics for the server and the workers (encoded and served by
//! `multivac_contract`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use multivac_contract::DEAD_LETTER;

/// Labels of one HTTP request; each comes from a fixed set (the routes, a
/// few methods, the statuses the server answers), never from the client.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) route: String,
    pub(crate) method: &'static str,
    pub(crate) status: u16,
}

/// The `method` label: a standard method's name, `other` for the rest (a
/// client can send any token as a method).
pub(crate) fn method_label(method: &axum::http::Method) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    STANDARD
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("other")
}

/// Labels of an error answer: its stable `error` code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ErrorLabels {
    pub(crate) error: &'static str,
}

/// Labels of Redis' `maxmemory-policy` (see `EvictionPolicy::label`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PolicyLabels {
    pub(crate) policy: &'static str,
}

fn redis_policy(registry: &mut Registry) -> Family<PolicyLabels, Gauge> {
    let family = Family::<PolicyLabels, Gauge>::default();
    registry.register(
        "redis_maxmemory_policy",
        "Redis' maxmemory-policy (1 for the policy read at start; allkeys-* and other may evict the stream and lose data, unknown: CONFIG refused)",
        family.clone(),
    );
    family
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
    pub(crate) errors: Family<ErrorLabels, Counter>,
    pub(crate) latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub(crate) backlog: Gauge,
    pub(crate) pending: Gauge,
    pub(crate) mongodb_up: Gauge,
    pub(crate) concepts: Gauge,
    pub(crate) required_concepts: Gauge,
    pub(crate) knowledge_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub(crate) redis_policy: Family<PolicyLabels, Gauge>,
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
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "http_errors",
            "Error answers by their error code (overloaded, timeout, backlog_full, queue_full, ...)",
            errors.clone(),
        );
        let mongodb_up = Gauge::default();
        registry.register(
            "mongodb_up",
            "1 when the last MongoDB read of the knowledge figures succeeded, else 0 (intake does not need MongoDB)",
            mongodb_up.clone(),
        );
        let concepts = Gauge::default();
        registry.register(
            "concepts",
            "Distinct concepts learned, as last read from MongoDB",
            concepts.clone(),
        );
        let required_concepts = Gauge::default();
        registry.register(
            "required_concepts",
            "Concepts needed for a meaningful answer (MULTIVAC_REQUIRED_CONCEPTS)",
            required_concepts.clone(),
        );
        let knowledge_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "knowledge_age_seconds",
            "Age of the knowledge figures the answer uses (grows while MongoDB is unreachable)",
            knowledge_age.clone(),
        );
        let redis_policy = redis_policy(&mut registry);
        ServerMetrics {
            registry,
            requests,
            errors,
            latency,
            backlog,
            pending,
            mongodb_up,
            concepts,
            required_concepts,
            knowledge_age,
            redis_policy,
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
    pub(crate) store_rejections: Counter,
    pub(crate) queue_errors: Counter,
    pub(crate) backlog: Gauge,
    pub(crate) redis_policy: Family<PolicyLabels, Gauge>,
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
        let store_rejections = Counter::default();
        registry.register(
            "store_rejections",
            format!("Data MongoDB refused for good (moved to {DEAD_LETTER}, the rest of their batch acknowledged)"),
            store_rejections.clone(),
        );
        let redis_policy = redis_policy(&mut registry);
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
            store_rejections,
            queue_errors,
            backlog,
            redis_policy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn method_labels_come_from_a_fixed_set() {
        for (method, label) in [
            (Method::GET, "GET"),
            (Method::POST, "POST"),
            (Method::DELETE, "DELETE"),
            (Method::from_bytes(b"PROPFIND").unwrap(), "other"),
            (Method::from_bytes(b"X-RANDOM-1234").unwrap(), "other"),
        ] {
            assert_eq!(method_label(&method), label, "{method}");
        }
    }
}
