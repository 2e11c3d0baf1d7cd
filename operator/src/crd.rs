//! The `MultiVac` custom resource: what a user asks for (spec) and what the
//! operator reports back (status).
//!
//! Defaults live in the schema (so the API server fills them in and
//! `kubectl get mv -o yaml` shows the effective values) and the serde
//! defaults below mirror them, so objects read back before defaulting (unit
//! tests, older objects) behave the same way. Bad input is rejected by the API
//! server through bounds and CEL rules, each with a message saying what to fix.

use k8s_openapi::api::core::v1::{LocalObjectReference, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema, Resource};
use multivac_contract::secret_key;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Field manager of the reconciler for every server-side apply it sends.
pub const FIELD_MANAGER: &str = "multivac-operator";
/// Field manager of the scaler (it owns only worker `spec.replicas`,
/// `status.workers.{current,desired,backlog,lastScaleTime}` and the `Degraded` condition).
pub const SCALER_FIELD_MANAGER: &str = "multivac-operator-scaler";

/// A whole MultiVAC: HTTP server, queue workers, Redis and MongoDB, wired together.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "multivac.io",
    version = "v1alpha1",
    kind = "MultiVac",
    plural = "multivacs",
    shortname = "mv",
    namespaced,
    status = "MultiVacStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Workers","type":"integer","jsonPath":".status.workers.current"}"#,
    printcolumn = r#"{"name":"Backlog","type":"integer","jsonPath":".status.workers.backlog"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MultiVacSpec {
    /// The MultiVAC app image (the `multivac` binary), run by the server and the workers.
    #[x_kube(validation = Rule::new("self != ''").message("spec.image must not be empty: set it to the multivac app image, e.g. registry.example.com/multivac:0.1.0"))]
    pub image: String,

    /// Pull policy for the app image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Secrets used to pull the images of every pod of this MultiVac.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// The HTTP server.
    #[serde(default)]
    pub server: ServerSpec,

    /// The queue workers (their replica count is set by the operator's scaler).
    #[serde(default)]
    pub workers: WorkersSpec,

    /// Redis, the queue: managed by the operator unless `external` is set.
    #[serde(default)]
    pub redis: RedisSpec,

    /// MongoDB, the store: managed by the operator unless `external` is set.
    #[serde(default)]
    pub mongodb: MongoDbSpec,

    /// How MultiVAC decides it can answer.
    #[serde(default)]
    pub answer: AnswerSpec,

    /// Secret holding the bearer token that protects `POST /multivac/data`; unset = no token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token_secret_ref: Option<SecretKeyRef>,

    /// NetworkPolicies that let only this MultiVac's pods (and the operator) reach Redis and MongoDB.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
}

/// When the kubelet pulls an image.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    /// The string the Pod API expects.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// The HTTP server Deployment and its Service.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerSpec {
    /// Number of server pods; a PodDisruptionBudget is added when it is above 1.
    #[serde(default = "default_server_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Compute resources of the server container (defaults: requests 50m/64Mi, limit 256Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The Service in front of the server.
    #[serde(default)]
    pub service: ServiceSpec,
}

impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            replicas: default_server_replicas(),
            resources: None,
            service: ServiceSpec::default(),
        }
    }
}

fn default_server_replicas() -> i32 {
    1
}

/// The server's Service.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Port the Service exposes (the server itself listens on 8080).
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            type_: ServiceType::default(),
            port: default_service_port(),
        }
    }
}

fn default_service_port() -> i32 {
    80
}

