//! The `MultiVac` custom resource: what a user asks for (spec) and what the
//! operator reports back (status).
//!
//! Defaults live in the schema (so the API server fills them in and
//! `kubectl get mv -o yaml` shows the effective values) and the serde
//! defaults below mirror them, so objects read back before defaulting (unit
//! tests, older objects) behave the same way. Bad input is rejected by the API
//! server through bounds and CEL rules, each with a message saying what to fix.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSON,
};
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
    doc = "A MultiVAC: an HTTP server that queues data in a Redis Stream, workers that learn concepts from it into MongoDB, and (unless external) that Redis and MongoDB. The operator creates them in this namespace and scales the workers from the backlog. The smallest MultiVac is a name; `kubectl explain multivac.spec` lists every setting.",
    printcolumn = r#"{"name":"Ready","type":"string","description":"The Ready condition's status","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Workers","type":"integer","description":"Worker replicas now","jsonPath":".status.workers.current"}"#,
    printcolumn = r#"{"name":"Backlog","type":"integer","description":"Entries waiting: consumer-group lag + pending","jsonPath":".status.workers.backlog"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"description":"Why Ready is what it is","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    validation = Rule::new(NAME_LENGTH_RULE).message(message::NAME_LENGTH),
    validation = Rule::new(NAME_CHARACTERS_RULE).message(message::NAME_CHARACTERS)
)]
#[serde(rename_all = "camelCase")]
pub struct MultiVacSpec {
    /// The MultiVAC app image (the `multivac` binary), run by the server and the workers. Unset: the operator's default, the app image of the operator's own release (its `MULTIVAC_OPERATOR_DEFAULT_APP_IMAGE`, the chart's value `appImage`), so upgrading the operator upgrades this MultiVac's app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self != ''").message("spec.image must not be empty: set it to the multivac app image, e.g. registry.example.com/multivac:v0.1.0, or leave it out for the operator's default"))]
    pub image: Option<String>,

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

    /// What deleting this MultiVac does to its data: `Retain` keeps the Redis and MongoDB volumes (PVCs) and the generated credentials Secret, and a MultiVac created again under the same name in this namespace takes them back; `Delete` lets Kubernetes delete them with the MultiVac.
    #[serde(default)]
    pub retention: Retention,
}

/// The CRD as installed: `MultiVac::crd()` with `spec` optional and
/// defaulted to `{}` (every field in it has a default, and the API server
/// fills them in), so that a MultiVac can be a name alone. kube's derive
/// always makes `spec` required.
pub fn custom_resource_definition() -> CustomResourceDefinition {
    let mut crd = <MultiVac as kube::CustomResourceExt>::crd();
    for version in &mut crd.spec.versions {
        let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        if let Some(required) = root.required.as_mut() {
            required.retain(|r| r != "spec");
        }
        if root.required.as_ref().is_some_and(Vec::is_empty) {
            root.required = None;
        }
        if let Some(spec) = root.properties.as_mut().and_then(|p| p.get_mut("spec")) {
            spec.default = Some(JSON(json!({})));
        }
    }
    crd
}

/// The longest MultiVac name: `<name>-mongodb`, a Service name, must stay a
/// DNS label (at most 63 characters).
pub(crate) const MAX_NAME_LEN: usize = 55;
const NAME_LENGTH_RULE: &str = "self.metadata.name.size() <= 55";
/// A DNS label (RFC 1035), what Service names must be.
const NAME_CHARACTERS_RULE: &str = "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";

/// The messages of the CRD's validation rules. The operator checks the same
/// rules again with the same messages (an older CRD without them may be installed).
pub(crate) mod message {
    pub(crate) const NAME_LENGTH: &str = "metadata.name must be at most 55 characters: the Service <name>-mongodb must stay a valid DNS label (63 characters)";
    pub(crate) const NAME_CHARACTERS: &str = "metadata.name must consist of lowercase letters, digits and '-', start with a letter and end with a letter or digit: it begins the names of Services, which are DNS labels";
    pub(crate) const QUANTITY: &str = "must be a quantity, e.g. 500m, 2 or 1Gi";
    pub(crate) const REQUESTS_ABOVE_LIMITS: &str =
        "resources.requests must not exceed resources.limits for the same resource";
    pub(crate) const OPERATOR_LABEL: &str = "must not set the operator's own labels app.kubernetes.io/name, instance, component, part-of or managed-by: the Services, NetworkPolicies and PodDisruptionBudget select the pods by them";
    pub(crate) const OPERATOR_ANNOTATION: &str =
        "must not set annotations under multivac.io/: they are the operator's own";
    pub(crate) const TLS_WITHOUT_HOST: &str = "server.ingress.tlsSecretName needs server.ingress.host: the certificate is served for that host";
}

