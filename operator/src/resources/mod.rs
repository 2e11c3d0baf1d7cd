//! Pure builders: one function per child object, a [`Validated`] MultiVac in,
//! the typed object out. No I/O here, so every builder has a whole-object test
//! (the JSON that server-side apply sends).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, ObjectReference, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::crd::{MultiVac, Retention};
use crate::credentials::{MONGODB_PORT, REDIS_PORT, digest};
use crate::error::Result;
use crate::kind::Kind;
use crate::validated::{Store, Validated};

mod app_pod;
mod config_map;
mod ingress;
mod mongodb;
mod network_policy;
mod pdb;
mod placement;
mod pvc;
mod redis;
mod secret;
mod server;
mod service;
mod service_account;
mod worker;

pub(crate) use secret::Passwords;
pub(crate) use service::server_url;

/// Non-root user and group of the app image (distroless `nonroot`).
pub const APP_UID: i64 = 65532;
/// User and group the official redis and mongo images run as.
pub const STORE_UID: i64 = 999;
/// Annotation carrying a hash of the ConfigMap so a config change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "multivac.io/config-hash";
/// Annotation naming the MultiVac (`namespace/name`) a retained child (its
/// PVCs, its credentials Secret) belongs to: they carry no ownerReference with
/// `retention: Retain`, so that deleting the MultiVac does not delete them.
pub const OWNER_ANNOTATION: &str = "multivac.io/owner";
/// Value of the `app.kubernetes.io/managed-by` label of every child.
pub const MANAGED_BY: &str = "multivac-operator";

/// The value of [`OWNER_ANNOTATION`] for the MultiVac `namespace/name`.
pub(crate) fn owner_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The MultiVac a child belongs to, for the controller's watches: its
/// controller ownerReference, or the owner annotation of a retained child
/// (which has no ownerReference, so `owns()` would not map it).
pub(crate) fn owner_of<K: Resource>(child: K) -> Option<ObjectRef<MultiVac>> {
    let meta = child.meta();
    let namespace = meta.namespace.as_deref()?;
    if let Some((ns, name)) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(OWNER_ANNOTATION))
        .and_then(|key| key.split_once('/'))
    {
        return (ns == namespace).then(|| ObjectRef::new(name).within(ns));
    }
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true) && r.kind == MultiVac::kind(&()))
        .map(|r| ObjectRef::new(&r.name).within(namespace))
}
/// Annotation carrying a digest of the Secret values a pod uses (never the
/// values), so a changed token, URL or rotated password rolls the pods.
pub const SECRETS_HASH_ANNOTATION: &str = "multivac.io/secrets-hash";

/// A child by kind and name: `Kind/name` in logs and events.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ChildRef {
    pub(crate) kind: Kind,
    pub(crate) name: String,
}

impl ChildRef {
    pub(crate) fn new(kind: Kind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
        }
    }

    /// A reference to the child in `namespace`, for Events about it.
    pub(crate) fn object_ref(&self, namespace: &str) -> ObjectReference {
        let resource = self.kind.api_resource();
        ObjectReference {
            api_version: Some(resource.api_version),
            kind: Some(resource.kind),
            name: Some(self.name.clone()),
            namespace: Some(namespace.into()),
            ..Default::default()
        }
    }
}

impl fmt::Display for ChildRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

/// One child the reconciler keeps as built (server-side applied).
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "about a dozen per reconcile, built once and read in place"
)]
pub(crate) enum Child {
    ServiceAccount(ServiceAccount),
    ConfigMap(ConfigMap),
    Deployment(Deployment),
    Service(Service),
    PersistentVolumeClaim(PersistentVolumeClaim),
    NetworkPolicy(NetworkPolicy),
    PodDisruptionBudget(PodDisruptionBudget),
    Ingress(Ingress),
}

impl Child {
    /// Kind and name of the child.
    pub(crate) fn child_ref(&self) -> ChildRef {
        let (kind, meta) = match self {
            Self::ServiceAccount(o) => (Kind::ServiceAccount, &o.metadata),
            Self::ConfigMap(o) => (Kind::ConfigMap, &o.metadata),
            Self::Deployment(o) => (Kind::Deployment, &o.metadata),
            Self::Service(o) => (Kind::Service, &o.metadata),
            Self::PersistentVolumeClaim(o) => (Kind::PersistentVolumeClaim, &o.metadata),
            Self::NetworkPolicy(o) => (Kind::NetworkPolicy, &o.metadata),
            Self::PodDisruptionBudget(o) => (Kind::PodDisruptionBudget, &o.metadata),
            Self::Ingress(o) => (Kind::Ingress, &o.metadata),
        };
        ChildRef::new(kind, meta.name.clone().unwrap_or_default())
    }
}

