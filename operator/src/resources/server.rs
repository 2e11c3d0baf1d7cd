//! The HTTP server Deployment.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

use multivac_contract::port;

use super::{app_default_resources, app_pod, metadata, resources_or, typed};
use crate::error::Result;
use crate::reconcile::Validated;

/// Deployment `<mv>-server` running `multivac server` on :8080.
pub(super) fn build(mv: &Validated) -> Result<Deployment> {
    let container = app_pod::container(
        mv,
        "server",
        "http",
        port::SERVER,
        app_pod::env(mv, true),
        resources_or(&mv.spec.server.resources, app_default_resources())?,
    );
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(mv, &mv.server_name(), "server"),
        "spec": {
            "replicas": mv.spec.server.replicas,
            "selector": app_pod::selector(mv, "server"),
            "template": app_pod::template(mv, "server", container, 30),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{json_of, labels, mv, owner, validated};
    use super::*;
    use crate::resources::config_map;

    #[test]
    fn server_deployment_is_restricted_and_wired() {
        let m = mv(json!({"image": "multivac:1", "imagePullPolicy": "Always",
            "server": {"replicas": 2}, "apiTokenSecretRef": {"name": "tok"}}));
        let hash = config_map::hash(&validated(&m));
        assert_eq!(
            json_of(&build(&validated(&m)).unwrap()),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "mv-server", "namespace": "ns", "labels": labels("server"), "ownerReferences": owner()},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {
                        "app.kubernetes.io/name": "multivac",
                        "app.kubernetes.io/instance": "mv",
                        "app.kubernetes.io/component": "server",
                    }},
                    "template": {
                        "metadata": {"labels": labels("server"), "annotations": {"multivac.io/config-hash": hash}},
                        "spec": {
                            "serviceAccountName": "mv",
                            "automountServiceAccountToken": false,
                            "securityContext": {
                                "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "imagePullSecrets": [],
                            "terminationGracePeriodSeconds": 30,
                            "containers": [{
                                "name": "server",
                                "image": "multivac:1",
                                "imagePullPolicy": "Always",
                                "args": ["server"],
                                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                                "env": [
                                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                    {"name": "MULTIVAC_REDIS_URL", "valueFrom": {"secretKeyRef": {"name": "mv-credentials", "key": "redis-url"}}},
                                    {"name": "MULTIVAC_MONGODB_URI", "valueFrom": {"secretKeyRef": {"name": "mv-credentials", "key": "mongodb-uri"}}},
                                    {"name": "MULTIVAC_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "token"}}},
                                ],
                                "envFrom": [{"configMapRef": {"name": "mv-config"}}],
                                "livenessProbe": {
                                    "httpGet": {"path": "/healthz", "port": "http"},
                                    "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3,
                                },
                                "readinessProbe": {
                                    "httpGet": {"path": "/readyz", "port": "http"},
                                    "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 2,
                                },
                                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                                "securityContext": {
                                    "allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": true,
                                    "runAsNonRoot": true,
                                    "seccompProfile": {"type": "RuntimeDefault"},
                                },
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
