//! The managed Redis: one pod (strategy Recreate, so two never share the
//! volume), AOF persistence on the PVC, a password from the generated Secret.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

use super::{
    REDIS_PORT, container_security, metadata, placement, pull_secrets, resources_or,
    store_default_resources, store_pod_security, typed,
};
use multivac_contract::secret_key;

use crate::crd::ManagedStore;
use crate::error::Result;
use crate::reconcile::Validated;

/// Image used when `redis.managed.image` is unset.
const DEFAULT_IMAGE: &str = "redis:7.4";

/// The password reaches redis-server through its stdin config (`-`), so it is
/// never on a command line that `ps` or an audit log would show.
const START: &str = "exec redis-server - --dir /data --appendonly yes --port 6379 <<EOF\nrequirepass $REDIS_PASSWORD\nEOF\n";

/// Deployment `<mv>-redis`.
pub(super) fn build(mv: &Validated, managed: &ManagedStore) -> Result<Deployment> {
    let password = json!({"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": mv.credentials_name(), "key": secret_key::REDIS_PASSWORD}}});
    let mut deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(mv, &mv.redis_name(), "redis"),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": super::app_pod::selector(mv, "redis"),
            "template": {
                "metadata": {"labels": super::labels(mv, "redis")},
                "spec": {
                    "serviceAccountName": mv.service_account_name(),
                    "automountServiceAccountToken": false,
                    "securityContext": store_pod_security(),
                    "imagePullSecrets": pull_secrets(mv),
                    "containers": [{
                        "name": "redis",
                        "image": managed.image.as_deref().unwrap_or(DEFAULT_IMAGE),
                        "command": ["sh", "-c", START],
                        "env": [password],
                        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
                        "livenessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 10, "failureThreshold": 3},
                        "readinessProbe": {
                            "exec": {"command": ["sh", "-c", "REDISCLI_AUTH=\"$REDIS_PASSWORD\" redis-cli -p 6379 ping | grep -q PONG"]},
                            "periodSeconds": 5, "timeoutSeconds": 2,
                        },
                        "resources": resources_or(&managed.resources, store_default_resources())?,
                        "securityContext": container_security(),
                        "volumeMounts": [
                            {"name": "data", "mountPath": "/data"},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [
                        {"name": "data", "persistentVolumeClaim": {"claimName": super::pvc::name(mv, "redis")}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
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

    #[test]
    fn redis_runs_as_its_own_user_with_aof_and_a_hidden_password() {
        let m = mv(json!({"image": "x", "imagePullSecrets": [{"name": "reg"}]}));
        assert_eq!(
            json_of(&build(&validated(&m), &m.spec.redis.managed.clone().unwrap()).unwrap()),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "mv-redis", "namespace": "ns", "labels": labels("redis"), "ownerReferences": owner()},
                "spec": {
                    "replicas": 1,
                    "strategy": {"type": "Recreate"},
                    "selector": {"matchLabels": {
                        "app.kubernetes.io/name": "multivac",
                        "app.kubernetes.io/instance": "mv",
                        "app.kubernetes.io/component": "redis",
                    }},
                    "template": {
                        "metadata": {"labels": labels("redis")},
                        "spec": {
                            "serviceAccountName": "mv-multivac",
                            "automountServiceAccountToken": false,
                            "securityContext": {
                                "runAsNonRoot": true, "runAsUser": 999, "runAsGroup": 999, "fsGroup": 999,
                                "fsGroupChangePolicy": "OnRootMismatch",
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "imagePullSecrets": [{"name": "reg"}],
                            "containers": [{
                                "name": "redis",
                                "image": "redis:7.4",
                                "command": ["sh", "-c", "exec redis-server - --dir /data --appendonly yes --port 6379 <<EOF\nrequirepass $REDIS_PASSWORD\nEOF\n"],
                                "env": [{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "mv-credentials", "key": "redis-password"}}}],
                                "ports": [{"name": "redis", "containerPort": 6379, "protocol": "TCP"}],
                                "livenessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 10, "failureThreshold": 3},
                                "readinessProbe": {
                                    "exec": {"command": ["sh", "-c", "REDISCLI_AUTH=\"$REDIS_PASSWORD\" redis-cli -p 6379 ping | grep -q PONG"]},
                                    "periodSeconds": 5, "timeoutSeconds": 2,
                                },
                                "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                                "securityContext": {
                                    "allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": true,
                                    "runAsNonRoot": true,
                                    "seccompProfile": {"type": "RuntimeDefault"},
                                },
                                "volumeMounts": [
                                    {"name": "data", "mountPath": "/data"},
                                    {"name": "tmp", "mountPath": "/tmp"},
                                ],
                            }],
                            "volumes": [
                                {"name": "data", "persistentVolumeClaim": {"claimName": "mv-redis-data"}},
                                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                            ],
                        },
                    },
                },
            })
        );
    }
}