/// Kubernetes Service types the server can be exposed with.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    /// The string the Service API expects.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// The worker Deployment and how the scaler sizes it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("workers.minReplicas must be less than or equal to workers.maxReplicas"))]
pub struct WorkersSpec {
    /// Fewest workers; 0 lets the scaler stop every worker while the queue is empty.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: i32,
    /// Most workers the scaler may run.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Backlog entries one worker is expected to handle; desired = ceil(backlog / this).
    #[serde(default = "default_target_backlog")]
    #[schemars(range(min = 1, max = 1000000))]
    pub target_backlog_per_worker: i32,
    /// Seconds between two backlog reads.
    #[serde(default = "default_poll_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub poll_interval_seconds: i32,
    /// Seconds the scaler waits, keeping the highest recommendation seen, before scaling down.
    #[serde(default = "default_stabilization")]
    #[schemars(range(min = 0, max = 86400))]
    pub scale_down_stabilization_seconds: i32,
    /// Compute resources of the worker container (defaults: requests 50m/64Mi, limit 256Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for WorkersSpec {
    fn default() -> Self {
        Self {
            min_replicas: default_min_replicas(),
            max_replicas: default_max_replicas(),
            target_backlog_per_worker: default_target_backlog(),
            poll_interval_seconds: default_poll_interval(),
            scale_down_stabilization_seconds: default_stabilization(),
            resources: None,
        }
    }
}

fn default_min_replicas() -> i32 {
    1
}
fn default_max_replicas() -> i32 {
    10
}
fn default_target_backlog() -> i32 {
    100
}
fn default_poll_interval() -> i32 {
    5
}
fn default_stabilization() -> i32 {
    60
}

/// Redis: managed by the operator (the default) or external.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.managed) && has(self.external))").message("set only one of redis.managed and redis.external"))]
pub struct RedisSpec {
    /// A Redis run by the operator (Deployment, PVC, Service, generated password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedStore>,
    /// A Redis you run yourself: the Secret key holds its URL (`redis://:password@host:6379/0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalStore>,
}

impl Default for RedisSpec {
    fn default() -> Self {
        Self {
            managed: Some(ManagedStore::default()),
            external: None,
        }
    }
}

/// MongoDB: managed by the operator (the default) or external.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.managed) && has(self.external))").message("set only one of mongodb.managed and mongodb.external"))]
pub struct MongoDbSpec {
    /// A MongoDB run by the operator (Deployment, PVC, Service, generated root credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedStore>,
    /// A MongoDB you run yourself: the Secret key holds its URI (`mongodb://user:pass@host:27017/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalStore>,
    /// Database the app uses.
    #[serde(default = "default_database")]
    #[schemars(length(min = 1, max = 63))]
    pub database: String,
}

impl Default for MongoDbSpec {
    fn default() -> Self {
        Self {
            managed: Some(ManagedStore::default()),
            external: None,
            database: default_database(),
        }
    }
}

fn default_database() -> String {
    "multivac".into()
}

/// A datastore run by the operator. An empty image means the operator's
/// default (`redis:7.4` / `mongo:7.0`), so one type serves both stores.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedStore {
    /// Image; unset = `redis:7.4` for Redis, `mongo:7.0` for MongoDB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// Compute resources of the datastore container (defaults: requests 50m/128Mi, limit 512Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The PersistentVolumeClaim holding the data.
    #[serde(default)]
    pub storage: StorageSpec,
}

/// Size and class of a datastore's PersistentVolumeClaim.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size.
    #[serde(default = "default_storage_size")]
    pub size: Quantity,
    /// StorageClass; unset = the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

fn default_storage_size() -> Quantity {
    Quantity("1Gi".into())
}

/// A datastore the user runs: where to find its connection string.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalStore {
    /// Secret (in the MultiVac's namespace) and key holding the URL/URI.
    pub secret_ref: SecretKeyRef,
}

/// One key of a Secret in the MultiVac's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret; unset = `redis-url`, `mongodb-uri` or `token` depending on the use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// What the app needs to see before it answers the question.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnswerSpec {
    /// Distinct concepts MultiVAC must learn before its answer is meaningful; unset = the app's default (100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000000))]
    pub required_concepts: Option<i64>,
}

/// Whether the operator writes NetworkPolicies around Redis and MongoDB.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Off only when the cluster has its own policy scheme.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn default_true() -> bool {
    true
}

