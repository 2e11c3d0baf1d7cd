//! State shared by the controller, the scaler and the HTTP endpoint.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use prometheus_client::registry::Registry;

use crate::cache::Caches;
use crate::fence::Fence;
use crate::telemetry::Metrics;

/// Everything a reconcile (or a scaler poll) needs besides the object itself.
pub struct Context {
    /// Client for the API server, authenticated as the operator.
    pub client: Client,
    /// Publishes Kubernetes Events on MultiVacs.
    pub recorder: Recorder,
    /// Who publishes them (for events that must not be folded into a series).
    pub reporter: Reporter,
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
    /// Where a managed store's Service (`host:port`, e.g.
    /// `mv-redis.ns.svc:6379`) is reached instead, for an operator outside
    /// the cluster (the tests map them to local servers). Empty in a cluster.
    pub store_addresses: HashMap<String, String>,
    /// `namespace/name` -> `uid/user` of the app's MongoDB user last seen in
    /// a MultiVac's MongoDB: not looked up again while it stays available.
    pub(crate) app_users_seen: Mutex<HashMap<String, String>>,
    /// The app image of a MultiVac without `spec.image` (`--default-app-image`).
    pub default_app_image: Option<String>,
    /// The running controller's stores (none before it starts: every read
    /// then goes to the API server).
    caches: RwLock<Arc<Caches>>,
}

impl Context {
    /// Builds the context, registering the reconciler's metrics in `registry`.
    pub fn new(client: Client, registry: Arc<Mutex<Registry>>, operator_namespace: String) -> Self {
        let metrics = Metrics::register(&mut registry.lock().expect("metrics registry poisoned"));
        let reporter = Reporter {
            controller: "multivac-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let recorder = Recorder::new(client.clone(), reporter.clone());
        Self {
            client,
            recorder,
            reporter,
            metrics,
            registry,
            operator_namespace,
            ready: AtomicBool::new(false),
            failures: Mutex::new(HashMap::new()),
            fence: Fence::open(),
            store_addresses: HashMap::new(),
            app_users_seen: Mutex::new(HashMap::new()),
            default_app_image: None,
            caches: RwLock::default(),
        }
    }

    /// Reaches the managed store Service `host:port` at `address` instead.
    pub fn with_store_address(mut self, service: &str, address: &str) -> Self {
        self.store_addresses.insert(service.into(), address.into());
        self
    }

    /// Where to connect for the store Service at `host`:`port`.
    pub(crate) fn store_address(&self, host: &str, port: i32) -> (String, u16) {
        let service = format!("{host}:{port}");
        let address = self.store_addresses.get(&service).unwrap_or(&service);
        match address.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().unwrap_or(port as u16)),
            None => (address.clone(), port as u16),
        }
    }

    /// The same context, writing only while `fence` allows it (the fence
    /// whose layer `client` carries).
    pub fn with_fence(self, fence: Fence) -> Self {
        Self { fence, ..self }
    }

    /// The app image for MultiVacs that name none; empty counts as none.
    pub fn with_default_app_image(mut self, image: Option<String>) -> Self {
        self.default_app_image = image.filter(|i| !i.trim().is_empty());
        self
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