/// Everything one MultiVac consists of, and what it no longer wants. Not
/// `Debug`: a new credentials Secret holds generated passwords, never logged.
pub(crate) struct Children {
    /// The generated credentials Secret, only when it must be created: it is
    /// created once and its data never rewritten, so the passwords stay those
    /// the datastores were initialised with.
    pub(crate) credentials: Option<Secret>,
    /// The metadata the credentials Secret must have (labels, owner
    /// annotation, ownerReference with `retention: Delete`), whenever a store
    /// is managed: an existing Secret is brought to it.
    pub(crate) credentials_meta: Option<ObjectMeta>,
    /// Applied in this order: the ServiceAccount and the ConfigMap before the
    /// pods that use them.
    pub(crate) apply: Vec<Child>,
    /// Children an earlier spec may have made: deleted if this MultiVac
    /// controls them, never otherwise.
    pub(crate) remove: Vec<ChildRef>,
}

/// Builds every child of one MultiVac. `operator_namespace` is where the
/// operator's pods run (they must reach Redis for the backlog); `passwords`
/// is called only when the credentials Secret must be created.
pub(crate) fn build(
    mv: &Validated,
    operator_namespace: &str,
    passwords: impl FnOnce() -> Passwords,
) -> Result<Children> {
    let credentials = match mv.create_credentials {
        true => Some(secret::build(mv, &passwords())?),
        false => None,
    };
    // The pods' digest of their Secrets covers the one created now.
    let with_new_secret;
    let mv = match &credentials {
        Some(secret) => {
            with_new_secret = with_secret(
                mv,
                &mv.credentials_name(),
                &secret.string_data.clone().unwrap_or_default(),
            );
            &with_new_secret
        }
        None => mv,
    };
    let mut apply = vec![
        Child::ServiceAccount(service_account::build(mv)?),
        Child::ConfigMap(config_map::build(mv)?),
        Child::Deployment(server::build(mv)?),
        Child::Service(service::server(mv)?),
        Child::Deployment(worker::build(mv)?),
    ];
    let mut remove = vec![];
    let policies = mv.spec.network_policy.enabled;
    match &mv.redis {
        Store::Managed(store) => {
            apply.push(Child::PersistentVolumeClaim(pvc::build(
                mv,
                "redis",
                &store.storage,
            )?));
            apply.push(Child::Deployment(redis::build(mv, store)?));
            apply.push(Child::Service(service::redis(mv)?));
        }
        Store::External => {
            // The PVC is kept on purpose: switching to external must not delete data.
            remove.push(ChildRef::new(Kind::Deployment, mv.redis_name()));
            remove.push(ChildRef::new(Kind::Service, mv.redis_name()));
        }
    }
    if policies && matches!(mv.redis, Store::Managed(_)) {
        apply.push(Child::NetworkPolicy(network_policy::redis(
            mv,
            operator_namespace,
        )?));
    } else {
        remove.push(ChildRef::new(Kind::NetworkPolicy, mv.redis_name()));
    }
    match &mv.mongodb {
        Store::Managed(store) => {
            apply.push(Child::PersistentVolumeClaim(pvc::build(
                mv,
                "mongodb",
                &store.storage,
            )?));
            apply.push(Child::Deployment(mongodb::build(mv, store)?));
            apply.push(Child::Service(service::mongodb(mv)?));
        }
        Store::External => {
            remove.push(ChildRef::new(Kind::Deployment, mv.mongodb_name()));
            remove.push(ChildRef::new(Kind::Service, mv.mongodb_name()));
        }
    }
    if policies && matches!(mv.mongodb, Store::Managed(_)) {
        apply.push(Child::NetworkPolicy(network_policy::mongodb(
            mv,
            operator_namespace,
        )?));
    } else {
        remove.push(ChildRef::new(Kind::NetworkPolicy, mv.mongodb_name()));
    }
    if mv.spec.server.replicas > 1 {
        apply.push(Child::PodDisruptionBudget(pdb::build(mv)?));
    } else {
        remove.push(ChildRef::new(Kind::PodDisruptionBudget, mv.server_name()));
    }
    match &mv.spec.server.ingress {
        Some(spec) => apply.push(Child::Ingress(ingress::build(mv, spec)?)),
        None => remove.push(ChildRef::new(Kind::Ingress, mv.server_name())),
    }
    // The operator makes the app's MongoDB user itself now: the first-start
    // script's ConfigMap goes, if this MultiVac controls it.
    remove.push(ChildRef::new(
        Kind::ConfigMap,
        mongodb::former_init_script(mv),
    ));
    // The previous release named the ServiceAccount `<mv>` (a MultiVac named
    // `default` took over the namespace's own); it is deleted if this
    // MultiVac controls it, and left alone otherwise.
    remove.push(ChildRef::new(Kind::ServiceAccount, mv.name));
    let managed = |s: &Store| matches!(s, Store::Managed(_));
    let credentials_meta =
        (managed(&mv.redis) || managed(&mv.mongodb)).then(|| secret::metadata(mv));
    Ok(Children {
        credentials,
        credentials_meta,
        apply,
        remove,
    })
}

