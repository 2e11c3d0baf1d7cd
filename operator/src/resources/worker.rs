//! The worker Deployment. It never sets `spec.replicas`: the scaler owns that
//! field with its own field manager, and applying it here would fight it.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

use multivac_contract::port;

use super::{app_default_resources, app_pod, metadata, resources_or, typed};
use crate::error::Result;
use crate::reconcile::Validated;

/// Long enough for a worker to finish and ack its in-flight batch on scale-down.
const WORKER_TERMINATION_GRACE_SECONDS: i64 = 60;

/// Deployment `<mv>-worker` running `multivac worker`, metrics on :9090.
pub(super) fn build(mv: &Validated) -> Result<Deployment> {
    let container = app_pod::container(
        mv,
        "worker",
        "metrics",
        port::WORKER_METRICS,
        app_pod::env(mv, false),
        resources_or(&mv.spec.workers.resources, app_default_resources())?,
    );
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(mv, &mv.worker_name(), "worker"),
        "spec": {
            "selector": app_pod::selector(mv, "worker"),
            "template": app_pod::template(mv, "worker", container, WORKER_TERMINATION_GRACE_SECONDS),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{json_of, labels, mv, owner, validated};
    use super::*;
    use crate::resources::{config_map, container_security};

    #[test]
    fn worker_deployment_leaves_replicas_to_the_scaler() {
        let m = mv(json!({"image": "multivac:1",
            "redis": {"external": {"secretRef": {"name": "ext", "key": "url"}}},
            "workers": {"resources": {"limits": {"memory": "1Gi"}}},
            "apiTokenSecretRef": {"name": "tok"}}));
        assert_eq!(
            json_of(&build(&validated(&m)).unwrap()),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "mv-worker", "namespace": "ns", "labels": labels("worker"), "ownerReferences": owner()},
                "spec": {
                    "selector": {"matchLabels": {
                        "app.kubernetes.io/name": "multivac",
                        "app.kubernetes.io/instance": "mv",
                        "app.kubernetes.io/component": "worker",
                    }},
                    "template": {
                        "metadata": {"labels": labels("worker"), "annotations": {"multivac.io/config-hash": config_map::hash(&validated(&m))}},
                        "spec": {
                            "serviceAccountName": "mv",
                            "automountServiceAccountToken": false,
                            "securityContext": {
                                "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "imagePullSecrets": [],
                            "terminationGracePeriodSeconds": 60,
                            "containers": [{
                                "name": "worker",
                                "image": "multivac:1",
                                "args": ["worker"],
                                "ports": [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
                                "env": [
                                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                    {"name": "MULTIVAC_REDIS_URL", "valueFrom": {"secretKeyRef": {"name": "ext", "key": "url"}}},
                                    {"name": "MULTIVAC_MONGODB_URI", "valueFrom": {"secretKeyRef": {"name": "mv-credentials", "key": "mongodb-uri"}}},
                                ],
                                "envFrom": [{"configMapRef": {"name": "mv-config"}}],
                                "livenessProbe": {
                                    "httpGet": {"path": "/healthz", "port": "metrics"},
                                    "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3,
                                },
                                "readinessProbe": {
                                    "httpGet": {"path": "/readyz", "port": "metrics"},
                                    "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 2,
                                },
                                "resources": {"limits": {"memory": "1Gi"}},
                                "securityContext": container_security(),
                                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                            }],
                            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                        },
                    },
                },
            })
        );
    }
}