/// What happens to a MultiVac's data (its PVCs and generated credentials
/// Secret) when the MultiVac is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Retention {
    /// Kept, without an ownerReference, for a MultiVac created again under the same name.
    #[default]
    Retain,
    /// Owned by the MultiVac, so deleted with it by the garbage collector.
    Delete,
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
    #[schemars(transform = checked_resources)]
    pub resources: Option<ResourceRequirements>,
    /// The Service in front of the server: its public port 8080 only (the API and its probes).
    #[serde(default)]
    pub service: ServiceSpec,
    /// Backlog (data queued and not yet learned) at which `POST /multivac/data` answers 503 `backlog_full` with Retry-After, before Redis is full; unset = bounded only by Redis' maxmemory (503 `queue_full`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000000))]
    pub max_backlog: Option<i64>,
    /// Seconds a stopping server pod keeps serving while unready, so Services and load balancers stop sending it requests first; its terminationGracePeriodSeconds is this plus the request timeout plus a margin.
    #[serde(default = "default_drain_seconds")]
    #[schemars(range(min = 0, max = 300))]
    pub drain_seconds: i32,
    /// An Ingress `<name>-server` routing the API (`/` and `/multivac...`, and `/zzz` with `publicZzz`) to the Service; unset = none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// Also serve `/zzz/` (state, backlog, live workers, what MultiVAC knows) on the public port, so the Service and the Ingress expose it. Default false: `/zzz/` and `/metrics` are served only on the internal port 9090 (container port `metrics`), which no Service or Ingress exposes.
    #[serde(default)]
    pub public_zzz: bool,
    /// Where the server pods run and what they carry.
    #[serde(flatten)]
    pub placement: Placement,
}

impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            replicas: default_server_replicas(),
            resources: None,
            service: ServiceSpec::default(),
            max_backlog: None,
            drain_seconds: default_drain_seconds(),
            ingress: None,
            public_zzz: false,
            placement: Placement::default(),
        }
    }
}

fn default_server_replicas() -> i32 {
    1
}

fn default_drain_seconds() -> i32 {
    10
}

/// The server's Service.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type: `ClusterIP` (in-cluster only), `NodePort` or `LoadBalancer` (a cloud load balancer; see `annotations`).
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Port the Service exposes, to the server's public port 8080 (named `http`).
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Annotations of the Service, such as those a cloud load balancer reads (`service.beta.kubernetes.io/aws-load-balancer-scheme: internal`); keys under `multivac.io/` are the operator's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = operator_annotations_refused)]
    pub annotations: BTreeMap<String, String>,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            type_: ServiceType::default(),
            port: default_service_port(),
            annotations: BTreeMap::new(),
        }
    }
}

/// The server's Ingress: one rule, for `host` (or every host), paths of the
/// API only, to the Service's `http` port.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.tlsSecretName) || has(self.host)").message(message::TLS_WITHOUT_HOST))]
pub struct IngressSpec {
    /// Host name the Ingress answers for, e.g. `multivac.example.com`; unset = every host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub host: Option<String>,
    /// IngressClass that serves it (e.g. `nginx`); unset = the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub ingress_class_name: Option<String>,
    /// Secret (`kubernetes.io/tls`, in this namespace) with the certificate for `host`: the Ingress serves HTTPS with it. Unset = plain HTTP. cert-manager can create it (annotation `cert-manager.io/cluster-issuer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub tls_secret_name: Option<String>,
    /// Annotations of the Ingress, such as `cert-manager.io/cluster-issuer` or the Ingress controller's own settings; keys under `multivac.io/` are the operator's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = operator_annotations_refused)]
    pub annotations: BTreeMap<String, String>,
}