/// The same MultiVac, with the digests of a Secret about to be created.
fn with_secret<'a>(
    mv: &Validated<'a>,
    name: &str,
    values: &BTreeMap<String, String>,
) -> Validated<'a> {
    let mut v = mv.clone();
    for (key, value) in values {
        v.secret_digests
            .insert((name.into(), key.clone()), digest(value.as_bytes()));
    }
    v
}

/// The typed object a builder's JSON describes. Deserializing drops a field
/// the type does not have, so each builder's whole-object test (which
/// compares the serialized result with the expected JSON) catches a misspelt one.
fn typed<K: DeserializeOwned>(object: Value) -> Result<K> {
    Ok(serde_json::from_value(object)?)
}

/// The standard labels every child carries.
pub(crate) fn labels(mv: &Validated, component: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(mv, component);
    l.insert("app.kubernetes.io/part-of".into(), "multivac".into());
    l.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    l
}

/// The labels that select one component's pods (stable: selectors are immutable).
fn selector_labels(mv: &Validated, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "multivac".into()),
        ("app.kubernetes.io/instance".into(), mv.name.to_string()),
        ("app.kubernetes.io/component".into(), component.into()),
    ])
}

/// `metadata` of a child: name, namespace, labels and the controller ownerReference
/// that makes the MultiVac's deletion garbage-collect it.
fn metadata(mv: &Validated, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(mv.namespace.into()),
        labels: Some(labels(mv, component)),
        owner_references: Some(vec![mv.owner.clone()]),
        ..Default::default()
    }
}

/// `metadata` of a child that holds data (a PVC, the credentials Secret): the
/// owner annotation always, the controller ownerReference only with
/// `retention: Delete`, so that with `Retain` deleting the MultiVac keeps it.
fn retained_metadata(mv: &Validated, name: &str, component: &str) -> ObjectMeta {
    let owned = mv.spec.retention == Retention::Delete;
    ObjectMeta {
        annotations: Some(BTreeMap::from([(
            OWNER_ANNOTATION.to_string(),
            owner_key(mv.namespace, mv.name),
        )])),
        owner_references: owned.then(|| vec![mv.owner.clone()]),
        ..metadata(mv, name, component)
    }
}

/// Pod-level security context of the app pods: Pod Security Standard `restricted`.
fn app_pod_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": APP_UID,
        "runAsGroup": APP_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// Container security context shared by every container the operator runs.
fn container_security() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// Pod-level security context of the datastores: the official images' own
/// non-root user, with the volume group-owned by it.
fn store_pod_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": STORE_UID,
        "runAsGroup": STORE_UID,
        "fsGroup": STORE_UID,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// `resources`, or the given default when the user set none.
fn resources_or(
    resources: &Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    default: Value,
) -> Result<Value> {
    match resources {
        Some(r) => Ok(serde_json::to_value(r)?),
        None => Ok(default),
    }
}

/// Default resources of the app containers.
fn app_default_resources() -> Value {
    json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}})
}

