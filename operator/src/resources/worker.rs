//! The worker Deployment. It never sets `spec.replicas`: the scaler owns that
//! field with its own field manager, and applying it here would fight it.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

use multivac_contract::port;

use super::{app_default_resources, app_pod, metadata, placement, resources_or, typed};
use crate::error::Result;
use crate::validated::Validated;

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
    let mut deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(mv, &mv.worker_name(), "worker"),
        "spec": {
            "selector": app_pod::selector(mv, "worker"),
            "template": app_pod::template(mv, "worker", container, WORKER_TERMINATION_GRACE_SECONDS),
        },
    });
    placement::place(&mut deployment, &mv.spec.workers.placement)?;
    typed(deployment)
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
        let built = json_of(&build(&validated(&m)).unwrap());
        let secrets =
            &built["spec"]["template"]["metadata"]["annotations"]["multivac.io/secrets-hash"];
        assert!(secrets.as_str().is_some_and(|h| h.len() == 16), "{secrets}");
        assert_eq!(
            built,
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
                        "metadata": {"labels": labels("worker"), "annotations": {"multivac.io/config-hash": config_map::hash(&validated(&m)), "multivac.io/secrets-hash": secrets}},
                        "spec": {
                            "serviceAccountName": "mv-multivac",
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

    /// An external Redis and MongoDB with private CAs: each CA Secret is
    /// mounted read-only where the app's variable points, in the workers as
    /// in the server (same pod template code).
    #[test]
    fn worker_pods_get_the_cas_of_external_stores_and_their_placement() {
        let m = mv(json!({
            "redis": {"external": {"secretRef": {"name": "r"}, "caSecretRef": {"name": "redis-ca"}}},
            "mongodb": {"external": {"secretRef": {"name": "m"}, "caSecretRef": {"name": "mongo-ca", "key": "root.pem"}}},
            "workers": {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "worker"}}}}]}},
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway"}]},
        }));
        let built = json_of(&build(&validated(&m)).unwrap());
        let pod = &built["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let env = container["env"].as_array().unwrap();
        assert_eq!(
            env[env.len() - 2..],
            [
                json!({"name": "MULTIVAC_REDIS_CA_FILE", "value": "/etc/multivac/tls/redis/ca.crt"}),
                json!({"name": "MULTIVAC_MONGODB_CA_FILE", "value": "/etc/multivac/tls/mongodb/ca.crt"}),
            ]
        );
        assert_eq!(
            container["volumeMounts"],
            json!([
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "redis-ca", "mountPath": "/etc/multivac/tls/redis", "readOnly": true},
                {"name": "mongodb-ca", "mountPath": "/etc/multivac/tls/mongodb", "readOnly": true},
            ])
        );
        assert_eq!(
            pod["volumes"],
            json!([
                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                {"name": "redis-ca", "secret": {"secretName": "redis-ca", "defaultMode": 292,
                    "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"name": "mongodb-ca", "secret": {"secretName": "mongo-ca", "defaultMode": 292,
                    "items": [{"key": "root.pem", "path": "ca.crt"}]}},
            ])
        );
        assert_eq!(
            pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
                [0]["weight"],
            100
        );
        assert_eq!(
            pod["topologySpreadConstraints"][0]["topologyKey"],
            "topology.kubernetes.io/zone"
        );
    }
}