/// Where one component's pods run and what they carry besides the
/// operator's labels and annotations: Kubernetes' own pod fields, passed to
/// the pod template as given. Flattened into the server, the workers and
/// each managed store.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Labels a node must have to run these pods (the pods' `nodeSelector`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints these pods tolerate (the pods' `tolerations`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node affinity and pod (anti-)affinity of these pods (the pods' `affinity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// How these pods spread over zones or nodes (the pods' `topologySpreadConstraints`). Select this component's pods with the labels `app.kubernetes.io/instance: <name>` and `app.kubernetes.io/component: server`, `worker`, `redis` or `mongodb`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// PriorityClass of these pods; unset = the cluster's default priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// Annotations added to these pods, for a service mesh or a log collector say; keys under `multivac.io/` are the operator's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = operator_annotations_refused)]
    pub pod_annotations: BTreeMap<String, String>,
    /// Labels added to these pods. The operator's own labels (`app.kubernetes.io/name`, `instance`, `component`, `part-of`, `managed-by`) cannot be set here: the Services, NetworkPolicies and PodDisruptionBudget select the pods by them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = operator_labels_refused)]
    pub pod_labels: BTreeMap<String, String>,
}

/// The labels of the operator's own on every pod: `podLabels` cannot set
/// them (the CRD refuses, and the operator's values win in the template).
pub(crate) const OPERATOR_LABELS: [&str; 5] = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
];
/// Annotation keys under this prefix are the operator's own.
pub(crate) const OPERATOR_ANNOTATION_PREFIX: &str = "multivac.io/";
/// Bounds that keep the map rules within the API server's CEL cost budget.
const MAX_MAP_ENTRIES: usize = 64;

/// A map of annotations the user sets: no key under `multivac.io/`.
fn operator_annotations_refused(schema: &mut schemars::Schema) {
    bounded_map(schema);
    schema.insert(
        "x-kubernetes-validations".into(),
        json!([{
            "rule": format!("self.all(k, !k.startsWith('{OPERATOR_ANNOTATION_PREFIX}'))"),
            "message": message::OPERATOR_ANNOTATION,
        }]),
    );
}

/// `podLabels`: none of the operator's own labels.
fn operator_labels_refused(schema: &mut schemars::Schema) {
    bounded_map(schema);
    let labels: Vec<String> = OPERATOR_LABELS.iter().map(|l| format!("'{l}'")).collect();
    schema.insert(
        "x-kubernetes-validations".into(),
        json!([{
            "rule": format!("self.all(k, !(k in [{}]))", labels.join(", ")),
            "message": message::OPERATOR_LABEL,
        }]),
    );
}

fn bounded_map(schema: &mut schemars::Schema) {
    schema.insert("maxProperties".into(), json!(MAX_MAP_ENTRIES));
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
    #[schemars(transform = checked_resources)]
    pub resources: Option<ResourceRequirements>,
    /// Where the worker pods run and what they carry.
    #[serde(flatten)]
    pub placement: Placement,
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
            placement: Placement::default(),
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
    pub managed: Option<ManagedRedis>,
    /// A Redis you run yourself: the Secret key holds its URL, `redis://:password@host:6379/0`, or `rediss://` for TLS (Redis 6.2 or later; see `caSecretRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalStore>,
}

impl Default for RedisSpec {
    fn default() -> Self {
        Self {
            managed: Some(ManagedRedis::default()),
            external: None,
        }
    }
}

/// The Redis the operator runs: a datastore, and how it persists.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRedis {
    /// Image, resources, storage and placement.
    #[serde(flatten)]
    pub store: ManagedStore,
    /// When Redis fsyncs its append-only file: `always` (before it answers, so a 202 survives a crash of the machine) or `everysec` (once a second, several times the POST throughput; a machine crash may lose the last 1-2 s of accepted data). Either way a crash of the Redis process alone loses nothing accepted while the disk keeps up.
    #[serde(default)]
    pub appendfsync: AppendFsync,
}

/// Redis' `appendfsync` policies the operator offers (`no` is not one: it
/// leaves durability to the kernel's flush interval).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AppendFsync {
    /// fsync before answering: nothing accepted is lost, even on a machine crash.
    #[default]
    Always,
    /// fsync once a second in the background.
    Everysec,
}

impl AppendFsync {
    /// The value redis-server takes.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Everysec => "everysec",
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
    /// A MongoDB you run yourself: the Secret key holds its URI, `mongodb://user:pass@host:27017/` (`?tls=true` for TLS; see `caSecretRef`).
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
    #[schemars(transform = checked_resources)]
    pub resources: Option<ResourceRequirements>,
    /// The PersistentVolumeClaim holding the data.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Where the datastore's pod runs and what it carries.
    #[serde(flatten)]
    pub placement: Placement,
}

