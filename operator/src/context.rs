//! State shared by the controller, the scaler and the HTTP endpoint.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use prometheus_client::registry::Registry;

use crate::cache::Caches;
use crate::telemetry::Metrics;

/// The `User-Agent` of every request the operator sends, so the API
/// server's logs and audit events tell its requests apart (kube sets none).
pub const USER_AGENT: &str = concat!("multivac-operator/", env!("CARGO_PKG_VERSION"));

/// A client from the in-cluster configuration or `KUBECONFIG`, sending [`USER_AGENT`].
pub async fn client() -> Result<Client, kube::Error> {
    let mut config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    ));
    Client::try_from(config)
}

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
    /// The running controller's stores (none before it starts: every read
    /// then goes to the API server).
    caches: RwLock<Arc<Caches>>,
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
            caches: RwLock::default(),
        }
    }

    /// The stores reconciles read from.
    pub(crate) fn caches(&self) -> Arc<Caches> {
        self.caches.read().expect("caches lock").clone()
    }

    /// Swaps in the stores of a (re)started controller.
    pub(crate) fn set_caches(&self, caches: Caches) {
        *self.caches.write().expect("caches lock") = Arc::new(caches);
    }
}