/// Default resources of the datastore containers.
fn store_default_resources() -> Value {
    json!({"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}})
}

/// `imagePullSecrets` of every pod.
fn pull_secrets(mv: &Validated) -> Value {
    json!(mv.spec.image_pull_secrets)
}

/// FNV-1a: a stable hash (unlike `DefaultHasher`, which may change between
/// Rust releases) for the config-hash annotation.
pub(crate) fn stable_hash(data: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
pub(crate) mod testing {
    use serde::Serialize;
    use serde_json::{Value, json};

    use crate::crd::MultiVac;
    use crate::reconcile::{Dereferenced, validate};
    use crate::validated::Validated;

    /// A MultiVac as the API server returns it: name, namespace, uid, and the given spec.
    pub(crate) fn mv(spec: Value) -> MultiVac {
        serde_json::from_value(json!({
            "apiVersion": "multivac.io/v1alpha1",
            "kind": "MultiVac",
            "metadata": {"name": "mv", "namespace": "ns", "uid": "1234", "generation": 1},
            "spec": spec,
        }))
        .unwrap()
    }

    /// The operator's default app image in the builder tests.
    pub(crate) const DEFAULT_IMAGE: &str = "multivac:default";

    /// `mv` validated, with every referenced Secret present (the digest of
    /// a value: `<name>/<key>`), no credentials Secret yet and
    /// [`DEFAULT_IMAGE`] as the operator's default.
    pub(crate) fn validated(mv: &MultiVac) -> Validated<'_> {
        let mut read = Dereferenced::default();
        for source in crate::reconcile::referenced(mv) {
            read.secret_keys.push(crate::reconcile::SecretKey {
                digest: Some(format!("{}/{}", source.name, source.key)),
                source,
                present: true,
            });
        }
        validate(mv, &read, Some(DEFAULT_IMAGE)).unwrap()
    }

    /// What a builder's object looks like on the wire.
    pub(crate) fn json_of(object: &impl Serialize) -> Value {
        serde_json::to_value(object).unwrap()
    }

    /// The ownerReference every child of `mv()` carries.
    pub(crate) fn owner() -> Value {
        json!([{
            "apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac", "name": "mv",
            "uid": "1234", "controller": true,
        }])
    }

    /// Labels of component `c` of `mv()`.
    pub(crate) fn labels(c: &str) -> Value {
        json!({
            "app.kubernetes.io/name": "multivac",
            "app.kubernetes.io/instance": "mv",
            "app.kubernetes.io/component": c,
            "app.kubernetes.io/part-of": "multivac",
            "app.kubernetes.io/managed-by": "multivac-operator",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{mv, validated};
    use super::*;

    fn children(spec: Value) -> Children {
        build(&validated(&mv(spec)), "op", || Passwords {
            redis: "rpw".into(),
            mongodb: "mpw".into(),
            mongodb_app: "apw".into(),
        })
        .unwrap()
    }

    fn kinds(children: &Children) -> Vec<String> {
        children
            .apply
            .iter()
            .map(|c| c.child_ref().to_string())
            .collect()
    }

    fn wire(child: &Child) -> Value {
        match child {
            Child::ServiceAccount(o) => testing::json_of(o),
            Child::ConfigMap(o) => testing::json_of(o),
            Child::Deployment(o) => testing::json_of(o),
            Child::Service(o) => testing::json_of(o),
            Child::PersistentVolumeClaim(o) => testing::json_of(o),
            Child::NetworkPolicy(o) => testing::json_of(o),
            Child::PodDisruptionBudget(o) => testing::json_of(o),
            Child::Ingress(o) => testing::json_of(o),
        }
    }

    #[test]
    fn minimal_spec_builds_every_managed_child() {
        let built = children(json!({"image": "multivac:1"}));
        assert_eq!(
            kinds(&built),
            [
                "ServiceAccount/mv-multivac",
                "ConfigMap/mv-config",
                "Deployment/mv-server",
                "Service/mv-server",
                "Deployment/mv-worker",
                "PersistentVolumeClaim/mv-redis-data",
                "Deployment/mv-redis",
                "Service/mv-redis",
                "NetworkPolicy/mv-redis",
                "PersistentVolumeClaim/mv-mongodb-data",
                "Deployment/mv-mongodb",
                "Service/mv-mongodb",
                "NetworkPolicy/mv-mongodb",
            ]
        );
        assert_eq!(
            built.remove,
            vec![
                ChildRef::new(Kind::PodDisruptionBudget, "mv-server"),
                ChildRef::new(Kind::Ingress, "mv-server"),
                // Earlier releases' first-start script and ServiceAccount,
                // deleted only if owned.
                ChildRef::new(Kind::ConfigMap, "mv-mongodb-init"),
                ChildRef::new(Kind::ServiceAccount, "mv"),
            ]
        );
        let secret = built.credentials.as_ref().expect("a credentials Secret");
        assert_eq!(secret.metadata.name.as_deref(), Some("mv-credentials"));
        assert_eq!(
            built.credentials_meta.as_ref(),
            Some(&secret.metadata),
            "an existing Secret is brought to the metadata a new one gets"
        );
        for c in &built.apply {
            let object = wire(c);
            let kind = c.child_ref().kind;
            // With the default `retention: Retain` the PVCs outlive the
            // MultiVac: no ownerReference, the owner annotation instead.
            let (owners, annotation) = match kind.retained() {
                true => (Value::Null, json!("ns/mv")),
                false => (testing::owner(), Value::Null),
            };
            assert_eq!(
                object["metadata"]["ownerReferences"],
                owners,
                "{}",
                c.child_ref()
            );
            assert_eq!(
                object["metadata"]["annotations"]["multivac.io/owner"],
                annotation,
                "{}",
                c.child_ref()
            );
            assert_eq!(
                object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                "multivac-operator"
            );
            assert_eq!(object["kind"], c.child_ref().kind.as_str());
        }
    }

    #[test]
    fn external_stores_and_replicas_change_the_plan() {
        let built = children(json!({"image": "m", "server": {"replicas": 3},
            "redis": {"external": {"secretRef": {"name": "r"}}},
            "mongodb": {"external": {"secretRef": {"name": "m"}}},
            "networkPolicy": {"enabled": false}}));
        assert_eq!(
            kinds(&built),
            [
                "ServiceAccount/mv-multivac",
                "ConfigMap/mv-config",
                "Deployment/mv-server",
                "Service/mv-server",
                "Deployment/mv-worker",
                "PodDisruptionBudget/mv-server",
            ]
        );
        let removed: Vec<String> = built.remove.iter().map(ChildRef::to_string).collect();
        assert_eq!(
            removed,
            [
                "Deployment/mv-redis",
                "Service/mv-redis",
                "NetworkPolicy/mv-redis",
                "Deployment/mv-mongodb",
                "Service/mv-mongodb",
                "NetworkPolicy/mv-mongodb",
                "Ingress/mv-server",
                "ConfigMap/mv-mongodb-init",
                "ServiceAccount/mv",
            ]
        );
        assert!(
            built.credentials.is_none() && built.credentials_meta.is_none(),
            "no managed store, no generated Secret"
        );
    }

    /// Each Deployment's pod template gets its own component's placement
    /// (the fields themselves: `placement.rs`'s whole-object test).
    #[test]
    fn every_deployment_is_placed_as_its_component_asks() {
        let placement = |tag: &str| {
            json!({"nodeSelector": {"pool": tag}, "priorityClassName": tag,
                "tolerations": [{"key": tag, "operator": "Exists"}],
                "podLabels": {"placed": tag}, "podAnnotations": {"example.com/placed": tag}})
        };
        let built = children(
            json!({"server": placement("server"), "workers": placement("worker"),
            "redis": {"managed": placement("redis")}, "mongodb": {"managed": placement("mongodb")}}),
        );
        let mut placed = vec![];
        for child in &built.apply {
            let Child::Deployment(d) = child else {
                continue;
            };
            let template = &wire(child)["spec"]["template"];
            let component =
                d.metadata.labels.as_ref().unwrap()["app.kubernetes.io/component"].clone();
            let want = placement(&component);
            for field in ["nodeSelector", "priorityClassName", "tolerations"] {
                assert_eq!(template["spec"][field], want[field], "{component} {field}");
            }
            assert_eq!(template["metadata"]["labels"]["placed"], component.as_str());
            assert_eq!(
                template["metadata"]["labels"]["app.kubernetes.io/component"],
                component.as_str()
            );
            assert_eq!(
                template["metadata"]["annotations"]["example.com/placed"],
                component.as_str()
            );
            placed.push(component);
        }
        assert_eq!(placed, ["server", "worker", "redis", "mongodb"]);
    }

    #[test]
    fn passwords_are_made_only_for_a_new_credentials_secret() {
        let m = mv(json!({"image": "m"}));
        let mut v = validated(&m);
        v.create_credentials = false;
        let built = build(&v, "op", || {
            panic!("generated passwords for an existing Secret")
        })
        .unwrap();
        assert!(built.credentials.is_none());
    }

    fn secrets_hash(children: &Children, deployment: &str) -> Value {
        let d = children
            .apply
            .iter()
            .find(|c| c.child_ref().to_string() == format!("Deployment/{deployment}"))
            .map(wire)
            .unwrap();
        d["spec"]["template"]["metadata"]["annotations"][SECRETS_HASH_ANNOTATION].clone()
    }

    #[test]
    fn pods_roll_when_a_secret_they_use_changes() {
        let m = mv(json!({"image": "m", "apiTokenSecretRef": {"name": "tok"},
            "redis": {"external": {"secretRef": {"name": "r"}}}}));
        let v = validated(&m);
        let built = |v: &Validated| {
            build(v, "op", || Passwords {
                redis: "rpw".into(),
                mongodb: "mpw".into(),
                mongodb_app: "apw".into(),
            })
            .unwrap()
        };
        let before = built(&v);
        let (server, worker) = (
            secrets_hash(&before, "mv-server"),
            secrets_hash(&before, "mv-worker"),
        );
        assert!(server.as_str().is_some_and(|h| h.len() == 16), "{server}");
        assert_ne!(server, worker, "only the server uses the token");
        // A new token: the server rolls, the workers do not.
        let mut token = v.clone();
        token
            .secret_digests
            .insert(("tok".into(), "token".into()), "other".into());
        let after = built(&token);
        assert_ne!(secrets_hash(&after, "mv-server"), server);
        assert_eq!(secrets_hash(&after, "mv-worker"), worker);
        // A new external Redis URL: both roll.
        let mut url = v.clone();
        url.secret_digests
            .insert(("r".into(), "redis-url".into()), "other".into());
        let after = built(&url);
        assert_ne!(secrets_hash(&after, "mv-server"), server);
        assert_ne!(secrets_hash(&after, "mv-worker"), worker);
        // A new CA of an external store (a Secret volume, not an env
        // variable): both roll, for Redis's and for MongoDB's.
        let m = mv(json!({"image": "m",
            "redis": {"external": {"secretRef": {"name": "r"}, "caSecretRef": {"name": "rca"}}},
            "mongodb": {"external": {"secretRef": {"name": "m"},
                "caSecretRef": {"name": "mca", "key": "pem"}}}}));
        let tls = validated(&m);
        let before = built(&tls);
        for (secret, key) in [("rca", "ca.crt"), ("mca", "pem")] {
            let mut ca = tls.clone();
            ca.secret_digests
                .insert((secret.into(), key.into()), "other".into());
            let after = built(&ca);
            for deployment in ["mv-server", "mv-worker"] {
                assert_ne!(
                    secrets_hash(&after, deployment),
                    secrets_hash(&before, deployment),
                    "{deployment} after a new {secret}/{key}"
                );
            }
        }
        // A new credentials Secret: its MongoDB URI counts, its passwords differ per run.
        let mut other = v.clone();
        other.create_credentials = true;
        let other = build(&other, "op", || Passwords {
            redis: "x".into(),
            mongodb: "y".into(),
            mongodb_app: "z".into(),
        })
        .unwrap();
        assert_ne!(secrets_hash(&other, "mv-worker"), worker);
    }

    #[test]
    fn children_map_to_their_multivac_by_owner_reference_or_annotation() {
        let pvc = |meta: Value| -> PersistentVolumeClaim {
            serde_json::from_value(json!({"metadata": meta})).unwrap()
        };
        let mv_in_ns = Some(ObjectRef::<MultiVac>::new("mv").within("ns"));
        let retained = pvc(json!({"name": "mv-redis-data", "namespace": "ns",
            "annotations": {"multivac.io/owner": "ns/mv"}}));
        assert_eq!(owner_of(retained), mv_in_ns);
        let owned =
            pvc(json!({"name": "x", "namespace": "ns", "ownerReferences": testing::owner()}));
        assert_eq!(owner_of(owned), mv_in_ns);
        // An annotation naming another namespace maps to nothing.
        let copied = pvc(json!({"name": "x", "namespace": "ns",
            "annotations": {"multivac.io/owner": "elsewhere/mv"}}));
        assert_eq!(owner_of(copied), None);
        assert_eq!(owner_of(pvc(json!({"name": "x", "namespace": "ns"}))), None);
    }

    #[test]
    fn stable_hash_is_fnv1a() {
        assert_eq!(stable_hash(""), "cbf29ce484222325");
        assert_eq!(stable_hash("a"), "af63dc4c8601ec8c");
    }
}
