//! The scaler's Prometheus metrics, labelled per MultiVac, registered once in
//! the operator's registry under the `multivac_scaler` prefix.

use std::sync::{Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Identifies a MultiVac in the metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MultiVacLabels {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// A scaling decision that changed the replica count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DecisionLabels {
    pub(crate) namespace: String,
    pub(crate) name: String,
    /// `up` or `down`.
    pub(crate) direction: &'static str,
}

/// The scaler's metrics.
#[derive(Clone)]
pub(crate) struct Metrics {
    /// `multivac_scaler_backlog{namespace,name}`: entries waiting (lag + pending).
    pub(crate) backlog: Family<MultiVacLabels, Gauge>,
    /// `multivac_scaler_desired_replicas{namespace,name}`.
    pub(crate) desired: Family<MultiVacLabels, Gauge>,
    /// `multivac_scaler_max_replicas{namespace,name}`: `spec.workers.maxReplicas`,
    /// so an alert can tell the workers are pinned at the ceiling.
    pub(crate) max_replicas: Family<MultiVacLabels, Gauge>,
    /// `multivac_scaler_degraded{namespace,name}`: 1 while the scaler holds the
    /// MultiVac's `Degraded` condition True (the backlog cannot be read).
    pub(crate) degraded: Family<MultiVacLabels, Gauge>,
    /// `multivac_scaler_decisions_total{namespace,name,direction}`.
    pub(crate) decisions: Family<DecisionLabels, Counter>,
    /// `multivac_scaler_backlog_read_errors_total{namespace,name}`.
    pub(crate) read_errors: Family<MultiVacLabels, Counter>,
    /// `multivac_scaler_poll_duration_seconds`: one poll (read + decide + writes).
    pub(crate) poll_duration: Histogram,
}

impl Metrics {
    fn new() -> Self {
        Self {
            backlog: Family::default(),
            desired: Family::default(),
            max_replicas: Family::default(),
            degraded: Family::default(),
            decisions: Family::default(),
            read_errors: Family::default(),
            poll_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
        }
    }

    /// Registers the metrics in `registry` under `multivac_scaler`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self::new();
        let r = registry.sub_registry_with_prefix("multivac_scaler");
        r.register(
            "backlog",
            "Entries waiting for the workers: consumer-group lag + pending",
            m.backlog.clone(),
        );
        r.register(
            "desired_replicas",
            "Worker replicas the scaler wants",
            m.desired.clone(),
        );
        r.register(
            "max_replicas",
            "The MultiVac's spec.workers.maxReplicas",
            m.max_replicas.clone(),
        );
        r.register(
            "degraded",
            "1 while the MultiVac's Degraded condition is True (backlog unreadable)",
            m.degraded.clone(),
        );
        r.register(
            "decisions",
            "Scaling decisions that changed the worker replica count, by direction",
            m.decisions.clone(),
        );
        r.register(
            "backlog_read_errors",
            "Polls that could not read the backlog",
            m.read_errors.clone(),
        );
        r.register(
            "poll_duration_seconds",
            "Time one poll of one MultiVac took",
            m.poll_duration.clone(),
        );
        m
    }

    /// The metrics registered in the operator's registry. The scaler may be
    /// started again after a lost and regained lease; registering twice would
    /// export every series twice, so the first registration is kept.
    pub(crate) fn shared(registry: &Mutex<Registry>) -> Self {
        static METRICS: OnceLock<Metrics> = OnceLock::new();
        METRICS
            .get_or_init(|| {
                let mut r = registry.lock().unwrap_or_else(|e| e.into_inner());
                Self::register(&mut r)
            })
            .clone()
    }

    /// Drops the series of a MultiVac that is gone, so deleted MultiVacs do
    /// not linger in `/metrics`.
    pub(crate) fn forget(&self, namespace: &str, name: &str) {
        let l = MultiVacLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        self.backlog.remove(&l);
        self.desired.remove(&l);
        self.max_replicas.remove(&l);
        self.degraded.remove(&l);
        self.read_errors.remove(&l);
        for direction in ["up", "down"] {
            self.decisions.remove(&DecisionLabels {
                namespace: namespace.into(),
                name: name.into(),
                direction,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_labelled_per_multivac_and_forgotten() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        let l = MultiVacLabels {
            namespace: "ns".into(),
            name: "a".into(),
        };
        m.backlog.get_or_create(&l).set(1000);
        m.max_replicas.get_or_create(&l).set(10);
        m.degraded.get_or_create(&l).set(1);
        m.decisions
            .get_or_create(&DecisionLabels {
                namespace: "ns".into(),
                name: "a".into(),
                direction: "up",
            })
            .inc();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains(r#"multivac_scaler_backlog{namespace="ns",name="a"} 1000"#),
            "{out}"
        );
        assert!(
            out.contains(r#"multivac_scaler_max_replicas{namespace="ns",name="a"} 10"#),
            "{out}"
        );
        assert!(
            out.contains(r#"multivac_scaler_degraded{namespace="ns",name="a"} 1"#),
            "{out}"
        );
        assert!(
            out.contains(
                r#"multivac_scaler_decisions_total{namespace="ns",name="a",direction="up"} 1"#
            ),
            "{out}"
        );
        m.forget("ns", "a");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(!out.contains(r#"name="a""#), "{out}");
    }
}