/// Size and class of a datastore's PersistentVolumeClaim.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size.
    #[serde(default = "default_storage_size")]
    #[schemars(transform = checked_quantity)]
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
    /// Secret and key (default `ca.crt`) holding the PEM certificates of the CA that signed the store's TLS certificate, when it is not one of the public roots: mounted into the server and worker pods (and read by the operator's scaler for Redis). Needs `rediss://`, or turns TLS on for MongoDB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// One key of a Secret in the MultiVac's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret; unset = `redis-url`, `mongodb-uri`, `token` or `ca.crt` depending on the use.
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

/// The CEL rule that a quantity (int or string) parses, e.g. `1Gi`, not `lots`.
fn quantity_rule() -> Value {
    json!({"rule": "isQuantity(string(self))", "message": message::QUANTITY})
}

/// `storage.size` must be a quantity.
fn checked_quantity(schema: &mut schemars::Schema) {
    schema.insert("x-kubernetes-validations".into(), json!([quantity_rule()]));
}

/// A `resources` block whose values are quantities and whose requests do not
/// exceed its limits, what the API server would otherwise refuse only when
/// the Deployment is applied. The bounds (at most 16 resources, 64 characters
/// a value) keep the rules within the API server's CEL cost budget.
fn checked_resources(schema: &mut schemars::Schema) {
    fn visit(schema: &mut serde_json::Map<String, Value>) {
        if let Some(properties) = schema.get_mut("properties") {
            for key in ["limits", "requests"] {
                let Some(map) = properties.get_mut(key) else {
                    continue;
                };
                map["maxProperties"] = json!(16);
                let item = &mut map["additionalProperties"];
                item["maxLength"] = json!(64);
                item["x-kubernetes-validations"] = json!([quantity_rule()]);
            }
            schema.insert(
                "x-kubernetes-validations".into(),
                json!([{
                    "rule": "!has(self.requests) || !has(self.limits) || self.requests.all(r, !(r in self.limits) || !isQuantity(string(self.requests[r])) || !isQuantity(string(self.limits[r])) || quantity(string(self.requests[r])).compareTo(quantity(string(self.limits[r]))) <= 0)",
                    "message": message::REQUESTS_ABOVE_LIMITS,
                }]),
            );
            return;
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            let branches = schema.get_mut(key).and_then(Value::as_array_mut);
            for branch in branches.into_iter().flatten() {
                if let Some(branch) = branch.as_object_mut() {
                    visit(branch);
                }
            }
        }
    }
    if let Some(object) = schema.as_object_mut() {
        visit(object);
    }
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
    /// Name of the pods' ServiceAccount. Never the MultiVac's bare name: a
    /// MultiVac named `default` would take over the namespace's own.
    pub(crate) fn service_account_name(&self) -> String {
        self.child("multivac")
    }
    /// Name of the PVC holding the data of store `component` (`redis`, `mongodb`).
    pub(crate) fn data_volume_name(&self, component: &str) -> String {
        self.child(&format!("{component}-data"))
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
            Some(ext) => ext.secret_ref.source(secret_key::REDIS_URL),
            None => SecretSource {
                name: self.credentials_name(),
                key: secret_key::REDIS_URL.into(),
            },
        }
    }
    /// Where the app reads the MongoDB URI from.
    pub(crate) fn mongodb_uri_source(&self) -> SecretSource {
        match &self.spec.mongodb.external {
            Some(ext) => ext.secret_ref.source(secret_key::MONGODB_URI),
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
            .map(|r| r.source(secret_key::API_TOKEN))
    }
    /// Where the app (and the scaler) read the CA of an external Redis, when one is named.
    pub(crate) fn redis_ca_source(&self) -> Option<SecretSource> {
        let ca = self.spec.redis.external.as_ref()?.ca_secret_ref.as_ref()?;
        Some(ca.source(secret_key::CA_CERT))
    }
    /// Where the app reads the CA of an external MongoDB, when one is named.
    pub(crate) fn mongodb_ca_source(&self) -> Option<SecretSource> {
        let ca = self
            .spec
            .mongodb
            .external
            .as_ref()?
            .ca_secret_ref
            .as_ref()?;
        Some(ca.source(secret_key::CA_CERT))
    }
}