/// What the operator observed. Two field managers write it with server-side
/// apply: the reconciler (`multivac-operator`) and the scaler
/// (`multivac-operator-scaler`, `workers.{current,desired,backlog,lastScaleTime}`
/// and the `Degraded` condition); `conditions` is a map keyed by `type` so each
/// owns its own entries.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultiVacStatus {
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` (reconciler) and `Degraded` (scaler).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Server pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ComponentStatus>,
    /// Worker pods and the scaler's view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<WorkersStatus>,
    /// Managed Redis pods (absent when external).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<ComponentStatus>,
    /// Managed MongoDB pods (absent when external).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mongodb: Option<ComponentStatus>,
    /// In-cluster URL of the server's Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_url: Option<String>,
}

impl MultiVacStatus {
    /// The server-side apply body that sets these status fields. Each field
    /// manager sends only its own fields: what it sent before and leaves out
    /// is removed, what the other manager owns is kept.
    pub(crate) fn apply_body(&self) -> Value {
        json!({
            "apiVersion": MultiVac::api_version(&()),
            "kind": MultiVac::kind(&()),
            "status": self,
        })
    }
}

/// Now, in whole seconds: what the API server stores in a `Time`, so a time
/// read back compares equal to the one written.
pub(crate) fn now_seconds() -> Time {
    let now = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// Replica counts of one Deployment.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Pods the Deployment wants.
    pub replicas: i32,
    /// Pods ready.
    pub ready_replicas: i32,
}

/// Worker pods (reconciler: `readyReplicas`) and the scaler's decisions.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkersStatus {
    /// Worker pods ready (reconciler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Replicas of the worker Deployment (scaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<i32>,
    /// Replicas the scaler wants (scaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<i32>,
    /// Last backlog read: consumer-group lag + pending (scaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<i64>,
    /// When the scaler last changed the replica count (scaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
}

/// Where a connection string comes from: a Secret and a key in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SecretSource {
    pub(crate) name: String,
    pub(crate) key: String,
}

impl MultiVac {
    fn child(&self, suffix: &str) -> String {
        format!(
            "{}-{suffix}",
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }
    /// Name of the server Deployment and Service.
    pub(crate) fn server_name(&self) -> String {
        self.child("server")
    }
    /// Name of the worker Deployment (the scaler patches its `spec.replicas`).
    pub(crate) fn worker_name(&self) -> String {
        self.child("worker")
    }
    /// Name of the managed Redis Deployment and Service.
    pub(crate) fn redis_name(&self) -> String {
        self.child("redis")
    }
    /// Name of the managed MongoDB Deployment and Service.
    pub(crate) fn mongodb_name(&self) -> String {
        self.child("mongodb")
    }
    /// Name of the generated credentials Secret.
    pub(crate) fn credentials_name(&self) -> String {
        self.child("credentials")
    }
    /// Name of the ConfigMap with the app's non-secret settings.
    pub(crate) fn config_name(&self) -> String {
        self.child("config")
    }
    /// Whether the operator runs Redis itself.
    pub(crate) fn redis_managed(&self) -> bool {
        self.spec.redis.external.is_none()
    }
    /// Whether the operator runs MongoDB itself.
    pub(crate) fn mongodb_managed(&self) -> bool {
        self.spec.mongodb.external.is_none()
    }
    /// Where the app (and the scaler) read the Redis URL from.
    pub(crate) fn redis_url_source(&self) -> SecretSource {
        match &self.spec.redis.external {
            Some(ext) => SecretSource {
                name: ext.secret_ref.name.clone(),
                key: ext
                    .secret_ref
                    .key
                    .clone()
                    .unwrap_or_else(|| secret_key::REDIS_URL.into()),
            },
            None => SecretSource {
                name: self.credentials_name(),
                key: secret_key::REDIS_URL.into(),
            },
        }
    }
    /// Where the app reads the MongoDB URI from.
    pub(crate) fn mongodb_uri_source(&self) -> SecretSource {
        match &self.spec.mongodb.external {
            Some(ext) => SecretSource {
                name: ext.secret_ref.name.clone(),
                key: ext
                    .secret_ref
                    .key
                    .clone()
                    .unwrap_or_else(|| secret_key::MONGODB_URI.into()),
            },
            None => SecretSource {
                name: self.credentials_name(),
                key: secret_key::MONGODB_URI.into(),
            },
        }
    }
    /// Where the app reads its API token from, when one is configured.
    pub(crate) fn api_token_source(&self) -> Option<SecretSource> {
        self.spec
            .api_token_secret_ref
            .as_ref()
            .map(|r| SecretSource {
                name: r.name.clone(),
                key: r
                    .key
                    .clone()
                    .unwrap_or_else(|| secret_key::API_TOKEN.into()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use serde_json::json;

    #[test]
    fn minimal_spec_gets_every_default() {
        let spec: MultiVacSpec = serde_json::from_value(json!({"image": "multivac:1"})).unwrap();
        assert_eq!(spec.server.replicas, 1);
        assert_eq!(spec.server.service.port, 80);
        assert_eq!(spec.workers, WorkersSpec::default());
        assert_eq!(spec.workers.min_replicas, 1);
        assert_eq!(spec.workers.max_replicas, 10);
        assert_eq!(spec.workers.target_backlog_per_worker, 100);
        assert_eq!(spec.workers.poll_interval_seconds, 5);
        assert_eq!(spec.workers.scale_down_stabilization_seconds, 60);
        assert!(spec.redis.managed.is_some() && spec.redis.external.is_none());
        assert!(spec.mongodb.managed.is_some() && spec.mongodb.external.is_none());
        assert_eq!(spec.mongodb.database, "multivac");
        assert!(spec.network_policy.enabled);
    }

    #[test]
    fn schema_carries_defaults_and_rules() {
        let crd = serde_json::to_value(MultiVac::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["required"], json!(["image"]));
        assert_eq!(spec["properties"]["workers"]["default"]["maxReplicas"], 10);
        assert_eq!(
            spec["properties"]["workers"]["x-kubernetes-validations"][0]["rule"],
            "self.minReplicas <= self.maxReplicas"
        );
        assert_eq!(
            spec["properties"]["workers"]["properties"]["minReplicas"]["minimum"].as_f64(),
            Some(0.0)
        );
        assert_eq!(
            spec["properties"]["redis"]["x-kubernetes-validations"][0]["rule"],
            "!(has(self.managed) && has(self.external))"
        );
        let status =
            &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
        assert_eq!(
            status["properties"]["conditions"]["x-kubernetes-list-type"],
            "map"
        );
        assert_eq!(
            status["properties"]["conditions"]["x-kubernetes-list-map-keys"],
            json!(["type"])
        );
        assert_eq!(crd["spec"]["names"]["shortNames"], json!(["mv"]));
    }

    #[test]
    fn external_sources_default_their_keys() {
        let mv: MultiVac = serde_json::from_value(json!({
            "apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac",
            "metadata": {"name": "a", "namespace": "ns"},
            "spec": {"image": "x", "redis": {"external": {"secretRef": {"name": "r"}}},
                     "mongodb": {"external": {"secretRef": {"name": "m", "key": "uri"}}},
                     "apiTokenSecretRef": {"name": "t"}}
        }))
        .unwrap();
        assert!(!mv.redis_managed());
        assert_eq!(
            mv.redis_url_source(),
            SecretSource {
                name: "r".into(),
                key: "redis-url".into()
            }
        );
        assert_eq!(
            mv.mongodb_uri_source(),
            SecretSource {
                name: "m".into(),
                key: "uri".into()
            }
        );
        assert_eq!(mv.api_token_source().unwrap().key, "token");
        assert_eq!(mv.worker_name(), "a-worker");
    }
}
