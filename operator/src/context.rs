//! State shared by the controller, the scaler and the HTTP endpoint.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use prometheus_client::registry::Registry;

use crate::fence::Fence;
use crate::telemetry::Metrics;

/// Everything a reconcile (or a scaler poll) needs besides the object itself.
pub struct Context {
    /// Client for the API server, authenticated as the operator.
    pub client: Client,
    /// Publishes Kubernetes Events on MultiVacs.
    pub recorder: Recorder,
    /// The reconciler's metrics.
    pub metrics: Metrics,
    /// The registry `/metrics` encodes; the scaler registers its own metrics
    /// here (lock, `sub_registry_with_prefix("multivac_scaler")`, register).
    pub registry: Arc<Mutex<Registry>>,
    /// Namespace the operator runs in (`POD_NAMESPACE`): NetworkPolicies let
    /// its pods reach Redis so the scaler can read the backlog.
    pub operator_namespace: String,
    /// Set once the process reached the API server; `/readyz` reports it.
    pub ready: AtomicBool,
    /// Consecutive failed reconciles per `namespace/name`, for the backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    /// Whether this process may write: checked by the client's layer for
    /// API requests, and before every write to a datastore (rotation).
    pub fence: Fence,
}

impl Context {
    /// Builds the context, registering the reconciler's metrics in `registry`.
    pub fn new(client: Client, registry: Arc<Mutex<Registry>>, operator_namespace: String) -> Self {
        let metrics = Metrics::register(&mut registry.lock().expect("metrics registry poisoned"));
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "multivac-operator".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Self {
            client,
            recorder,
            metrics,
            registry,
            operator_namespace,
            ready: AtomicBool::new(false),
            failures: Mutex::new(HashMap::new()),
            fence: Fence::open(),
        }
    }

    /// The same context, writing only while `fence` allows it (the fence
    /// whose layer `client` carries).
    pub fn with_fence(self, fence: Fence) -> Self {
        Self { fence, ..self }
    }
}