impl SecretKeyRef {
    /// The Secret and key this names, `default_key` when no key is given.
    fn source(&self, default_key: &str) -> SecretSource {
        SecretSource {
            name: self.name.clone(),
            key: self.key.clone().unwrap_or_else(|| default_key.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn minimal_spec_gets_every_default() {
        let spec: MultiVacSpec = serde_json::from_value(json!({})).unwrap();
        assert_eq!(spec.image, None);
        assert_eq!(spec.server.placement, Placement::default());
        assert_eq!(
            (&spec.server.ingress, spec.server.public_zzz),
            (&None, false)
        );
        assert!(spec.server.service.annotations.is_empty());
        assert_eq!(spec.server.replicas, 1);
        assert_eq!(spec.server.service.port, 80);
        assert_eq!(spec.workers, WorkersSpec::default());
        assert_eq!(spec.workers.min_replicas, 1);
        assert_eq!(spec.workers.max_replicas, 10);
        assert_eq!(spec.workers.target_backlog_per_worker, 100);
        assert_eq!(spec.workers.poll_interval_seconds, 5);
        assert_eq!(spec.workers.scale_down_stabilization_seconds, 60);
        assert_eq!(spec.server.drain_seconds, 10);
        assert_eq!(spec.server.max_backlog, None);
        assert!(spec.redis.managed.is_some() && spec.redis.external.is_none());
        assert_eq!(spec.redis.managed.unwrap().appendfsync, AppendFsync::Always);
        assert!(spec.mongodb.managed.is_some() && spec.mongodb.external.is_none());
        assert_eq!(spec.mongodb.database, "multivac");
        assert!(spec.network_policy.enabled);
    }

    #[test]
    fn schema_carries_defaults_and_rules() {
        let crd = serde_json::to_value(custom_resource_definition()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["required"], Value::Null, "a name is a whole MultiVac");
        assert_eq!(
            spec["properties"]["image"]["x-kubernetes-validations"][0]["rule"],
            "self != ''"
        );
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
        // The managed Redis has its store's fields and appendfsync, flat.
        let redis = &spec["properties"]["redis"]["properties"]["managed"]["properties"];
        assert_eq!(redis["appendfsync"]["enum"], json!(["always", "everysec"]));
        assert_eq!(redis["appendfsync"]["default"], "always");
        for field in ["image", "resources", "storage"] {
            assert!(redis[field].is_object(), "redis.managed.{field}: {redis}");
        }
        let mongodb = &spec["properties"]["mongodb"]["properties"]["managed"]["properties"];
        assert!(mongodb["appendfsync"].is_null(), "{mongodb}");
        let server = &spec["properties"]["server"]["properties"];
        assert_eq!(server["drainSeconds"]["default"], 10);
        assert_eq!(server["drainSeconds"]["maximum"].as_f64(), Some(300.0));
        assert_eq!(server["maxBacklog"]["minimum"].as_f64(), Some(1.0));
    }

    #[test]
    fn placement_is_flattened_into_every_component_with_its_rules() {
        let crd = serde_json::to_value(custom_resource_definition()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let components = [
            &spec["properties"]["server"],
            &spec["properties"]["workers"],
            &spec["properties"]["redis"]["properties"]["managed"],
            &spec["properties"]["mongodb"]["properties"]["managed"],
        ];
        for c in components {
            let p = &c["properties"];
            for field in [
                "nodeSelector",
                "tolerations",
                "affinity",
                "topologySpreadConstraints",
                "priorityClassName",
                "podAnnotations",
                "podLabels",
            ] {
                assert!(
                    p[field]["description"].is_string(),
                    "{field} in {}",
                    c["description"]
                );
            }
            assert_eq!(
                p["podLabels"]["x-kubernetes-validations"][0]["message"],
                message::OPERATOR_LABEL
            );
            assert_eq!(
                p["podAnnotations"]["x-kubernetes-validations"][0]["rule"],
                "self.all(k, !k.startsWith('multivac.io/'))"
            );
            assert_eq!(p["podLabels"]["maxProperties"], 64);
            assert!(p["affinity"]["properties"]["podAntiAffinity"].is_object());
        }
        let server = &spec["properties"]["server"]["properties"];
        assert_eq!(
            server["ingress"]["x-kubernetes-validations"][0]["message"],
            message::TLS_WITHOUT_HOST
        );
        assert_eq!(
            server["service"]["properties"]["annotations"]["x-kubernetes-validations"][0]["message"],
            message::OPERATOR_ANNOTATION
        );
        // The placement reads back as it was written.
        let written = json!({"nodeSelector": {"disk": "ssd"}, "priorityClassName": "high",
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            "podLabels": {"team": "a"}, "podAnnotations": {"x/y": "z"}, "minReplicas": 2});
        let workers: WorkersSpec = serde_json::from_value(written.clone()).unwrap();
        assert_eq!(workers.min_replicas, 2);
        assert_eq!(
            workers.placement.priority_class_name.as_deref(),
            Some("high")
        );
        assert_eq!(workers.placement.tolerations[0].key.as_deref(), Some("k"));
        let back = serde_json::to_value(&workers).unwrap();
        for (k, v) in written.as_object().unwrap() {
            assert_eq!(&back[k], v, "{k}");
        }
    }

    #[test]
    fn a_name_is_a_whole_multivac() {
        let crd = serde_json::to_value(custom_resource_definition()).unwrap();
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_eq!(root["required"], Value::Null, "{}", root["required"]);
        assert_eq!(root["properties"]["spec"]["default"], json!({}));
        // What the API server stores for a name alone reads back with every default.
        let mv: MultiVac = serde_json::from_value(json!({
            "apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac",
            "metadata": {"name": "mv"}, "spec": {}}))
        .unwrap();
        assert_eq!(mv.spec.workers.max_replicas, 10);
    }

    #[test]
    fn explain_shows_a_description_everywhere() {
        let crd = serde_json::to_value(custom_resource_definition()).unwrap();
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert!(
            root["description"]
                .as_str()
                .unwrap()
                .starts_with("A MultiVAC: an HTTP server")
        );
        fn walk(path: &str, schema: &Value, missing: &mut Vec<String>) {
            if schema["description"].as_str().is_none_or(str::is_empty) {
                missing.push(path.to_owned());
            }
            for (name, sub) in schema["properties"].as_object().into_iter().flatten() {
                walk(&format!("{path}.{name}"), sub, missing);
            }
            // Items of a list of objects are explained by their fields; a
            // list of strings by the list's own description.
            if schema["items"]["properties"].is_object() {
                for (name, sub) in schema["items"]["properties"]
                    .as_object()
                    .into_iter()
                    .flatten()
                {
                    walk(&format!("{path}[].{name}"), sub, missing);
                }
            }
        }
        let mut missing = vec![];
        for part in ["spec", "status"] {
            walk(part, &root["properties"][part], &mut missing);
        }
        assert!(
            missing.is_empty(),
            "fields without a description: {missing:?}"
        );
        let columns = &crd["spec"]["versions"][0]["additionalPrinterColumns"];
        let names: Vec<&str> = columns
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["priority"].is_null())
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Ready", "Workers", "Backlog", "Age"]);
    }

    #[test]
    fn the_name_rules_are_on_the_whole_object() {
        let crd = serde_json::to_value(custom_resource_definition()).unwrap();
        let rules =
            &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"];
        assert_eq!(
            rules[0]["rule"],
            format!("self.metadata.name.size() <= {MAX_NAME_LEN}")
        );
        assert_eq!(rules[0]["message"], message::NAME_LENGTH);
        assert_eq!(rules[1]["message"], message::NAME_CHARACTERS);
        // The longest name still gives a Service name of at most 63 characters.
        assert_eq!(MAX_NAME_LEN + "-mongodb".len(), 63);
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
        assert_eq!((mv.redis_ca_source(), mv.mongodb_ca_source()), (None, None));
        let with_cas: MultiVac = serde_json::from_value(json!({
            "apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac",
            "metadata": {"name": "a", "namespace": "ns"},
            "spec": {"redis": {"external": {"secretRef": {"name": "r"}, "caSecretRef": {"name": "ca"}}},
                     "mongodb": {"external": {"secretRef": {"name": "m"}, "caSecretRef": {"name": "mca", "key": "root.pem"}}}}
        }))
        .unwrap();
        assert_eq!(
            with_cas.redis_ca_source(),
            Some(SecretSource {
                name: "ca".into(),
                key: "ca.crt".into()
            })
        );
        assert_eq!(with_cas.mongodb_ca_source().unwrap().key, "root.pem");
    }
}
