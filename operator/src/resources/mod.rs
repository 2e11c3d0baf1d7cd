//! Pure builders: one function per child object, MultiVac in, desired object
//! out (as the JSON sent with server-side apply). No I/O here, so every
//! builder has a whole-object test.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Resource;
use kube::core::ApiResource;
use serde_json::{Value, json};

use crate::crd::MultiVac;
use crate::error::{Error, Result};

pub mod app_pod;
pub mod config_map;
pub mod mongodb;
pub mod network_policy;
pub mod pdb;
pub mod pvc;
pub mod redis;
pub mod secret;
pub mod server;
pub mod service;
pub mod service_account;
pub mod worker;

/// Redis port.
pub const REDIS_PORT: i32 = 6379;
/// MongoDB port.
pub const MONGODB_PORT: i32 = 27017;
/// Non-root user and group of the app image (distroless `nonroot`).
pub const APP_UID: i64 = 65532;
/// User and group the official redis and mongo images run as.
pub const STORE_UID: i64 = 999;
/// Annotation carrying a hash of the ConfigMap so a config change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "multivac.io/config-hash";

/// One child the reconciler wants to exist, ready for server-side apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// Group/version/kind/plural of the object.
    pub resource: ApiResource,
    /// `metadata.name`.
    pub name: String,
    /// The whole object, including apiVersion and kind.
    pub object: Value,
}

impl Desired {
    /// Wraps a builder's output for kind `K`.
    pub fn new<K: Resource<DynamicType = ()>>(object: Value) -> Self {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Self {
            resource: ApiResource::erase::<K>(&()),
            name,
            object,
        }
    }

    /// `Kind/name`, for logs, events and metrics.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.resource.kind, self.name)
    }
}

/// A child that may exist from an earlier spec and must go when no longer desired.
#[derive(Clone, Debug, PartialEq)]
pub struct Unwanted {
    pub resource: ApiResource,
    pub name: String,
}

impl Unwanted {
    fn of<K: Resource<DynamicType = ()>>(name: String) -> Self {
        Self {
            resource: ApiResource::erase::<K>(&()),
            name,
        }
    }
}

/// Everything the reconciler should apply, and what it should remove.
#[derive(Debug)]
pub struct Plan {
    pub apply: Vec<Desired>,
    pub remove: Vec<Unwanted>,
}

/// Builds the whole desired state of one MultiVac. `operator_namespace` is
/// where the operator's pods run (they must reach Redis for the backlog).
pub fn build(mv: &MultiVac, operator_namespace: &str) -> Result<Plan> {
    let mut apply = vec![
        Desired::new::<ServiceAccount>(service_account::build(mv)?),
        Desired::new::<ConfigMap>(config_map::build(mv)?),
        Desired::new::<Deployment>(server::build(mv)?),
        Desired::new::<Service>(service::server(mv)?),
        Desired::new::<Deployment>(worker::build(mv)?),
    ];
    let mut remove = vec![];
    let policies = mv.spec.network_policy.enabled;
    if mv.redis_managed() {
        apply.push(Desired::new::<PersistentVolumeClaim>(pvc::build(
            mv,
            "redis",
            &mv.spec.redis.managed.clone().unwrap_or_default().storage,
        )?));
        apply.push(Desired::new::<Deployment>(redis::build(mv)?));
        apply.push(Desired::new::<Service>(service::redis(mv)?));
    } else {
        // The PVC is kept on purpose: switching to external must not delete data.
        remove.push(Unwanted::of::<Deployment>(mv.redis_name()));
        remove.push(Unwanted::of::<Service>(mv.redis_name()));
    }
    if mv.redis_managed() && policies {
        apply.push(Desired::new::<NetworkPolicy>(network_policy::redis(
            mv,
            operator_namespace,
        )?));
    } else {
        remove.push(Unwanted::of::<NetworkPolicy>(mv.redis_name()));
    }
    if mv.mongodb_managed() {
        apply.push(Desired::new::<PersistentVolumeClaim>(pvc::build(
            mv,
            "mongodb",
            &mv.spec.mongodb.managed.clone().unwrap_or_default().storage,
        )?));
        apply.push(Desired::new::<Deployment>(mongodb::build(mv)?));
        apply.push(Desired::new::<Service>(service::mongodb(mv)?));
    } else {
        remove.push(Unwanted::of::<Deployment>(mv.mongodb_name()));
        remove.push(Unwanted::of::<Service>(mv.mongodb_name()));
    }
    if mv.mongodb_managed() && policies {
        apply.push(Desired::new::<NetworkPolicy>(network_policy::mongodb(mv)?));
    } else {
        remove.push(Unwanted::of::<NetworkPolicy>(mv.mongodb_name()));
    }
    if mv.spec.server.replicas > 1 {
        apply.push(Desired::new::<PodDisruptionBudget>(pdb::build(mv)?));
    } else {
        remove.push(Unwanted::of::<PodDisruptionBudget>(mv.server_name()));
    }
    Ok(Plan { apply, remove })
}

/// Whether the operator generates the credentials Secret (any store managed).
pub fn needs_credentials(mv: &MultiVac) -> bool {
    mv.redis_managed() || mv.mongodb_managed()
}

/// The standard labels every child carries.
pub fn labels(mv: &MultiVac, component: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(mv, component);
    l.insert("app.kubernetes.io/part-of".into(), "multivac".into());
    l.insert(
        "app.kubernetes.io/managed-by".into(),
        "multivac-operator".into(),
    );
    l
}

