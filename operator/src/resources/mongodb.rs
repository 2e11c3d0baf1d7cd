//! The managed MongoDB: one pod (strategy Recreate), authentication on with
//! the root user from the generated Secret, data on the PVC. The root user is
//! the operator's: it creates the app's own user once MongoDB answers
//! (`credentials::ensure_app_user`) and rotates the users.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

use super::{
    MONGODB_PORT, container_security, metadata, placement, pull_secrets, resources_or,
    store_default_resources, store_pod_security, typed,
};
use multivac_contract::secret_key;

use crate::crd::ManagedStore;
use crate::error::Result;
use crate::validated::Validated;

/// Image used when `mongodb.managed.image` is unset.
const DEFAULT_IMAGE: &str = "mongo:7.0";

/// The probes, for the official image's first start. On an empty data
/// directory its docker-entrypoint.sh runs a temporary mongod without
/// authentication bound to 127.0.0.1 only, waits for it (up to 30 tries, each
/// a mongosh connection attempt and 1 s), creates the root user from
/// MONGO_INITDB_ROOT_*, shuts it down, and only then starts the real mongod
/// with `--auth --bind_ip_all`; a data directory that already holds files is
/// never initialised again. A restart in the middle would leave data files
/// with authentication on and no user, locked for good. So:
/// - startup: TCP on the pod's address, which the temporary mongod does not
///   listen on: it passes only once the real mongod is up, and allows 5 s x 60
///   = 300 s for the initialisation (the entrypoint's own bound is about 30
///   tries plus the user creation and a clean shutdown) or a journal recovery;
/// - liveness (only after startup passed): a `ping` through mongosh, every
///   20 s with 10 s to answer, restarting after 6 misses (2 minutes), since
///   mongosh (a Node.js program) can take seconds to start on a busy node;
/// - readiness: the same ping every 10 s, taking the pod out of the Service
///   while it does not answer.
const PING: [&str; 4] = ["mongosh", "--quiet", "--eval", "db.adminCommand('ping').ok"];

/// The ConfigMap of the first-start script that created the app's user in
/// earlier releases (only the official image ran it): deleted if this
/// MultiVac controls it.
pub(super) fn former_init_script(mv: &Validated) -> String {
    format!("{}-init", mv.mongodb_name())
}

/// Deployment `<mv>-mongodb`.
pub(super) fn build(mv: &Validated, managed: &ManagedStore) -> Result<Deployment> {
    let secret = mv.credentials_name();
    let mut deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(mv, &mv.mongodb_name(), "mongodb"),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": super::app_pod::selector(mv, "mongodb"),
            "template": {
                "metadata": {"labels": super::labels(mv, "mongodb")},
                "spec": {
                    "serviceAccountName": mv.service_account_name(),
                    "automountServiceAccountToken": false,
                    "securityContext": store_pod_security(),
                    "imagePullSecrets": pull_secrets(mv),
                    "containers": [{
                        "name": "mongodb",
                        "image": managed.image.as_deref().unwrap_or(DEFAULT_IMAGE),
                        "env": [
                            {"name": "MONGO_INITDB_ROOT_USERNAME", "valueFrom": {"secretKeyRef": {"name": secret, "key": secret_key::MONGODB_USERNAME}}},
                            {"name": "MONGO_INITDB_ROOT_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": secret_key::MONGODB_PASSWORD}}},
                            // The image's user has no writable home; mongosh (the probes) writes there.
                            {"name": "HOME", "value": "/tmp"},
                        ],
                        "ports": [{"name": "mongodb", "containerPort": MONGODB_PORT, "protocol": "TCP"}],
                        "startupProbe": {"tcpSocket": {"port": "mongodb"}, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 60},
                        "livenessProbe": {"exec": {"command": PING}, "periodSeconds": 20, "timeoutSeconds": 10, "failureThreshold": 6},
                        "readinessProbe": {"exec": {"command": PING}, "periodSeconds": 10, "timeoutSeconds": 5},
                        "resources": resources_or(&managed.resources, store_default_resources())?,
                        "securityContext": container_security(),
                        "volumeMounts": [
                            {"name": "data", "mountPath": "/data/db"},
                            {"name": "configdb", "mountPath": "/data/configdb"},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [
                        {"name": "data", "persistentVolumeClaim": {"claimName": super::pvc::name(mv, "mongodb")}},
                        {"name": "configdb", "emptyDir": {"sizeLimit": "16Mi"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                    ],
                },
            },
        },
    });
    placement::place(&mut deployment, &managed.placement)?;
    typed(deployment)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{json_of, labels, mv, owner, validated};
    use super::*;
    use crate::resources::container_security;

    #[test]
    fn mongodb_authenticates_with_the_generated_root_user() {
        let m = mv(
            json!({"image": "x", "mongodb": {"managed": {"image": "mongo:8.0",
            "resources": {"requests": {"memory": "1Gi"}}}}}),
        );
        assert_eq!(
            json_of(&build(&validated(&m), &m.spec.mongodb.managed.clone().unwrap()).unwrap()),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "mv-mongodb", "namespace": "ns", "labels": labels("mongodb"), "ownerReferences": owner()},
                "spec": {
                    "replicas": 1,
                    "strategy": {"type": "Recreate"},
                    "selector": {"matchLabels": {
                        "app.kubernetes.io/name": "multivac",
                        "app.kubernetes.io/instance": "mv",
                        "app.kubernetes.io/component": "mongodb",
                    }},
                    "template": {
                        "metadata": {"labels": labels("mongodb")},
                        "spec": {
                            "serviceAccountName": "mv-multivac",
                            "automountServiceAccountToken": false,
                            "securityContext": {
                                "runAsNonRoot": true, "runAsUser": 999, "runAsGroup": 999, "fsGroup": 999,
                                "fsGroupChangePolicy": "OnRootMismatch",
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "imagePullSecrets": [],
                            "containers": [{
                                "name": "mongodb",
                                "image": "mongo:8.0",
                                "env": [
                                    {"name": "MONGO_INITDB_ROOT_USERNAME", "valueFrom": {"secretKeyRef": {"name": "mv-credentials", "key": "mongodb-username"}}},
                                    {"name": "MONGO_INITDB_ROOT_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "mv-credentials", "key": "mongodb-password"}}},
                                    {"name": "HOME", "value": "/tmp"},
                                ],
                                "ports": [{"name": "mongodb", "containerPort": 27017, "protocol": "TCP"}],
                                "startupProbe": {"tcpSocket": {"port": "mongodb"}, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 60},
                                "livenessProbe": {
                                    "exec": {"command": ["mongosh", "--quiet", "--eval", "db.adminCommand('ping').ok"]},
                                    "periodSeconds": 20, "timeoutSeconds": 10, "failureThreshold": 6,
                                },
                                "readinessProbe": {
                                    "exec": {"command": ["mongosh", "--quiet", "--eval", "db.adminCommand('ping').ok"]},
                                    "periodSeconds": 10, "timeoutSeconds": 5,
                                },
                                "resources": {"requests": {"memory": "1Gi"}},
                                "securityContext": container_security(),
                                "volumeMounts": [
                                    {"name": "data", "mountPath": "/data/db"},
                                    {"name": "configdb", "mountPath": "/data/configdb"},
                                    {"name": "tmp", "mountPath": "/tmp"},
                                ],
                            }],
                            "volumes": [
                                {"name": "data", "persistentVolumeClaim": {"claimName": "mv-mongodb-data"}},
                                {"name": "configdb", "emptyDir": {"sizeLimit": "16Mi"}},
                                {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                            ],
                        },
                    },
                },
            })
        );
    }
}
