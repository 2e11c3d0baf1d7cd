//! The operator's own Prometheus metrics (logs are set up, and metrics
//! encoded, by `multivac_contract`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of a finished reconciliation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Label of a failed reconciliation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// [`crate::Error::metric_label`].
    pub error: &'static str,
}

/// Label of a write the reconciler sent to the API server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// Kind of the object written (`Deployment`, `MultiVac/status`, ...).
    pub kind: String,
}

/// The reconciler's metrics; the scaler registers its own in the shared registry.
pub struct Metrics {
    /// `multivac_operator_reconciliations_total{result}`.
    pub reconciliations: Family<ResultLabels, Counter>,
    /// `multivac_operator_reconcile_errors_total{error}`.
    pub errors: Family<ErrorLabels, Counter>,
    /// `multivac_operator_reconcile_duration_seconds`.
    pub reconcile_duration: Histogram,
    /// `multivac_operator_api_writes_total{kind}`: the proof that an unchanged
    /// MultiVac costs no writes.
    pub api_writes: Family<WriteLabels, Counter>,
    /// `multivac_operator_leader`: 1 while this process holds the lease (or runs without election).
    pub leader: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them under the `multivac_operator` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reconciliations: Family::default(),
            errors: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            api_writes: Family::default(),
            leader: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("multivac_operator");
        r.register(
            "reconciliations",
            "Reconciliations by result",
            m.reconciliations.clone(),
        );
        r.register(
            "reconcile_errors",
            "Failed reconciliations by error kind",
            m.errors.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation",
            m.reconcile_duration.clone(),
        );
        r.register(
            "api_writes",
            "Writes (create/apply/patch) sent to the API server by the reconciler, by kind",
            m.api_writes.clone(),
        );
        r.register(
            "leader",
            "1 while this process leads (runs the controller and scaler)",
            m.leader.clone(),
        );
        m
    }

    /// Counts one write of `kind`.
    pub fn write(&self, kind: &str) {
        self.api_writes
            .get_or_create(&WriteLabels { kind: kind.into() })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exported_with_the_operator_prefix() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.reconciliations
            .get_or_create(&ResultLabels { result: "ok" })
            .inc();
        m.reconcile_duration.observe(0.01);
        m.leader.set(1);
        m.write("Deployment");
        let out = multivac_contract::encode_metrics(&registry);
        assert!(out.contains("multivac_operator_reconciliations_total{result=\"ok\"} 1"));
        assert!(out.contains("multivac_operator_reconcile_duration_seconds_count 1"));
        assert!(out.contains("multivac_operator_leader 1"));
        assert!(out.contains("multivac_operator_api_writes_total{kind=\"Deployment\"} 1"));
    }
}