/// The labels that select one component's pods (stable: selectors are immutable).
pub fn selector_labels(mv: &MultiVac, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "multivac".into()),
        ("app.kubernetes.io/instance".into(), name(mv).to_string()),
        ("app.kubernetes.io/component".into(), component.into()),
    ])
}

pub(crate) fn name(mv: &MultiVac) -> &str {
    mv.metadata.name.as_deref().unwrap_or_default()
}

pub(crate) fn namespace(mv: &MultiVac) -> Result<&str> {
    mv.metadata
        .namespace
        .as_deref()
        .ok_or(Error::MissingMetadata("metadata.namespace"))
}

/// `metadata` of a child: name, namespace, labels and the controller ownerReference
/// that makes the MultiVac's deletion garbage-collect it.
pub fn metadata(mv: &MultiVac, name: &str, component: &str) -> Result<Value> {
    let owner = mv
        .controller_owner_ref(&())
        .ok_or(Error::MissingMetadata("metadata.uid"))?;
    Ok(json!({
        "name": name,
        "namespace": namespace(mv)?,
        "labels": labels(mv, component),
        "ownerReferences": [owner],
    }))
}

/// Pod-level security context of the app pods: Pod Security Standard `restricted`.
pub fn app_pod_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": APP_UID,
        "runAsGroup": APP_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// Container security context shared by every container the operator runs.
pub fn container_security() -> Value {
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
pub fn store_pod_security() -> Value {
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
pub fn resources_or(
    resources: &Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    default: Value,
) -> Result<Value> {
    match resources {
        Some(r) => Ok(serde_json::to_value(r)?),
        None => Ok(default),
    }
}

/// Default resources of the app containers.
pub fn app_default_resources() -> Value {
    json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}})
}

/// Default resources of the datastore containers.
pub fn store_default_resources() -> Value {
    json!({"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}})
}

/// `imagePullSecrets` of every pod.
pub fn pull_secrets(mv: &MultiVac) -> Value {
    json!(mv.spec.image_pull_secrets)
}

/// FNV-1a: a stable hash (unlike `DefaultHasher`, which may change between
/// Rust releases) for the config-hash annotation.
pub fn stable_hash(data: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
pub(crate) mod testing {
    use crate::crd::MultiVac;
    use serde_json::{Value, json};

    /// A MultiVac as the API server returns it: name, namespace, uid, and the given spec.
    pub fn mv(spec: Value) -> MultiVac {
        serde_json::from_value(json!({
            "apiVersion": "multivac.io/v1alpha1",
            "kind": "MultiVac",
            "metadata": {"name": "mv", "namespace": "ns", "uid": "1234", "generation": 1},
            "spec": spec,
        }))
        .unwrap()
    }

    /// The ownerReference every child of `mv()` carries.
    pub fn owner() -> Value {
        json!([{
            "apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac", "name": "mv",
            "uid": "1234", "controller": true,
        }])
    }

    /// Labels of component `c` of `mv()`.
    pub fn labels(c: &str) -> Value {
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
    use super::testing::mv;
    use super::*;

    fn kinds(plan: &Plan) -> Vec<String> {
        plan.apply.iter().map(Desired::describe).collect()
    }

    #[test]
    fn minimal_spec_builds_every_managed_child() {
        let plan = build(&mv(json!({"image": "multivac:1"})), "op").unwrap();
        assert_eq!(
            kinds(&plan),
            [
                "ServiceAccount/mv",
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
            plan.remove,
            vec![Unwanted::of::<PodDisruptionBudget>("mv-server".into())]
        );
        for d in &plan.apply {
            assert_eq!(
                d.object["metadata"]["ownerReferences"],
                testing::owner(),
                "{}",
                d.describe()
            );
            assert_eq!(
                d.object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                "multivac-operator"
            );
        }
    }

    #[test]
    fn external_stores_and_replicas_change_the_plan() {
        let plan = build(
            &mv(json!({"image": "m", "server": {"replicas": 3},
                "redis": {"external": {"secretRef": {"name": "r"}}},
                "mongodb": {"external": {"secretRef": {"name": "m"}}},
                "networkPolicy": {"enabled": false}})),
            "op",
        )
        .unwrap();
        assert_eq!(
            kinds(&plan),
            [
                "ServiceAccount/mv",
                "ConfigMap/mv-config",
                "Deployment/mv-server",
                "Service/mv-server",
                "Deployment/mv-worker",
                "PodDisruptionBudget/mv-server",
            ]
        );
        let removed: Vec<String> = plan
            .remove
            .iter()
            .map(|u| format!("{}/{}", u.resource.kind, u.name))
            .collect();
        assert_eq!(
            removed,
            [
                "Deployment/mv-redis",
                "Service/mv-redis",
                "NetworkPolicy/mv-redis",
                "Deployment/mv-mongodb",
                "Service/mv-mongodb",
                "NetworkPolicy/mv-mongodb",
            ]
        );
        assert!(!needs_credentials(&mv(json!({"image": "m",
            "redis": {"external": {"secretRef": {"name": "r"}}},
            "mongodb": {"external": {"secretRef": {"name": "m"}}}}))));
    }

    #[test]
    fn a_multivac_without_uid_is_an_error_not_an_orphan() {
        let mut m = mv(json!({"image": "m"}));
        m.metadata.uid = None;
        assert!(matches!(build(&m, "op"), Err(Error::MissingMetadata(_))));
    }

    #[test]
    fn stable_hash_is_fnv1a() {
        assert_eq!(stable_hash(""), "cbf29ce484222325");
        assert_eq!(stable_hash("a"), "af63dc4c8601ec8c");
    }
}
